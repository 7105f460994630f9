"""MLM + NSP pretraining as a LightningModule (Devlin et al., 2019, section 3.1)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import lightning as L
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_info
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lit_lm.config import BertConfig, option, resolve_config
from lit_lm.flops import training_flops
from lit_lm.mixture_metrics import PerSourceMLM
from lit_lm.model import BertForPreTraining
from lit_lm import rng_states
from lit_lm.optim import Schedule, adamw, clip_gradients, time_budget, warmup_decay, warmup_steps
from lit_lm.step_stats import StepStats, logging_step

if TYPE_CHECKING:  # pragma: no cover
    from lit_lm.weights import Source


def _masked(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked tokens' flat positions and labels, bucketed with ignored filler, as the collator lists them
    (data_modules/shapes.py); for a batch built elsewhere they are found here, which waits for the device."""
    if "masked_index" in batch:
        return batch["masked_index"], batch["masked_labels"]
    labels = batch["labels"].reshape(-1)
    index = (labels != -100).nonzero().squeeze(1)
    return index, labels[index]


_REGULARISATION = ("hidden_dropout", "attention_dropout", "initializer_range")
"""BertConfig fields a resumed run or --model.init_from may change (training only; the weights fit either way)."""


def source_config(source: BertConfig, config: Any, vocab_size: int, overrides: Optional[dict[str, Any]],
                  notice: str) -> BertConfig:
    """The architecture and vocabulary of ``source``, whatever ``config``, ``vocab_size`` and ``config_overrides``
    ask for (the weights fit nothing else), with the regularisation of the overrides (``_REGULARISATION``). One line,
    ``notice`` followed by "replace the config's: ...", says which of the requested values it replaced.

    ``source``: the config of an ``--model.init_from`` source (MLMPretraining reads it), or that of the checkpoint of
    such a run when it resumes (the CLI reads it, and the source is not read)."""
    overrides = overrides or {}
    asked = resolve_config(resolve_config(config), "--model.config_overrides", **{**overrides, "vocab_size": vocab_size})
    built = resolve_config(source, "--model.config_overrides",
                           **{k: v for k, v in overrides.items() if k in _REGULARISATION})
    replaced = [f"{k} {getattr(asked, k)} -> {v}" for k, v in built.asdict().items()
                if k not in _REGULARISATION and getattr(asked, k) != v]
    if replaced:
        name = f" ({config})" if isinstance(config, str) else ""
        rank_zero_info(f"{notice} replace the config's{name}: " + ", ".join(replaced))
    return built


