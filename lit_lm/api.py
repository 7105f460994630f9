"""Use a trained lit-lm checkpoint from Python: fill masks, next-sentence probabilities, attention maps, classify.

    >>> import lit_lm
    >>> bert = lit_lm.load("runs/quickstart/checkpoints/last.ckpt")          # a pretraining checkpoint
    >>> bert.fill_mask("the capital of france is [MASK] .")                  # one list per [MASK]
    [[{'token': 'paris', 'score': 0.41}, {'token': 'lyon', 'score': 0.07}, ...]]
    >>> bert.next_sentence("he opened the door .", "the room was dark .")   # P(B follows A)
    0.83
    >>> tokens, maps = bert.attention("the cat sat on the mat .")          # maps: (layers, heads, T, T)
    >>> clf = lit_lm.load("runs/quickstart_sst2/checkpoints/last.ckpt")     # a classification checkpoint
    >>> clf.classify(["a gorgeous , witty film", "a dull mess"])
    [{'label': '1', 'score': 0.93}, {'label': '0', 'score': 0.88}]

Everything runs in eval mode (no dropout) under ``torch.no_grad``, on the CPU unless ``device`` says otherwise.
Checkpoints are read with ``torch.load(weights_only=True)`` (they hold plain values only) and the model is rebuilt
from lit_lm.model alone: no Lightning import, so loading is quick in a fresh process.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from tokenizers import Encoding, Tokenizer

from lit_lm.config import BertConfig
from lit_lm.model import POOLINGS, BertForPreTraining, BertForSequenceClassification, BertModel
from lit_lm.weights import read_checkpoint

Text = Union[str, tuple[str, str]]
"""One input: a sentence, or a sentence pair ``(a, b)`` encoded as ``[CLS] a [SEP] b [SEP]``."""


def _read(path: Path) -> dict[str, Any]:
    """The checkpoint dict of a lit-lm .ckpt that carries its tokenizer; one-line ValueErrors naming the file
    otherwise (lit_lm.weights, which imports no Lightning)."""
    ckpt = read_checkpoint(path)
    if "tokenizer" not in ckpt:
        raise ValueError(f"{path}: this lit-lm checkpoint carries no tokenizer (saved before its data module ran?)")
    return ckpt


def load(path: Union[str, Path], device: Union[str, torch.device] = "cpu",
         labels: Optional[list[str]] = None) -> Union["Pretrained", "Classifier"]:
    """Rebuild the model and tokenizer of a lit-lm checkpoint, in eval mode on ``device``.

    Args:
        path: A .ckpt written by ``python -m lit_lm fit`` (pretraining or classification).
        device: Where the model runs.
        labels: Class names of a classification checkpoint, in class-id order; default: the GLUE task's label
            values as its files write them (SST-2: "0" = negative, "1" = positive).

    Returns:
        ``Pretrained`` for a pretraining checkpoint (MLM + NSP heads), ``Classifier`` for a fine-tuned one.

    Example::

        bert = lit_lm.load("runs/quickstart/checkpoints/last.ckpt")
        bert.fill_mask("the capital of france is [MASK] .", top_k=3)
    """
    path = Path(path).expanduser()
    ckpt = _read(path)
    kind = ckpt["lit_lm_kind"]
    if kind == "pretraining":
        return Pretrained(path, ckpt, device)
    if kind == "classification":
        return Classifier(path, ckpt, device, labels)
    raise ValueError(f"{path}: unknown lit_lm_kind {kind!r}; expected 'pretraining' or 'classification'")


def attention_maps(bert: BertModel, input_ids: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None,
                   attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Attention probabilities of every block and head: (B, n_layer, n_head, T, T), rows summing to 1.

    The encoder calls ``scaled_dot_product_attention``, which returns no weights, so a forward hook on each block's
    attention captures its input and the maps are recomputed from it as SDPA defines them, with the block's own
    queries and keys (rotary positions included) and mask (padded keys excluded, ALiBi's bias added):
    ``softmax(q k^T / sqrt(head_size) + bias)``. Run ``bert`` in eval mode: attention dropout is not applied here.
    Rows of padded query positions are returned too (they attend to the real tokens; the encoder discards them).
    """
    captured: list[tuple] = []
    hooks = [block.attn.register_forward_hook(lambda m, args, _out: captured.append((m, args))) for block in bert.blocks]
    try:
        bert(input_ids, token_type_ids, attention_mask)
    finally:
        for h in hooks:
            h.remove()
    maps = []
    for attn, (x, mask, *rest) in captured:
        q, k, _ = attn.heads(x, *rest)  # (B, nh, T, hs) each
        scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
        if mask is not None:
            scores = scores + mask.float() if mask.is_floating_point() else scores.masked_fill(~mask, float("-inf"))
        maps.append(scores.softmax(-1))
    return torch.stack(maps, dim=1)


