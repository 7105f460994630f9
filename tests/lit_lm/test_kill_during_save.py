""""A crash mid-save leaves the previous checkpoint usable", with real processes killed by SIGKILL inside the write.

1. Many kills at spread moments: a helper process (torch and lit_lm imported once) forks one writer per round; the
   writer saves a 32 MB checkpoint over ``last.ckpt`` through AtomicCheckpointIO with a slowed ``torch.save`` (2 MB
   chunks, flushed, with pauses), and the test SIGKILLs it a chosen delay after it announced the write. After each
   kill the previous ``last.ckpt`` (or, if the rename was already done, the new one) loads with
   ``torch.load(weights_only=True)``, whole, and the next writer resumes from it.
2. A real tiny ``python -m lit_lm fit`` killed inside the save of ``last.ckpt`` (half of it flushed to the
   temporary file) resumes with ``--ckpt_path last`` from the previous ``last.ckpt`` and finishes.

About 15 s and 20 s on 2 loaded cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from resume_helpers import fit_config

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent

NUMEL = 8 * 2**20  # 32 MB of float32: the write takes many chunks, so kills land inside it
# seconds from "writing" to SIGKILL: before the temporary file has bytes, inside the chunks, around the fsync and
# rename, after the save (the writer then waits to be killed)
DELAYS = [0.0, 0.005, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.18, 0.22, 0.27, 0.35, 0.6]

WRITER = r"""
import io, os, sys, time
import torch
from lit_lm.callbacks import AtomicCheckpointIO

torch.set_num_threads(1)  # forked writers: no thread pool to inherit half-initialised
real_save = torch.save


def slow_save(obj, f, *args, **kwargs):
    # what a large model on a slow disk looks like: the bytes reach the file in flushed chunks, over a while
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    for i in range(0, len(data), 2 * 2**20):
        f.write(data[i:i + 2 * 2**20])
        f.flush()
        time.sleep(0.01)


torch.save = slow_save  # AtomicCheckpointIO calls torch.save(checkpoint, f) through the module
io_plugin = AtomicCheckpointIO()
path, numel = sys.argv[1], int(sys.argv[2])
for line in sys.stdin:
    command, step = line.split()
    step = int(step)
    w = torch.full((numel,), float(step))
    pid = os.fork()
    if pid == 0:  # the writer: resume from last.ckpt as a restarted run would, then save the next step over it
        loaded = io_plugin.load_checkpoint(path)
        print(f"loaded {loaded['global_step']}", flush=True)
        del loaded
        print(f"writing {step} {os.getpid()}", flush=True)
        io_plugin.save_checkpoint({"global_step": step, "state_dict": {"w": w}}, path)
        print(f"saved {step}", flush=True)
        if command == "kill":
            time.sleep(60)  # saved before the kill came: wait for it, so that every round ends in a SIGKILL
        os._exit(0)
    _, status = os.waitpid(pid, 0)  # reaped: the next writer sees the pid gone and removes its temporary file
    print(f"reaped {step} {os.waitstatus_to_exitcode(status)}", flush=True)
"""


def _read_until(proc: subprocess.Popen, prefix: str, lines: list[str]) -> str:
    while True:
        line = proc.stdout.readline()
        assert line, f"the helper ended before {prefix!r}:\n" + "".join(lines) + proc.stdout.read()
        lines.append(line)
        if line.startswith(prefix):
            return line.strip()


def _content(path: Path) -> int:
    """The step a checkpoint holds, after checking it is whole: weights-only, the full tensor, one value."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise AssertionError(f"{path} is not a readable checkpoint after the kill: {str(e)[:200]}") from None
    w = ckpt["state_dict"]["w"]
    step = ckpt["global_step"]
    assert w.numel() == NUMEL and bool((w == step).all()), f"{path}: a mixed or partial checkpoint"
    return step


def _temps(directory: Path) -> list[Path]:
    return sorted(directory.glob(".last.ckpt.*.tmp"))


