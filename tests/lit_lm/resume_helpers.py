"""Callbacks for fits run in a subprocess by the resume and DDP tests (added with ``--trainer.callbacks+=...``
and ``PYTHONPATH`` including this directory). They are configured through environment variables, so the command
line stays the real one.

- ``Recorder``: appends one JSON line per training batch to ``$LIT_LM_RECORD`` (``{rank}`` in the path is replaced by
  the global rank): global_step, epoch, sample ids, NSP labels and a hash of input_ids + labels (the masks).
- ``KillAt``: SIGKILLs its own process at the start of training step ``$LIT_LM_KILL_AT`` (as a crash or a
  pre-empted node would: no teardown, no final checkpoint).
- ``ValRecorder``: writes the logged ``val/*`` metrics of each validation to ``$LIT_LM_VAL_RECORD`` (``{rank}``
  as above), so the ranks' synced values can be compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from typing import Any

import lightning as L
import torch


def batch_digest(batch: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in ("input_ids", "labels", "token_type_ids", "attention_mask"):
        t = batch[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _path(var: str, trainer: "L.Trainer") -> str | None:
    path = os.environ.get(var)
    return path.replace("{rank}", str(trainer.global_rank)) if path else None


class Recorder(L.Callback):
    def on_train_batch_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any, batch_idx: int) -> None:
        path = _path("LIT_LM_RECORD", trainer)
        if path is None:
            return
        record = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "batch_idx": batch_idx,
            "index": batch["index"].tolist(),
            "nsp": batch["next_sentence_label"].tolist(),
            "digest": batch_digest(batch),
            # the dropout masks of this step come from here: equal states => equal masks
            "rng": hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()[:16],
        }
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


class KillAt(L.Callback):
    def on_train_batch_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any, batch_idx: int) -> None:
        if trainer.global_step == int(os.environ["LIT_LM_KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)


class ValRecorder(L.Callback):
    def on_validation_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        path = _path("LIT_LM_VAL_RECORD", trainer)
        if path is None or trainer.sanity_checking:
            return
        # after the epoch-end hooks: callback_metrics holds what the module logged
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        with open(path, "a") as f:
            f.write(json.dumps({"step": trainer.global_step, **values}) + "\n")
