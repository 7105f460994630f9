"""Host memory over a job: RSS of the main process at the start, at step N and at the end, its peak, and the PSS of
its DataLoader workers, for the jobs lit-lm runs.

    python benchmarks/memory.py                                    # every case, this checkout
    python benchmarks/memory.py --cases quickstart --steps 20 --at-step 10          # a quick check
    python benchmarks/memory.py --cases mrpc --extra "--data.num_workers 0"         # a flag added to each fit
    git worktree add /tmp/before HEAD~5                                             # the code before a change ...
    python benchmarks/memory.py --repo /tmp/before --repo .                         # ... and after, one invocation

Cases (``--cases``, in this order; DATA is ``--data``, default ../shared/data beside the checkout):

    quickstart  python -m lit_lm fit --config cli.yaml --config configs/quickstart.yaml
    budget      python -m lit_lm fit --config cli.yaml --config configs/cpu_hour.yaml --data.data_dir DATA/wikitext-2
                --trainer.max_time 00:00:02:00 (``--budget-time``)
    mrpc        python -m lit_lm fit --config configs/sst2.yaml --data.tokenizer CKPT --model.config small
                --data.task_name mrpc --data.data_dir DATA/glue/MRPC --trainer.max_steps 150
    glue        python -m lit_lm glue --pretrained CKPT --data_dir DATA/glue --tasks mrpc --trainer.max_steps 150
    corpus      CorpusDataModule(data_dir=DATA/wikitext-2 (``--corpus``), a fresh cache).prepare_data(), setup("fit")

CKPT (``--checkpoint``) defaults to the quickstart case's checkpoint from the same invocation and repo, else
``<repo>/runs/quickstart/checkpoints/last.ckpt`` (``make quickstart``). ``--steps N`` caps every fit at N optimizer
steps (mrpc and glue: instead of 150). Runs, checkpoints and the corpus case's cache go to a temporary directory;
the fit cases keep their configs' data cache (``<repo>/runs/cache``).

Each case runs as a child process in its repo (``--repo``, repeatable: the same case against each checkout, e.g. a
``git worktree`` of the code before a change), with that repo first on PYTHONPATH, so it imports its own code; the
measuring is this checkout's ``lit_lm.memory`` and needs nothing from the job. A thread here samples the job's
process tree: RSS every ``--interval`` s (``/proc/<pid>/statm``, microseconds) and PSS every ``--pss-interval`` s
(``smaps_rollup``: ~15 ms of CPU per GB mapped, taken from the 2 cores the job shares). The job's own output (progress
lines: it is not in a terminal) marks the moments: ``start`` when Lightning prints the model summary (data prepared,
model built, before the first step), ``step N`` (``--at-step``, default 50) at its progress line for step N, ``end``
at its summary line (after fit; the corpus case: when the cache is ready); there a sample with PSS is taken at once.

Columns: RSS of the main process at start / step N / end; peak = the kernel's high-water mark of the main process
(``VmHWM``, exact whenever it happened); peak / step N: how far the peak lies above the steady state; peak after
step N: the peak of the steady state itself (VmHWM if it rose after step N, else the largest RSS sampled after it: the
lifetime peak may come in the first steps, while the shapes are still new); workers: the
largest sum of the workers' PSS in a sample (and most workers alive at once); tree PSS: main + workers at one sample,
the largest; steps/s from the job's last progress line; wall: the job's seconds, start-up included; CPU: the CPU
seconds of the whole tree (``wait4``: user + system, workers included), which, unlike steps/s and wall, a busy shared
host does not inflate much.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from lit_lm import memory  # noqa: E402  (the measuring: this checkout's, whichever repo the job runs)
from report import default_out, tee  # noqa: E402  (benchmarks/report.py, beside this script)

CASES = ("quickstart", "budget", "mrpc", "glue", "corpus")
MB = 1e6

CORPUS_SCRIPT = """import sys
from data_modules.corpus import CorpusDataModule
dm = CorpusDataModule(data_dir=sys.argv[1], cache_dir=sys.argv[2], vocab_size=int(sys.argv[3]), num_workers=0)
dm.prepare_data()
dm.setup("fit")
print("corpus ready", flush=True)
"""

START = re.compile(r"Trainable params")  # Lightning's model summary: on_fit_start, after prepare_data and setup
STEP = re.compile(r"^step ([\d,]+)")  # console.ProgressBar's line off a terminal
RATE = re.compile(r" · ([\d.]+) steps/s")
END = re.compile(r"^(pretraining|fine-tuning)\b.*: [\d,]+ steps in |^corpus ready$")  # console.run_summary's line


@dataclass
class Watch:
    """Samples a running job's process tree: RSS often, PSS now and then, and both at the job's marks."""

    pid: int
    interval: float
    pss_interval: float
    steady: str = ""  # the mark of the steady state (``step N``): the peak after it is kept apart
    t0: float = field(default_factory=time.monotonic)
    hwm: int = 0  # the main process's VmHWM, the largest read
    hwm_at_steady: Optional[int] = None  # VmHWM when the steady mark was taken
    rss_after_steady: int = 0  # the largest RSS sampled after it
    workers: int = 0
    workers_pss: int = 0
    tree_pss: int = 0
    trace: list[tuple[float, str, memory.Sample]] = field(default_factory=list)  # (seconds, mark, sample)
    marks: dict[str, memory.Sample] = field(default_factory=dict)
    last: Optional[memory.Sample] = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def take(self, mark: str = "", pss: bool = True) -> Optional[memory.Sample]:
        s = memory.sample(self.pid, pss=pss)
        if s.rss == 0:  # exited (a zombie's statm reads zeros)
            return None
        hwm = memory.peak_rss(self.pid)
        with self._lock:
            self.hwm = max(self.hwm, hwm)
            self.workers = max(self.workers, s.workers)
            if s.pss is not None:
                self.workers_pss = max(self.workers_pss, s.workers_pss)
                self.tree_pss = max(self.tree_pss, s.pss + s.workers_pss)
            if mark:
                self.marks.setdefault(mark, s)
                self.trace.append((time.monotonic() - self.t0, mark, s))
            if self.hwm_at_steady is not None:
                self.rss_after_steady = max(self.rss_after_steady, s.rss)
            elif mark and mark == self.steady:
                self.hwm_at_steady = hwm
            self.last = s
        return s

    def peak_after_steady(self) -> Optional[int]:
        """The main process's peak RSS after the steady mark: the kernel's high-water mark if it rose after the mark
        (exact), else the largest RSS sampled after it (every ``interval`` s; the lifetime peak came before)."""
        if self.hwm_at_steady is None:
            return None
        return self.hwm if self.hwm > self.hwm_at_steady else self.rss_after_steady

    def _run(self) -> None:
        next_pss = 0.0
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            if self.take(pss=now >= next_pss) is None:
                return
            if now >= next_pss:
                next_pss = now + self.pss_interval

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Row:
    case: str
    repo: str
    watch: Optional[Watch] = None
    rate: Optional[float] = None
    wall: float = 0.0
    cpu: float = 0.0
    failed: str = ""


def command(case: str, repo: Path, out: Path, args: argparse.Namespace, ckpt: Optional[Path]) -> list[str] | str:
    """The job's command line, or why it cannot run."""
    data = Path(args.data)
    extra = shlex.split(args.extra)
    steps = ["--trainer.max_steps", str(args.steps)] if args.steps else []
    fit = [sys.executable, "-m", "lit_lm", "fit"]
    logs = [f"--trainer.logger.init_args.save_dir={out}"]  # every version's configs name a TensorBoardLogger
    if case == "quickstart":
        return fit + ["--config", "cli.yaml", "--config", "configs/quickstart.yaml", *logs, *steps, *extra]
    if case == "budget":
        return fit + ["--config", "cli.yaml", "--config", "configs/cpu_hour.yaml", "--data.data_dir",
                      str(data / "wikitext-2"), "--trainer.max_time", args.budget_time, *logs, *steps, *extra]
    if case == "corpus":
        return [sys.executable, "-c", CORPUS_SCRIPT, str(args.corpus or data / "wikitext-2"), str(out / "cache"),
                str(args.vocab_size)]
    if ckpt is None or not ckpt.is_file():
        return f"no checkpoint ({ckpt}): run the quickstart case first, `make quickstart`, or pass --checkpoint"
    fine_steps = ["--trainer.max_steps", str(args.steps or 150)]
    if case == "mrpc":
        return fit + ["--config", "configs/sst2.yaml", "--data.tokenizer", str(ckpt), "--model.config", "small",
                      "--data.task_name", "mrpc", "--data.data_dir", str(data / "glue" / "MRPC"), *fine_steps, *logs,
                      *extra]
    return [sys.executable, "-m", "lit_lm", "glue", "--pretrained", str(ckpt), "--data_dir", str(data / "glue"),
            "--tasks", "mrpc", "--save_dir", str(out / "glue"), *fine_steps, *extra]


