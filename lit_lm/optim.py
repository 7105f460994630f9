"""AdamW parameter groups and learning-rate schedules (pure functions, shared by both LightningModules)."""

from __future__ import annotations

import math
from typing import Callable, Literal, Optional, Union

import torch
import torch.nn as nn

Schedule = Literal["linear", "cosine", "constant"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay every weight matrix; no decay on biases and LayerNorm parameters, as in BERT's AdamWeightDecay."""
    decay, no_decay = [], []
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or any(p is q for q in decay + no_decay):
                continue  # tied weights appear under two names: one group only
            (no_decay if isinstance(module, nn.LayerNorm) or name.endswith("bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def decay(progress: float, schedule: Schedule = "linear") -> float:
    """Multiplier of the peak learning rate after warmup, ``progress`` (0..1) of the way through the decay."""
    progress = min(1.0, max(0.0, progress))
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps(warmup: Union[int, float], total_steps: int) -> int:
    """Optimizer steps of the warmup: ``warmup`` steps (an int), or that fraction of ``total_steps`` (a float < 1,
    BERT's ``warmup_proportion``), rounded down but at least one step when positive; 0 is no warmup."""
    steps = int(warmup * total_steps) if isinstance(warmup, float) and warmup < 1 else int(warmup)
    return max(1, steps) if warmup > 0 else 0


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: Schedule = "linear") -> float:
    """Multiplier of the peak learning rate at ``step``: linear warmup, then decay to zero at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps  # the first step already trains (BERT's warmup starts above zero)
    return decay((step - warmup_steps) / max(1, total_steps - warmup_steps), schedule)


def time_budget_factor(step: int, elapsed: float, warmup: Union[int, float], schedule: Schedule = "linear") -> float:
    """Multiplier at ``step`` when ``elapsed`` (0..1) of a wall-time budget is spent: the smaller of the warmup ramp
    (``warmup`` steps, or a fraction of the budget if a float < 1) and the decay over the whole budget, so the rate
    reaches zero when the time does however many steps fit (Izsak et al., 2021; Cramming's budget schedules)."""
    if isinstance(warmup, float) and warmup < 1:
        ramp = elapsed / warmup
    else:
        ramp = (step + 1) / max(1, int(warmup))
    return min(1.0, ramp, decay(elapsed, schedule))


def adamw(model: nn.Module, lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` with torch's fused kernel, on every device: CUDA and the CPU both have one, so
    the CPU tests run the optimizer a GPU runs (3x faster than foreach on the 2-core CPU for tiny and mini), and it
    takes the ``found_inf`` flag that lets a non-finite step be skipped on the device without a host sync
    (callbacks.DivergenceGuard). Lightning refuses to clip its gradients itself: see :func:`clip_gradients`."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=True)


def clip_gradients(optimizer: torch.optim.Optimizer, value: Optional[float], algorithm: Optional[str],
                   scaler: Optional[torch.amp.GradScaler] = None) -> Optional[torch.Tensor]:
    """Clip the gradients of ``optimizer``'s parameters as ``--trainer.gradient_clip_val`` and
    ``--trainer.gradient_clip_algorithm`` ('norm', the default, or 'value') ask; returns the global norm before
    clipping (a device tensor: nothing waits for it), or None.

    Both LightningModules call this from ``configure_gradient_clipping``. Lightning 2.6.6's mixed-precision plugin
    refuses clipping for any optimizer that unscales inside its step (the fused AdamW), even under bf16 where no
    scaler exists (Lightning-AI/pytorch-lightning#21435), so every shipped config died at its first step on a GPU.
    Under fp16 the gradients carry the loss scale and must be unscaled before their norm is taken: ``scaler``'s own
    ``unscale_`` does it (and records the inf check); ``GradScaler.step`` then sees the optimizer already unscaled and
    hands the fused kernel no scale, so nothing is unscaled twice, and a step with inf gradients is still skipped.
    """
    if not value:
        return None
    if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
        scaler.unscale_(optimizer)  # optimizers that unscale themselves were left scaled by Lightning
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if algorithm in (None, "norm"):
        return torch.nn.utils.clip_grad_norm_(params, value)
    if algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, value)
        return None
    raise ValueError(f"--trainer.gradient_clip_algorithm={algorithm!r}: expected norm or value")


def warmup_decay(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, schedule: Schedule = "linear"
) -> dict:
    """A per-step LambdaLR in the dict form ``configure_optimizers`` returns."""
    fn = lambda step: lr_factor(step, warmup_steps, total_steps, schedule)  # noqa: E731
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, fn), "interval": "step", "frequency": 1}


def time_budget(optimizer: torch.optim.Optimizer, warmup: Union[int, float], schedule: Schedule,
                elapsed: Callable[[], float]) -> dict:
    """A per-step LambdaLR following :func:`time_budget_factor`; ``elapsed()`` gives the share of the budget spent."""
    fn = lambda step: time_budget_factor(step, elapsed(), warmup, schedule)  # noqa: E731
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, fn), "interval": "step", "frequency": 1}
