"""What notebooks 2 and 3 share: running the CLI in the kernel and the short quickstart pretraining they read.

Imported by the notebooks (Jupyter and nbmake run them in this folder); not a test module.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import lit_lm

REPO = Path(lit_lm.__file__).resolve().parents[1]  # the checkout: configs and bundled samples live there
WORK = REPO / "runs" / "notebooks"  # gitignored; the notebooks' runs, reused when their checkpoint exists


def run_cli(args: list[str], cwd: Path = WORK) -> None:
    """``python -m lit_lm <args>`` in this process, inside ``cwd`` (the configs write to runs/... relative to it)."""
    from lit_lm.cli import main

    cwd.mkdir(parents=True, exist_ok=True)
    old_cwd, old_argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    sys.argv = ["lit-lm"]  # the kernel's own command line is not the CLI's
    try:
        main(args)
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv


def quickstart(name: str, *overrides: str, steps: int = 30) -> Path:
    """A short quickstart pretraining (tiny BERT, bundled corpus) logged to WORK/runs/<name>; its last checkpoint.

    Batch 16 of pairs of at most 64 tokens (the quickstart: 32 x 128), so that a run takes seconds."""
    ckpt = WORK / "runs" / name / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        shutil.rmtree(ckpt.parents[1], ignore_errors=True)  # no event files of an interrupted attempt
        run_cli([
            "fit", "--config", f"{REPO}/cli.yaml", "--config", f"{REPO}/configs/quickstart.yaml",
            f"--data.data_dir={REPO}/data_modules/samples/wikitext", "--data.num_workers=0", "--data.batch_size=16",
            "--data.max_seq_len=64",
            f"--trainer.max_steps={steps}", f"--trainer.val_check_interval={steps // 2}", "--model.warmup_steps=5",
            "--trainer.log_every_n_steps=2", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", f"--trainer.logger.init_args.name={name}", *overrides])
    return ckpt
