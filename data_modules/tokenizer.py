"""The BERT WordPiece tokenizer: train it on a corpus, load it from wherever it lives, name its special tokens.

Built with HuggingFace ``tokenizers`` the way BERT's uncased vocabulary works: BERT normaliser (clean text,
CJK spacing, lower-casing and accent stripping when uncased), BERT pre-tokenizer (whitespace + punctuation),
WordPiece with ``##`` continuations, and a post-processor that writes ``[CLS] A [SEP] B [SEP]`` with segment ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from data_modules import sources

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""Special tokens, in the order they take ids 0..4 in tokenizers trained here."""


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

    @property
    def all(self) -> tuple[int, ...]:
        return (self.pad, self.unk, self.cls, self.sep, self.mask)


def special_ids(tokenizer: Tokenizer, where: str = "tokenizer") -> SpecialIds:
    """The ids of [PAD] [UNK] [CLS] [SEP] [MASK]; a one-line error naming ``where`` (a flag, a file) if one is missing."""
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"{where} lacks the special tokens {missing}; a BERT WordPiece tokenizer is expected")
    return SpecialIds(*(ids[t] for t in SPECIAL_TOKENS))


def _with_bert_pipeline(tokenizer: Tokenizer, lowercase: bool) -> Tokenizer:
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _set_post_processor(tokenizer: Tokenizer) -> Tokenizer:
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tokenizer


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    lowercase: bool = True,
    min_frequency: int = 2,
    show_progress: bool = True,
    length: int | None = None,
) -> Tokenizer:
    """Train a WordPiece tokenizer of at most ``vocab_size`` tokens (special tokens included) on ``texts``.

    WikiText's ``<unk>`` must already be replaced by ``[UNK]`` in ``texts`` (the data module does it), so it is
    read as the special token rather than split into ``<``, ``unk``, ``>``.
    """
    tokenizer = _with_bert_pipeline(Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100)), lowercase)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    return _set_post_processor(tokenizer)


def take_bytes(documents: Iterable[list[str]], limit: int | None) -> Iterator[str]:
    """Sentences of the first documents until ``limit`` UTF-8 bytes (None: all): the tokenizer's training sample."""
    total = 0
    for sents in documents:
        for s in sents:
            yield s
            total += len(s.encode()) + 1
        if limit is not None and total >= limit:
            return


def read_vocab(vocab_file: str | Path) -> dict[str, int]:
    """Token -> id of a BERT ``vocab.txt``: one token a line, its id the line's number counted from 0.

    A token on two lines is a one-line error naming both lines: the second line's id would name no token, the
    vocabulary's size would fall one short of its ids, and the first batch holding the last id would fail far from
    the file (an IndexError in a DataLoader worker)."""
    vocab: dict[str, int] = {}
    for i, token in enumerate(sources.read_lines(vocab_file, "vocab.txt layout (one token a line)")):
        first = vocab.setdefault(token, i)
        if first != i:
            raise ValueError(f"{vocab_file}:{i + 1}: the token {token!r} again, first on line {first + 1}; expected "
                             f"every token once (its line number is its id)")
    return vocab


def tokenizer_from_vocab(vocab_file: str | Path, lowercase: bool = True) -> Tokenizer:
    """A tokenizer from a BERT ``vocab.txt`` (``read_vocab``), as HF directories ship it."""
    tokenizer = Tokenizer(models.WordPiece(vocab=read_vocab(vocab_file), unk_token="[UNK]",
                                           max_input_chars_per_word=100))
    special_ids(tokenizer)  # fail early on a vocabulary without BERT's special tokens
    return _set_post_processor(_with_bert_pipeline(tokenizer, lowercase))


def _hf_dir_lowercase(directory: Path) -> bool:
    """Lower-casing as the directory's tokenizer_config.json says (BERT's default: True)."""
    cfg = directory / "tokenizer_config.json"
    if cfg.exists():
        return bool(json.loads(cfg.read_text()).get("do_lower_case", True))
    return True


def load_tokenizer(source: str | Path, option: str | None = None) -> Tokenizer:
    """Load a tokenizer from a ``tokenizer.json``, a HuggingFace directory (tokenizer.json or vocab.txt),
    a lit-lm checkpoint (``.ckpt``, which carries its tokenizer) or a tokenizer JSON string. ``option``: the
    command-line option ``source`` came from, named by the (one-line) error."""
    if option is not None:
        try:
            return load_tokenizer(source)
        except ValueError as e:
            raise ValueError(f"{option}: {e}") from None
    text = str(source)
    if not text.strip():
        raise ValueError("empty path: expected a tokenizer.json, an HF directory or a .ckpt")
    if text.lstrip().startswith("{"):
        return Tokenizer.from_str(text)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "tokenizer.json").exists():
            return load_tokenizer(path / "tokenizer.json")
        if (path / "vocab.txt").exists():
            return tokenizer_from_vocab(path / "vocab.txt", lowercase=_hf_dir_lowercase(path))
        raise ValueError(f"{path}: no tokenizer.json or vocab.txt in this directory")
    if not path.exists():
        raise ValueError(f"{path}: no such tokenizer file (expected tokenizer.json, an HF directory or a .ckpt)")
    if path.suffix == ".ckpt":
        import torch

        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated or tampered files raise many different errors
            raise ValueError(f"{path}: not a readable checkpoint ({load_error(e)})") from None
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("tokenizer"), str):
            raise ValueError(f"{path}: this checkpoint carries no tokenizer (not a lit-lm checkpoint?)")
        try:
            return Tokenizer.from_str(ckpt["tokenizer"])
        except Exception as e:
            raise ValueError(f"{path}: the checkpoint's tokenizer is not tokenizers JSON ({str(e)[:200]})") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise ValueError(f"{path}: not a tokenizers JSON file ({str(e)[:200]})") from None


def load_error(e: BaseException) -> str:
    """Why ``torch.load`` could not read a file, in one line (for ``path: not a readable checkpoint (...)``)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch colours part of its weights-only message
    m = re.search(r"WeightsUnpickler error: (.*)", text)
    if m:  # a page of advice (including to load the file unsafely) around one useful sentence
        return f"refused by torch.load(weights_only=True): {m.group(1).split('. ')[0][:200]}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first.split('. ')[0][:200]}"


def continuation_mask(tokenizer: Tokenizer, size: int | None = None):
    """Bool array over the vocabulary: True for ``##`` word-piece continuations (for whole-word masking)."""
    import numpy as np

    size = size or tokenizer.get_vocab_size()
    out = np.zeros(size, dtype=bool)
    for token, i in tokenizer.get_vocab().items():
        if token.startswith("##") and i < size:
            out[i] = True
    return out
