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

from data_modules.tokenizer import load_error


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
    no NaN weights are ever saved as ``last``; the message names the step and the last good checkpoint. Under DDP
    the ranks decide together: a rank that stopped alone would leave the others waiting in the gradient all-reduce.
    """

    def on_before_backward(self, trainer: "L.Trainer", pl_module: "L.LightningModule", loss: torch.Tensor) -> None:
        finite = bool(torch.isfinite(loss).all())
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        ckpt = trainer.checkpoint_callback
        last = (getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")) if ckpt else ""
        where = f"({loss.item()})" if not finite else f"on another rank (this rank's: {loss.item():.4g})"
        raise DivergenceError(
            f"non-finite loss {where} at step {trainer.global_step}; training stopped before the update. "
            f"Last good checkpoint: {last or 'none written yet'} (resume with --ckpt_path last, e.g. at a lower lr)"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp makes them private, 0600)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written so that a crash mid-save leaves the previous file intact.

    The bytes go to a temporary file in the target directory, are flushed and fsync'ed, and the file is then
    renamed over the target with ``os.replace`` (atomic on POSIX within one filesystem); the directory is fsync'ed
    so the rename itself survives a power loss. The temporary name carries the writer's pid, so a later save to the
    same path removes what a killed writer left behind.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        prefix = f".{os.path.basename(path)}."
        _remove_stale_temps(directory, prefix)
        fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, _FILE_MODE)
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

    def load_checkpoint(self, path: Any, map_location: Optional[Any] = lambda storage, loc: storage,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        """``weights_only=True`` unless the caller asks otherwise, whatever torch's default: ``--ckpt_path`` of a
        tampered file must not run its pickled code. A damaged or foreign file is a one-line ValueError naming it."""
        try:
            return super().load_checkpoint(path, map_location=map_location,
                                           weights_only=True if weights_only is None else weights_only)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise ValueError(f"{path}: not a readable checkpoint ({load_error(e)})") from None


def _remove_stale_temps(directory: str, prefix: str) -> None:
    """Delete ``<prefix><pid>.*.tmp`` files whose writer is gone (SIGKILL or power loss mid-save)."""
    for name in os.listdir(directory):
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
        except PermissionError:  # alive, someone else's
            pass
