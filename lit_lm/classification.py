"""Sequence classification (GLUE) on top of a pretrained encoder: BERT's fine-tuning recipe (Devlin et al., 2019,
section 4.1): the pooled [CLS] vector -> dropout -> one linear layer, cross-entropy (MSE for STS-B's regression).

The encoder comes from a lit-lm pretraining checkpoint or a HuggingFace BERT directory (``pretrained``), or starts
from random weights (a baseline: the tokenizer then sizes the vocabulary). The checkpoints written here carry the
model config and the tokenizer, like pretraining's, so ``lit_lm.export`` turns them into HuggingFace directories.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Union

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from tokenizers import Tokenizer
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy, MulticlassConfusionMatrix
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from lit_lm.config import BertConfig, option, resolve_config
from lit_lm.model import POOLINGS, BertForSequenceClassification, Pooling
from lit_lm.optim import Schedule, adamw, clip_gradients, warmup_decay, warmup_steps
from lit_lm.step_stats import StepStats, logging_step
# The encoder comes from lit_lm.weights, the one reader of lit-lm checkpoints and HuggingFace directories
# (read_checkpoint and load_pretrained stay importable from here).
from lit_lm.weights import load_pretrained, read_checkpoint  # noqa: F401
from lit_lm.weights import vocabulary as _vocabulary


class MatthewsCorrCoef(MulticlassConfusionMatrix):
    """Matthews correlation as GLUE scores CoLA (its scorer calls sklearn's ``matthews_corrcoef``): computed from
    the confusion matrix, and 0 when every prediction (or every label) is one class. torchmetrics' own returns a
    limit value there instead (0.18 on a test case), which would credit the classic failure, a model that calls
    every sentence acceptable."""

    def compute(self) -> torch.Tensor:
        c = super().compute().double()  # (true, predicted)
        t, p, n = c.sum(1), c.sum(0), c.sum()
        cov_tp = c.trace() * n - (t * p).sum()
        cov_pp, cov_tt = n * n - (p * p).sum(), n * n - (t * t).sum()
        if cov_pp * cov_tt == 0:
            return torch.zeros((), dtype=torch.float32, device=c.device)
        return (cov_tp / torch.sqrt(cov_tt * cov_pp)).float()


# ---------------------------------------------------------------------------------------------------------------------
# the LightningModule


class SequenceClassification(L.LightningModule):
    """A BERT encoder with a classification (or regression) head, fine-tuned on a GLUE task."""

    def __init__(
        self,
        pretrained: Optional[str] = None,
        tokenizer: Optional[str] = None,
        config: Union[str, BertConfig] = "tiny",
        num_labels: int = 2,
        dropout: Optional[float] = 0.1,
        classifier_dropout: float = 0.1,
        pooling: Pooling = "cls",
        lr: float = 2e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        warmup_steps: Union[int, float] = 0.1,
        schedule: Schedule = "linear",
    ) -> None:
        """
        Args:
            pretrained: Encoder weights: a lit-lm pretraining checkpoint (.ckpt) or a HuggingFace BERT directory
                (config.json, model.safetensors or pytorch_model.bin, vocab.txt or tokenizer.json). None: random
                initialisation (a baseline), sized by ``config`` and the tokenizer.
            tokenizer: The tokenizer (tokenizer.json, HF directory or .ckpt); linked from --data.tokenizer. Needed
                without ``pretrained`` (it sets the vocabulary size); with it, it must have the encoder's vocabulary.
            config: Model size (tiny, mini, small, medium, base, large), a config.json path, or a lit-lm checkpoint
                (.ckpt: its encoder's architecture, for a random-init baseline of the same shape); used only without
                ``pretrained``, whose own config wins.
            num_labels: Number of classes, 1 for regression (STS-B); linked from --data.task_name.
            dropout: The encoder's dropout while fine-tuning (hidden and attention; BERT: 0.1), whatever the
                pretraining used: a checkpoint pretrained without dropout and a random init then fine-tune alike.
                None keeps the encoder config's values.
            classifier_dropout: Dropout before the classifier (BERT's run_classifier: 0.1).
            pooling: What the classifier sees: ``cls``, BERT's tanh pooler over the [CLS] vector (exports to
                HuggingFace), or ``mean``, the mean of the last layer's hidden states over the non-padding tokens
                (Sentence-BERT; no pooler), which small encoders fine-tune better with.
            lr: Peak learning rate of AdamW. BERT-base: 2e-5..5e-5; the small sizes (tiny, mini) want 1e-4..3e-4
                (Turc et al., 2019).
            betas: AdamW betas.
            eps: AdamW epsilon.
            weight_decay: Decoupled weight decay on weight matrices; biases and LayerNorm are not decayed.
            warmup_steps: Linear warmup: optimizer steps (int) or a fraction of all steps (float < 1; BERT: 0.1).
            schedule: Decay after warmup: linear to zero (BERT), cosine to zero, or constant.
        """
        super().__init__()
        from data_modules.tokenizer import load_tokenizer

        self._stats = StepStats()  # training statistics, summed on the device between logging steps

        checks = [
            (num_labels >= 1, f"--model.num_labels={num_labels}: expected >= 1 (1 = regression)"),
            (pretrained is None or str(pretrained).strip() != "",
             "--model.pretrained '': expected a lit-lm pretraining .ckpt or a HuggingFace BERT directory "
             "(null for a random initialisation)"),
            (dropout is None or 0.0 <= dropout < 1.0, f"--model.dropout={dropout}: expected 0 <= p < 1"),
            (0.0 <= classifier_dropout < 1.0, f"--model.classifier_dropout={classifier_dropout}: expected 0 <= p < 1"),
            (pooling in POOLINGS, f"--model.pooling={pooling!r}: expected one of {', '.join(POOLINGS)}"),
            (lr > 0, f"--model.lr={lr}: expected > 0"),
            (weight_decay >= 0, f"--model.weight_decay={weight_decay}: expected >= 0"),
            (warmup_steps >= 0, f"--model.warmup_steps={warmup_steps}: expected >= 0 (steps, or a fraction < 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        regularisation = {} if dropout is None else {"hidden_dropout": dropout, "attention_dropout": dropout}
        if pretrained is not None:
            with option("--model.pretrained"):
                pretrained_config, encoder_state, pretrained_tokenizer = load_pretrained(pretrained)
            self.config = resolve_config(pretrained_config, "--model.pretrained", **regularisation)
        # The tokenizer is stated once, as --data.tokenizer, and linked here (the CLI defaults it to the pretrained
        # model's): errors name that option.
        tokenizer_json = None
        if tokenizer is not None and tokenizer != pretrained:
            tokenizer_json = load_tokenizer(tokenizer, "--data.tokenizer").to_str()
        if pretrained is not None:
            given = _vocabulary(tokenizer_json) if tokenizer_json is not None else None
            if given is not None and given != (trained := _vocabulary(pretrained_tokenizer)):
                raise ValueError(f"--data.tokenizer {tokenizer}: its vocabulary differs from the one {pretrained} "
                                 f"was trained with ({len(given)} vs {len(trained)} tokens); leave it unset to use "
                                 f"that one")
            tokenizer_json = pretrained_tokenizer
        elif tokenizer_json is None:
            raise ValueError("--data.tokenizer is required without --model.pretrained: it sets the vocabulary "
                             "size of the randomly initialised encoder")
        n_tokens = Tokenizer.from_str(tokenizer_json).get_vocab_size()
        if pretrained is None:
            if isinstance(config, str) and config.endswith(".ckpt"):
                with option("--model.config"):
                    config = read_checkpoint(Path(config).expanduser())["bert_config"]
            self.config = resolve_config(config, "--model.config", vocab_size=n_tokens, **regularisation)
        if n_tokens > self.config.vocab_size:
            flag = "--data.tokenizer" if tokenizer is not None and tokenizer != pretrained else "--model.pretrained"
            raise ValueError(f"{flag}: tokenizer {tokenizer or pretrained} has {n_tokens} tokens but the encoder of "
                             f"{pretrained or 'config ' + str(config)} has vocab_size={self.config.vocab_size}")
        # Hyper-parameters as plain values: a checkpoint then loads with torch.load(weights_only=True).
        # The tokenizer in use: without --model.tokenizer the pretrained one. The CLI gives the data module the same
        # path, and Lightning refuses to log data and model hparams of one name that disagree.
        tokenizer = tokenizer if tokenizer is not None else pretrained
        self.save_hyperparameters(ignore=["config"])
        self.hparams["config"] = self.config.asdict()
        self.tokenizer_json: str = tokenizer_json
        self.task_name: Optional[str] = None  # from the data module, saved in checkpoints
        self._val_splits: tuple[str, ...] = ("dev",)

        self.model = BertForSequenceClassification(self.config, num_labels, classifier_dropout, pooling)
        if pretrained is not None:
            missing, unexpected = self.model.bert.load_state_dict(encoder_state, strict=False)
            pooler = {f"pooler.{k}" for k in self.model.bert.pooler.state_dict()}
            if unexpected or (missing and set(missing) != pooler):
                raise ValueError(f"--model.pretrained {pretrained}: encoder weights do not fit (missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]})")
            if missing:  # a BertForMaskedLM has no pooler: it keeps BERT's initialisation, as with --model.init_from
                unused = "; unused with --model.pooling mean" if pooling == "mean" else ""
                rank_zero_info(f"pretrained {pretrained}: encoder loaded; pooler initialised (not in the "
                               f"source{unused})")
        self.val_metrics = nn.ModuleList([self._metrics()])

    @property
    def is_regression(self) -> bool:
        return self.hparams.num_labels == 1

    def _metrics(self, metric: str = "accuracy") -> MetricCollection:
        """Validation metrics of one dev split. Accuracy is micro (the fraction of examples right), as GLUE scores
        it; torchmetrics' multiclass default would be the macro average over classes."""
        if self.is_regression:
            return MetricCollection({"loss": MeanMetric(), "pearson": PearsonCorrCoef(), "spearman": SpearmanCorrCoef()})
        m = {"loss": MeanMetric(), "acc": MulticlassAccuracy(self.hparams.num_labels, average="micro")}
        if metric == "f1":
            m["f1"] = BinaryF1Score()
        elif metric == "matthews":
            m["mcc"] = MatthewsCorrCoef(self.hparams.num_labels)
        return MetricCollection(m)

    def _val_prefixes(self) -> list[str]:
        # MNLI: "val" for dev_matched, "val_mismatched" for dev_mismatched
        return ["val"] + [f"val_{s.removeprefix('dev_')}" for s in self._val_splits[1:]]

    def forward(self, input_ids: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None, token_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits (B, num_labels); for regression (num_labels = 1) the scores are ``logits[:, 0]``. ``token_index``:
        the real tokens' positions as the collator lists them (data_modules/shapes.py)."""
        return self.model(input_ids, token_type_ids, attention_mask, token_index)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch.get("token_index")).float()
        if self.is_regression:
            return F.mse_loss(logits[:, 0], batch["labels"].float()), logits[:, 0]
        return F.cross_entropy(logits, batch["labels"]), logits

    # ---- hooks -------------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            return
        dm_tokenizer = getattr(dm, "tokenizer_json", None)
        if dm_tokenizer is not None and _vocabulary(dm_tokenizer) != _vocabulary(self.tokenizer_json):
            raise ValueError(f"--data.tokenizer {getattr(dm, 'tokenizer_source', '')}: its vocabulary differs from "
                             f"the model's ({len(_vocabulary(dm_tokenizer))} vs {len(_vocabulary(self.tokenizer_json))} "
                             f"tokens); leave --data.tokenizer unset to use the one of --model.pretrained")
        task = getattr(dm, "task", None)
        if task is not None:
            if task.num_labels != self.hparams.num_labels:
                raise ValueError(f"--data.task_name {task.name} has {task.num_labels} labels but "
                                 f"--model.num_labels={self.hparams.num_labels}")
            self.task_name = task.name
            self._val_splits = tuple(dm.val_splits)
            # built here, before Lightning moves the module to its device (metric states are not in the state dict)
            self.val_metrics = nn.ModuleList([self._metrics(task.metric) for _ in self._val_splits])

    def on_fit_start(self) -> None:
        # Register the final metrics with the hyper-parameters, so TensorBoard's HPARAMS tab compares runs by them.
        if self.logger is not None:
            names = [f"{p}/{k}" for p, m in zip(self._val_prefixes(), self.val_metrics) for k in m]
            self.logger.log_hyperparams(self.hparams, {name: float("nan") for name in names})  # NaN: no fake point

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch)
        self._stats.add(loss=loss, steps=torch.ones((), device=loss.device))  # summed on the device, read when logged
        if logging_step(self.trainer):
            s = self._stats.pop()
            self.log("train/loss", s["loss"] / s["steps"], batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        loss, out = self._step(batch)
        metrics = self.val_metrics[dataloader_idx]
        labels = batch["labels"]
        metrics["loss"].update(loss, labels.shape[0])  # weighted by examples: the epoch value is the dev-set mean
        preds = out if self.is_regression else out.argmax(-1)
        for name, metric in metrics.items():
            if name != "loss":
                metric.update(preds, labels)

    def on_validation_epoch_end(self) -> None:
        for prefix, metrics in zip(self._val_prefixes(), self.val_metrics):
            if not metrics["loss"].update_called:
                continue
            self.log_dict({f"{prefix}/{k}": v for k, v in metrics.compute().items()}, prog_bar=prefix == "val",
                          add_dataloader_idx=False)
            metrics.reset()

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """Class ids (or scores, for regression) of a batch, with the GLUE indices of its examples."""
        logits = self(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).float()
        pred = logits[:, 0] if self.is_regression else logits.argmax(-1)
        return {"index": batch["index"], "prediction": pred}

    # ---- optimisation ------------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        h = self.hparams
        optimizer = adamw(self, h.lr, tuple(h.betas), h.eps, h.weight_decay)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):  # no max_steps, no max_epochs: the warmup and decay would have no end to reach
            raise ValueError(f"--trainer.max_epochs {self.trainer.max_epochs}: the learning-rate schedule needs a finite "
                             f"number of steps; give a finite --trainer.max_epochs or --trainer.max_steps")
        total = int(total)
        return {"optimizer": optimizer, "lr_scheduler": warmup_decay(optimizer, warmup_steps(h.warmup_steps, total), total, h.schedule)}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: Optional[float] = None,
                                    gradient_clip_algorithm: Optional[str] = None) -> None:
        # lit_lm.optim.clip_gradients, not Lightning's: its mixed-precision plugin refuses the fused AdamW
        clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm,
                       getattr(self.trainer.precision_plugin, "scaler", None))

    # ---- checkpoints carry what rebuilds the model and its tokenizer -------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["bert_config"] = self.config.asdict()
        checkpoint["tokenizer"] = self.tokenizer_json
        checkpoint["lit_lm_kind"] = "classification"
        checkpoint["num_labels"] = self.hparams.num_labels
        checkpoint["pooling"] = self.hparams.pooling  # lit_lm.api and lit_lm.export rebuild the head from it
        if self.task_name is not None:
            checkpoint["task_name"] = self.task_name

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.task_name = checkpoint.get("task_name", self.task_name)
        # validate / predict --ckpt_path pool as the weights were fine-tuned (the state dict is the same either way,
        # so nothing else would notice); a resumed fit must keep its optimizer's parameters: refuse there
        pooling = checkpoint.get("pooling", "cls")  # checkpoints written before --model.pooling pooled [CLS]
        if pooling != self.model.pooling:
            if self._trainer is not None and self.trainer.state.fn == "fit":
                raise ValueError(f"--model.pooling {self.model.pooling}: the checkpoint was fine-tuned with "
                                 f"--model.pooling {pooling}; resume it with that")
            self.model.pooling = self.hparams.pooling = pooling
            self.model.bert.pooler.requires_grad_(pooling == "cls")


