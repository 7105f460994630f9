"""Read pretrained BERT weights, with their config and tokenizer, from a lit-lm pretraining checkpoint or a HuggingFace
BERT directory: the one reader behind ``--model.init_from`` (continued pretraining) and ``--model.pretrained``
(fine-tuning).

A lit-lm pretraining checkpoint (.ckpt) carries the encoder, both heads, ``bert_config`` and ``tokenizer``. A
HuggingFace directory holds config.json, model.safetensors or pytorch_model.bin and vocab.txt or tokenizer.json, of a
``BertForPreTraining`` (encoder, pooler, MLM and NSP heads), a ``BertForMaskedLM`` (no pooler, no NSP head) or a bare
``BertModel`` (no heads; its keys lack the ``bert.`` prefix). Weights come back under the keys of
``lit_lm.model.BertForPreTraining``; errors are one line naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from tokenizers import Tokenizer

from data_modules.tokenizer import load_error, load_tokenizer
from lit_lm.config import BertConfig
from lit_lm.convert import hf_to_lit_state_dict, strip_prefix
from lit_lm.model import BertForPreTraining

PARTS = {"pooler": "bert.pooler.", "MLM head": "mlm_head.", "NSP head": "nsp_head."}
"""The parts of BertForPreTraining a source may lack (each then starts from BERT's initialisation), by key prefix."""

_PRETRAINING_HEADS = ("model.mlm_head.", "model.nsp_head.")
_TIED = "mlm_head.decoder_weight"
"""The MLM decoder: the word embeddings under a second name, so never a weight of its own (nor a sign of a head)."""


@dataclass
class Source:
    """What a source holds: its config, its weights (``BertForPreTraining`` keys) and its tokenizer (JSON)."""

    path: Path
    config: BertConfig
    state: dict[str, torch.Tensor]
    tokenizer_json: str

    @property
    def parts(self) -> tuple[str, ...]:
        """The optional parts (``PARTS``) the source has weights for."""
        return tuple(name for name, prefix in PARTS.items()
                     if any(k.startswith(prefix) and k != _TIED for k in self.state))

    def summary(self) -> str:
        """One line: what was loaded and what starts from BERT's initialisation."""
        loaded = ["encoder"] + [p for p in PARTS if p in self.parts]
        missing = [p for p in PARTS if p not in self.parts]
        line = f"init_from {self.path}: {_and(loaded)} loaded"
        return line + (f"; {_and(missing)} initialised (not in the source)" if missing else "")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------------------------------------------------
# reading


def read_checkpoint(path: Union[str, Path], kind: Optional[str] = None, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a lit-lm checkpoint, checking its ``lit_lm_kind`` (one-line errors).
    ``mmap``: map the tensors instead of reading them (cheap when only the config or the tokenizer is wanted)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file (expected a lit-lm .ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except Exception as e:  # truncated, tampered or foreign files raise many different errors
        raise ValueError(f"{path}: not a readable lit-lm checkpoint ({load_error(e)})") from None
    found = ckpt.get("lit_lm_kind") if isinstance(ckpt, dict) else None
    if found is None or "state_dict" not in ckpt or "bert_config" not in ckpt:
        raise ValueError(f"{path}: not a lit-lm checkpoint (no lit_lm_kind / state_dict / bert_config)")
    if kind is not None and found != kind:
        raise ValueError(f"{path}: a lit-lm {found} checkpoint; expected a {kind} checkpoint")
    return ckpt


def _resolve(path: Union[str, Path], flag: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{flag} {path}: no such file or directory (expected a lit-lm pretraining .ckpt or a "
                         f"HuggingFace BERT directory)")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a HuggingFace BERT directory (no config.json)")
    return path


def _pretraining_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    ckpt = read_checkpoint(path, kind="pretraining", mmap=mmap)
    if "tokenizer" not in ckpt:
        raise ValueError(f"{path}: this pretraining checkpoint carries no tokenizer")
    return ckpt


def read_source(path: Union[str, Path], flag: str = "--model.init_from") -> tuple[BertConfig, str]:
    """(config, tokenizer JSON) of a source without reading its weights (a checkpoint's tensors are memory-mapped):
    what the CLI needs before it builds the model."""
    path = _resolve(path, flag)
    if path.is_dir():
        return BertConfig.from_hf_json(path / "config.json"), load_tokenizer(path).to_str()
    ckpt = _pretraining_checkpoint(path, mmap=True)
    return BertConfig(**ckpt["bert_config"]), ckpt["tokenizer"]


def _read(path: Union[str, Path], flag: str) -> Source:
    """The source's config, tokenizer and weights under BertForPreTraining's keys, unchecked against the config."""
    path = _resolve(path, flag)
    if path.is_dir():
        config = BertConfig.from_hf_json(path / "config.json")
        weights = path / "model.safetensors"
        if not weights.is_file():
            weights = path / "pytorch_model.bin"
        if not weights.is_file():
            raise ValueError(f"{path}: no model.safetensors or pytorch_model.bin")
        try:
            if weights.suffix == ".safetensors":
                from safetensors.torch import load_file

                hf_state = load_file(weights)
            else:
                hf_state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, tampered or foreign files raise many different errors
            raise ValueError(f"{weights}: not a readable checkpoint ({load_error(e)})") from None
        state = hf_to_lit_state_dict(strip_prefix(_legacy_names(hf_state)), config)
        return Source(path, config, state, load_tokenizer(path).to_str())
    ckpt = _pretraining_checkpoint(path)
    state = ckpt["state_dict"]
    others = [k for k in state if not k.startswith("model.bert.") and not k.startswith(_PRETRAINING_HEADS)]
    if others:
        raise ValueError(f"{path}: unexpected keys besides the encoder and the MLM/NSP heads: {others[:5]}")
    state = {k.removeprefix("model."): v for k, v in state.items()}
    return Source(path, BertConfig(**ckpt["bert_config"]), state, ckpt["tokenizer"])


def _legacy_names(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LayerNorm.gamma / .beta as .weight / .bias: the names of BERT's first PyTorch port, which checkpoints on the hub
    still use (bert-base-uncased among them; transformers renames them on load too)."""
    def rename(key: str) -> str:
        return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))

    return {rename(k): v for k, v in hf_state.items()}


def load(path: Union[str, Path], flag: str = "--model.init_from") -> Source:
    """Read a source and check that its weights fit its config: the whole encoder, each optional part (pooler, MLM
    head, NSP head) whole or absent, every shape right, a tokenizer that fits the vocabulary. ``flag``: the option
    the path came from, named when it does not exist."""
    source = _read(path, flag)
    with torch.device("meta"):  # the keys and shapes of the model the config builds, without allocating it
        expected = {k: tuple(v.shape) for k, v in BertForPreTraining(source.config).state_dict().items()}
    where = source.path
    unexpected = [k for k in source.state if k not in expected]
    if unexpected:
        raise ValueError(f"{where}: weights its config does not build: {unexpected[:5]}")
    for k, v in source.state.items():
        if tuple(v.shape) != expected[k]:
            raise ValueError(f"{where}: {k} has shape {tuple(v.shape)} but its config makes {expected[k]}")
    missing = [k for k in expected if k not in source.state and k != _TIED]
    optional = tuple(PARTS[p] for p in PARTS if p not in source.parts)
    encoder_missing = [k for k in missing if not k.startswith(optional)]
    if encoder_missing:
        raise ValueError(f"{where}: weights do not fit its config (missing {encoder_missing[:5]}"
                         + (f" and {len(encoder_missing) - 5} more)" if len(encoder_missing) > 5 else ")"))
    n_tokens = Tokenizer.from_str(source.tokenizer_json).get_vocab_size()
    if n_tokens > source.config.vocab_size:
        raise ValueError(f"{where}: its tokenizer has {n_tokens} tokens but its encoder vocab_size="
                         f"{source.config.vocab_size}")
    return source


def load_pretrained(path: Union[str, Path]) -> tuple[BertConfig, dict[str, torch.Tensor], str]:
    """(config, BertModel state dict, tokenizer JSON) from a lit-lm pretraining .ckpt or a HuggingFace BERT dir: the
    encoder for fine-tuning, which checks the fit itself. The pooler may be absent (a ``BertForMaskedLM`` has none):
    fine-tuning then starts it from BERT's initialisation."""
    source = _read(path, "--model.pretrained")
    encoder = {k.removeprefix("bert."): v for k, v in source.state.items() if k.startswith("bert.")}
    return source.config, encoder, source.tokenizer_json


# ---------------------------------------------------------------------------------------------------------------------
# tokenizers


def vocabulary(tokenizer_json: str) -> dict[str, int]:
    return Tokenizer.from_str(tokenizer_json).get_vocab()


def check_vocabulary(given_json: str, given: str, source_json: str, source: Union[str, Path],
                     flag: str = "--model.init_from") -> None:
    """A one-line error unless the tokenizer ``given`` (e.g. "--data.tokenizer PATH") has the vocabulary of the
    source's: the embedding rows are the source's token ids, so another vocabulary would silently scramble them."""
    mine, theirs = vocabulary(given_json), vocabulary(source_json)
    if mine != theirs:
        raise ValueError(f"{given}: its vocabulary ({len(mine)} tokens) differs from that of {flag} {source} "
                         f"({len(theirs)} tokens); use the source's tokenizer (the default when --data.tokenizer "
                         f"is unset)")
