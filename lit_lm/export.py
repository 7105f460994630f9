"""Write a lit-lm checkpoint as a HuggingFace BERT directory: ``python -m lit_lm export CKPT OUT_DIR``.

The directory holds what ``transformers`` loads with ``BertForPreTraining`` (pretraining checkpoints) or
``BertForSequenceClassification`` (fine-tuned ones) ``.from_pretrained(out_dir)`` and ``AutoTokenizer``: config.json,
model.safetensors, tokenizer.json, vocab.txt, tokenizer_config.json and special_tokens_map.json. Only the
``safetensors`` package is needed to write it, not ``transformers``. A classifier fine-tuned with ``--model.pooling
mean`` is refused: transformers' ``BertForSequenceClassification`` always pools [CLS] through its tanh pooler.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import torch
from tokenizers import Tokenizer

from lit_lm.config import BertConfig
from lit_lm.convert import lit_to_hf_state_dict

_SPECIAL = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}


def _vocab_lines(tokenizer: Tokenizer) -> list[str]:
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError("the tokenizer's ids are not contiguous 0..n-1; it cannot be written as a vocab.txt")
    return [token for token, _ in by_id]


def _lowercase(tokenizer_json: str) -> bool:
    normalizer = json.loads(tokenizer_json).get("normalizer") or {}
    return bool(normalizer.get("lowercase", True))


def export(checkpoint_path: Union[str, Path], out_dir: Union[str, Path]) -> Path:
    """Write ``checkpoint_path`` (a lit-lm pretraining or classification .ckpt) as a HuggingFace BERT directory."""
    from safetensors.torch import save_file

    from lit_lm.weights import read_checkpoint

    ckpt = read_checkpoint(checkpoint_path)
    kind, config = ckpt["lit_lm_kind"], BertConfig(**ckpt["bert_config"])
    if "tokenizer" not in ckpt:
        raise ValueError(f"{checkpoint_path}: the checkpoint carries no tokenizer; cannot write vocab.txt")
    hf_config = config.to_hf_dict()
    if kind == "pretraining":
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        hf_state = lit_to_hf_state_dict(state, config)
        # tied to the word embeddings: HF's own save_pretrained leaves them out too
        hf_state = {k: v for k, v in hf_state.items() if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}
    elif kind == "classification":
        if ckpt.get("pooling", "cls") != "cls":
            raise ValueError(f"{checkpoint_path}: a classifier fine-tuned with --model.pooling {ckpt['pooling']}; "
                             f"HuggingFace's BertForSequenceClassification always pools [CLS] through its tanh "
                             f"pooler, so it would give other logits (fine-tune with --model.pooling cls to export)")
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}  # BertForSequenceClassification
        hf_state = lit_to_hf_state_dict({k: v for k, v in state.items() if k.startswith("bert.")}, config)
        hf_state["classifier.weight"], hf_state["classifier.bias"] = state["classifier.weight"], state["classifier.bias"]
        num_labels = int(ckpt["num_labels"])
        labels = _label_names(ckpt.get("task_name"), num_labels)
        hf_config.update(architectures=["BertForSequenceClassification"], id2label=dict(enumerate(labels)),
                         label2id={name: i for i, name in enumerate(labels)},
                         problem_type="regression" if num_labels == 1 else "single_label_classification")
        if ckpt.get("task_name"):
            hf_config["finetuning_task"] = ckpt["task_name"]
    else:
        raise ValueError(f"{checkpoint_path}: cannot export a lit-lm {kind!r} checkpoint")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    save_file({k: v.detach().contiguous() for k, v in hf_state.items()}, out / "model.safetensors", metadata={"format": "pt"})

    tokenizer = Tokenizer.from_str(ckpt["tokenizer"])
    (out / "tokenizer.json").write_text(ckpt["tokenizer"])
    (out / "vocab.txt").write_text("".join(f"{t}\n" for t in _vocab_lines(tokenizer)), encoding="utf-8")
    lowercase = _lowercase(ckpt["tokenizer"])
    tokenizer_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": lowercase, "strip_accents": None,
                        "tokenize_chinese_chars": True, "model_max_length": config.max_position_embeddings, **_SPECIAL}
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(_SPECIAL, indent=2) + "\n")
    return out


def _label_names(task_name: str | None, num_labels: int) -> list[str]:
    from data_modules.glue_tasks import TASKS

    task = TASKS.get(task_name or "")
    if task is not None and task.labels and len(task.labels) == num_labels:
        return list(task.labels)
    return [f"LABEL_{i}" for i in range(num_labels)]