# ---------------------------------------------------------------------------------------------------------------------
# GLUE submission files


def write_submission(path: Path, task: Any, index: list[int], prediction: list[float]) -> int:
    """One GLUE submission file: ``index<TAB>prediction``, a row per test example in index order, the label strings
    the server expects (``entailment`` ..., ``0`` / ``1``; STS-B: the score clipped to [0, 5]). ``task``: a
    ``data_modules.glue_tasks.GLUETask``. Returns the number of rows."""
    if task.is_regression:
        values = {i: f"{min(5.0, max(0.0, p)):.3f}" for i, p in zip(index, prediction)}
    else:
        values = {i: task.labels[int(p)] for i, p in zip(index, prediction)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("index\tprediction\n" + "".join(f"{i}\t{values[i]}\n" for i in sorted(values)))
    return len(values)


class GLUEPredictionWriter(BasePredictionWriter):
    """Writes the predictions of ``python -m lit_lm predict`` as GLUE submission files (SST-2: ``SST-2.tsv``, header
    ``index<TAB>prediction``, one row per test example in index order).

    Args:
        output_dir: Where to write; None writes into the run's log directory (e.g. runs/sst2/version_3).
    """

    def __init__(self, output_dir: Optional[str] = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self._rows: dict[int, list[dict[str, torch.Tensor]]] = {}

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = {}

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        self._rows.setdefault(dataloader_idx, []).append({k: v.detach().cpu() for k, v in prediction.items()})

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        task = getattr(dm, "task", None)
        if task is None:
            raise ValueError("GLUEPredictionWriter needs the GLUE data module (data_modules.glue.GLUEDataModule)")
        out_dir = Path(self.output_dir or trainer.log_dir or ".").expanduser()
        for idx, rows in sorted(self._rows.items()):
            index = torch.cat([r["index"] for r in rows])
            pred = torch.cat([r["prediction"] for r in rows])
            if trainer.world_size > 1:  # every rank predicted a share (the distributed sampler may repeat a few)
                index, pred = pl_module.all_gather(index).flatten(), pl_module.all_gather(pred).flatten()
            if not trainer.is_global_zero:
                continue
            path = out_dir / task.submission[idx]
            n = write_submission(path, task, index.tolist(), pred.tolist())  # a repeated index keeps one row
            print(f"wrote {n} predictions to {path}", flush=True)
        self._rows = {}
