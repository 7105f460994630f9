"""Callbacks for fits run in a subprocess by the resume and DDP tests (added with ``--trainer.callbacks+=...``
and ``PYTHONPATH`` including this directory). They are configured through environment variables, so the command
line stays the real one.

- ``Recorder``: appends one JSON line per training batch to ``$LIT_LM_RECORD`` (``{rank}`` in the path is replaced by
  the global rank): global_step, epoch, sample ids, NSP labels and a hash of input_ids + labels (the masks).
- ``KillAt``: SIGKILLs its own process at the start of training step ``$LIT_LM_KILL_AT`` (as a crash or a
  pre-empted node would: no teardown, no final checkpoint).
- ``ValRecorder``: writes the logged ``val/*`` metrics of each validation and the validation sample ids this rank
  saw to ``$LIT_LM_VAL_RECORD`` (``{rank}`` as above), so the ranks' synced values can be compared.
- ``SamplerProbe``: writes how the train loader is sharded (sampler class, replicas, rank, Lightning's
  ``use_distributed_sampler``) to ``$LIT_LM_PROBE`` (``{rank}`` as above), and at interpreter exit whether a
  process group is still initialised to ``$LIT_LM_PROBE.atexit``.
- ``DtypeProbe``: the dtype the model computes in under the configured precision (see the class).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import signal
from pathlib import Path
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
    def on_validation_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        self._seen: list[int] = []

    def on_validation_batch_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        self._seen += batch["index"].tolist()

    def on_validation_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        path = _path("LIT_LM_VAL_RECORD", trainer)
        if path is None or trainer.sanity_checking:
            return
        # after the epoch-end hooks: callback_metrics holds what the module logged
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        with open(path, "a") as f:
            f.write(json.dumps({"step": trainer.global_step, "index": self._seen, **values}) + "\n")


class SamplerProbe(L.Callback):
    def on_train_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        path = _path("LIT_LM_PROBE", trainer)
        if path is None:
            return
        sampler = trainer.train_dataloader.sampler
        probe = {
            "sampler": type(sampler).__name__,
            "num_replicas": getattr(sampler, "num_replicas", None),
            "rank": getattr(sampler, "rank", None),
            "len": len(sampler),
            "num_samples": getattr(sampler, "num_samples", None),
            "world_size": trainer.world_size,
            "global_rank": trainer.global_rank,
            "use_distributed_sampler": trainer._accelerator_connector.use_distributed_sampler,
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        }
        with open(path, "w") as f:
            json.dump(probe, f)
        # what is left at interpreter exit (registered last, so it runs before any other atexit handler)
        exit_path = path + ".atexit"
        atexit.register(lambda: Path(exit_path).write_text(json.dumps(
            {"process_group_initialized": torch.distributed.is_initialized()})))


class DtypeProbe(L.Callback):
    """Records the output dtype of the model's first Linear layer in every training forward (bf16 under
    ``bf16-mixed`` autocast) and the loss, to ``$LIT_LM_DTYPE_PROBE`` at the end of training."""

    def on_train_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        self.seen: list[str] = []
        self.losses: list[float] = []
        linear = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Linear))
        self._hook = linear.register_forward_hook(lambda mod, args, out: self.seen.append(str(out.dtype)))

    def on_before_backward(self, trainer: "L.Trainer", pl_module: "L.LightningModule", loss: torch.Tensor) -> None:
        self.losses.append(float(loss))

    def on_train_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        self._hook.remove()
        with open(os.environ["LIT_LM_DTYPE_PROBE"], "w") as f:
            json.dump({"precision": trainer.precision, "forward_dtypes": self.seen, "losses": self.losses,
                       "weight_dtype": str(next(pl_module.parameters()).dtype)}, f)