class MLMPretraining(L.LightningModule):
    """BERT pretraining: masked language modelling + next sentence prediction, loss = mlm + nsp."""

    def __init__(
        self,
        config: Union[str, BertConfig] = "base",
        vocab_size: int = 30522,
        config_overrides: Optional[dict[str, Any]] = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        warmup_steps: Union[int, float] = 10000,
        schedule: Schedule = "linear",
        budget: Literal["steps", "time"] = "steps",
        schedule_steps: Optional[int] = None,
        nsp: bool = True,
        sparse_prediction: bool = True,
        compile: bool = False,
        plateau_check: Optional[float] = 0.25,
        init_from: Optional[str] = None,
    ) -> None:
        """
        Args:
            config: Model size (tiny, mini, small, medium, base, large), a path to a HuggingFace BERT config.json,
                or the BertConfig fields themselves (see --model.config.help).
            vocab_size: WordPiece vocabulary size; linked from --data.vocab_size so data and model agree.
            config_overrides: BertConfig fields to change on top of ``config``, e.g. {hidden_dropout: 0.0}.
            lr: Peak learning rate of AdamW (BERT: 1e-4 at batch 256).
            betas: AdamW betas.
            eps: AdamW epsilon (BERT: 1e-6).
            weight_decay: Decoupled weight decay on weight matrices; biases and LayerNorm are not decayed.
            warmup_steps: Linear warmup length: optimizer steps (int) or a fraction of the total (float < 1).
            schedule: Decay after warmup: linear to zero (BERT), cosine to zero, or constant.
            budget: What the schedule runs over: 'steps' (to ``trainer.max_steps``) or 'time' (to ``trainer.max_time``:
                the rate reaches zero when the time does, however many steps fit; warmup as steps or a float < 1,
                a fraction of the time).
            schedule_steps: Optimizer steps the warmup and decay span (None: ``trainer.max_steps``); set it above
                max_steps to run one schedule in phases, as BERT's 90% of the steps at length 128, then 10% at 512.
            nsp: Train the next-sentence-prediction head too (turn off for MLM-only, as RoBERTa).
            sparse_prediction: Send only the masked positions through the vocabulary projection (same loss, less work).
            compile: Compile the encoder with torch.compile (costs 10-30 s at start; pays off on GPUs).
            plateau_check: Share of the budget (steps or time) after which the run says in one line that val/mlm_acc
                is still below the left-bigram count baseline of the validation split (the data module computes the
                baselines and they are logged beside val/mlm_acc); None: never.
            init_from: Continued pretraining: start from the weights of a lit-lm pretraining checkpoint (.ckpt) or a
                HuggingFace BERT directory (BertForPreTraining, BertForMaskedLM or BertModel; heads it lacks start
                from BERT's initialisation, said in one line). Its architecture and vocabulary replace ``config``,
                ``vocab_size`` and the architecture fields of ``config_overrides`` (said in one line); dropout and
                initializer_range may still be overridden. Weights only: the optimizer, step count, schedule and
                time budget start afresh (``--ckpt_path`` resumes a run instead: the checkpoint then gives the
                architecture, weights and tokenizer, and the source is not read).
        """
        super().__init__()
        checks = [
            (lr > 0, f"--model.lr={lr}: expected > 0"),
            (weight_decay >= 0, f"--model.weight_decay={weight_decay}: expected >= 0"),
            (warmup_steps >= 0, f"--model.warmup_steps={warmup_steps}: expected >= 0 (steps, or a fraction < 1)"),
            (plateau_check is None or 0 < plateau_check <= 1,
             f"--model.plateau_check={plateau_check}: expected a share of the budget in (0, 1], or null"),
            (init_from is None or str(init_from).strip() != "",
             "--model.init_from '': expected a lit-lm pretraining .ckpt or a HuggingFace BERT directory (null: none)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        source = None
        if init_from is None:
            self.config = resolve_config(resolve_config(config), "--model.config_overrides",
                                         **{**(config_overrides or {}), "vocab_size": vocab_size})
        else:
            from lit_lm.weights import load

            with option("--model.init_from"):
                source = load(init_from, "--model.init_from")
            self.config = source_config(source.config, config, vocab_size, config_overrides,
                                        f"init_from {source.path}: the source's architecture and vocabulary")
        # Hyper-parameters as plain values: a checkpoint then loads with torch.load(weights_only=True). They record
        # what was built, the config and its vocabulary (with --model.init_from the source's, as the data module's
        # --data.vocab_size says), over the arguments (under LightningCLI: its parsed config, what was asked).
        self.save_hyperparameters(ignore=["config", "config_overrides"])
        self.save_hyperparameters({**self.hparams, "config": self.config.asdict(), "vocab_size": self.config.vocab_size})
        self.model = BertForPreTraining(self.config)
        self.tokenizer_json: Optional[str] = None  # set from the data module; saved in every checkpoint
        self._source_tokenizer: Optional[str] = None  # the tokenizer of --model.init_from, whose vocabulary must stay
        if source is not None:
            self._load_source(source)
        if not nsp:  # MLM only: the pooler and NSP head get no gradient; frozen, DDP has no unused parameter
            self.model.bert.pooler.requires_grad_(False)
            self.model.nsp_head.requires_grad_(False)
        if compile:  # in place: the state dict keeps its keys (no "_orig_mod." prefix in checkpoints)
            self.model.compile(dynamic=True)
        V = self.config.vocab_size
        self.val_mlm_acc = MulticlassAccuracy(num_classes=V, average="micro", ignore_index=-100)
        self.val_nsp_acc = MulticlassAccuracy(num_classes=2, average="micro")
        self.val_mlm_loss, self.val_nsp_loss = MeanMetric(), MeanMetric()
        self.val_sources: Optional[PerSourceMLM] = None  # with several --data.sources: built in setup
        self.source_names: list[str] = []
        self.flops_per_batch = 0  # read by TokenThroughput after each training batch
        self._stats = StepStats()
        self.baselines: Optional[dict] = None  # count baselines of the validation split, from the data module
        self._plateau_said = False

    def _load_source(self, source: "Source") -> None:
        """The weights of --model.init_from (lit_lm.weights.load has checked that they fit); the parts the source
        lacks keep BERT's initialisation, and one line says which."""
        with torch.no_grad():
            self.model.load_state_dict(source.state, strict=False)
        self._source_tokenizer = self.tokenizer_json = source.tokenizer_json
        rank_zero_info(source.summary())

    # ---- steps -------------------------------------------------------------------------------------------
    def _losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        sparse = self.hparams.sparse_prediction
        masked, targets = _masked(batch) if sparse else (None, batch["labels"].view(-1))
        mlm_logits, nsp_logits = self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                                            masked, batch.get("token_index"))
        mlm_logits = mlm_logits.view(-1, mlm_logits.shape[-1])  # (M or B*T, V); rows with target -100 are ignored
        out = {"mlm_loss": F.cross_entropy(mlm_logits.float(), targets, ignore_index=-100)}
        out["mlm_logits"], out["mlm_targets"], out["mlm_index"] = mlm_logits, targets, masked
        out["nsp_logits"] = nsp_logits
        out["loss"] = out["mlm_loss"]
        if self.hparams.nsp:
            out["nsp_loss"] = F.cross_entropy(nsp_logits.float(), batch["next_sentence_label"])
            out["loss"] = out["mlm_loss"] + out["nsp_loss"]
        return out

    def step_flops(self, batch_size: int, seq_len: int, mlm_probability: float = 0.15) -> int:
        """Training FLOPs of one batch of full-length sequences (the most a batch of that shape costs)."""
        n = batch_size * seq_len
        n_predicted = round(mlm_probability * n) if self.hparams.sparse_prediction else n
        return training_flops(self.config, n, seq_len, n_predicted)

    def _flops(self, batch: dict[str, torch.Tensor]) -> int:
        """From the counts the collator computed on the CPU (a batch built elsewhere: counted here, with a sync)."""
        B, T = batch["input_ids"].shape
        n_real = batch["n_tokens"] if "n_tokens" in batch else int(batch["attention_mask"].sum())
        n_masked = batch["n_masked"] if "n_masked" in batch else int((batch["labels"] != -100).sum())
        return training_flops(self.config, n_real, T, n_masked if self.hparams.sparse_prediction else B * T,
                              n_query_rows=B * T)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._losses(batch)
        with torch.no_grad():
            valid = out["mlm_targets"] != -100
            stats = {"loss": out["loss"], "mlm_loss": out["mlm_loss"],
                     "mlm_correct": ((out["mlm_logits"].argmax(-1) == out["mlm_targets"]) & valid).sum(),
                     "mlm_count": valid.sum(), "steps": torch.ones((), device=valid.device)}
            if self.hparams.nsp:
                stats["nsp_loss"] = out["nsp_loss"]
                stats["nsp_acc"] = (out["nsp_logits"].argmax(-1) == batch["next_sentence_label"]).float().mean()
            self._stats.add(**stats)
        self.flops_per_batch = self._flops(batch)
        if logging_step(self.trainer):
            s = self._stats.pop()
            n = s.pop("steps")
            metrics = {"train/loss": s["loss"] / n, "train/mlm_loss": s["mlm_loss"] / n,
                       "train/mlm_acc": s["mlm_correct"] / s["mlm_count"].clamp(min=1),
                       "train/perplexity": torch.exp(s["mlm_loss"] / n)}
            if self.hparams.nsp:
                metrics.update({"train/nsp_loss": s["nsp_loss"] / n, "train/nsp_acc": s["nsp_acc"] / n})
            self.log_dict(metrics, batch_size=batch["input_ids"].shape[0])
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self._losses(batch)
        labels = batch["labels"]
        if batch_idx == 0:  # a few decoded examples for TensorBoard's text panel
            top1 = out["mlm_logits"].argmax(-1)
            if self.hparams.sparse_prediction:  # filler rows write position 0, a [CLS] that is never shown
                pred = torch.full_like(labels, -100).view(-1).index_copy(0, out["mlm_index"], top1).view_as(labels)
            else:
                pred = top1.view_as(labels)
            self._examples = (batch["input_ids"][:3].cpu(), labels[:3].cpu(), pred[:3].cpu(), batch["attention_mask"][:3].cpu())
        n_masked = batch["n_masked"] if "n_masked" in batch else int((labels != -100).sum())
        self.flops_per_batch = self._flops(batch) // 3  # forward only: a third of a training step's FLOPs
        # Weighted by tokens / pairs, so the epoch value is the corpus mean, not a mean of batch means.
        self.val_mlm_loss.update(out["mlm_loss"], n_masked)
        self.val_mlm_acc.update(out["mlm_logits"], out["mlm_targets"])
        if self.hparams.nsp:
            self.val_nsp_loss.update(out["nsp_loss"], batch["input_ids"].shape[0])
            self.val_nsp_acc.update(out["nsp_logits"], batch["next_sentence_label"])
        if self.val_sources is not None and "source" in batch:  # the source of each scored row: its sequence's
            T = labels.shape[1]
            flat = out["mlm_index"] if self.hparams.sparse_prediction else torch.arange(labels.numel(), device=labels.device)
            self.val_sources.update(out["mlm_logits"], out["mlm_targets"], batch["source"][flat // T])

    def _epoch_metrics(self, split: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The epoch's metrics under ``split/`` (val or test), then each source's (``split/<name>/...``) of a
        mixture; the accumulators are reset for the next epoch."""
        mlm_loss = self.val_mlm_loss.compute()
        metrics = {f"{split}/mlm_loss": mlm_loss, f"{split}/mlm_acc": self.val_mlm_acc.compute(),
                   f"{split}/perplexity": torch.exp(mlm_loss)}
        if self.hparams.nsp:
            metrics.update({f"{split}/nsp_loss": self.val_nsp_loss.compute(), f"{split}/nsp_acc": self.val_nsp_acc.compute()})
        per_source = {}
        if self.val_sources is not None and self.val_sources.update_called:
            loss, acc = self.val_sources.compute()
            for i, name in enumerate(self.source_names):
                per_source.update({f"{split}/{name}/mlm_loss": loss[i], f"{split}/{name}/mlm_acc": acc[i]})
        for m in (self.val_mlm_loss, self.val_nsp_loss, self.val_mlm_acc, self.val_nsp_acc, self.val_sources):
            if m is not None:
                m.reset()
        return metrics, per_source

    def on_validation_epoch_end(self) -> None:
        metrics, per_source = self._epoch_metrics("val")
        # sync_dist: already synced by torchmetrics' compute(); it only keeps Lightning from warning
        self.log_dict(metrics, prog_bar=True, sync_dist=True)
        if per_source:
            self.log_dict(per_source, sync_dist=True)
        self._log_examples()
        self._check_plateau(float(metrics["val/mlm_acc"]))

    def _check_plateau(self, acc: float) -> None:
        """Log the count baselines beside val/mlm_acc and say once, in one line, when the model is still below the
        left-bigram baseline past ``plateau_check`` of its budget: it has learned frequencies, not context."""
        if not self.baselines or self.trainer.sanity_checking:
            return
        names = ("unigram", "left_bigram", "both_neighbours")
        self.log_dict({f"val/baseline_{n}_acc": float(self.baselines[n]) for n in names if n in self.baselines},
                      sync_dist=True)  # the same on every rank; this only keeps Lightning from warning
        if self.trainer.state.fn != "fit":  # a plain validate has no budget
            return
        spent, share = self.budget_spent(), self.hparams.plateau_check
        bigram = self.baselines.get("left_bigram")
        if share is None or spent is None or bigram is None or spent < share or acc >= bigram or self._plateau_said:
            return
        self._plateau_said = True
        rank_zero_info(
            f"plateau: val/mlm_acc {100 * acc:.1f}% at step {self.global_step} ({100 * spent:.0f}% of the budget) is "
            f"still below the left-bigram count baseline {100 * bigram:.1f}% (unigram {100 * self.baselines['unigram']:.1f}%): "
            f"the model predicts word frequencies, not context; see README 'Small-budget pretraining' for the levers")

    def budget_spent(self) -> Optional[float]:
        """The share of the training budget spent: of --trainer.max_time with budget 'time', else of the steps."""
        if self.hparams.budget == "time":
            timer = self._timer()
            return None if timer is None else timer.time_elapsed() / (timer.time_elapsed() + max(0.0, timer.time_remaining()))
        total = self.hparams.get("schedule_steps") or self.trainer.estimated_stepping_batches  # a phase of a longer schedule
        return self.global_step / total if math.isfinite(total) and total > 0 else None

    def _timer(self) -> Optional[Timer]:
        return next((cb for cb in self.trainer.callbacks if isinstance(cb, Timer) and cb.time_remaining() is not None), None)

    def _log_examples(self) -> None:
        """Masked predictions as text: each masked token shown as **predicted** (true)."""
        examples, self._examples = getattr(self, "_examples", None), None
        experiment = getattr(self.logger, "experiment", None)
        if examples is None or self.tokenizer_json is None or not hasattr(experiment, "add_text"):
            return
        if getattr(self, "_tokenizer", None) is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
        ids, labels, preds, att = examples
        decode = self._tokenizer.id_to_token
        lines = []
        for r in range(ids.shape[0]):
            words = [
                f"**{decode(int(preds[r, t]))}** ({decode(int(labels[r, t]))})" if labels[r, t] != -100 else decode(int(ids[r, t]))
                for t in range(int(att[r].sum()))
            ]
            lines.append(" ".join(words))
        experiment.add_text("val/masked_predictions", "\n\n".join(lines), self.global_step)

    test_step = validation_step

    def on_test_epoch_end(self) -> None:
        metrics, per_source = self._epoch_metrics("test")
        self.log_dict({**metrics, **per_source})

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Top-1 predictions at the masked positions and the NSP probability that B follows A."""
        masked = batch["labels"] != -100
        mlm_logits, nsp_logits = self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], masked)
        return {"index": batch["index"], "mlm_pred": mlm_logits.argmax(-1), "is_next_prob": nsp_logits.softmax(-1)[:, 0]}

    # ---- optimisation ------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        h = self.hparams
        optimizer = adamw(self.model, h.lr, tuple(h.betas), h.eps, h.weight_decay)
        if h.get("schedule_steps") is not None and h.budget == "time":
            raise ValueError("--model.schedule_steps sets the length of a step schedule: not with --model.budget time")
        if h.budget == "time":
            timer = self._timer()
            if timer is None:
                raise ValueError("--model.budget time needs --trainer.max_time (e.g. 00:01:00:00 for an hour)")
            duration = timer.time_elapsed() + timer.time_remaining()  # the budget, whatever share a resume has spent
            elapsed = lambda: timer.time_elapsed() / duration  # noqa: E731
            return {"optimizer": optimizer, "lr_scheduler": time_budget(optimizer, h.warmup_steps, h.schedule, elapsed)}
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):  # no max_steps, no max_epochs: the warmup and decay would have no end to reach
            raise ValueError(f"--trainer.max_steps {self.trainer.max_steps}: the step schedule needs a finite number "
                             f"of steps; give a finite --trainer.max_steps, or --model.budget time to schedule over "
                             f"--trainer.max_time")
        total = int(total)
        if h.get("schedule_steps") is not None:
            # BERT's recipe trains one 1M-step schedule in two runs (90% at length 128, 10% at 512; Devlin et al.,
            # 2019, A.2): the first stops at max_steps 900k while the rate decays towards zero at 1M. A resume
            # rebuilds this lambda from the hyper-parameters and the scheduler state only holds the step.
            if h.schedule_steps < total:  # the rate would sit at zero for the last steps
                raise ValueError(f"--model.schedule_steps={h.schedule_steps}: expected >= --trainer.max_steps={total}")
            total = int(h.schedule_steps)
        return {"optimizer": optimizer, "lr_scheduler": warmup_decay(optimizer, warmup_steps(h.warmup_steps, total), total, h.schedule)}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: Optional[float] = None,
                                    gradient_clip_algorithm: Optional[str] = None) -> None:
        # lit_lm.optim.clip_gradients, not Lightning's: its mixed-precision plugin refuses the fused AdamW
        clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm,
                       getattr(self.trainer.precision_plugin, "scaler", None))

    # ---- the checkpoint carries what rebuilds the model and its tokenizer ----------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        tokenizer_json = getattr(dm, "tokenizer_json", None)
        if tokenizer_json is not None:
            if self._source_tokenizer is not None:  # the embedding rows are the source's token ids
                from lit_lm.weights import check_vocabulary

                given = getattr(dm, "tokenizer_source", None)
                check_vocabulary(tokenizer_json, f"--data.tokenizer {given}" if given else "the data's tokenizer",
                                 self._source_tokenizer, self.hparams.init_from)
            self.tokenizer_json = tokenizer_json
        self.baselines = getattr(dm, "baselines", None)
        names = list(getattr(dm, "source_names", None) or [])
        if len(names) > 1 and self.val_sources is None:  # a mixture: metrics per source too (moved with the module)
            self.source_names = [n.replace("/", "_") for n in names]  # a hub name's "/" would nest the tag
            self.val_sources = PerSourceMLM(len(names))
        max_seq_len = getattr(dm, "max_seq_len", None)
        if max_seq_len is not None and max_seq_len > self.config.max_position_embeddings:
            raise ValueError(f"--data.max_seq_len={max_seq_len} exceeds the model's position table "
                             f"(max_position_embeddings={self.config.max_position_embeddings})")

    def on_fit_start(self) -> None:
        # Register the final val metrics with the hyper-parameters so TensorBoard's HPARAMS tab compares runs.
        if self.logger is not None:
            names = ["val/mlm_loss", "val/mlm_acc", "val/perplexity"] + (["val/nsp_acc"] if self.hparams.nsp else [])
            self.logger.log_hyperparams(self.hparams, {name: float("nan") for name in names})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["bert_config"] = self.config.asdict()
        if self.tokenizer_json is not None:
            checkpoint["tokenizer"] = self.tokenizer_json
        checkpoint["lit_lm_kind"] = "pretraining"
        checkpoint["rng_states"] = rng_states.capture(self)  # dropout: a resumed run drops the same units

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The model is built from the config before the checkpoint is read. A YAML whose config_overrides change the
        # architecture (e.g. configs/cpu_hour.yaml's ALiBi on a checkpoint trained without it) would resume another
        # model than the one saved, silently where the option has no weights: refuse it. Dropout may change.
        saved = checkpoint.get("bert_config") or {}
        built = self.config.asdict()
        changed = [k for k, v in saved.items() if k in built and k not in _REGULARISATION and built[k] != v]
        if changed:
            raise ValueError(
                f"--ckpt_path: the checkpoint's model has {', '.join(f'{k}={saved[k]!r}' for k in changed)}, the "
                f"config builds {', '.join(f'{k}={built[k]!r}' for k in changed)}: resume with the config it was "
                f"trained with (drop the --model.config / config_overrides that change it)")
        self.tokenizer_json = checkpoint.get("tokenizer", self.tokenizer_json)
        self._rng_to_restore = checkpoint.get("rng_states")
        # An --model.init_from run resumed is built without reading its source (lit_lm.lightning_cli): its
        # hyper-parameters keep naming the source the weights started from.
        if self.hparams.get("init_from") is None:
            self.hparams["init_from"] = checkpoint.get("hyper_parameters", {}).get("init_from")

    def on_train_end(self) -> None:
        if self.hparams.compile:
            # Past torch._dynamo's recompile limit a compiled module silently runs eager: say how many graphs ran.
            from torch._dynamo.utils import counters

            graphs = counters["stats"]["unique_graphs"]
            limit = torch._dynamo.config.recompile_limit if hasattr(torch._dynamo.config, "recompile_limit") else None
            rank_zero_info(f"torch.compile: {graphs} graph(s) compiled (recompile limit {limit})")

    def on_train_start(self) -> None:
        # Restored here, not at load time, so nothing between loading and the first step can consume it.
        states, self._rng_to_restore = getattr(self, "_rng_to_restore", None), None
        if states is not None:
            rng_states.restore(self, states)
