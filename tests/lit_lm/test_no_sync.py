"""An ordinary training step never waits for the device (issue 21): counted on the CPU, through the real configs.

Every shipped config's fit runs here with its callbacks (throughput, divergence guard, learning-rate monitor,
checkpoints, the console) and a TorchFunctionMode records each call that would stop a GPU's host (tests/lit_lm/
syncs.py). Steps that write to the logger may read the device (that is when statistics are read); no other step
may, in lit-lm's code. Lightning's own reads are listed in the failure message, for the record.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from syncs import SyncCounter

from lit_lm.lightning_cli import make_cli

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[2]
EVERY = 4  # log_every_n_steps


def _count_per_step(args: list[str], tmp_path: Path, monkeypatch, steps: int = 13) -> dict[int, SyncCounter]:
    """The synchronising calls of each training batch (fetch, step, backward, optimizer, callbacks), by global step."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["lit-lm"])
    cli = make_cli(args + [f"--trainer.max_steps={steps}", f"--trainer.log_every_n_steps={EVERY}",
                           "--trainer.val_check_interval=1000", "--trainer.limit_val_batches=0",
                           f"--trainer.logger.init_args.save_dir={tmp_path}", "--data.num_workers=0"], run=False)
    trainer = cli.trainer
    loop = trainer.fit_loop.epoch_loop
    per_step: dict[int, SyncCounter] = {}
    advance = loop.advance

    def counted(*a, **k):
        counter = per_step.setdefault(trainer.global_step, SyncCounter())
        with counter:
            return advance(*a, **k)

    monkeypatch.setattr(loop, "advance", counted)
    trainer.fit(cli.model, datamodule=cli.datamodule)
    assert len(per_step) == steps
    return per_step


def _ordinary(per_step: dict[int, SyncCounter]) -> dict[int, SyncCounter]:
    """Steps after the first (which builds optimizer state) that Lightning does not log ((step + 1) % EVERY)."""
    return {s: c for s, c in per_step.items() if s > 0 and (s + 1) % EVERY != 0}


def _assert_none_of_ours(per_step: dict[int, SyncCounter]) -> None:
    ordinary = _ordinary(per_step)
    assert len(ordinary) >= 8
    ours = {s: dict(c.ours()) for s, c in ordinary.items() if c.ours()}
    theirs = {s: dict(c.calls) for s, c in ordinary.items() if c.calls}
    assert not ours, f"lit-lm code waits for the device in ordinary steps: {ours}; (all: {theirs})"


def test_pretraining_step_never_waits_for_the_device(tmp_path, monkeypatch):
    per_step = _count_per_step(["--config", "cli.yaml", "--config", "configs/quickstart.yaml",
                                f"--data.cache_dir={tmp_path / 'cache'}"], tmp_path, monkeypatch)
    _assert_none_of_ours(per_step)
    # and the counter works: logging steps do read (the statistics), so a regression would be seen
    logged = [c for s, c in per_step.items() if (s + 1) % EVERY == 0]
    assert any(c.ours() for c in logged)


def test_budget_recipe_step_never_waits_for_the_device(tmp_path, monkeypatch):
    """configs/cpu_hour.yaml: ALiBi, a time budget, bf16."""
    per_step = _count_per_step(["--config", "cli.yaml", "--config", "configs/cpu_hour.yaml", "--model.config=tiny",
                                "--data.data_dir=data_modules/samples/wikitext", "--data.vocab_size=4096",
                                "--trainer.max_time=00:00:10:00", f"--data.cache_dir={tmp_path / 'cache'}"],
                               tmp_path, monkeypatch)
    _assert_none_of_ours(per_step)


def test_fine_tuning_step_never_waits_for_the_device(tmp_path, monkeypatch, quickstart_run):
    ckpt = quickstart_run / "checkpoints" / "last.ckpt"
    per_step = _count_per_step(["--config", "configs/quickstart_sst2.yaml", f"--model.pretrained={ckpt}",
                                "--trainer.max_epochs=-1"], tmp_path, monkeypatch)
    _assert_none_of_ours(per_step)


def test_the_counter_sees_what_a_gpu_would_wait_for():
    import torch

    x = torch.arange(6.0)
    with SyncCounter() as c:
        x.sum().item(), bool(x.any()), float(x[0]), x[x > 2], x.nonzero(), x.tolist()
        x.index_select(0, torch.tensor([1, 2])), x * 2, x.argmax(), torch.where(x > 2, x, 0)  # none of these
    assert sorted(name for name, _ in c.calls) == ["__bool__", "__float__", "__getitem__", "item", "nonzero", "tolist"]
    assert all(where.startswith("tests") for _, where in c.calls)
