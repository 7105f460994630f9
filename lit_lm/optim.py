"""AdamW parameter groups and learning-rate schedules (pure functions, shared by both LightningModules)."""

from __future__ import annotations

import math
from typing import Callable, Literal, Union

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
    """AdamW over :func:`param_groups`; the fused kernel where the device has one (CUDA), foreach otherwise."""
    device = next(model.parameters()).device
    fused = device.type == "cuda"
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused, foreach=None if fused else True
    )


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
