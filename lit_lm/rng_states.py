"""The random state a pretraining checkpoint carries for an exact resume: dropout draws from torch's global
generators, so without their states a resumed run drops other units than the uninterrupted run did."""

from __future__ import annotations

from typing import Any, Union

import lightning as L
import torch


def capture(module: L.LightningModule) -> dict[str, Any]:
    """The generators' states of this process (on every rank: ``on_save_checkpoint`` runs on each)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():  # this run's device only: a resume may see fewer GPUs (CUDA_VISIBLE_DEVICES=0)
        states["cuda"] = [torch.cuda.get_rng_state(_cuda_device(module))]
    if module._trainer is not None and module.trainer.world_size > 1:
        # Each rank draws as many dropout numbers as its own batches hold, so the ranks' states differ: keep
        # every rank's, or a resumed rank > 0 drops other units.
        states["torch_per_rank"] = module.all_gather(torch.get_rng_state()).cpu()
        if module.device.type == "cuda":
            states["cuda_per_rank"] = module.all_gather(torch.cuda.get_rng_state(module.device)).cpu()
    return states


def restore(module: L.LightningModule, states: dict[str, Any]) -> None:
    """Set the states ``capture`` saved, this rank's own where the world size is the same."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        # one state (this format), or every visible GPU's (checkpoints before 2026-12-04): this device's
        saved, index = states["cuda"], module.device.index or 0
        torch.cuda.set_rng_state(saved[index] if index < len(saved) else saved[0], _cuda_device(module))
    rank, world = module.trainer.global_rank, module.trainer.world_size
    if len(states.get("torch_per_rank", ())) == world:
        torch.set_rng_state(states["torch_per_rank"][rank].clone())  # a row view of the stack segfaults
    if len(states.get("cuda_per_rank", ())) == world and module.device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda_per_rank"][rank].clone(), module.device)


def _cuda_device(module: L.LightningModule) -> Union[torch.device, str]:
    return module.device if module.device.type == "cuda" else "cuda"  # "cuda": the current device
