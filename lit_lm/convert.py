"""HuggingFace BERT <-> lit-lm weights, both directions through one key map.

transformers is imported lazily: it is a test/interop extra, never needed to train.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Union

import torch
import torch.nn as nn

from lit_lm.config import BertConfig
from lit_lm.model import BertForPreTraining, BertForSequenceClassification

if TYPE_CHECKING:  # pragma: no cover
    import transformers

# lit-lm key -> HuggingFace key; {i} is a block index. q/k/v are fused here and split there (see below).
_KEY_MAP = {
    "bert.embeddings.word.weight": "bert.embeddings.word_embeddings.weight",
    "bert.embeddings.position.weight": "bert.embeddings.position_embeddings.weight",
    "bert.embeddings.token_type.weight": "bert.embeddings.token_type_embeddings.weight",
    "bert.embeddings.ln.weight": "bert.embeddings.LayerNorm.weight",
    "bert.embeddings.ln.bias": "bert.embeddings.LayerNorm.bias",
    "bert.blocks.{i}.attn.proj.weight": "bert.encoder.layer.{i}.attention.output.dense.weight",
    "bert.blocks.{i}.attn.proj.bias": "bert.encoder.layer.{i}.attention.output.dense.bias",
    "bert.blocks.{i}.ln_1.weight": "bert.encoder.layer.{i}.attention.output.LayerNorm.weight",
    "bert.blocks.{i}.ln_1.bias": "bert.encoder.layer.{i}.attention.output.LayerNorm.bias",
    "bert.blocks.{i}.mlp.fc.weight": "bert.encoder.layer.{i}.intermediate.dense.weight",
    "bert.blocks.{i}.mlp.fc.bias": "bert.encoder.layer.{i}.intermediate.dense.bias",
    "bert.blocks.{i}.mlp.proj.weight": "bert.encoder.layer.{i}.output.dense.weight",
    "bert.blocks.{i}.mlp.proj.bias": "bert.encoder.layer.{i}.output.dense.bias",
    "bert.blocks.{i}.ln_2.weight": "bert.encoder.layer.{i}.output.LayerNorm.weight",
    "bert.blocks.{i}.ln_2.bias": "bert.encoder.layer.{i}.output.LayerNorm.bias",
    "bert.pooler.weight": "bert.pooler.dense.weight",
    "bert.pooler.bias": "bert.pooler.dense.bias",
    "mlm_head.dense.weight": "cls.predictions.transform.dense.weight",
    "mlm_head.dense.bias": "cls.predictions.transform.dense.bias",
    "mlm_head.ln.weight": "cls.predictions.transform.LayerNorm.weight",
    "mlm_head.ln.bias": "cls.predictions.transform.LayerNorm.bias",
    "mlm_head.bias": "cls.predictions.bias",
    "nsp_head.weight": "cls.seq_relationship.weight",
    "nsp_head.bias": "cls.seq_relationship.bias",
}
_QKV = "bert.blocks.{i}.attn.qkv.{p}"
_HF_QKV = "bert.encoder.layer.{i}.attention.self.{name}.{p}"
_VOCAB_KEYS = ("bert.embeddings.word.weight", "mlm_head.bias")


def lit_to_hf_state_dict(state: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """Rename (and unfuse q/k/v, unpad the vocabulary) a lit-lm state dict into HuggingFace's names."""
    out: dict[str, torch.Tensor] = {}
    for i in range(config.n_layer):
        for template, hf in _KEY_MAP.items():
            if "{i}" in template:
                out[hf.format(i=i)] = state[template.format(i=i)]
        for p in ("weight", "bias"):
            for name, t in zip(("query", "key", "value"), state[_QKV.format(i=i, p=p)].chunk(3, dim=0)):
                out[_HF_QKV.format(i=i, name=name, p=p)] = t
    for template, hf in _KEY_MAP.items():
        if "{i}" in template or template not in state:
            continue  # the position table is absent with sinusoidal positions
        t = state[template]
        out[hf] = t[: config.vocab_size] if template in _VOCAB_KEYS else t
    if "cls.predictions.bias" in out:  # encoder-only states (fine-tuned classifiers) have no MLM head
        out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
    return {k: v.detach().clone() for k, v in out.items()}


