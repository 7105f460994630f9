"""What a job used: RSS and PSS of a process tree (shared pages of forked workers counted once in PSS), the kernel's
peak, PSS read at most 1% of the time, the CUDA allocator's peaks without touching an unused device, and a fit that
logs memory/* scalars and ends with the peak memory in summary.txt."""

from __future__ import annotations

import csv
import multiprocessing
import os
import re
import subprocess
import sys

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from lit_lm import memory
from lit_lm.callbacks import MemoryMonitor
from lit_lm.console import write_summary
from tiny_fit import TinyRegression

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux's /proc")

MB = 1e6


def _sleep(ready, done) -> None:
    ready.set()
    done.wait(60)


def test_a_forked_workers_shared_pages_count_once_in_pss():
    buffer = torch.ones(100_000_000, dtype=torch.uint8)  # 100 MB, touched: resident in this process
    ctx = multiprocessing.get_context("fork")  # as DataLoader workers on Linux: the buffer is shared, not copied
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_sleep, args=(ready, done))
    before = memory.sample()
    child.start()
    try:
        assert ready.wait(60)
        s = memory.sample()
        assert s.workers == before.workers + 1
        # the child maps the 100 MB too: RSS counts them in both processes, PSS halves them between the two
        assert memory.rss(child.pid) > 100 * MB and s.workers_rss > 100 * MB
        assert s.workers_pss < s.workers_rss - 40 * MB
        assert s.pss < s.rss - 40 * MB
    finally:
        done.set()
        child.join()
    del buffer


def test_descendants_reach_grandchildren_and_a_gone_process_reads_none():
    # a shell whose child is a sleep: the tree below this process is two deep
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        for _ in range(500):
            if memory.children(shell.pid):
                break
            subprocess.run(["sleep", "0.01"])
        tree = memory.descendants(os.getpid())
        assert shell.pid in tree and set(memory.children(shell.pid)) <= set(tree) and memory.children(shell.pid)
    finally:
        shell.kill()
        shell.wait()
    assert memory.rss(shell.pid) is None and memory.rss_pss(shell.pid) is None


def test_the_peak_is_the_kernels_and_at_least_the_current_rss():
    assert memory.peak_rss() >= memory.rss(os.getpid()) > 0
    assert memory.peak_rss(os.getppid()) > 0 and memory.peak_rss(2**22 + 1) == 0  # another process; none


def test_pss_is_read_at_most_one_percent_of_the_time(monkeypatch):
    clock = iter([0.0, 0.01,  # a sample reading PSS, which takes 10 ms: the next read waits 1 s
                  0.5,  # too soon: RSS only
                  1.0, 1.01])  # due again
    monkeypatch.setattr(memory.time, "monotonic", lambda: next(clock))
    footprint = memory.Footprint()
    assert "memory/workers_pss_gb" in footprint.sample()
    assert "memory/workers_pss_gb" not in footprint.sample() and "memory/host_rss_gb" in footprint.sample()


def test_cuda_peaks_come_from_the_allocator_and_an_unused_device_is_never_asked(monkeypatch):
    def untouchable(*args, **kwargs):
        raise AssertionError("asked the CUDA allocator in a process that never used CUDA")

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", untouchable)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", untouchable)
    assert memory.cuda_peaks() is None and "CUDA" not in memory.Footprint().summary()
    assert not any("cuda" in k for k in memory.Footprint().sample())

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3_200_000_000)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 4_000_000_000)
    footprint = memory.Footprint()
    scalars = footprint.sample()
    assert (scalars["memory/cuda_peak_allocated_gb"], scalars["memory/cuda_peak_reserved_gb"]) == (3.2, 4.0)
    assert footprint.summary().endswith(", CUDA 3.20 GB allocated / 4.00 GB reserved")


def test_a_fit_logs_memory_and_its_summary_says_the_peak_with_the_progress_bar_off(tmp_path, capsys):
    loader = DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=2, num_workers=1)  # one worker, 8 batches
    trainer = L.Trainer(max_steps=6, callbacks=[MemoryMonitor()], log_every_n_steps=2, enable_progress_bar=False,
                        logger=CSVLogger(tmp_path, name="run", version=""), enable_checkpointing=False,
                        enable_model_summary=False, limit_val_batches=0)
    trainer.fit(TinyRegression(), loader)
    write_summary(trainer, trainer.lightning_module, 1.0)

    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    memory_rows = [r for r in rows if r.get("memory/host_rss_gb")]
    logged = {int(r["step"]) for r in rows if r.get("train/loss")}  # where Lightning wrote the module's curves
    assert logged == {1, 3, 5} and [int(r["step"]) for r in memory_rows] == [1, 3, 5, 6]  # the same x, and the end
    assert all(float(r["memory/host_peak_gb"]) >= float(r["memory/host_rss_gb"]) > 0 for r in memory_rows)
    assert memory_rows[0]["memory/workers"] == "1.0" and float(memory_rows[0]["memory/workers_pss_gb"]) > 0

    line = (tmp_path / "run" / "summary.txt").read_text().strip()
    peak = re.search(r"; peak memory: main process (\d+\.\d\d) GB RSS, 1 worker \d+\.\d\d GB PSS \(each up to "
                     r"\d+\.\d\d GB RSS\); ", line)
    assert peak, line
    assert float(peak[1]) == pytest.approx(memory.peak_rss() / 1e9, abs=0.02)  # ru_maxrss of this process
    assert capsys.readouterr().out.splitlines()[-1] == line  # the console's last line

