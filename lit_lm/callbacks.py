"""Callbacks and plugins configured from YAML: throughput and MFU, memory, divergence stop, atomic checkpoints."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import zipfile
from typing import Any, Optional

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage

from data_modules.tokenizer import load_error
from lit_lm.memory import Footprint
from lit_lm.step_stats import logged_step, logging_step


def _batch_size(batch: dict[str, Any]) -> int:
    return int(batch["input_ids"].shape[0])


def _real_tokens(batch: dict[str, Any]) -> int:
    """The collator's count (a host int); a batch built elsewhere is counted here, with a device read."""
    return batch["n_tokens"] if "n_tokens" in batch else int(batch["attention_mask"].sum())


class TokenThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor counting real (non-pad) tokens, with FLOPs from the module's
    ``flops_per_batch`` and MFU against ``peak_flops`` (Lightning knows GPU peaks, but none for CPUs).

    Lightning's monitor synchronises CUDA after every batch to time it, which keeps the host from queueing the next
    step while the GPU runs this one. Here training batches are only counted (host integers from the collator); the
    clock is read, after one synchronisation, on the steps Lightning logs, and the rates span the last
    ``window_size`` of those readings: exact, since both ends of the span are synchronised.
    """

    def __init__(self, window_size: int = 2, peak_flops: Optional[float] = None) -> None:
        """
        Args:
            window_size: Logging steps the rates span (2: the rate over the last ``log_every_n_steps`` steps).
            peak_flops: Peak FLOP/s of one device for the run's precision; needed for MFU on CPUs (where
                Lightning knows no peak), optional on GPUs (overrides Lightning's table).
        """
        super().__init__(batch_size_fn=_batch_size, length_fn=_real_tokens, window_size=window_size)
        self.peak_flops = peak_flops
        self._flops_since: dict[Any, int] = {}

    def _start(self, trainer: "L.Trainer") -> None:
        super()._start(trainer)
        self._flops_since[trainer.state.stage] = 0

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.peak_flops is not None:
            self.available_flops = int(self.peak_flops)
            for throughput in self._throughputs.values():
                throughput.available_flops = int(self.peak_flops)

    @torch.inference_mode()
    def _update(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any, iter_num: int) -> None:
        stage = trainer.state.stage
        self._lengths[stage] += self.length_fn(batch)
        self._samples[stage] += self.batch_size_fn(batch)
        self._batches[stage] += 1
        self._flops_since[stage] = self._flops_since.get(stage, 0) + int(getattr(pl_module, "flops_per_batch", 0) or 0)
        training = stage == RunningStage.TRAINING
        if training and not logging_step(trainer):
            return  # counted; measured on the next logging step
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # the clock then includes every queued step
        flops, self._flops_since[stage] = self._flops_since[stage], 0
        self._throughputs[stage].update(time=time.perf_counter() - self._t0s[stage], batches=self._batches[stage],
                                        samples=self._samples[stage], lengths=self._lengths[stage],
                                        flops=flops if hasattr(pl_module, "flops_per_batch") else None)


class MemoryMonitor(L.Callback):
    """What the job's memory is doing (``lit_lm.memory.Footprint``: the main process, its DataLoader workers, CUDA's
    peaks), sampled on logging steps, every ``log_every_n_steps`` batches of a validation and at the ends of epochs
    and of training; logged as ``memory/*`` scalars, and its peaks are the summary line's (``console.write_summary``).

    A callback of its own, added by the CLI to every trainer, so that a run with the progress bar off still counts its
    workers: the kernel keeps the main process's peak (``ru_maxrss``) but nothing of a live worker's. Rank zero only,
    like the loggers it writes to. A sample reads host counters only, never the device."""

    def __init__(self) -> None:
        self.footprint = Footprint()
        self._logged_step = -1

    def _sample(self, trainer: "L.Trainer", log: bool) -> None:
        if not trainer.is_global_zero:
            return
        scalars = self.footprint.sample()
        step = logged_step(trainer)
        if log and step != self._logged_step:
            self._logged_step = step
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=step)

    def on_train_batch_end(self, trainer: "L.Trainer", pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if logging_step(trainer):
            self._sample(trainer, log=True)

    def on_validation_batch_end(self, trainer: "L.Trainer", pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        # mid-epoch, the validation workers live beside the training ones: the tree is at its largest here
        if not trainer.sanity_checking and batch_idx % max(1, trainer.log_every_n_steps) == 0:
            self._sample(trainer, log=False)  # no training step of its own to plot it at

    def on_train_epoch_end(self, trainer: "L.Trainer", pl_module: L.LightningModule) -> None:
        self._sample(trainer, log=False)

    def on_train_end(self, trainer: "L.Trainer", pl_module: L.LightningModule) -> None:
        self._sample(trainer, log=True)  # the last point of the curves, unless the last step was just logged


class DivergenceError(RuntimeError):
    """Training stopped on a non-finite loss or gradient."""


# what FSDP, activation checkpointing and torch.compile put into parameter names: the message names the model's own
_WRAPPER_PREFIXES = re.compile(r"(?:^|(?<=\.))(?:_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)\.")


class DivergenceGuard(L.Callback):
    """Stop on the first non-finite loss, before its backward pass can write NaNs into the weights, and on the first
    non-finite gradient under a finite loss (an overflow in backward), before the optimizer step applies it.

    With a fused optimizer (lit-lm's AdamW, on every device) nothing waits for the device: the check is one norm of
    all gradients and the loss's finiteness, kept on the device, and a non-finite step is skipped there through the
    optimizer's ``found_inf`` flag (the mechanism fp16's GradScaler uses), so the weights and the optimizer's moments
    never see it. The flag is read on the steps Lightning logs, before every checkpoint and at the end, and the run
    then stops naming the first bad step; the last checkpoint holds finite weights. With any other optimizer the
    flags are read every step and the run stops at once (a host sync per step).

    Runs before the optimizer step and before ModelCheckpoint (Lightning orders checkpoint callbacks last), so
    no NaN weights are ever saved as ``last``; the message names the step and the last good checkpoint. Under DDP
    the ranks decide together: a rank that stopped alone would leave the others waiting in the gradient all-reduce
    (and under FSDP each rank holds only its shard of the gradients).
    """

    def __init__(self) -> None:
        self._loss_finite: Optional[torch.Tensor] = None  # this optimizer step's micro-batches, on the device
        self._bad: Optional[torch.Tensor] = None  # (first bad step, 1 = loss / 2 = gradient), -1 while none

    def on_before_backward(self, trainer: "L.Trainer", pl_module: "L.LightningModule", loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).all()
        if _skips_on_device(trainer):
            self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite
            return
        finite = bool(finite)
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        where = f"({loss.item()})" if not finite else f"on another rank (this rank's: {loss.item():.4g})"
        raise DivergenceError(f"non-finite loss {where} at step {trainer.global_step}; {_stopped(trainer)}")

    def on_before_optimizer_step(self, trainer: "L.Trainer", pl_module: "L.LightningModule",
                                 optimizer: torch.optim.Optimizer) -> None:
        # Under a gradient scaler (16-mixed) inf/NaN gradients are the scaler's signal, not a divergence: it skips
        # that step and lowers the scale, so the weights never see them. bf16 and fp32 have no such net.
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return
        # this rank's gradients (its shard of a DTensor: the vote below covers the others)
        grads = [(name, _local(p.grad)) for name, p in pl_module.named_parameters() if p.grad is not None]
        if not grads:
            return
        if _skips_on_device(trainer):
            self._flag_on_device(trainer, optimizer, [g for _, g in grads])
            return
        # one flag for all gradients: a single device-to-host sync per step, not one per parameter
        finite = bool(torch.isfinite(torch.nn.utils.get_total_norm([g for _, g in grads])))
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        if finite:
            where = "on another rank"
        else:
            name, grad = next((n, g) for n, g in grads if not bool(torch.isfinite(g).all()))
            kind = "nan" if bool(torch.isnan(grad).any()) else "inf"
            where = f"({kind}) in {_WRAPPER_PREFIXES.sub('', name)}"
        raise DivergenceError(f"non-finite gradient {where} under a finite loss at step {trainer.global_step}; "
                              f"{_stopped(trainer)}")

    def _flag_on_device(self, trainer: "L.Trainer", optimizer: torch.optim.Optimizer, grads: list) -> None:
        grad_finite = torch.isfinite(torch.nn.utils.get_total_norm(grads))
        loss_finite = self._loss_finite if self._loss_finite is not None else torch.ones_like(grad_finite)
        self._loss_finite = None
        kind = torch.where(~loss_finite, 1, torch.where(~grad_finite, 2, 0))  # 0: a good step
        if trainer.world_size > 1:  # every rank skips alike (FSDP: each saw only its shard); a device collective
            kind = trainer.strategy.reduce(kind.float(), reduce_op="max").long()
        bad = kind > 0
        optimizer.found_inf = bad.float()  # the fused kernel skips the update (and the step count) on the device
        if self._bad is None:
            self._bad = torch.full((2,), -1, dtype=torch.long, device=bad.device)
        first = (self._bad[0] < 0) & bad
        self._bad = torch.where(first, torch.stack([torch.full_like(kind, trainer.global_step), kind]), self._bad)

    def _check(self, trainer: "L.Trainer") -> None:
        """Read the device flag (one host read) and stop if a step was skipped."""
        if self._bad is None:
            return
        step, kind = self._bad.tolist()
        if step < 0:
            return
        what = "loss" if kind == 1 else "gradient under a finite loss"
        raise DivergenceError(f"non-finite {what} at step {step} (its update was skipped on the device, and every "
                              f"later non-finite one; stopped at step {trainer.global_step}); {_stopped(trainer)}")

    def on_train_batch_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule", *args: Any) -> None:
        if logging_step(trainer):
            self._check(trainer)

    def on_save_checkpoint(self, trainer: "L.Trainer", pl_module: "L.LightningModule", checkpoint: dict) -> None:
        self._check(trainer)  # the run stops before a checkpoint records a step that was skipped

    def on_train_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        self._check(trainer)


def _skips_on_device(trainer: "L.Trainer") -> bool:
    """Whether the run's optimizer takes a ``found_inf`` flag (torch's fused Adam, AdamW and SGD)."""
    optimizers = getattr(trainer, "optimizers", None) or []
    return len(optimizers) == 1 and bool(getattr(optimizers[0], "defaults", {}).get("fused"))


def _local(grad: torch.Tensor) -> torch.Tensor:
    return grad.to_local() if hasattr(grad, "to_local") else grad


def _stopped(trainer: "L.Trainer") -> str:
    ckpt = trainer.checkpoint_callback
    last = (getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")) if ckpt else ""
    return (f"training stopped before the update. Last good checkpoint: {last or 'none written yet'} "
            "(resume with --ckpt_path last, e.g. at a lower lr)")


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


def check_weights_only(path: Any) -> None:
    """Read ``path`` as ``torch.load(weights_only=True)`` does, without keeping it; a one-line ValueError naming it
    if torch refuses it (a pickled call, a foreign class) or cannot read it.

    For loaders that do not read weights-only themselves: Lightning's FSDP strategy reads a full checkpoint through
    its own unrestricted lazy unpickler, bypassing the CheckpointIO plugin. A pickle that passes here holds only
    tensors and plain values, so any unpickler then builds the same objects and runs no code (only someone who can
    write the file could change it between the two reads, and could as well change the code). Local zip files (what
    ``torch.save`` writes) are memory-mapped: only the pickle is read, not the tensors' bytes. A missing file is left
    to the loader, which reports it.
    """
    from lightning.fabric.utilities.cloud_io import _load

    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if os.path.isdir(text):
        # torch.distributed.checkpoint reads a sharded checkpoint's .metadata with plain pickle.load
        raise ValueError(f"{path}: a directory (a sharded FSDP checkpoint?); lit-lm reads single-file checkpoints "
                         "only, weights-only (keep FSDP's default state_dict_type='full')")
    try:
        if os.path.isfile(text):
            torch.load(text, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(text))
        elif "://" in text:  # a URL or fsspec path: read as Lightning's own loader reads it, but weights-only
            _load(text, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, tampered or foreign files raise many different errors
        raise ValueError(f"{path}: not a readable checkpoint ({load_error(e)})") from None


class WeightsOnlyFirst:
    """A strategy's own ``load_checkpoint``, preceded by :func:`check_weights_only` of the same path (see
    :func:`guard_checkpoint_reads`). An object holding the strategy rather than a closure, so that the strategy
    still pickles (``ddp_spawn`` sends the trainer to its workers)."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy

    def __call__(self, checkpoint_path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        check_weights_only(checkpoint_path)
        return type(self.strategy).load_checkpoint(self.strategy, checkpoint_path, *args, **kwargs)


def guard_checkpoint_reads(strategy: Any) -> None:
    """Make every checkpoint the trainer restores (``--ckpt_path`` PATH, ``last``, ``best``, ``hpc``) pass a
    weights-only read first, whatever the strategy's own loader does and whatever ``--weights_only`` says.

    ``Strategy.load_checkpoint`` is where Lightning's checkpoint connector reads the resolved path, for every
    strategy; CheckpointIO plugins are not (FSDP bypasses them), nor is LightningCLI's hyper-parameter pre-read
    (it skips ``last``).
    """
    if not isinstance(strategy.load_checkpoint, WeightsOnlyFirst):
        strategy.load_checkpoint = WeightsOnlyFirst(strategy)


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
