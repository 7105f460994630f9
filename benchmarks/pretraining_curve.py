"""Validation MLM accuracy of pretraining runs by wall time, read from their TensorBoard logs.

    python benchmarks/pretraining_curve.py runs/cpu_hour runs/cpu_hour_no_alibi --minutes 15 30 45 60

For each run and each mark: the last validation at or before that many minutes of training (counted from the first
logged training step), its step and val/mlm_acc; then the count baselines the run logged beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def curve(run: Path) -> tuple[list[tuple[float, int, float]], dict[str, float]]:
    """[(minutes, step, val/mlm_acc)] of every validation, and the baselines (tag -> value)."""
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
    tags = set(acc.Tags()["scalars"])
    t0 = min(e.wall_time for e in acc.Scalars("train/loss"))
    points = [((e.wall_time - t0) / 60, e.step, e.value) for e in acc.Scalars("val/mlm_acc") if e.value == e.value]
    baselines = {t.removeprefix("val/baseline_").removesuffix("_acc"): acc.Scalars(t)[-1].value
                 for t in sorted(tags) if t.startswith("val/baseline_")}
    return points, baselines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (holding events.out.tfevents.*)")
    p.add_argument("--minutes", nargs="+", type=float, default=[15, 30, 45, 60])
    a = p.parse_args()
    print("| run | " + " | ".join(f"{m:g} min" for m in a.minutes) + " | last (step, min) | baselines |")
    print("|---|" + "---:|" * len(a.minutes) + "---:|---|")
    for run in a.runs:
        points, baselines = curve(run)
        cells = []
        for m in a.minutes:
            before = [pt for pt in points if pt[0] <= m + 0.25]  # a validation that ends just past the mark counts
            cells.append(f"{100 * before[-1][2]:.1f} (step {before[-1][1]:,})" if before else "—")
        last = points[-1]
        base = ", ".join(f"{k} {100 * v:.1f}" for k, v in baselines.items())
        print(f"| {run.name} | " + " | ".join(cells) + f" | {100 * last[2]:.1f} ({last[1]:,}, {last[0]:.0f}) | {base} |")


if __name__ == "__main__":
    main()
