"""Does our pretraining pay off on GLUE? Every task with training data here, 3 seeds, one recipe for every arm:

1. ``random``: random weights with the checkpoint's architecture and tokenizer (``lit-lm glue --random_init``);
2. ``pretrained``: the pretraining checkpoint itself (MLM + NSP);
3. ``tapt``: that checkpoint after task-adaptive MLM on each task's own training text (no labels; dev and test text
   never read), through the continued-pretraining path (``--model.init_from``, MLM-only packed text, a fixed number
   of steps per task), as Gururangan et al. (2020), "Don't Stop Pretraining", section 4;
4. ``mlm_only``: a second checkpoint, pretrained with the same budget as arm 2 (steps, batch, schedule) but MLM
   only on packed text (``--model.nsp false``): RoBERTa (Liu et al., 2019, section 4.2) found that dropping NSP
   matches or slightly improves downstream scores. It is its own pretraining run, given as ``--mlm-only CKPT``;
   for the 2026-12-02 arm-2 checkpoint (``configs/cpu_hour.yaml`` with a 5,000-step schedule) it is made by

       python -m lit_lm fit --config cli.yaml --config configs/cpu_hour.yaml --data.data_dir DIR/wikitext-2 \
           --trainer.max_time null --trainer.max_steps 5000 --model.budget steps --model.nsp false \
           --trainer.logger.init_args.name cpu_hour_5k_mlm     # -> runs/cpu_hour_5k_mlm/checkpoints/last.ckpt

The score is BERT's (lit_lm.glue.scoring): the headline ``GLUE-5`` is the mean of the task scores over CoLA, SST-2,
MRPC, STS-B and RTE; WNLI is run and shown beside it, not averaged (Devlin et al., 2019, section 4.1, footnote on
WNLI: its dev set punishes a model that fits its train set); QNLI, MNLI and QQP have no training file here. Each arm
is ``python -m lit_lm glue`` (the harness's own per-run directories, skip-on-rerun and scoring), so a killed
benchmark continues where it stopped, and runs of an earlier invocation with the same arguments count. The table
(each task's official metrics ×100, mean ± sd over the seeds, GLUE-5) and the targets are printed and written with
the command, date and machine to ``benchmarks/results/glue_pretraining_helps-<date>.txt``.

    python benchmarks/glue_pretraining_helps.py --pretrained runs/cpu_hour_5k/checkpoints/last.ckpt \
        --mlm-only runs/cpu_hour_5k_mlm/checkpoints/last.ckpt --data-dir GLUE_DIR
    # a smoke run: 3 steps a run, 2 dev batches, 3 steps of task-adaptive MLM
    python benchmarks/glue_pretraining_helps.py ... --seeds 1 --tapt-steps 3 --save-dir /tmp/helps \
        --out /tmp/helps.txt -- --trainer.max_steps 3 --trainer.limit_val_batches 2

GLUE_DIR must hold SST-2/ as a directory: the shared copy (../shared/data/glue) keeps that entry as a symbolic link
saved as a text file, which lit-lm glue names in one line and does not follow; a tree of links serves (as
tests/conftest.py's glue_root fixture builds one).

Flags after ``--`` go to every fine-tuning run (the recipe below is the default). The recipe, the same for every
arm: configs/sst2.yaml (BERT's: batch 32, 3 epochs (MRPC and WNLI 5: ``GLUETask.max_epochs``), 10% warmup then
linear decay, dropout 0.1, gradient clipping 1.0, the last checkpoint scored on dev) with lr 2e-4 (small encoders
want 1e-4..3e-4: Turc et al., 2019; 2e-5 leaves them unfitted), max_seq_len 128 (RTE's premises need it; batches are
padded to their own longest row), BERT's [CLS] pooler (``-- --model.pooling mean`` for the masked mean, which the
team's SST-2 probes found better for both arms there: 72.3 vs 70.7 random, 71.3 vs 68.2 pretrained; it also hands
the random arm a trainable bag of words, which may narrow the gap on similarity tasks, so the BERT default is the
main recipe), bf16-mixed (pass ``-- --trainer.precision 32-true`` on a CPU without AVX512-BF16). SST-2 alone (67k
examples, 8x CoLA, the next largest) runs ``--sst2-epochs`` epochs, 1 by default on the CPU; the table says so.

Targets: GLUE-5 of the best pretrained arm >= random + 8.0 over 3 seeds; tapt >= pretrained + 1.0 on GLUE-5; no
task where a pretrained arm falls below random by more than random's sd without a note (``NOTES``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import default_out, tee  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from data_modules.glue_tasks import TASKS  # noqa: E402
from lit_lm.glue.scoring import BERT_LEAVES_OUT, summarize  # noqa: E402

ARMS = ("random", "pretrained", "tapt", "mlm_only")
"""The arms, in the table's order (see the module docstring)."""

