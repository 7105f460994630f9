"""What a run prints: the progress bar, the model summary, one summary line at the end, and no library noise.

The CLI adds ``ProgressBar`` and ``ModelSummary`` to every trainer that does not configure its own, so the output does
not depend on what else is installed (Lightning picks rich's bar and table when ``rich`` happens to be importable).
The summary line's memory comes from ``lit_lm.callbacks.MemoryMonitor``, which the CLI also adds to every trainer.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelSummary as _LightningModelSummary
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table, get_human_readable_count

from lit_lm.callbacks import MemoryMonitor
from lit_lm.memory import Footprint


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _value(name: str, value: float) -> str:
    """Accuracies as percentages, the rest (losses, MCC, F1, correlations, rates) as numbers."""
    return f"{100 * value:.1f}%" if name.endswith("acc") else f"{value:.4g}"


class ProgressBar(TQDMProgressBar):
    """tqdm progress, whatever else is installed, counting what the run is limited by.

    In a terminal: Lightning's bars, except that a step-limited run (``max_steps``, the usual pretraining and
    fine-tuning setup) shows its optimizer steps against ``max_steps`` and the epoch without a total (with
    ``max_epochs: -1`` the epoch total would be meaningless). Not in a terminal (a log file, CI, a notebook's
    subprocess): no bars, whose every refresh would be one more line, but one line every ``print_every`` optimizer
    steps (default: the trainer's ``log_every_n_steps``) and one after each validation, with the metrics.

    The training metrics are read only on those reporting steps (and, in a terminal, after a validation): on a GPU
    every read of a tensor makes the host wait for the device, and an ordinary step must not. The bar's position
    moves every ``refresh_rate`` batches and shows the metrics last read.
    """

    def __init__(self, refresh_rate: int = 1, print_every: Optional[int] = None,
                 interactive: Optional[bool] = None) -> None:
        """
        Args:
            refresh_rate: Batches between bar refreshes in a terminal.
            print_every: Optimizer steps between progress lines when not in a terminal; None: the trainer's
                ``log_every_n_steps``.
            interactive: Bars (True) or lines (False); None: bars when stdout is a terminal.
        """
        super().__init__(refresh_rate=refresh_rate)
        self.print_every = print_every
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self._start: tuple[float, int] = (time.monotonic(), 0)
        self._reported_step = -1
        self._metrics: dict[str, Any] = {}  # read at the last reporting step

    # ---- bars only in a terminal ------------------------------------------------------------------------------------
    def _bar(self, make: Any) -> Tqdm:
        return make() if self.interactive else Tqdm(disable=True)

    def init_sanity_tqdm(self) -> Tqdm:
        return self._bar(super().init_sanity_tqdm)

    def init_train_tqdm(self) -> Tqdm:
        return self._bar(super().init_train_tqdm)

    def init_validation_tqdm(self) -> Tqdm:
        return self._bar(super().init_validation_tqdm)

    def init_test_tqdm(self) -> Tqdm:
        return self._bar(super().init_test_tqdm)

    def init_predict_tqdm(self) -> Tqdm:
        return self._bar(super().init_predict_tqdm)

    # ---- training: steps against max_steps --------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._start = (time.monotonic(), trainer.global_step)
        self._metrics = {}

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        if trainer.max_steps > 0:
            bar = self.train_progress_bar
            bar.reset(total=trainer.max_steps)
            bar.initial = self._start[1]
            bar.n = trainer.global_step
            bar.set_description(f"Epoch {trainer.current_epoch} · step")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        bar = self.train_progress_bar
        if trainer.max_steps <= 0:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # batches, the last metrics
        elif self._should_update(trainer.global_step, trainer.max_steps) and not bar.disable:
            bar.n = trainer.global_step
            bar.refresh()
        step = trainer.global_step
        if not self.is_enabled or step == self._reported_step or step % self._every(trainer) != 0:
            return
        self._reported_step = step
        self._metrics = self._read_metrics(trainer, pl_module)
        if not bar.disable:
            bar.set_postfix(self._metrics)
        if not self.interactive:
            print(self._progress_line(trainer, pl_module), flush=True)

    def _every(self, trainer: L.Trainer) -> int:
        return self.print_every or trainer.log_every_n_steps or 50

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The metrics read at the last reporting step. Lightning's bar asks for them at every refresh, at epoch ends
        and after validation, and its own reading converts every progress-bar tensor to a number: here they are read
        where the run reports (``_read_metrics``) and kept."""
        return self._metrics

    def _read_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The progress-bar metrics with the training loss, without Lightning's version number."""
        metrics = {k: v for k, v in super().get_metrics(trainer, pl_module).items() if k != "v_num"}
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            metrics = {"train/loss": float(loss), **metrics}
        return metrics

    def _progress_line(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        step, (t0, step0) = trainer.global_step, self._start
        elapsed = time.monotonic() - t0
        rate = (step - step0) / elapsed if elapsed > 0 else 0.0
        parts = [f"step {step:,}" + (f"/{trainer.max_steps:,} ({100 * step / trainer.max_steps:.0f}%)"
                                     if trainer.max_steps > 0 else ""), f"epoch {trainer.current_epoch}"]
        # the training metrics; validation gets its own line
        parts += [f"{k} {_value(k, float(v))}" for k, v in self.get_metrics(trainer, pl_module).items()
                  if not k.startswith("val")]
        parts.append(f"{rate:.2f} steps/s")
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining("train") if timer is not None and timer._duration is not None else None
        if remaining is None and trainer.max_steps > 0 and rate > 0:
            remaining = (trainer.max_steps - step) / rate
        parts.append(f"elapsed {_clock(elapsed)}" + (f", left {_clock(remaining)}" if remaining is not None else ""))
        return " · ".join(parts)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.interactive and self.is_enabled and not trainer.sanity_checking and trainer.state.fn == "fit":
            self._metrics = self._read_metrics(trainer, pl_module)  # the bar's refresh shows the new val metrics
        super().on_validation_end(trainer, pl_module)
        if not self.interactive and self.is_enabled and not trainer.sanity_checking:
            metrics = validation_metrics(trainer)
            if metrics:
                print(f"validation at step {trainer.global_step:,}: "
                      + ", ".join(f"{k} {_value(k, v)}" for k, v in metrics.items()), flush=True)


def validation_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The run's latest validation metrics (``val/...``, ``val_mismatched/...``), without the losses and the count
    baselines (constants of the data, logged for the curves)."""
    out = {}
    for k, v in trainer.callback_metrics.items():
        if k.startswith("val") and "/" in k and not k.endswith("loss") and "/baseline_" not in k:
            value = float(v)
            if not math.isnan(value):
                out[k] = value
    return out


class ModelSummary(_LightningModelSummary):
    """Lightning's summary table without its FLOPs column: Lightning counts FLOPs only by running an
    ``example_input_array``, which these modules do not define, so the column and its total were zeros. A module
    that counts its training FLOPs (``step_flops``) gets one line with the FLOPs of a full optimizer step instead."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        summary = self._summary(trainer, pl_module)
        columns = [(name, column) for name, column in summary._get_summary_data() if name != "FLOPs"]
        table = _format_summary_table(summary.total_parameters, summary.trainable_parameters, summary.model_size,
                                      summary.total_training_modes, 0, *columns)
        lines = [line for line in table.splitlines() if not line.rstrip().endswith("Total Flops")]
        flops = getattr(pl_module, "step_flops", None)
        dm = trainer.datamodule
        if callable(flops) and dm is not None and hasattr(dm, "batch_size") and hasattr(dm, "max_seq_len"):
            B, T, k = dm.batch_size, dm.max_seq_len, trainer.accumulate_grad_batches
            per_step = k * flops(B, T, getattr(dm, "mlm_probability", 0.15))
            lines.append(f"{get_human_readable_count(per_step):<10}Training FLOPs per optimizer step and device (full "
                         f"sequences: {k} x {B} x {T} tokens; lit_lm.pretraining.training_flops)")
        rank_zero_info("\n" + "\n".join(lines))


def run_summary(trainer: L.Trainer, pl_module: L.LightningModule, seconds: float, log_dir: Optional[str],
                footprint: Optional[Footprint] = None) -> str:
    """One line saying what a fit achieved, the memory it took (``footprint``: the workers' too; without one, the
    kernel's and CUDA's peaks alone) and where it went."""
    stage = "pretraining" if hasattr(pl_module, "step_flops") else "fine-tuning"
    task = getattr(pl_module, "task_name", None)
    head = f"{stage}{f' ({task})' if task else ''}: {trainer.global_step:,} steps in {_clock(seconds)}"
    metrics = validation_metrics(trainer)
    parts = [head, ", ".join(f"{k} {_value(k, v)}" for k, v in metrics.items()) or "not validated",
             (footprint or Footprint()).summary()]
    ckpt = trainer.checkpoint_callback
    last = (getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")) if ckpt else ""
    if last:
        parts.append(f"checkpoint {last}")
    if log_dir:
        parts.append(f"logs {log_dir}")
    return "; ".join(parts)


def write_summary(trainer: L.Trainer, pl_module: L.LightningModule, seconds: float) -> None:
    """Print the run's summary line (rank zero) and keep it beside the logs as ``summary.txt``. Every rank calls
    it: ``trainer.log_dir`` is broadcast from rank zero, a collective call."""
    log_dir = trainer.log_dir
    if not trainer.is_global_zero:
        return
    monitor = next((c for c in trainer.callbacks if isinstance(c, MemoryMonitor)), None)  # its samples saw the workers
    line = run_summary(trainer, pl_module, seconds, log_dir, monitor.footprint if monitor is not None else None)
    print(line, flush=True)
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        (Path(log_dir) / "summary.txt").write_text(line + "\n")


class _DropRecord(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_library_notices() -> None:
    """Silence, by name, two messages every run printed that say nothing about the run: Lightning's advertisement
    for its cloud logger, and torch's deprecation of a pytree class that Lightning itself still uses. Every other
    warning stays."""
    from lightning_utilities.core import rank_zero  # Lightning's rank_zero_info logs through this module's logger

    logger = rank_zero.log
    if not any(isinstance(f, _DropRecord) for f in logger.filters):
        logger.addFilter(_DropRecord("💡 Tip: For seamless cloud logging"))
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
