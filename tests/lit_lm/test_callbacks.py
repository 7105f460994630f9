"""Atomic checkpoint writes, the divergence guard, the token throughput monitor (tiny modules, ~10 s) and a bf16-mixed
quickstart on CPU (~15 s)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.logger import Logger

from lit_lm.callbacks import AtomicCheckpointIO, DivergenceError, DivergenceGuard, TokenThroughput


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---- AtomicCheckpointIO ------------------------------------------------------------------------------------------


def test_failed_write_leaves_the_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    good = {"state_dict": {"w": torch.arange(1000.0)}, "global_step": 3}
    io.save_checkpoint(good, path)
    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):  # a full disk or a dying NFS mount, half-way through
        f.write(b"PK\x03\x04 half a zip archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "global_step": 6}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert _leftovers(path.parent) == []
    ckpt = _load(path)
    assert ckpt["global_step"] == 3 and torch.equal(ckpt["state_dict"]["w"], good["state_dict"]["w"])


def test_successful_save_replaces_the_file_by_rename(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, path)
    before = os.stat(path)
    io.save_checkpoint({"global_step": 2}, path)
    after = os.stat(path)
    assert _load(path)["global_step"] == 2
    # a new inode: the old file was never truncated and rewritten in place (a reader holding it sees it whole)
    assert after.st_ino != before.st_ino
    assert _leftovers(tmp_path) == []
    # readable as a plain torch.save file would be (mkstemp alone makes it 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert after.st_mode & 0o777 == 0o666 & ~umask


def test_temp_file_of_a_killed_writer_is_removed_by_the_next_save(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is gone (reuse within this test is not a concern)
    stale = tmp_path / f".last.ckpt.{dead.pid}.abc123.tmp"
    stale.write_bytes(b"half")
    alive = tmp_path / f".last.ckpt.{os.getpid()}.def456.tmp"  # another writer still at work: left alone
    alive.write_bytes(b"in progress")
    AtomicCheckpointIO().save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")
    assert _leftovers(tmp_path) == [alive.name]


# ---- a tiny regression module that can be made to diverge -------------------------------------------------------


class TinyModule(L.LightningModule):
    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.nan_at = nan_at
        self.flops_per_batch = 0

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch["input_ids"].float()
        loss = self.layer(x).pow(2).mean()
        if self.nan_at is not None and self.global_step >= self.nan_at:
            loss = loss * float("nan")  # what an fp16 overflow or a too-large lr ends in
        self.flops_per_batch = 6 * 8 * x.shape[0]
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader(n_batches: int = 20, batch_size: int = 4) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 10, (n_batches * batch_size, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[:, 6:] = 0  # two pad positions per row: the throughput counts 6 real tokens a row
    rows = [{"input_ids": ids[i], "attention_mask": mask[i]} for i in range(len(ids))]
    return torch.utils.data.DataLoader(rows, batch_size=batch_size)


def _trainer(tmp_path: Path, callbacks: list, max_steps: int = 10, **kwargs) -> L.Trainer:
    return L.Trainer(default_root_dir=tmp_path, max_steps=max_steps, accelerator="cpu", devices=1,
                     plugins=[AtomicCheckpointIO()], callbacks=callbacks, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


def _all_finite(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in _load(path)["state_dict"].values())


def test_divergence_guard_stops_before_nan_reaches_the_weights(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=2, save_last=True, save_top_k=-1)
    trainer = _trainer(tmp_path, [DivergenceGuard(), checkpoint], logger=False)
    with pytest.raises(DivergenceError) as e:
        trainer.fit(TinyModule(nan_at=5), _loader())
    message = str(e.value)
    assert "\n" not in message
    assert "non-finite loss (nan) at step 5" in message
    assert f"Last good checkpoint: {ckpt_dir / 'last.ckpt'}" in message
    assert _load(ckpt_dir / "last.ckpt")["global_step"] == 4
    saved = sorted(ckpt_dir.glob("*.ckpt"))
    assert {p.name for p in saved} == {"epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "last.ckpt"}
    assert all(_all_finite(p) for p in saved)
    assert _leftovers(ckpt_dir) == []


def test_without_the_guard_the_nan_is_saved(tmp_path):
    """The control: the same run without the guard trains on and checkpoints NaN weights."""
    ckpt_dir = tmp_path / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=2, save_last=True, save_top_k=-1)
    _trainer(tmp_path, [checkpoint], max_steps=6, logger=False).fit(TinyModule(nan_at=5), _loader())
    assert not _all_finite(ckpt_dir / "last.ckpt")


def test_divergence_before_any_checkpoint_says_so(tmp_path):
    trainer = _trainer(tmp_path, [DivergenceGuard()], logger=False, enable_checkpointing=False)
    with pytest.raises(DivergenceError, match="at step 0; .* Last good checkpoint: none written yet"):
        trainer.fit(TinyModule(nan_at=0), _loader())


def test_divergence_guard_stops_every_rank_when_one_diverges():
    """Under DDP the ranks vote (the strategy's all-reduce): a rank with a finite loss stops too, or it would wait
    in the gradient all-reduce for a rank that is gone."""
    from types import SimpleNamespace

    votes = []

    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        votes.append((decision, all))
        return False  # another rank saw a non-finite loss

    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=reduce_boolean_decision),
                              global_step=7, checkpoint_callback=None)
    with pytest.raises(DivergenceError, match=r"non-finite loss on another rank \(this rank's: 1.5\) at step 7"):
        DivergenceGuard().on_before_backward(trainer, None, torch.tensor(1.5))
    assert votes == [(True, True)]  # this rank voted "finite", and all ranks must agree


# ---- TokenThroughput ---------------------------------------------------------------------------------------------


class _Collect(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "collect"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append(dict(metrics))


def test_token_throughput_reports_real_tokens_flops_and_mfu(tmp_path):
    logger = _Collect()
    peak = 1.0e9
    trainer = _trainer(tmp_path, [TokenThroughput(window_size=3, peak_flops=peak)], max_steps=6, logger=logger,
                       enable_checkpointing=False, log_every_n_steps=1)
    trainer.fit(TinyModule(), _loader())
    last = [m for m in logger.metrics if "train/device/mfu" in m][-1]
    assert math.isclose(last["train/device/mfu"], last["train/device/flops_per_sec"] / peak, rel_tol=1e-6)
    assert last["train/device/mfu"] > 0
    # items are real tokens (6 of 8 per row), samples are rows: 6 tokens per sample
    assert math.isclose(last["train/device/items_per_sec"] / last["train/device/samples_per_sec"], 6.0, rel_tol=1e-6)


# ---- mixed precision on CPU ---------------------------------------------------------------------------------------


def test_bf16_mixed_quickstart_runs_on_cpu(tmp_path, monkeypatch):
    """Two steps of the tiny quickstart under bf16-mixed autocast (this CPU has no bf16 matmul units: slow, so tiny).
    About 15 s."""
    from lit_lm.cli import main

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)  # the quickstart names the bundled corpus relative to the checkout
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    monkeypatch.setenv("LIT_LM_DTYPE_PROBE", str(tmp_path / "dtype.json"))
    main(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--trainer.precision=bf16-mixed",
          "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
          "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false", "--data.num_workers=0",
          "--trainer.callbacks+=resume_helpers.DtypeProbe", f"--trainer.logger.init_args.save_dir={tmp_path}",
          f"--data.cache_dir={tmp_path / 'cache'}"])
    probe = json.loads((tmp_path / "dtype.json").read_text())
    assert probe["precision"] == "bf16-mixed"
    assert probe["forward_dtypes"] and set(probe["forward_dtypes"]) == {"torch.bfloat16"}  # autocast was on
    assert probe["weight_dtype"] == "torch.float32"  # master weights stay fp32
    assert len(probe["losses"]) == 2 and all(math.isfinite(x) for x in probe["losses"])
    ckpt = _load(tmp_path / "quickstart/checkpoints/last.ckpt")
    assert ckpt["global_step"] == 2
    assert all(t.dtype == torch.float32 for t in ckpt["state_dict"].values() if t.is_floating_point())


# ---- DivergenceGuard: non-finite gradients under a finite loss ---------------------------------------------------


class InfGradModule(TinyModule):
    """A finite loss whose backward overflows: from step ``inf_at`` on, the bias's gradient is inf (what an fp32
    overflow in a long backward, or a bf16 one without a scaler, ends in)."""

    def __init__(self, inf_at: int) -> None:
        super().__init__()
        self.inf_at = inf_at
        self.losses: list[float] = []
        self.layer.bias.register_hook(lambda g: torch.full_like(g, float("inf")) if self.global_step >= inf_at else g)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.losses.append(float(loss))
        return loss


class _WeightsAtStep(L.Callback):
    """The weights as they were when step ``step`` began."""

    def __init__(self, step: int) -> None:
        self.step, self.weights = step, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_divergence_guard_stops_on_an_inf_gradient_under_a_finite_loss(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=2, save_last=True, save_top_k=-1)
    before = _WeightsAtStep(5)
    model = InfGradModule(inf_at=5)
    # clipping as in the configs: it runs after the guard, and would turn the inf into NaNs across all weights
    trainer = _trainer(tmp_path, [DivergenceGuard(), before, checkpoint], logger=False, gradient_clip_val=1.0)
    with pytest.raises(DivergenceError) as e:
        trainer.fit(model, _loader())
    message = str(e.value)
    assert "\n" not in message
    assert "non-finite gradient (inf) in layer.bias under a finite loss at step 5" in message, message
    assert f"training stopped before the update. Last good checkpoint: {ckpt_dir / 'last.ckpt'}" in message
    assert len(model.losses) == 6 and all(math.isfinite(x) for x in model.losses)  # the loss check could not see it
    # stopped before the update: the weights are those the step began with
    state = model.state_dict()
    assert before.weights is not None and all(torch.equal(state[k], before.weights[k]) for k in state)
    assert _load(ckpt_dir / "last.ckpt")["global_step"] == 4
    saved = sorted(ckpt_dir.glob("*.ckpt"))
    assert {p.name for p in saved} == {"epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "last.ckpt"}
    assert all(_all_finite(p) for p in saved)


def test_without_the_gradient_check_the_inf_gradient_reaches_the_weights(tmp_path):
    """The control: the loss check alone lets the inf gradient through (the step after it, the loss is no longer
    finite, but the weights already are not)."""
    ckpt_dir = tmp_path / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=1, save_last=True, save_top_k=-1)

    class LossOnly(DivergenceGuard):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            pass

    with pytest.raises(DivergenceError, match="non-finite loss"):
        trainer = _trainer(tmp_path, [LossOnly(), checkpoint], logger=False, gradient_clip_val=1.0)
        trainer.fit(InfGradModule(inf_at=5), _loader())
    assert not _all_finite(ckpt_dir / "last.ckpt")


def _namespace_trainer(reduce_boolean_decision, scaler=None):
    from types import SimpleNamespace

    return SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=reduce_boolean_decision),
                           precision_plugin=SimpleNamespace(scaler=scaler), global_step=7, checkpoint_callback=None)


def _module_with_grads(*grads: float) -> torch.nn.Module:
    module = torch.nn.Module()
    for i, value in enumerate(grads):
        p = torch.nn.Parameter(torch.zeros(2))
        p.grad = torch.full((2,), value)
        module.register_parameter(f"p{i}", p)
    return module


def test_gradient_check_stops_every_rank_when_one_has_a_non_finite_gradient():
    votes = []

    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        votes.append((decision, all))
        return False  # another rank (under FSDP: another shard) holds a non-finite gradient

    with pytest.raises(DivergenceError, match="non-finite gradient on another rank under a finite loss at step 7"):
        DivergenceGuard().on_before_optimizer_step(_namespace_trainer(reduce_boolean_decision),
                                                   _module_with_grads(1.0, 2.0), None)
    assert votes == [(True, True)]
    with pytest.raises(DivergenceError, match=r"non-finite gradient \(nan\) in p1 under a finite loss at step 7"):
        DivergenceGuard().on_before_optimizer_step(_namespace_trainer(lambda d, all=True: d),
                                                   _module_with_grads(1.0, float("nan")), None)


def test_gradient_check_leaves_inf_gradients_to_the_fp16_scaler():
    """Under 16-mixed the GradScaler skips a step whose (unscaled) gradients are not finite and lowers its scale:
    routine in fp16 training, not a divergence."""
    votes = []
    trainer = _namespace_trainer(lambda d, all=True: votes.append(d) or d, scaler=object())
    DivergenceGuard().on_before_optimizer_step(trainer, _module_with_grads(float("inf")), None)
    assert votes == []  # not even a vote: every rank has the same scaler, so they all skip alike


# ---- DivergenceGuard with the fused AdamW: flags on the device, the step skipped there ---------------------------


class FusedTiny(InfGradModule):
    """TinyModule / InfGradModule with lit-lm's optimizer (fused AdamW): the guard reads nothing per step."""

    def __init__(self, nan_at: int | None = None, inf_at: int = 10**9) -> None:
        super().__init__(inf_at)
        self.nan_at = nan_at

    def configure_optimizers(self) -> torch.optim.Optimizer:
        from lit_lm.optim import adamw

        return adamw(self, 1e-2, (0.9, 0.999), 1e-8, 0.0)


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_fused_guard_skips_the_bad_step_on_the_device_and_stops_before_the_next_checkpoint(tmp_path, kind):
    ckpt_dir = tmp_path / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=4, save_last=True, save_top_k=-1)
    before = _WeightsAtStep(5)
    model = FusedTiny(nan_at=5) if kind == "loss" else FusedTiny(inf_at=5)
    trainer = _trainer(tmp_path, [DivergenceGuard(), before, checkpoint], logger=False, gradient_clip_val=1.0,
                       log_every_n_steps=50)
    with pytest.raises(DivergenceError) as e:
        trainer.fit(model, _loader())
    message = str(e.value)
    what = "loss" if kind == "loss" else "gradient under a finite loss"
    assert "\n" not in message
    assert f"non-finite {what} at step 5 (its update was skipped on the device" in message, message
    assert "stopped at step 8" in message and f"Last good checkpoint: {ckpt_dir / 'last.ckpt'}" in message
    # steps 5, 6, 7 were all non-finite and skipped: the weights are those step 5 began with, and finite
    state = model.state_dict()
    assert all(torch.equal(state[k], before.weights[k]) for k in state)
    assert trainer.optimizers[0].state[model.layer.weight]["step"].item() == 5  # the skipped steps did not count
    assert _load(ckpt_dir / "last.ckpt")["global_step"] == 4 and _all_finite(ckpt_dir / "last.ckpt")


def test_fused_guard_reports_a_skipped_step_at_the_end_of_a_run(tmp_path):
    trainer = _trainer(tmp_path, [DivergenceGuard()], max_steps=7, logger=False, enable_checkpointing=False,
                       log_every_n_steps=50)
    with pytest.raises(DivergenceError, match=r"non-finite loss at step 6 .* Last good checkpoint: none written yet"):
        trainer.fit(FusedTiny(nan_at=6), _loader())


def test_fused_guard_lets_finite_runs_through(tmp_path):
    model = FusedTiny()
    _trainer(tmp_path, [DivergenceGuard()], max_steps=6, logger=False, enable_checkpointing=False).fit(model, _loader())
    assert trainer_steps(model) == 6


def trainer_steps(model) -> int:
    return int(model.trainer.optimizers[0].state[model.layer.weight]["step"].item())
