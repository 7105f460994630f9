"""What a job used: host memory of its process tree (the main process and its DataLoader workers) and the CUDA
allocator's peaks.

Everything is read from counters the kernel and the allocator keep on the host, never from the device, so a sample
does not wait for the GPU:

- RSS of each live process (``/proc/<pid>/statm``) and PSS (``/proc/<pid>/smaps_rollup``). DataLoader workers are
  forked: they share the main process's pages copy-on-write, so their RSS counts those shared pages again in every
  worker, while PSS divides each shared page among the processes that map it. Summed over a tree, PSS is what the
  tree really occupies.
- The kernel's peak RSS, ``ru_maxrss``: of this process (``RUSAGE_SELF``, exact, whenever the peak happened) and of
  the largest child that has exited (``RUSAGE_CHILDREN``: workers of finished epochs). Live workers' peaks are seen
  only when a sample catches them.
- ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``: the caching allocator's own host-side counters.

RSS costs a few microseconds a process; PSS makes the kernel walk every page table of the process (~15 ms of CPU per
GB mapped), so ``Footprint`` reads it at most 1% of the time. Samples are taken at logging steps and epoch ends, not
every step. The peaks are the process's since it started: per fit for ``lit-lm fit``, and
the largest so far for several fits in one process (``lit-lm glue``).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

GB = 1e9


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (``/proc/<pid>/task/<tid>/children``; none where /proc is absent)."""
    out: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in path.read_text().split()]
        except OSError:  # the thread or the process ended while we read
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``: DataLoader workers are children, or grandchildren under a forkserver."""
    out, todo = [], children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return out


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PSS_SHARE = 0.01
"""At most this share of a run's time goes to reading PSS."""


def rss(pid: int) -> Optional[int]:
    """RSS of a process in bytes (``statm``: no page walk); None once it has exited (or without /proc)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError):
        return None


def rss_pss(pid: int) -> Optional[tuple[int, int]]:
    """(RSS, PSS) of a process in bytes (``smaps_rollup``: a walk of its page tables); None once it has exited (or
    without /proc)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            fields[key] = int(rest.split()[0]) * 1024  # kB
    if "Rss" not in fields:  # a zombie: smaps_rollup exists but is empty
        return None
    return fields["Rss"], fields.get("Pss", fields["Rss"])


def peak_rss(pid: Optional[int] = None) -> int:
    """Peak RSS in bytes: of this process (``ru_maxrss``), or of another live process (its ``VmHWM``; 0 if gone)."""
    if pid is None or pid == os.getpid():
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb if sys.platform == "darwin" else kb * 1024  # macOS counts bytes, Linux kB
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def children_peak_rss() -> int:
    """The largest peak RSS among this process's children that have exited and been waited for, in bytes."""
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024


@dataclass
class Sample:
    """One look at a process tree, in bytes; the PSS fields are None when not read."""

    rss: int
    """RSS of the main process."""
    workers: int
    """Live processes below it (DataLoader workers)."""
    workers_rss: int
    """RSS of the largest worker."""
    pss: Optional[int] = None
    """PSS of the main process."""
    workers_pss: Optional[int] = None
    """PSS summed over the workers: their share of the host."""


def sample(pid: Optional[int] = None, pss: bool = True) -> Sample:
    """Main process and workers of the tree rooted at ``pid`` (default: this process); PSS too if ``pss``."""
    pid = os.getpid() if pid is None else pid
    kids = descendants(pid)
    if not pss:
        sizes = [r for r in map(rss, kids) if r is not None]
        return Sample(rss(pid) or 0, len(sizes), max(sizes, default=0))
    main = rss_pss(pid) or (0, 0)
    both = [m for m in map(rss_pss, kids) if m is not None]
    return Sample(main[0], len(both), max((r for r, _ in both), default=0), main[1], sum(p for _, p in both))


def cuda_peaks() -> Optional[tuple[int, int]]:
    """(peak allocated, peak reserved) bytes of the current CUDA device; None when this process never used CUDA
    (``is_initialized``: asking would create a context)."""
    import torch

    if not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()


class Footprint:
    """The peaks of a job's memory: the kernel's and the CUDA allocator's own, and the workers' over the samples."""

    def __init__(self) -> None:
        self.workers = 0
        """Most workers alive at one sample."""
        self.workers_rss = 0
        """Largest RSS of one worker at a sample, bytes."""
        self.workers_pss = 0
        """Largest sum of the workers' PSS at a sample that read PSS, bytes."""
        self._next_pss = 0.0  # time.monotonic() from which PSS may be read again

    def sample(self) -> dict[str, float]:
        """Look at this process's tree now, keep the peaks, and return the TensorBoard scalars (``memory/...``, GB;
        the PSS ones only when this sample read PSS)."""
        start = time.monotonic()
        s = sample(pss=start >= self._next_pss)
        if s.pss is not None:  # wait so long that this read's cost is PSS_SHARE of the time in between
            self._next_pss = start + (time.monotonic() - start) / PSS_SHARE
        self.workers = max(self.workers, s.workers)
        self.workers_rss = max(self.workers_rss, s.workers_rss)
        scalars = {"memory/host_rss_gb": s.rss / GB, "memory/host_peak_gb": peak_rss() / GB,
                   "memory/workers": float(s.workers)}
        if s.pss is not None:
            self.workers_pss = max(self.workers_pss, s.workers_pss)
            scalars |= {"memory/host_pss_gb": s.pss / GB, "memory/workers_pss_gb": s.workers_pss / GB}
        cuda = cuda_peaks()
        if cuda is not None:
            scalars |= {"memory/cuda_peak_allocated_gb": cuda[0] / GB, "memory/cuda_peak_reserved_gb": cuda[1] / GB}
        return scalars

    def summary(self) -> str:
        """The peaks in words, e.g. ``peak memory: main process 1.21 GB RSS, 2 workers 0.38 GB PSS (each up to
        0.44 GB RSS), CUDA 3.20 GB allocated / 4.00 GB reserved``."""
        parts = [f"main process {peak_rss() / GB:.2f} GB RSS"]
        if self.workers:
            largest = max(self.workers_rss, children_peak_rss())
            pss = f" {self.workers_pss / GB:.2f} GB PSS" if self.workers_pss else ""  # none read while they lived
            parts.append(f"{self.workers} worker{'s' if self.workers > 1 else ''}{pss} (each up to {largest / GB:.2f} "
                         "GB RSS)")
        cuda = cuda_peaks()
        if cuda is not None:
            parts.append(f"CUDA {cuda[0] / GB:.2f} GB allocated / {cuda[1] / GB:.2f} GB reserved")
        return "peak memory: " + ", ".join(parts)
