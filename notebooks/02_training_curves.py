# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Training curves from TensorBoard logs
#
# Every run logs to TensorBoard (`runs/<name>/events.out.tfevents.*`). Here two short quickstart pretraining runs
# that differ only in their peak learning rate are read back with TensorBoard's `EventAccumulator` and compared:
# MLM and NSP losses, accuracies, the learning-rate schedule and throughput.
# To compare your own runs instead, set `$LIT_LM_RUNS` to their log directories separated by `:`
# (e.g. `runs/pretrain:runs/wikitext2_tiny`).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import lit_lm
from _runs import quickstart  # notebooks/_runs.py: the CLI in this kernel, short pretraining runs

# %%
if os.environ.get("LIT_LM_RUNS"):
    RUNS = {Path(d).name: Path(d) for d in os.environ["LIT_LM_RUNS"].split(os.pathsep)}
else:  # two runs of 30 steps; the first is the run notebook 3 uses too
    RUNS = {"lr 1e-3": quickstart("quickstart").parents[1],
            "lr 2e-4": quickstart("quickstart_lr2e-4", "--model.lr=2e-4").parents[1]}
RUNS

# %%
import math

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator


def read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag -> (steps, values) of every scalar a run logged. NaN points are dropped: the val metrics are registered
    at step 0 with NaN placeholders for TensorBoard's HPARAMS tab."""
    ea = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})  # 0 = keep every point
    ea.Reload()
    out = {}
    for tag in ea.Tags()["scalars"]:
        events = [e for e in ea.Scalars(tag) if math.isfinite(e.value)]
        out[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return out


scalars = {name: read_scalars(d) for name, d in RUNS.items()}
print(sorted(next(iter(scalars.values()))))

# %% [markdown]
# Lines are the training metrics (logged every 2 steps, each from one batch), dots the validation metrics (the
# whole validation split with fixed pairs and masks, so they are comparable across steps and runs).
# Throughput is in real (non-padding) tokens per second, from `lit_lm.callbacks.TokenThroughput`.

# %%
panels = [("MLM loss", "train/mlm_loss", "val/mlm_loss"), ("NSP loss", "train/nsp_loss", "val/nsp_loss"),
          ("MLM accuracy", "train/mlm_acc", "val/mlm_acc"), ("NSP accuracy", "train/nsp_acc", "val/nsp_acc"),
          ("learning rate", "lr-AdamW/pg1", None), ("tokens / s", "train/device/items_per_sec", None)]
fig, axes = plt.subplots(2, 3, figsize=(15, 7))
for ax, (title, train_tag, val_tag) in zip(axes.flat, panels):
    for (name, s), color in zip(scalars.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        if train_tag in s:
            ax.plot(*s[train_tag], color=color, label=name, alpha=0.8)
        if val_tag in s:
            ax.plot(*s[val_tag], "o", color=color, markersize=7, label=f"{name} (val)")
    ax.set(title=title, xlabel="step")
axes.flat[0].legend()
fig.tight_layout()
plt.show()

# %%
keys = ["val/mlm_loss", "val/perplexity", "val/mlm_acc", "val/nsp_acc"]
table = {}  # run -> the row printed below
for name, s in scalars.items():
    table[name] = {"steps": int(s["train/loss"][0][-1]) + 1,
                   **{k: s[k][1][-1] if k in s and len(s[k][1]) else float("nan") for k in keys},
                   "tokens/s": np.median(s["train/device/items_per_sec"][1]) if "train/device/items_per_sec" in s
                   else float("nan")}
print(f"{'run':>20} {'steps':>6} " + " ".join(f"{k:>15}" for k in keys) + f" {'tokens/s':>10}")
for name, row in table.items():
    print(f"{name:>20} {row['steps']:6d} " + " ".join(f"{row[k]:15.4f}" for k in keys) + f" {row['tokens/s']:10.0f}")

# %% [markdown]
# The same logs in TensorBoard itself (scalars, the masked predictions in the TEXT tab, and the HPARAMS tab
# comparing runs by their final validation metrics):
#
#     tensorboard --logdir runs/notebooks/runs

# %% [markdown]
# ## Checks
#
# What the panels and the table show, checked (`notebooks/_checks.py`), so that running this notebook fails when a
# figure is wrong: increasing steps, finite values in range, MLM losses going down, perplexity = exp(loss), and a
# table that holds the curves' last points.

# %%
from _checks import check_training_curves

print(check_training_curves(scalars, panels, table))
