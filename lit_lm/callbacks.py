"""Callbacks and plugins configured from YAML: throughput and MFU, divergence stop, atomic checkpoints."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Optional

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ThroughputMonitor


def _batch_size(batch: dict[str, Any]) -> int:
    return int(batch["input_ids"].shape[0])


def _real_tokens(batch: dict[str, Any]) -> int:
    return int(batch["attention_mask"].sum())


class TokenThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor counting real (non-pad) tokens, with FLOPs from the module's
    ``flops_per_batch`` and MFU against ``peak_flops`` (Lightning knows GPU peaks, but none for CPUs)."""

    def __init__(self, window_size: int = 50, peak_flops: Optional[float] = None) -> None:
        """
        Args:
            window_size: Number of batches the rates are averaged over.
            peak_flops: Peak FLOP/s of one device for the run's precision; needed for MFU on CPUs (where
                Lightning knows no peak), optional on GPUs (overrides Lightning's table).
        """
        super().__init__(batch_size_fn=_batch_size, length_fn=_real_tokens, window_size=window_size)
        self.peak_flops = peak_flops

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.peak_flops is not None:
            self.available_flops = int(self.peak_flops)
            for throughput in self._throughputs.values():
                throughput.available_flops = int(self.peak_flops)


class DivergenceError(RuntimeError):
    """Training stopped on a non-finite loss."""


class DivergenceGuard(L.Callback):
    """Stop on the first non-finite loss, before its backward pass can write NaNs into the weights.

    Runs before the optimizer step and before ModelCheckpoint (Lightning orders checkpoint callbacks last), so
    no NaN weights are ever saved as ``last``; the message names the step and the last good checkpoint.
    """

    def on_before_backward(self, trainer: "L.Trainer", pl_module: "L.LightningModule", loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        ckpt = trainer.checkpoint_callback
        last = (getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")) if ckpt else ""
        raise DivergenceError(
            f"non-finite loss ({loss.item()}) at step {trainer.global_step}; training stopped before the update. "
            f"Last good checkpoint: {last or 'none written yet'} (resume with --ckpt_path last, e.g. at a lower lr)"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written so that a crash mid-save leaves the previous file intact.

    The bytes go to a temporary file in the target directory, are flushed and fsync'ed, and the file is then
    renamed over the target with ``os.replace`` (atomic on POSIX within one filesystem); the directory is fsync'ed
    so the rename itself survives a power loss.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
