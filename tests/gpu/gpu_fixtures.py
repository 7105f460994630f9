"""Fixtures of the gpu tier (imported by test_gpu.py: a conftest.py here would shadow tests/conftest.py, which the
CPU suite imports as `conftest`): one short quickstart pretraining and one SST-2 fine-tuning on the device, shared by the
tests that need a checkpoint made there (predict, export, lit_lm.load, lit-lm glue).

The tier reuses the CPU suite's helpers: ``one_line.run_main`` (tests/, on sys.path through tests/conftest.py) runs a
command in this process; ``resume_helpers`` (tests/lit_lm/) launches and kills fits in subprocesses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lit_lm"))  # resume_helpers: KillAt, launch_fit, checkpoint comparisons

from gpu_helpers import ACCELERATOR  # noqa: E402


def lit_lm(args: list[str]) -> None:
    """``python -m lit_lm ARGS`` in this process, from the checkout (the configs name the bundled data relative to
    it); a non-zero exit fails the calling fixture."""
    from lit_lm.cli import main

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        main(args)
    except SystemExit as e:
        if e.code not in (0, None):
            raise RuntimeError(f"lit-lm {' '.join(args)}: exit {e.code}") from None
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def gpu_cache(tmp_path_factory) -> Path:
    """One data cache for the session's fits (the quickstart corpus, the GLUE tasks): built once."""
    return tmp_path_factory.mktemp("gpu-cache")


@pytest.fixture(scope="session")
def cuda_pretrained(tmp_path_factory, gpu_cache) -> Path:
    """last.ckpt of 20 quickstart pretraining steps on the device (its tensors saved from device memory)."""
    runs = tmp_path_factory.mktemp("gpu-pretrain")
    lit_lm(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", f"--trainer.accelerator={ACCELERATOR}",
            "--trainer.max_steps=20", "--trainer.val_check_interval=10", "--trainer.limit_val_batches=2",
            f"--trainer.logger.init_args.save_dir={runs}", f"--data.cache_dir={gpu_cache}"])
    return runs / "quickstart" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def cuda_sst2(tmp_path_factory, gpu_cache, cuda_pretrained) -> Path:
    """last.ckpt of 10 SST-2 fine-tuning steps on the device, from ``cuda_pretrained``."""
    runs = tmp_path_factory.mktemp("gpu-sst2")
    lit_lm(["fit", "--config", "configs/quickstart_sst2.yaml", f"--model.pretrained={cuda_pretrained}",
            f"--trainer.accelerator={ACCELERATOR}", "--trainer.max_steps=10", "--trainer.val_check_interval=10",
            f"--trainer.logger.init_args.save_dir={runs}", f"--data.cache_dir={gpu_cache}"])
    return runs / "quickstart_sst2" / "checkpoints" / "last.ckpt"