def hf_to_lit_state_dict(hf: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """The inverse of :func:`lit_to_hf_state_dict`; keys the encoder lacks (heads) are simply absent."""
    out: dict[str, torch.Tensor] = {}
    for template, hf_template in _KEY_MAP.items():
        for i in range(config.n_layer) if "{i}" in template else [None]:
            key, hf_key = template.format(i=i), hf_template.format(i=i)
            if hf_key not in hf:
                continue
            t = hf[hf_key]
            if template in _VOCAB_KEYS and config.padded_vocab_size != t.shape[0]:
                pad = t.new_zeros((config.padded_vocab_size - t.shape[0], *t.shape[1:]))
                t = torch.cat([t, pad])
            out[key] = t
    for i in range(config.n_layer):
        for p in ("weight", "bias"):
            parts = [hf.get(_HF_QKV.format(i=i, name=n, p=p)) for n in ("query", "key", "value")]
            if all(t is not None for t in parts):
                out[_QKV.format(i=i, p=p)] = torch.cat(parts, dim=0)
    if "bert.embeddings.word.weight" in out:
        out["mlm_head.decoder_weight"] = out["bert.embeddings.word.weight"]
    return out


def strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept the checkpoints of BertModel / BertFor* alike: bare encoder keys get the ``bert.`` prefix."""
    return {
        (k if re.match(r"^(bert|cls|classifier)\.", k) else f"bert.{k}"): v
        for k, v in state.items()
        if not k.endswith("position_ids")
    }


def config_from_hf(hf_config: "transformers.BertConfig", **overrides) -> BertConfig:
    return BertConfig.from_hf_dict(hf_config.to_dict(), **overrides)


def from_hf(hf_model: "transformers.PreTrainedModel") -> Union[BertForPreTraining, BertForSequenceClassification]:
    """The lit-lm model with the weights of a HuggingFace BERT: a ``BertForSequenceClassification`` gives ours (same
    logits), any other BERT model a ``BertForPreTraining`` (with the heads it has; the others stay initialised)."""
    config = config_from_hf(hf_model.config)
    hf_state = strip_prefix(hf_model.state_dict())
    state = hf_to_lit_state_dict(hf_state, config)
    if "classifier.weight" in hf_state:
        hf_config = hf_model.config
        # HF's dropout before the classifier: classifier_dropout, or the hidden dropout when that is unset
        p = hf_config.classifier_dropout if hf_config.classifier_dropout is not None else hf_config.hidden_dropout_prob
        model: nn.Module = BertForSequenceClassification(config, hf_config.num_labels, p)
        state = {k: v for k, v in state.items() if k.startswith("bert.")}
        state.update({k: v for k, v in hf_state.items() if k.startswith("classifier.")})
        heads: tuple[str, ...] = ()
    else:
        model, heads = BertForPreTraining(config), ("mlm_head.", "nsp_head.")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(heads)] if heads else missing
    if missing or unexpected:
        raise ValueError(f"HuggingFace weights do not fit: missing {missing}, unexpected {unexpected}")
    return model


def to_hf(model: Union[BertForPreTraining, BertForSequenceClassification]) -> "transformers.PreTrainedModel":
    """The equivalent ``transformers.BertForPreTraining`` or ``BertForSequenceClassification`` (needs the interop
    extra: transformers); a mean-pooling classifier has no transformers equivalent and is refused."""
    if isinstance(model, BertForSequenceClassification) and model.pooling != "cls":
        raise ValueError(f"pooling={model.pooling!r}: HuggingFace's BertForSequenceClassification always pools [CLS] "
                         f"through its tanh pooler, so it would give other logits")
    import transformers

    if isinstance(model, BertForSequenceClassification):
        hf_config = transformers.BertConfig(**{**model.config.to_hf_dict(), "architectures": [type(model).__name__]},
                                            num_labels=model.classifier.out_features, classifier_dropout=model.dropout.p)
        hf_model = transformers.BertForSequenceClassification(hf_config)
        lit = model.state_dict()
        state = lit_to_hf_state_dict({k: v for k, v in lit.items() if k.startswith("bert.")}, model.config)
        state.update({k: v.detach().clone() for k, v in lit.items() if k.startswith("classifier.")})
    else:
        hf_config = transformers.BertConfig(**model.config.to_hf_dict())
        hf_model = transformers.BertForPreTraining(hf_config)
        state = lit_to_hf_state_dict(model.state_dict(), model.config)
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"lit-lm weights do not fit transformers: missing {missing}, unexpected {unexpected}")
    return hf_model.eval()
