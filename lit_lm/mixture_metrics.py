"""Validation metrics per source of a mixture (``--data.sources``): a user who mixes their own text with WikiText
wants to see how the model does on each, not only on the blend."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric


class PerSourceMLM(Metric):
    """MLM loss and top-1 accuracy of each source, over the masked tokens of an epoch.

    Sums are kept per source on the device (``index_add_``: no boolean-mask indexing, no read of the device) and
    reduced over DDP ranks by torchmetrics at ``compute``. Weighted by masked tokens like the combined val/mlm_loss,
    so the sources' values, weighted by their token counts, give back the combined ones.
    """

    full_state_update = False

    def __init__(self, n_sources: int) -> None:
        super().__init__()
        for name in ("loss_sum", "correct", "count"):
            self.add_state(name, default=torch.zeros(n_sources), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor) -> None:
        """``logits`` (N, V), ``targets`` (N,) with -100 where nothing is predicted, ``sources`` (N,) the source of
        each row."""
        valid = targets != -100
        loss = F.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="none")  # 0 where ignored
        self.loss_sum.index_add_(0, sources, loss)
        self.correct.index_add_(0, sources, ((logits.argmax(-1) == targets) & valid).float())
        self.count.index_add_(0, sources, valid.float())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, accuracy) per source, each (n_sources,); NaN for a source that had no masked token."""
        return self.loss_sum / self.count, self.correct / self.count
