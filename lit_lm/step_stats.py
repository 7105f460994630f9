"""Training statistics that never stop the device: summed on it every step, read only on logging steps.

On a GPU, reading a tensor on the host (``.item()``, ``float()``, Lightning's per-step ``self.log`` bookkeeping,
a boolean-mask mean) waits for every queued kernel, so a step that reads one cannot overlap the next. The training
steps add their statistics to one device vector here and hand the means to ``self.log`` on the steps Lightning
writes to the logger; the values logged are means over the steps since the last log (nanoGPT and litgpt log the
latest step's; a window mean is less noisy and costs the same).
"""

from __future__ import annotations

import lightning as L
import torch


class StepStats:
    """Named sums on the device; ``add`` each step (no host read), ``pop`` the sums on a logging step."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.sums: torch.Tensor | None = None

    def add(self, **values: torch.Tensor) -> None:
        step = torch.stack([v.detach().float() for v in values.values()])  # (k,) on the values' device
        if self.sums is None or self.names != tuple(values):
            self.names, self.sums = tuple(values), step
        else:
            self.sums += step

    def pop(self) -> dict[str, torch.Tensor]:
        sums, self.sums = self.sums, None
        return {} if sums is None else dict(zip(self.names, sums.unbind()))


def logging_step(trainer: "L.Trainer") -> bool:
    """Whether this training batch is the last of a step Lightning writes to the logger (every
    ``log_every_n_steps`` optimizer steps, and when the run stops), as its LearningRateMonitor asks."""
    return trainer._logger_connector.should_update_logs and not trainer.fit_loop._should_accumulate()


def logged_step(trainer: "L.Trainer") -> int:
    """The x of the metrics Lightning writes on this batch: its loggers count stepped batches, and in a callback's
    ``on_train_batch_end`` that count is still the one before this step (Lightning logs ``train/loss`` of global step
    2 at x = 1), so a scalar a callback writes here lines up with the module's curves."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped
