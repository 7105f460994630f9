"""Gradient clipping with the fused AdamW, under every precision, through the shipped configs.

On a GPU every shipped config died at its first optimizer step: ``lit_lm.optim.adamw`` built the fused kernel there,
and Lightning 2.6.6's mixed-precision plugin refuses to clip for an optimizer that unscales inside its step, bf16
included. The optimizer is now fused on every device, so these CPU runs take the path a GPU takes; before
``configure_gradient_clipping`` was overridden they ended in that RuntimeError.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lit_lm.lightning_cli import make_cli
from lit_lm.optim import adamw, clip_gradients

REPO = Path(__file__).resolve().parents[2]
CLIP = 0.05  # far below the first steps' gradient norm (~5-20 for the tiny model), so clipping always bites


class NormProbe(L.Callback):
    """The global gradient norm before clipping (``on_before_optimizer_step`` runs before it, unscaled here under
    fp16) and the one the optimizer stepped with (a step post-hook: Lightning runs the closure, backward and clipping
    included, inside ``optimizer.step``, and the gradients stay as the step used them until the next zero_grad)."""

    def __init__(self) -> None:
        self.before: list[float] = []
        self.at_step: list[float] = []
        self.max_abs: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.optimizers[0].register_step_post_hook(self._record_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        scale = 1.0 if scaler is None else float(scaler.get_scale())
        self.before.append(_norm(pl_module) / scale)

    def _record_step(self, optimizer, args, kwargs) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        self.at_step.append(float(torch.nn.utils.get_total_norm(grads)))
        self.max_abs.append(max(float(g.abs().max()) for g in grads))


def _norm(module: torch.nn.Module) -> float:
    return float(torch.nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None]))


def _fit(args: list[str], tmp_path: Path, monkeypatch, precision: str, fp16: bool = False) -> NormProbe:
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["lit-lm"])
    cli = make_cli(args + ["--trainer.max_steps=3", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
                           f"--trainer.precision={precision}", f"--trainer.logger.init_args.save_dir={tmp_path}",
                           "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]"], run=False)
    if fp16:  # Lightning turns 16-mixed into bf16 on a CPU; the plugin a GPU gets, with a CPU GradScaler
        cli.trainer.strategy.precision_plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0**8))
    probe = NormProbe()
    cli.trainer.callbacks.append(probe)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    optimizer = cli.trainer.optimizers[0]
    assert optimizer.defaults["fused"] is True, "the path under test is the fused optimizer's"
    assert len(probe.at_step) == 3
    return probe


PRETRAIN = ["--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--data.num_workers=0"]


@pytest.mark.parametrize("precision,fp16", [("32-true", False), ("bf16-mixed", False), ("32-true", True)],
                         ids=["32-true", "bf16-mixed", "16-mixed"])
def test_pretraining_clips_the_global_norm_with_the_fused_optimizer(tmp_path, monkeypatch, precision, fp16):
    probe = _fit(PRETRAIN + [f"--trainer.gradient_clip_val={CLIP}", f"--data.cache_dir={tmp_path / 'cache'}"],
                 tmp_path, monkeypatch, precision, fp16)
    assert all(b > 10 * CLIP for b in probe.before), probe.before
    assert all(n == pytest.approx(CLIP, rel=1e-3) for n in probe.at_step), probe.at_step


def test_gradient_clip_algorithm_value_clips_each_element(tmp_path, monkeypatch):
    probe = _fit(PRETRAIN + ["--trainer.gradient_clip_val=1e-3", "--trainer.gradient_clip_algorithm=value",
                             f"--data.cache_dir={tmp_path / 'cache'}"], tmp_path, monkeypatch, "bf16-mixed")
    assert all(m <= 1e-3 * (1 + 1e-6) for m in probe.max_abs), probe.max_abs
    assert all(b > 10 * CLIP for b in probe.before)


@pytest.mark.parametrize("precision,fp16", [("bf16-mixed", False), ("32-true", True)], ids=["bf16-mixed", "16-mixed"])
def test_fine_tuning_clips_the_global_norm_with_the_fused_optimizer(tmp_path, monkeypatch, quickstart_run, precision, fp16):
    ckpt = quickstart_run / "checkpoints" / "last.ckpt"
    probe = _fit(["--config", "configs/quickstart_sst2.yaml", f"--model.pretrained={ckpt}", "--data.num_workers=0",
                  f"--trainer.gradient_clip_val={CLIP}"], tmp_path, monkeypatch, precision, fp16)
    assert all(n == pytest.approx(CLIP, rel=1e-3) for n in probe.at_step), probe.at_step


def test_fp16_gradients_are_unscaled_once():
    """Under a GradScaler the fused step gets no scale after clip_gradients unscaled: the update equals fp32's."""
    torch.manual_seed(0)
    results = []
    for scaled in (False, True):
        model = torch.nn.Linear(4, 3)
        with torch.no_grad():
            model.weight.copy_(torch.arange(12.0).view(3, 4) / 10)
            model.bias.zero_()
        opt = adamw(model, 1e-2, (0.9, 0.999), 1e-8, 0.0)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0) if scaled else None
        loss = model(torch.ones(2, 4)).pow(2).sum()
        (scaler.scale(loss) if scaled else loss).backward()
        norm = clip_gradients(opt, 0.5, "norm", scaler)
        if scaled:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        results.append((model.weight.detach().clone(), float(norm)))
    (w32, n32), (w16, n16) = results
    assert n16 == pytest.approx(n32, rel=1e-6)  # the norm of the true gradients, not of the scaled ones
    torch.testing.assert_close(w16, w32)


def test_an_unknown_clip_algorithm_is_one_line():
    model = torch.nn.Linear(2, 2)
    model(torch.ones(1, 2)).sum().backward()
    with pytest.raises(ValueError, match=r"^--trainer.gradient_clip_algorithm='l1': expected norm or value$"):
        clip_gradients(adamw(model, 1e-3, (0.9, 0.999), 1e-8, 0.0), 1.0, "l1")