class _Checkpoint:
    """What both kinds share: the tokenizer, batching and padding, the encoder's attention maps."""

    kind: str

    def __init__(self, path: Path, ckpt: dict[str, Any], device: Union[str, torch.device]) -> None:
        self.path = path
        self.config = BertConfig(**ckpt["bert_config"])
        self.tokenizer = Tokenizer.from_str(ckpt["tokenizer"])
        self.device = torch.device(device)
        self.global_step: Optional[int] = ckpt.get("global_step")
        self.pad_id = self.tokenizer.token_to_id("[PAD]")

    @property
    def encoder(self) -> BertModel:
        raise NotImplementedError

    def _load_state(self, module: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
        try:
            module.load_state_dict(state)
        except RuntimeError as e:  # PyTorch lists every key on many lines
            raise ValueError(f"{self.path}: weights do not fit its bert_config ({str(e).splitlines()[1].strip()})") from None
        return module.to(self.device).eval()

    def encode(self, texts: list[Text]) -> tuple[dict[str, torch.Tensor], list[Encoding]]:
        """Token ids, segment ids and attention mask of a batch, padded to its longest row (on ``device``)."""
        encodings = self.tokenizer.encode_batch([t if isinstance(t, str) else tuple(t) for t in texts])
        T = max(len(e.ids) for e in encodings)
        batch = {name: torch.full((len(encodings), T), fill, dtype=torch.long)
                 for name, fill in (("input_ids", self.pad_id), ("token_type_ids", 0), ("attention_mask", 0))}
        for i, e in enumerate(encodings):
            n = len(e.ids)
            batch["input_ids"][i, :n] = torch.tensor(e.ids)
            batch["token_type_ids"][i, :n] = torch.tensor(e.type_ids)
            batch["attention_mask"][i, :n] = 1
        return {k: v.to(self.device) for k, v in batch.items()}, encodings

    @torch.no_grad()
    def attention(self, text: str, text_pair: Optional[str] = None) -> tuple[list[str], torch.Tensor]:
        """The tokens of ``text`` (or of the pair) and the encoder's attention maps, (n_layer, n_head, T, T).

        ``maps[l, h, i, j]`` is how much token ``i`` attends to token ``j`` in head ``h`` of block ``l``.

        Example::

            tokens, maps = bert.attention("the cat sat on the mat .")
            plt.imshow(maps[-1].mean(0)); plt.xticks(range(len(tokens)), tokens, rotation=90)
        """
        batch, (enc,) = self.encode([text if text_pair is None else (text, text_pair)])
        maps = attention_maps(self.encoder, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        return enc.tokens, maps[0].cpu()

    # the other kind's methods: a one-line error saying which kind this checkpoint is
    def _wrong_kind(self, method: str, needs: str) -> ValueError:
        return ValueError(f"{self.path}: a lit-lm {self.kind} checkpoint; {method}() needs a {needs} checkpoint")

    def fill_mask(self, text: Union[str, list[str]], top_k: int = 5) -> list:
        raise self._wrong_kind("fill_mask", "pretraining")

    def next_sentence(self, a: str, b: str) -> float:
        raise self._wrong_kind("next_sentence", "pretraining")

    def classify(self, texts: Union[Text, list[Text]], batch_size: int = 64) -> list[dict[str, Any]]:
        raise self._wrong_kind("classify", "classification")

    def predict_proba(self, texts: Union[Text, list[Text]], batch_size: int = 64) -> torch.Tensor:
        raise self._wrong_kind("predict_proba", "classification")

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}({self.path}: {c.n_layer} layers, {c.n_head} heads, {c.n_embd} dims, "
                f"{c.vocab_size} tokens, step {self.global_step})")


class Pretrained(_Checkpoint):
    """A pretraining checkpoint: the encoder with its MLM and NSP heads (``model``: lit_lm.model.BertForPreTraining)."""

    kind = "pretraining"

    def __init__(self, path: Path, ckpt: dict[str, Any], device: Union[str, torch.device] = "cpu") -> None:
        super().__init__(path, ckpt, device)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        self.model: BertForPreTraining = self._load_state(BertForPreTraining(self.config), state)
        self.mask_id = self.tokenizer.token_to_id("[MASK]")

    @property
    def encoder(self) -> BertModel:
        return self.model.bert

    @torch.no_grad()
    def fill_mask(self, text: Union[str, list[str]], top_k: int = 5) -> list:
        """The ``top_k`` most likely tokens at every ``[MASK]`` of ``text``, with their probabilities.

        Returns, for one text, one list per ``[MASK]`` (in order) of ``{"token", "score"}`` dicts, most likely first;
        for a list of texts, a list of those. Tokens are WordPieces (``##`` marks a word continuation).

        Example::

            bert.fill_mask("the capital of france is [MASK] .")
            # [[{'token': 'paris', 'score': 0.41}, {'token': 'lyon', 'score': 0.07}, ...]]
        """
        texts = [text] if isinstance(text, str) else list(text)
        batch, _ = self.encode(texts)
        masked = batch["input_ids"] == self.mask_id  # (B, T)
        for t, n in zip(texts, masked.sum(1).tolist()):
            if n == 0:
                raise ValueError(f"fill_mask: no [MASK] token in {t[:80]!r}")
        logits, _ = self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], masked)
        probs, ids = logits.float().softmax(-1).topk(min(top_k, logits.shape[-1]), dim=-1)  # (n_masked, k), row-major
        rows = [[{"token": self.tokenizer.id_to_token(i), "score": p} for i, p in zip(ii, pp)]
                for ii, pp in zip(ids.tolist(), probs.tolist())]
        out, start = [], 0
        for n in masked.sum(1).tolist():
            out.append(rows[start:start + n])
            start += n
        return out[0] if isinstance(text, str) else out

    @torch.no_grad()
    def next_sentence(self, a: str, b: str) -> float:
        """Probability, from the NSP head, that ``b`` is the sentence that follows ``a`` (HF convention: class 0).

        Example::

            bert.next_sentence("he opened the door .", "the room was dark .")   # 0.83
        """
        batch, _ = self.encode([(a, b)])
        _, nsp_logits = self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        return nsp_logits.float().softmax(-1)[0, 0].item()


