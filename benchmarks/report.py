"""Raw benchmark output: everything a benchmark prints also goes to a file under benchmarks/results/, headed by the
command, the date, the machine and the torch version, so a BENCHMARKS.md row can cite exactly what was measured."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

RESULTS = Path(__file__).resolve().parent / "results"


def default_out(name: str) -> str:
    """``benchmarks/results/<name>-<date>.txt``."""
    return str(RESULTS / f"{name}-{datetime.now():%Y-%m-%d}.txt")


def machine() -> str:
    """CPU model, whether it has AVX512-BF16 (bf16 figures depend on it), cores, load average."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor() or "?")
    bf16 = "AVX512-BF16" if "avx512_bf16" in info else "no AVX512-BF16"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model} ({bf16}), {os.cpu_count()} CPUs, load average {load:.2f} at the start"


class _Tee:
    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


@contextlib.contextmanager
def tee(out: str) -> Iterator[None]:
    """Copy stdout to ``out``, after a header naming the command, date, machine and torch version."""
    import torch

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        f.write(f"# python {' '.join(sys.argv)}\n# {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}, {machine()}, "
                f"torch {torch.__version__}\n")
        stdout, sys.stdout = sys.stdout, _Tee(sys.stdout, f)
        try:
            yield
        finally:
            sys.stdout = stdout
    print(f"raw output: {out}", file=sys.stderr)