TRAINABLE = ("cola", "sst2", "mrpc", "stsb", "rte", "wnli")
"""The GLUE tasks with a training file in the release tree here (QNLI has dev and test only; no MNLI, no QQP)."""

GLUE_5 = tuple(t for t in TRAINABLE if t not in BERT_LEAVES_OUT)
"""The headline's tasks: CoLA, SST-2, MRPC, STS-B, RTE (BERT's average, WNLI out, of the tasks trainable here)."""

RECIPE = ["--model.lr", "2e-4", "--data.max_seq_len", "128", "--trainer.precision", "bf16-mixed",
          "--trainer.accelerator", "cpu", "--data.num_workers", "0"]
"""What every fine-tuning run of every arm gets on top of configs/sst2.yaml (see the module docstring)."""

TAPT = ["--model.nsp", "false", "--model.lr", "5e-4", "--model.warmup_steps", "0.06",
        "--trainer.precision", "bf16-mixed", "--trainer.accelerator", "cpu", "--trainer.accumulate_grad_batches", "1",
        "--trainer.val_check_interval", "100", "--trainer.limit_val_batches", "10", "--data.batch_size", "32",
        "--data.num_workers", "1", "--data.val_fraction", "0.05"]
"""Task-adaptive MLM on top of cli.yaml (the architecture, tokenizer and dropout come from the checkpoint): MLM only
on packed task text (the examples have no article structure worth NSP), batch 32 as the budget recipe, lr 5e-4 (half
its peak: the weights are already trained), 6% warmup then linear decay over the steps, validation on 5% of the
task's own training documents (never dev or test)."""

ANCHORS = {
    # Turc et al. (2019), "Well-Read Students Learn Better", GLUE test scores of the released BERT miniatures
    # (google-research/bert README): pretrained on BooksCorpus + Wikipedia (3.3B words), fine-tuning grid per task.
    "BERT-Tiny (Turc et al., 2019; GLUE test)": {"cola": 0.0, "sst2": 83.2, "mrpc": (81.1, 71.1), "stsb": (74.3, 73.6),
                                                 "rte": 57.2, "wnli": 62.3, "qnli": 81.5},
    "BERT-Mini (Turc et al., 2019; GLUE test)": {"cola": 0.0, "sst2": 85.9, "mrpc": (81.1, 71.8), "stsb": (75.4, 73.3),
                                                 "rte": 57.9, "wnli": 62.3, "qnli": 84.1},
}
"""Published anchors for the sizes run here, as (F1, accuracy) / (Pearson, Spearman) pairs where a task has two."""


def _run(cmd: list[str]) -> int:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def task_corpus(glue_dir: Path, task: str, out: Path) -> Path:
    """The training split's texts of ``task`` as a plain-text corpus (one example a document, its one or two texts
    one per line, documents separated by blank lines), read with the harness's own reader; labels are dropped."""
    from data_modules.glue_reading import read_tsv
    from data_modules.glue_tasks import get_task

    spec = get_task(task)
    examples = read_tsv(glue_dir / spec.directory / f"{spec.train[0]}.tsv", spec, labelled=True)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train.txt"
    with open(path, "w", encoding="utf-8") as f:
        for texts in examples.texts:
            f.write("\n".join(t.strip() for t in texts if t.strip()) + "\n\n")
    return out