def test_sigkill_inside_the_write_leaves_the_previous_checkpoint_whole(tmp_path):
    from lit_lm.callbacks import AtomicCheckpointIO

    (tmp_path / "writer.py").write_text(textwrap.dedent(WRITER))
    ckpts = tmp_path / "checkpoints"
    last = ckpts / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 0, "state_dict": {"w": torch.zeros(NUMEL)}}, last)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(last), str(NUMEL)], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    good, mid_write, lines = 0, 0, []
    try:
        for step, delay in enumerate(DELAYS, start=1):
            proc.stdin.write(f"kill {step}\n")
            proc.stdin.flush()
            assert _read_until(proc, "loaded", lines) == f"loaded {good}"  # the restarted writer resumed from it
            pid = int(_read_until(proc, "writing", lines).split()[2])
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)  # the writer this helper forked for us; it waits to be killed if done
            reaped = _read_until(proc, f"reaped {step} ", lines)
            assert reaped == f"reaped {step} -{int(signal.SIGKILL)}", reaped
            saved = f"saved {step}\n" in lines
            mine = [p for p in _temps(ckpts) if p.name.startswith(f".last.ckpt.{pid}.")]
            assert not (mine and saved), "a finished save left its temporary file"
            mid_write += any(p.stat().st_size > 0 for p in mine)  # killed with part of the bytes written
            # the previous checkpoint, whole, unless the rename had happened (then the new one, whole)
            found = _content(last)
            assert found == step if saved else found in (good, step), (step, delay, found, good)
            good = found
        proc.stdin.write(f"finish {len(DELAYS) + 1}\n")  # one more writer, not killed: it cleans up and completes
        proc.stdin.flush()
        _read_until(proc, f"reaped {len(DELAYS) + 1} 0", lines)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert _content(last) == len(DELAYS) + 1
    assert _temps(ckpts) == [] and sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt"]
    # the spread delays did land inside writes (the chunks take >= 0.16 s; most delays are shorter)
    assert mid_write >= 5, f"only {mid_write} of {len(DELAYS)} kills left a partial file:\n" + "".join(lines)


# ---- a real fit killed inside the save of last.ckpt, resumed with --ckpt_path last --------------------------------

MAX_STEPS = 12
CONFIG = fit_config(MAX_STEPS, 4, ["resume_helpers.StallLastSave"], num_sanity_val_steps=0, limit_val_batches=0)


def _fit(tmp: Path, *extra: str, stall_at: int | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "lit_lm", "fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml",
            "--config", str(tmp / "kill.yaml"), f"--trainer.logger.init_args.save_dir={tmp / 'runs'}",
            f"--data.cache_dir={tmp / 'cache'}", "--data.num_workers=0", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")])}
    env.pop("LIT_LM_STALL_SAVE_AT", None)
    if stall_at is not None:
        env["LIT_LM_STALL_SAVE_AT"] = str(stall_at)
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the stalling writer names its file through /proc")
def test_fit_killed_inside_the_save_of_last_resumes_from_the_previous_one(tmp_path):
    (tmp_path / "kill.yaml").write_text(CONFIG)
    ckpts = tmp_path / "runs" / "quickstart" / "checkpoints"
    proc = _fit(tmp_path, stall_at=8)  # last.ckpt of step 4 is written whole; that of step 8 stalls half-way
    lines: list[str] = []
    try:
        stalled = _read_until(proc, "lit-lm-test: stalled writing", lines)
        (temp,) = _temps(ckpts)
        assert stalled.endswith(temp.name) and temp.stat().st_size > 0  # inside the write: a partial file on disk
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = "".join(lines) + proc.communicate(timeout=120)[0]
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 4
    assert (ckpts / "epoch=0-step=8.ckpt").is_file()  # written before last.ckpt: the kill hit last.ckpt's own write

    resumed = _fit(tmp_path, "--ckpt_path", "last")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    assert f"Restoring states from the checkpoint path at {ckpts / 'last.ckpt'}" in out
    assert "Restored all states from the checkpoint" in out
    final = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert final["global_step"] == MAX_STEPS
    assert all(bool(torch.isfinite(t).all()) for t in final["state_dict"].values() if t.is_floating_point())
    assert _temps(ckpts) == []  # the resumed run's first save removed the killed writer's partial file