class Classifier(_Checkpoint):
    """A fine-tuned classification checkpoint (``model``: encoder + classifier; ``labels``: class names by id)."""

    kind = "classification"

    def __init__(self, path: Path, ckpt: dict[str, Any], device: Union[str, torch.device] = "cpu",
                 labels: Optional[list[str]] = None) -> None:
        super().__init__(path, ckpt, device)
        # "model." since the head moved into lit_lm.model (checkpoints written before it hold bare keys)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
        if "classifier.bias" not in state:
            raise ValueError(f"{path}: a classification checkpoint without classifier weights")
        num_labels = state["classifier.bias"].shape[0]
        self.task_name: Optional[str] = ckpt.get("task_name")
        pooling = ckpt.get("pooling", "cls")  # checkpoints written before --model.pooling pooled [CLS]
        if pooling not in POOLINGS:
            raise ValueError(f"{path}: unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
        self.model: BertForSequenceClassification = self._load_state(
            BertForSequenceClassification(self.config, num_labels, pooling=pooling), state)
        if labels is None:
            labels = self._task_labels(num_labels)
        if num_labels > 1 and len(labels) != num_labels:
            raise ValueError(f"labels={labels}: {path} has {num_labels} classes")
        self.labels: list[str] = list(labels)

    def _task_labels(self, num_labels: int) -> list[str]:
        if self.task_name is not None:
            from data_modules.glue_tasks import TASKS  # only for checkpoints that name their task

            if self.task_name in TASKS:
                return list(TASKS[self.task_name].labels)
        return [str(i) for i in range(num_labels)] if num_labels > 1 else []

    @property
    def encoder(self) -> BertModel:
        return self.model.bert

    @property
    def is_regression(self) -> bool:
        return self.model.classifier.out_features == 1

    @torch.no_grad()
    def logits(self, texts: Union[Text, list[Text]], batch_size: int = 64) -> torch.Tensor:
        """Raw classifier outputs (N, num_labels) on the CPU; for regression (STS-B) the scores are column 0."""
        texts = [texts] if isinstance(texts, (str, tuple)) else list(texts)
        out = []
        for i in range(0, len(texts), batch_size):
            batch, _ = self.encode(texts[i:i + batch_size])
            out.append(self.model(**batch).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.model.classifier.out_features)

    def predict_proba(self, texts: Union[Text, list[Text]], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities (N, num_labels), columns in the order of ``labels``.

        Example::

            clf.predict_proba(["a gorgeous , witty film", "a dull mess"])   # tensor([[0.07, 0.93], [0.88, 0.12]])
        """
        if self.is_regression:
            raise ValueError(f"{self.path}: a regression checkpoint ({self.task_name}); use logits()[:, 0] for scores")
        return self.logits(texts, batch_size).softmax(-1)

    def classify(self, texts: Union[Text, list[Text]], batch_size: int = 64) -> list[dict[str, Any]]:
        """The most likely label of each text (a sentence, or a pair ``(a, b)``) and its probability.

        For a regression checkpoint the label is None and the score is the predicted value.

        Example::

            clf.classify(["a gorgeous , witty film", "a dull mess"])
            # [{'label': '1', 'score': 0.93}, {'label': '0', 'score': 0.88}]
        """
        if self.is_regression:
            return [{"label": None, "score": s} for s in self.logits(texts, batch_size)[:, 0].tolist()]
        score, idx = self.predict_proba(texts, batch_size).max(-1)
        return [{"label": self.labels[i], "score": s} for i, s in zip(idx.tolist(), score.tolist())]