def adapt(ckpt: str, glue_dir: Path, task: str, steps: int, save: Path) -> str:
    """Continued MLM pretraining of ``ckpt`` on the task's training text; returns the adapted checkpoint."""
    name = f"tapt-{task}-{steps}steps"  # another budget is another checkpoint, so a table never mixes them
    last = save / name / "checkpoints" / "last.ckpt"
    if last.is_file():
        print(f"{last}: exists, reused", flush=True)
        return str(last)
    corpus = task_corpus(glue_dir, task, save / "corpora" / task)
    rc = _run([sys.executable, "-m", "lit_lm", "fit", "--config", "cli.yaml",
               "--model.init_from", ckpt, "--data.data_dir", str(corpus), "--data.format", "text",
               "--data.cache_dir", str(save / "cache"), "--trainer.max_steps", str(steps),
               "--trainer.logger.init_args.save_dir", str(save), "--trainer.logger.init_args.name", name, *TAPT])
    if rc != 0 or not last.is_file():
        raise SystemExit(f"task-adaptive pretraining of {task} failed (exit {rc})")
    return str(last)


def harness(ckpt: str, glue_dir: Path, tasks: list[str], seeds: str, name: str, save: Path, extra: list[str],
            random_init: bool = False) -> Path:
    cmd = [sys.executable, "-m", "lit_lm", "glue", "--pretrained", ckpt, "--data_dir", str(glue_dir),
           "--tasks", ",".join(tasks), "--seeds", seeds, "--save_dir", str(save), "--name", name, *RECIPE, *extra]
    if random_init:
        cmd.insert(cmd.index("--data_dir"), "--random_init")
    _run(cmd)  # a failed task is reported in results.json and the table; the others still count
    return save / name / "results.json"


def result_names(arm: str, tasks: list[str], sst2_epochs: int) -> dict[str, list[str]]:
    """The harness invocations (``--name``) of an arm -> their tasks: SST-2 alone (its own epochs, so its own table);
    tapt one per task (each task its own adapted checkpoint)."""
    rest = [t for t in tasks if t != "sst2"]
    names = {f"tapt-{t}": [t] for t in rest} if arm == "tapt" else ({arm: rest} if rest else {})
    if "sst2" in tasks:
        names[f"{arm}-sst2-{sst2_epochs}ep"] = ["sst2"]
    return names


def read_runs(results: Path) -> dict[str, dict[int, dict[str, float]]]:
    """task -> seed -> official metrics, from a harness's results.json (none if it is missing)."""
    if not results.is_file():
        return {}
    runs: dict[str, dict[int, dict[str, float]]] = {}
    for task, entry in json.loads(results.read_text()).get("tasks", {}).items():
        for name in (m for m in entry if m != "score"):
            for seed, v in entry[name]["per_seed"].items():
                runs.setdefault(task, {}).setdefault(int(seed), {})[name] = v
    return runs


def _fmt(entry: dict | None) -> str:
    if not entry:
        return "—"
    sd = entry.get("sd")
    return f"{100 * entry['mean']:.1f}" + ("" if sd is None else f" ± {100 * sd:.1f}")


def average_label(average: dict) -> str:
    """``GLUE-5`` when the average is over exactly CoLA, SST-2, MRPC, STS-B and RTE, else named by its tasks."""
    tasks = average["tasks"]
    return "GLUE-5" if tasks == list(GLUE_5) else f"GLUE-{len(tasks)} ({', '.join(tasks)}; not GLUE-5)"