def run(case: str, repo: Path, cmd: list[str], log: Path, args: argparse.Namespace) -> Row:
    """Run one job, watching its tree; its output goes to ``log``."""
    row = Row(case, repo.name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    with open(log, "w") as f:
        f.write(f"# {shlex.join(cmd)}\n# cwd {repo}\n")
        job = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watch = row.watch = Watch(job.pid, args.interval, args.pss_interval, steady=f"step {args.at_step}")
        for line in job.stdout:
            f.write(line)
            line = line.rstrip("\n")
            if START.search(line):
                watch.take("start")
            elif STEP.match(line):
                step = int(STEP.match(line)[1].replace(",", ""))
                watch.take(f"step {step}", pss=step == args.at_step)
                if rate := RATE.search(line):
                    row.rate = float(rate[1])
            elif END.search(line):
                watch.take("end")
        _, status, usage = os.wait4(job.pid, 0)  # Popen.wait would drop the tree's CPU time
        job.returncode = rc = os.waitstatus_to_exitcode(status)
        watch.stop()
    row.wall = time.monotonic() - t0
    row.cpu = usage.ru_utime + usage.ru_stime  # the job's and the children it waited for: its workers
    if rc != 0:
        row.failed = f"exit {rc}; last lines of {log}:\n" + "".join(log.read_text().splitlines(True)[-15:])
    return row


def _mb(s: Optional[memory.Sample]) -> str:
    return f"{s.rss / MB:,.0f}" if s is not None else "-"


def report(rows: list[Row], at_step: int) -> None:
    for row in rows:
        if row.watch is None or not row.watch.trace:
            continue
        print(f"\n{row.case} ({row.repo}): the trace at the job's marks (RSS MB; PSS MB where read)")
        for t, mark, s in row.watch.trace:
            pss = f", PSS {s.pss / MB:,.0f} + workers {s.workers_pss / MB:,.0f}" if s.pss is not None else ""
            print(f"  {t:7.1f} s  {mark:<10} main {s.rss / MB:,.0f}, {s.workers} workers {s.workers_rss / MB:,.0f} "
                  f"max{pss}")
    print(f"\n| case | repo | start RSS | RSS at step {at_step} | peak RSS | end RSS | peak / step {at_step} | "
          f"peak after step {at_step} (/ step {at_step}) | workers' PSS (n) | tree PSS | steps/s | wall s | CPU s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        w = row.watch
        if w is None:
            print(f"| {row.case} | {row.repo} | {row.failed} |" + " |" * 11)
            continue
        start, mid = w.marks.get("start"), w.marks.get(f"step {at_step}")
        end = w.marks.get("end", w.last)
        ratio = f"{w.hwm / mid.rss:.2f}" if mid is not None else "-"
        after = w.peak_after_steady()
        after = f"{after / MB:,.0f} ({after / mid.rss:.3f})" if after is not None and mid is not None else "-"
        workers = f"{w.workers_pss / MB:,.0f} ({w.workers})" if w.workers else "none"
        rate = f"{row.rate:.2f}" if row.rate is not None else "-"
        status = " (failed)" if row.failed else ""
        print(f"| {row.case}{status} | {row.repo} | {_mb(start)} | {_mb(mid)} | {w.hwm / MB:,.0f} | {_mb(end)} | "
              f"{ratio} | {after} | {workers} | {w.tree_pss / MB:,.0f} | {rate} | {row.wall:.0f} | {row.cpu:.0f} |")
    print("\nMB = 1e6 bytes. RSS counts pages a forked worker shares with the main process in both; PSS splits them.")
    print(f"peak RSS: the kernel's high-water mark over the whole job (VmHWM); peak after step {at_step}: that mark if it "
          f"rose after step {at_step}, else the largest RSS sampled after it (every --interval s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--repo", action="append", type=Path, help="a checkout to run the cases in (repeatable; "
                   "default: this one)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="holds wikitext-2/ and glue/")
    p.add_argument("--steps", type=int, default=None, help="cap every fit at this many optimizer steps")
    p.add_argument("--at-step", type=int, default=50, help="the step whose RSS is the steady state")
    p.add_argument("--budget-time", default="00:00:02:00", help="the budget case's --trainer.max_time")
    p.add_argument("--checkpoint", type=Path, default=None, help="the pretraining checkpoint for mrpc and glue")
    p.add_argument("--corpus", default=None, help="the corpus case's data_dir (default: DATA/wikitext-2)")
    p.add_argument("--vocab-size", type=int, default=30522, help="the corpus case's vocabulary (cli.yaml's)")
    p.add_argument("--extra", default="", help="flags added to every fit and glue command, e.g. "
                   "'--data.num_workers 0'")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between RSS samples")
    p.add_argument("--pss-interval", type=float, default=2.0, help="seconds between PSS samples")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory of runs and logs")
    p.add_argument("--out", default=default_out("memory"), help="the raw output goes here too")
    args = p.parse_args()
    repos = [r.resolve() for r in args.repo or [REPO]]
    with tee(args.out):
        _run(args, repos)


def _run(args: argparse.Namespace, repos: list[Path]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lit-lm-memory-"))
    rows = []
    try:
        for i, repo in enumerate(repos):
            found = subprocess.run([sys.executable, "-c", "import lit_lm; print(lit_lm.__file__)"], cwd=repo,
                                   env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True)
            head = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h %s"], capture_output=True,
                                  text=True).stdout.strip()[:100]
            print(f"repo {repo}: {head}; lit_lm from {found.stdout.strip() or found.stderr.strip()[-200:]}",
                  flush=True)
            out = tmp / f"{i}-{repo.name}"
            out.mkdir()
            for case in args.cases:
                ckpt = args.checkpoint or next(
                    (c for c in (out / "quickstart" / "checkpoints" / "last.ckpt",
                                 repo / "runs" / "quickstart" / "checkpoints" / "last.ckpt") if c.is_file()), None)
                cmd = command(case, repo, out, args, ckpt)
                if isinstance(cmd, str):
                    print(f"{case} ({repo.name}): skipped, {cmd}", flush=True)
                    rows.append(Row(case, repo.name, failed=f"skipped: {cmd}"))
                    continue
                print(f"{case} ({repo.name}): {shlex.join(cmd)[:300]}", flush=True)
                row = run(case, repo, cmd, out / f"{case}.log", args)
                if row.failed:
                    print(f"{case} ({repo.name}) failed: {row.failed}", flush=True)
                rows.append(row)
        report(rows, args.at_step)
    finally:
        if args.keep:
            print(f"runs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
