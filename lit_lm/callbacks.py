"""Callbacks configured from YAML: token throughput and MFU in the logs."""

from __future__ import annotations

from typing import Any, Optional

import lightning as L
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