def table(arms: dict[str, dict], tasks: list[str], sst2_epochs: int) -> str:
    """Per task its metrics and task score, mean ± sd per arm; the BERT-style average of each arm last."""
    names = list(arms)
    lines = ["| task | metric(s) | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for task in (t for t in TASKS if t in tasks):
        metrics = [m for m, _ in TASKS[task].leaderboard_metrics]
        note = f" ({sst2_epochs} epoch{'s' * (sst2_epochs != 1)})" if task == "sst2" else ""
        for m in metrics + ["score"] * (len(metrics) > 1):
            label = "task score" if m == "score" else m
            row = [_fmt(arms[a]["tasks"].get(task, {}).get(m)) for a in names]
            lines.append(f"| {task}{note} | {label} | " + " | ".join(row) + " |")
    bert = next((arms[a]["bert_style"] for a in names if arms[a]["bert_style"]), None)
    if bert is not None:
        cells = []
        for a in names:  # an arm where a task failed averages fewer: said in its cell
            avg = arms[a]["bert_style"]
            fewer = "" if avg is None or avg["tasks"] == bert["tasks"] else f" ({len(avg['tasks'])} tasks)"
            cells.append("—" if avg is None else f"**{_fmt(avg)}**{fewer}")
        lines.append(f"| **{average_label(bert)}, BERT-style** | mean of task scores, WNLI out | " + " | ".join(cells)
                     + " |")
    lines.append("")
    lines.append("BERT-style: the mean of the task scores (a task: the mean of its metrics) without WNLI (Devlin et "
                 "al., 2019, section 4.1); WNLI is shown above it, not averaged. sd over seeds (n - 1); an average's "
                 "sd over the seeds every averaged task has.")
    if "sst2" in tasks:
        lines.append(f"SST-2 ran {sst2_epochs} epoch{'s' * (sst2_epochs != 1)} (--sst2-epochs; the recipe's 3 for "
                     f"the other tasks, MRPC and WNLI 5).")
    return "\n".join(lines)


NOTES = {
    "wnli": "expected: WNLI's dev set shares hypotheses with train under the opposite label (GLUE's FAQ), so an "
            "encoder that fits train scores below the majority class there; it is not in GLUE-5",
}
"""Why a task may fall below random in a pretrained arm, said where the check flags it."""


def verdict(arms: dict[str, dict], tasks: list[str]) -> list[str]:
    """The targets: GLUE-5 of the best pretrained arm >= random + 8.0, tapt >= pretrained + 1.0 (both over 3 seeds),
    and no task where a pretrained arm is below random by more than random's sd without a note."""
    out = []
    glue = {a: arms[a]["bert_style"] for a in arms if arms[a]["bert_style"]}

    def seeds(*averages: dict) -> str:
        n = min(len(g["per_seed"]) for g in averages)
        return "" if n >= 3 else f" (over {n} seed{'s' * (n != 1)}; the target is over 3)"

    def gap(x: str, y: str) -> str:
        """x - y in points, or why not: averages over other tasks (a failed run) are not compared."""
        if glue[x]["tasks"] != glue[y]["tasks"]:
            return f"not comparable ({x}: {average_label(glue[x])}, {y}: {average_label(glue[y])})"
        return f"{100 * (glue[x]['mean'] - glue[y]['mean']):+.1f}"

    def target(x: str, y: str, bar: float) -> str:
        d = gap(x, y)
        if d.startswith("not"):
            return d
        return f"{d}, {'met' if float(d) >= bar else 'MISSED'}{seeds(glue[x], glue[y])}"

    pre = [a for a in glue if a != "random"]
    if "random" in glue:
        for a in pre:
            out.append(f"{average_label(glue[a])} {a} - random: {gap(a, 'random')}")
        same = [a for a in pre if glue[a]["tasks"] == glue["random"]["tasks"]]
        if same:
            best = max(same, key=lambda a: glue[a]["mean"])
            out.append(f"target: {average_label(glue[best])} of the best pretrained arm ({best}) >= random + 8.0: "
                       f"{target(best, 'random', 8.0)}")
    if "tapt" in glue and "pretrained" in glue:
        out.append(f"target: {average_label(glue['tapt'])} tapt >= pretrained + 1.0: "
                   f"{target('tapt', 'pretrained', 1.0)}")
    for task in (t for t in TASKS if t in tasks):
        r = arms.get("random", {}).get("tasks", {}).get(task, {}).get("score")
        for a in (x for x in arms if x != "random"):
            e = arms[a]["tasks"].get(task, {}).get("score")
            if r and not e:
                out.append(f"{task}: {a} not scored (its error is in the output above)")
            if not (r and e):
                continue
            d, sd = 100 * (e["mean"] - r["mean"]), 100 * (r["sd"] or 0.0)
            flag = "ok" if d >= -sd else f"below random by more than one sd: {NOTES.get(task, 'NEEDS A NOTE')}"
            out.append(f"{task}: {a} - random = {d:+.1f} (random sd {sd:.1f}): {flag}")
    return out


def anchors(tasks: list[str]) -> list[str]:
    """Turc et al.'s published scores, with their BERT-style average over the tasks run here (GLUE test, not dev)."""
    out = []
    for name, scores in ANCHORS.items():
        runs = {t: {0: {m: v / 100 for (m, _), v in zip(TASKS[t].leaderboard_metrics,
                                                        s if isinstance(s, tuple) else (s,))}}
                for t, s in scores.items() if t in tasks}
        bert = summarize(runs)["bert_style"]
        head = f"{average_label(bert)} {100 * bert['mean']:.1f}; " if bert else ""
        out.append(f"anchor {name}: {head}" + ", ".join(f"{t} {v}" for t, v in scores.items() if t in tasks))
    return out


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", required=True, help="a lit-lm pretraining checkpoint (MLM + NSP): arm 2")
    p.add_argument("--mlm-only", metavar="CKPT", help="a lit-lm pretraining checkpoint with the same budget, MLM only "
                                                     "(--model.nsp false): arm 4")
    p.add_argument("--data-dir", required=True, help="GLUE in the release layout (CoLA/ SST-2/ MRPC/ ...; SST-2/ a "
                                                     "directory, not the shared copy's link saved as a file)")
    p.add_argument("--tasks", default=",".join(TRAINABLE), help="default: every task with training data here")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--tapt-steps", type=int, default=400, help="optimizer steps of task-adaptive MLM per task")
    p.add_argument("--sst2-epochs", type=int, default=1, help="SST-2's fine-tuning epochs (default 1: the CPU's "
                                                              "budget; the recipe's is 3)")
    p.add_argument("--save-dir", default="runs/glue_helps")
    p.add_argument("--out", default=default_out("glue_pretraining_helps"))
    a = p.parse_args(argv)
    tasks, arms_wanted = a.tasks.split(","), a.arms.split(",")
    if unknown := [x for x in arms_wanted if x not in ARMS]:
        p.error(f"--arms: unknown {', '.join(unknown)} (expected some of {','.join(ARMS)})")
    if unknown := [t for t in tasks if t not in TRAINABLE]:
        p.error(f"--tasks: {', '.join(unknown)}: no training data here (expected some of {','.join(TRAINABLE)})")
    if "mlm_only" in arms_wanted and a.mlm_only is None:
        p.error("arm mlm_only needs --mlm-only CKPT (the command that pretrains it: --help), or leave it out: "
                "--arms random,pretrained,tapt")
    save, glue_dir = Path(a.save_dir).resolve(), Path(a.data_dir).resolve()
    ckpt = str(Path(a.pretrained).resolve())
    sst2 = ["--trainer.max_epochs", str(a.sst2_epochs)]
    with tee(a.out):
        print(f"# recipe (every arm): configs/sst2.yaml {' '.join(RECIPE + extra)}; SST-2 {' '.join(sst2)}")
        print(f"# task-adaptive MLM: {a.tapt_steps} steps, cli.yaml --model.init_from CKPT {' '.join(TAPT)}")
        print(f"# arms: {', '.join(x for x in ARMS if x in arms_wanted)}; mlm_only: {a.mlm_only}", flush=True)
        for arm in (x for x in ARMS if x in arms_wanted):
            for name, group in result_names(arm, tasks, a.sst2_epochs).items():
                if arm == "tapt":
                    source = adapt(ckpt, glue_dir, group[0], a.tapt_steps, save / "tapt")
                else:
                    source = str(Path(a.mlm_only).resolve()) if arm == "mlm_only" else ckpt
                flags = (sst2 if group == ["sst2"] else []) + extra
                harness(source, glue_dir, group, a.seeds, name, save, flags, random_init=arm == "random")
        arms: dict[str, dict] = {}
        for arm in ARMS:  # the arms run now, and any an earlier invocation ran (e.g. --arms random first)
            runs: dict[str, dict[int, dict[str, float]]] = {}
            for name in result_names(arm, tasks, a.sst2_epochs):
                runs.update(read_runs(save / name / "results.json"))
            if runs:
                arms[arm] = summarize(runs)
                if arm not in arms_wanted:
                    print(f"# {arm}: from {save}/{arm}*/results.json (an earlier invocation of this script)")
        print("\n" + table(arms, tasks, a.sst2_epochs) + "\n")
        for line in verdict(arms, tasks):
            print(line)
        for line in anchors(tasks):
            print(line)


if __name__ == "__main__":
    main()
