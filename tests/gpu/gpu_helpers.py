"""What the gpu tier (tests/gpu) shares: where it runs, and callbacks its fits load by class path
(``--trainer.callbacks+=gpu_helpers.Probe``; pytest puts this folder on sys.path).

The tier runs where ``torch.cuda.is_available()``; elsewhere it is skipped, unless ``LIT_LM_GPU_TIER_ON_CPU=1``, which
runs the same tests on the CPU (accelerator cpu; the checks only CUDA can make are skipped): a rehearsal of the
plumbing where no GPU is lent (``GPU_SH_CPU=1 bash benchmarks/gpu.sh``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import lightning as L
import torch

CUDA = torch.cuda.is_available()
ON_CPU = os.environ.get("LIT_LM_GPU_TIER_ON_CPU") == "1"
ACCELERATOR = "gpu" if CUDA else "cpu"
DEVICE = "cuda" if CUDA else "cpu"
NO_CUDA = ("needs CUDA (torch.cuda.is_available() is False): the gpu tier runs on a lent GPU through "
           "benchmarks/gpu.sh; LIT_LM_GPU_TIER_ON_CPU=1 rehearses it on the CPU")
CUDA_ONLY = "CUDA only: the CPU rehearsal (LIT_LM_GPU_TIER_ON_CPU=1) cannot make this check"


class Probe(L.Callback):
    """What a fit computed in and with, written as JSON to ``$LIT_LM_GPU_PROBE`` at the end of training: the device,
    the precision, whether the optimizer is fused, the dtype the first Linear layer computes in (autocast), each
    step's loss (the module's, unscaled), and each optimizer step's global gradient norm and largest gradient
    element as the step used them (a step post-hook: after Lightning's closure, clipping included)."""

    def on_train_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        optimizer = trainer.optimizers[0]
        self.record: dict[str, Any] = {
            "device": str(pl_module.device), "precision": trainer.precision,
            "fused": bool(optimizer.defaults.get("fused")), "forward_dtypes": [], "losses": [], "norm_at_step": [],
            "max_abs_at_step": [], "weight_dtype": str(next(pl_module.parameters()).dtype)}
        linear = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Linear))
        self._hook = linear.register_forward_hook(
            lambda m, args, out: self.record["forward_dtypes"].append(str(out.dtype)) if m.training else None)
        optimizer.register_step_post_hook(self._at_step)

    def _at_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        self.record["norm_at_step"].append(float(torch.nn.utils.get_total_norm(grads)))
        self.record["max_abs_at_step"].append(max(float(g.abs().max()) for g in grads))

    def on_train_batch_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule", outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.record["losses"].append(float(outputs["loss"]))  # the training_step's loss, before any fp16 scaling

    def on_train_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        self._hook.remove()
        self.record["global_step"] = trainer.global_step
        with open(os.environ["LIT_LM_GPU_PROBE"], "w") as f:
            json.dump(self.record, f)


SYNC_FROM, SYNC_TO = 4, 12
"""The sync-free window: from the end of optimizer step 4 (warm-up: allocator, cuBLAS handles, the fused optimizer's
state, the first loader batches) to the end of step 12."""


class SyncFreeWindow(L.Callback):
    """``torch.cuda.set_sync_debug_mode`` ("error", or ``$LIT_LM_SYNC_DEBUG``: "warn" lists every sync instead of
    stopping at the first) from the end of step ``SYNC_FROM``'s batch hooks to the end of step ``SYNC_TO``'s: the
    whole loop iterations in between (next batch fetched and copied, forward, backward, clipping, optimizer step,
    scheduler, every callback) must not wait on the device. Logging steps are outside the window (the test sets
    ``log_every_n_steps`` past it). ``$LIT_LM_SYNC_RECORD`` gets the steps the window opened and closed at."""

    def __init__(self) -> None:
        self.opened: int | None = None
        self.closed: int | None = None

    def on_train_batch_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule", outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == SYNC_FROM and self.opened is None:
            torch.cuda.synchronize()  # the warm-up's work is done before the window opens
            self.opened = trainer.global_step
            torch.cuda.set_sync_debug_mode(os.environ.get("LIT_LM_SYNC_DEBUG", "error"))
        elif trainer.global_step == SYNC_TO and self.opened is not None and self.closed is None:
            torch.cuda.set_sync_debug_mode(0)
            self.closed = trainer.global_step
            with open(os.environ["LIT_LM_SYNC_RECORD"], "w") as f:
                json.dump({"opened": self.opened, "closed": self.closed, "at": time.time()}, f)

    def on_exception(self, trainer: "L.Trainer", pl_module: "L.LightningModule", exception: BaseException) -> None:
        torch.cuda.set_sync_debug_mode(0)  # Lightning's teardown after the error may synchronise

    def on_train_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        torch.cuda.set_sync_debug_mode(0)
