"""Model configuration: one dataclass, named sizes, and the HuggingFace ``config.json`` bridge.

No torch import here: the CLI parses configs (and ``--help`` documents them) without building a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Union

# (n_layer, n_embd) of the BERT sizes released by Turc et al. (2019) and Devlin et al. (2019);
# heads = n_embd / 64 and intermediate = 4 * n_embd throughout, as in those releases.
_SIZES: dict[str, tuple[int, int]] = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}


@dataclass
class BertConfig:
    """Shape and regularisation of a BERT encoder. Defaults are BERT-base (Devlin et al., 2019)."""

    vocab_size: int = 30522
    """Number of WordPiece tokens. Set from the data config by the CLI (``data.vocab_size``)."""
    n_layer: int = 12
    """Number of transformer blocks."""
    n_head: int = 12
    """Number of attention heads per block; ``n_embd`` must divide by it."""
    n_embd: int = 768
    """Hidden size: width of the embeddings and of every block's input and output."""
    intermediate_size: int = 3072
    """Width of the feed-forward layer inside each block."""
    max_position_embeddings: int = 512
    """Longest sequence the position table covers."""
    type_vocab_size: int = 2
    """Number of segment ids (A/B for next sentence prediction)."""
    hidden_dropout: float = 0.1
    """Dropout on embeddings, attention output and feed-forward output."""
    attention_dropout: float = 0.1
    """Dropout on the attention probabilities."""
    layer_norm_eps: float = 1e-12
    """Epsilon of every LayerNorm (BERT uses 1e-12)."""
    initializer_range: float = 0.02
    """Standard deviation of the truncated-normal initialisation of weights."""
    position_embedding: Literal["learned", "sinusoidal", "none"] = "learned"
    """Absolute positions added to the word embeddings: 'learned' as in BERT; 'sinusoidal', the fixed sinusoids of
    Vaswani et al. (2017) times a learned scale that starts at 1/sqrt(n_embd) (Cramming's scaled sinusoids: unscaled,
    their amplitude ~0.7 drowns word embeddings of std 0.02); 'none' (with ``relative_positions``)."""
    relative_positions: Literal["none", "alibi", "rope"] = "none"
    """Relative positions inside attention: 'alibi' adds -slope_h * |i - j| to the logits of head h (Press et al.,
    2022, symmetric as MosaicBERT), a bias towards near keys from the first step; 'rope' rotates queries and keys
    by their positions (Su et al., 2021; ModernBERT)."""
    alibi_slope_scale: float = 1.0
    """Multiplier of the ALiBi slopes 2^(-8(h+1)/n_head): with the 2 heads of BERT-Tiny the paper's 1/16 and 1/256
    barely bias a 128-token window; 4 gives 1/4 and 1/64."""
    pre_ln: bool = False
    """Pre-LN blocks, x + Sublayer(LN(x)), with one final LayerNorm (Xiong et al., 2020), instead of BERT's post-LN."""
    mlp: Literal["gelu", "geglu"] = "gelu"
    """Feed-forward: BERT's GELU MLP, or the gated GEGLU of Shazeer (2020) (Cramming, ModernBERT)."""
    bias: bool = True
    """Biases in the blocks' linear layers (attention and feed-forward); False drops them, as Cramming does."""
    pad_token_id: int = 0
    """Id of the [PAD] token; its embedding row starts at zero."""
    pad_vocab_multiple: int = 1
    """Pad the embedding rows up to a multiple of this (64 helps GPU matmuls); logits keep ``vocab_size``."""

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.position_embedding == "none" and self.relative_positions == "none":
            raise ValueError("position_embedding='none' needs relative_positions 'alibi' or 'rope' (else no positions)")
        if self.relative_positions == "rope" and self.head_size % 2:
            raise ValueError(f"relative_positions='rope' needs an even head size, got {self.head_size}")
        if self.vocab_size < 1 or self.pad_vocab_multiple < 1:
            raise ValueError(f"vocab_size and pad_vocab_multiple must be >= 1, got {self.vocab_size}, {self.pad_vocab_multiple}")

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_multiple
        return (self.vocab_size + m - 1) // m * m

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "BertConfig":
        """A named size (tiny, mini, small, medium, base, large) with any field overridden."""
        if name not in _SIZES:
            raise ValueError(f"unknown model size {name!r}; expected one of {', '.join(_SIZES)} or a config.json path")
        n_layer, n_embd = _SIZES[name]
        sizes = dict(n_layer=n_layer, n_embd=n_embd, n_head=n_embd // 64, intermediate_size=4 * n_embd)
        return cls(**{**sizes, **overrides})

    @classmethod
    def from_hf_json(cls, path: str | Path, **overrides: Any) -> "BertConfig":
        """Read a HuggingFace BERT ``config.json`` (the format the original recipe hands around)."""
        path = Path(path)
        try:
            hf = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read a BERT config.json ({e})") from None
        return cls.from_hf_dict(hf, source=str(path), **overrides)

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], source: str = "config", **overrides: Any) -> "BertConfig":
        """The fields of a HuggingFace BERT config given as a dict."""
        path = source
        if hf.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act={hf['hidden_act']!r} is not supported; lit-lm uses 'gelu'")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only position_embedding_type 'absolute' is supported")
        missing = [hf_key for hf_key in _HF_KEYS if hf_key not in hf and hf_key != "pad_token_id"]
        if missing:
            raise ValueError(f"{path}: missing keys {missing} of a BERT config.json")
        values = {name: hf[hf_key] for hf_key, name in _HF_KEYS.items() if hf_key in hf}
        return cls(**{**values, **overrides})

    @classmethod
    def resolve(cls, name_or_path: str, **overrides: Any) -> "BertConfig":
        """A size name, or a path to a HuggingFace ``config.json`` (or a directory holding one)."""
        if name_or_path in _SIZES:
            return cls.from_name(name_or_path, **overrides)
        path = Path(name_or_path)
        if path.is_dir():
            path = path / "config.json"
        if not path.exists():
            raise ValueError(
                f"--model.config {name_or_path!r}: not a size ({', '.join(_SIZES)}) and no such config.json"
            )
        return cls.from_hf_json(path, **overrides)

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` content of the equivalent ``transformers.BertConfig``."""
        changed = self.non_bert_options()
        if changed:
            raise ValueError(f"a HuggingFace BERT cannot represent {', '.join(changed)}: only BERT's own architecture exports")
        out = {hf_key: getattr(self, name) for hf_key, name in _HF_KEYS.items()}
        out.update(model_type="bert", architectures=["BertForPreTraining"], hidden_act="gelu",
                   position_embedding_type="absolute")
        return out

    def non_bert_options(self) -> list[str]:
        """The architecture options set away from BERT's, as ``field=value`` strings (empty for a BERT)."""
        bert = BertConfig()
        return [f"{name}={getattr(self, name)!r}" for name in _OPTIONS if getattr(self, name) != getattr(bert, name)]

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def option(flag: str) -> Iterator[None]:
    """A ValueError raised inside names the command-line ``flag`` its value came from, unless it names one already.

    LightningCLI builds the modules after parsing, so an error there would otherwise reach the user without the
    option that caused it (a file name alone, or a field of BertConfig).
    """
    try:
        yield
    except ValueError as e:
        message = str(e)
        if message.startswith("--"):
            raise
        raise ValueError(f"{flag}: {message}") from None


def resolve_config(config: Union[str, BertConfig, dict[str, Any]], flag: str = "--model.config",
                   **overrides: Any) -> BertConfig:
    """A size name, a config.json path, a BertConfig or its dict (as stored in checkpoints), with overrides.
    Errors are one line naming ``flag``, the option the value came from."""
    known = {f.name for f in fields(BertConfig)}
    with option(flag):
        unknown = sorted((set(overrides) | (set(config) if isinstance(config, dict) else set())) - known)
        if unknown:
            raise ValueError(f"unknown BertConfig field(s) {', '.join(unknown)} (see `lit-lm config --help`)")
        if isinstance(config, BertConfig):
            return BertConfig(**{**config.asdict(), **overrides})
        if isinstance(config, dict):
            return BertConfig(**{**config, **overrides})
        return BertConfig.resolve(config, **overrides)


_OPTIONS = ("position_embedding", "relative_positions", "pre_ln", "mlp", "bias")
"""Fields that change the architecture away from BERT's (alibi_slope_scale only matters with ALiBi)."""

# HuggingFace config.json key -> BertConfig field
_HF_KEYS = {
    "vocab_size": "vocab_size",
    "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head",
    "hidden_size": "n_embd",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "hidden_dropout_prob": "hidden_dropout",
    "attention_probs_dropout_prob": "attention_dropout",
    "layer_norm_eps": "layer_norm_eps",
    "initializer_range": "initializer_range",
    "pad_token_id": "pad_token_id",
}
