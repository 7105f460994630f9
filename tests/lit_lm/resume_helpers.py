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

``fit_config`` writes the trainer block those fits put on top of cli.yaml and configs/quickstart.yaml.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
import torch
import yaml


def fit_config(max_steps: int, every: int, callbacks: Sequence[str] = (), data: Optional[dict[str, Any]] = None,
               **trainer: Any) -> str:
    """The YAML a test's fit puts on top of cli.yaml + configs/quickstart.yaml: ``max_steps`` steps, a checkpoint every
    ``every`` steps (all kept) and last.ckpt, the divergence guard and ``callbacks`` (class paths, e.g.
    ``resume_helpers.Recorder``), no progress bar or model summary; ``trainer``: other Trainer settings
    (``val_check_interval=8`` ...); ``data``: init_args of the data module (``batch_size``, ``num_workers`` ...)."""
    checkpoint = {"every_n_train_steps": every, "save_last": True, "save_top_k": -1,
                  "monitor": None}  # else merged from cli.yaml's list, item by item, when the lists are as long
    config: dict[str, Any] = {"trainer": {
        "max_steps": max_steps, **trainer, "enable_progress_bar": False, "enable_model_summary": False,
        "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": checkpoint},
                      {"class_path": "lit_lm.callbacks.DivergenceGuard"},
                      *({"class_path": c} for c in callbacks)]}}
    if data:
        config["data"] = {"init_args": data}
    return yaml.safe_dump(config, sort_keys=False)


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


# ---- for test_resume_workers_ddp.py: an lr recorder, and fits launched as killable process groups ---------------


class LrRecorder(L.Callback):
    """Appends ``{"step", "lr"}`` per training batch (the rate the coming optimizer step uses) to
    ``$LIT_LM_LR_RECORD`` (``{rank}`` as above), so a schedule can be followed across a resume."""

    def on_train_batch_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any, batch_idx: int) -> None:
        path = _path("LIT_LM_LR_RECORD", trainer)
        if path is not None:
            with open(path, "a") as f:
                f.write(json.dumps({"step": trainer.global_step, "lr": trainer.optimizers[0].param_groups[0]["lr"]}) + "\n")


REPO = Path(__file__).resolve().parents[2]


def launch_fit(args: list[str], env: dict[str, str]) -> "subprocess.Popen":
    """``python -m lit_lm fit ARGS`` from the checkout, with this directory on PYTHONPATH (the callbacks above), in a
    session of its own: ``finish`` can then SIGKILL whatever it left (a DDP rank, loader workers) by its group id."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", **env,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "lit_lm", "fit", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: "subprocess.Popen", expect_rc: int, timeout: float = 900) -> str:
    """Wait for a ``launch_fit`` process (a generous timeout: the machine may be slow), kill what is left of its
    group, check the exit status and return its output."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group is this fit's alone (start_new_session)
        except ProcessLookupError:
            pass
        if proc.returncode is None:
            proc.communicate()
    assert proc.returncode == expect_rc, f"exit {proc.returncode}, expected {expect_rc}:\n{out[-4000:]}"
    return out


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def assert_same_weights_and_optimizer(full: dict, resumed: dict, label: str = "resumed") -> None:
    """Two checkpoints of one step hold bitwise the same weights and AdamW moments."""
    assert full["global_step"] == resumed["global_step"]
    dw = max_abs_diff(full["state_dict"], resumed["state_dict"])
    print(f"\n{label}: max |dw| against the uninterrupted run at step {full['global_step']}: {dw}")
    assert dw == 0.0
    opt_a, opt_b = full["optimizer_states"][0]["state"], resumed["optimizer_states"][0]["state"]
    assert opt_a.keys() == opt_b.keys()
    for i in opt_a:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_a[i][name], opt_b[i][name]), f"param {i} {name}"


class StallLastSave(L.Callback):
    """For the kill-during-save test: from global step ``$LIT_LM_STALL_SAVE_AT`` on, a write of ``last.ckpt`` stops
    half-way. The first half of the bytes is flushed to the writer's temporary file, the line
    ``lit-lm-test: stalled writing <temporary file name>`` goes to stdout, and the process sleeps there until it is
    killed (the test sends SIGKILL), so the kill lands inside the checkpoint write, with a partial file on disk.

    It wraps ``torch.save``, which AtomicCheckpointIO calls with the open temporary file (named by its descriptor:
    the file name comes from /proc, so this is Linux only)."""

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        threshold = os.environ.get("LIT_LM_STALL_SAVE_AT")
        if threshold is None or getattr(torch.save, "_stalls", False):
            return
        import io
        import sys
        import time

        real_save = torch.save

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            try:
                name = os.path.basename(os.readlink(f"/proc/self/fd/{f.fileno()}"))
            except (AttributeError, OSError):  # a path or an in-memory buffer: not a checkpoint write to stall
                name = ""
            if not (isinstance(obj, dict) and obj.get("global_step", -1) >= int(threshold)
                    and name.startswith(".last.ckpt.")):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            print(f"lit-lm-test: stalled writing {name}", file=sys.stdout, flush=True)
            time.sleep(600)  # killed here

        save._stalls = True  # type: ignore[attr-defined]
        torch.save = save


# ---- for test_ddp.py: what each rank's validation shard holds, to recompute the synced metrics by hand ----------


class ValShardCounts(L.Callback):
    """Writes, per validation (sanity check excluded), one JSON line to ``$LIT_LM_VAL_COUNTS`` (``{rank}`` as
    above) with this rank's per-batch sums: masked tokens, masked tokens predicted right, the MLM loss summed over
    them, and the same for the NSP pairs. They come from the module's own ``_losses`` on the batch, in eval mode
    as the validation step ran it, so a test can compute the metrics over the union of the ranks' shards and
    compare them with what was logged."""

    def on_validation_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        self._batches: list[dict] = []

    def on_validation_batch_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule", outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        with torch.no_grad():
            out = pl_module._losses(batch)
        targets = out["mlm_targets"]
        real = targets != -100
        n_masked = int(real.sum())
        record = {"index": batch["index"].tolist(), "n_masked": n_masked,
                  "mlm_right": int((out["mlm_logits"].argmax(-1) == targets)[real].sum()),
                  "mlm_loss_sum": float(out["mlm_loss"]) * n_masked}
        if "nsp_loss" in out:
            n_pairs = int(batch["next_sentence_label"].shape[0])
            record.update({"n_pairs": n_pairs, "nsp_loss_sum": float(out["nsp_loss"]) * n_pairs,
                           "nsp_right": int((out["nsp_logits"].argmax(-1) == batch["next_sentence_label"]).sum())})
        self._batches.append(record)

    def on_validation_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        path = _path("LIT_LM_VAL_COUNTS", trainer)
        if path is None or trainer.sanity_checking:
            return
        with open(path, "a") as f:
            f.write(json.dumps({"step": trainer.global_step, "batches": self._batches}) + "\n")
