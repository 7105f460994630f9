"""Sentences -> WordPiece ids on disk: the word-level encoder and the streaming writer of one split of the cache.

A split is three arrays, written as ``.npy`` files: ``{stem}.ids.npy`` (the ids of all sentences concatenated, no
special tokens), ``{stem}.sent.npy`` (sentence offsets into the ids) and ``{stem}.art.npy`` (document offsets into
the sentences). ``SplitWriter`` streams documents in, so memory stays flat whatever the size of the corpus.
"""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from data_modules.cache import log


class SentenceEncoder:
    """Token ids of sentences, encoding every distinct space-separated word only once.

    BERT's pipeline (BertNormalizer, BertPreTokenizer, WordPiece) never looks across a space, so the ids of a
    sentence are the ids of its words one after another. WikiText-103's 103M words hold only ~270k distinct ones:
    encoding those once and gathering with numpy does a small fraction of the work of encoding every sentence
    (``encode_batch`` over sentences ran at ~110k tokens/s on this project's 2 shared cores; see
    benchmarks/data_pipeline.py). Tokenizers built otherwise (``--data.tokenizer``) are encoded sentence by sentence.
    """

    max_words = 1 << 20
    """Start the word table over past this many words, so a corpus with a long tail cannot grow it without bound."""

    def __init__(self, tok: Tokenizer) -> None:
        # a copy without padding or truncation, which a tokenizer.json from elsewhere may switch on
        self.tok = Tokenizer.from_str(tok.to_str())
        self.tok.no_padding()
        self.tok.no_truncation()
        specials_with_space = any(" " in t.content for t in tok.get_added_tokens_decoder().values())
        self.word_level = (isinstance(tok.normalizer, (normalizers.BertNormalizer, type(None)))
                           and isinstance(tok.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
                           and isinstance(tok.model, models.WordPiece) and not specials_with_space)
        self._reset()

    def _reset(self) -> None:
        self.index = _WordIndex()  # word -> row in the table below
        self.pieces = np.zeros(0, dtype=np.int64)  # ids of all known words, concatenated
        self.start = np.zeros(0, dtype=np.int64)  # where each word's ids begin in ``pieces``
        self.length = np.zeros(0, dtype=np.int64)

    def __call__(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``sentences`` -> (ids of all of them concatenated (int64), number of ids per sentence)."""
        if not self.word_level:
            return flatten(self.tok.encode_batch(sentences, add_special_tokens=False))
        if len(self.index) > self.max_words:
            self._reset()
        # split on " " only: every other character (tabs, controls) is the tokenizer's to handle, inside a word
        n_words = np.fromiter(map(str.count, sentences, itertools.repeat(" ")), dtype=np.int64, count=len(sentences)) + 1
        words = " ".join(sentences).split(" ")
        w = np.fromiter(map(self.index.__getitem__, words), dtype=np.int64, count=len(words))  # new words get rows
        if self.index.new:
            ids, lens = flatten(self.tok.encode_batch(self.index.new, add_special_tokens=False))
            self.index.new = []
            self.start = np.concatenate([self.start, len(self.pieces) + _exclusive_cumsum(lens)])
            self.length = np.concatenate([self.length, lens])
            self.pieces = np.concatenate([self.pieces, ids])
        w_len = self.length[w]
        # gather: token j of word k sits at pieces[start[k] + j]
        ids = self.pieces[np.repeat(self.start[w] - _exclusive_cumsum(w_len), w_len) + np.arange(int(w_len.sum()))]
        # ids up to each sentence's last word ("".split(" ") is [""]: every sentence has a word)
        sent_ends = np.cumsum(w_len)[np.cumsum(n_words) - 1]
        return ids, np.diff(sent_ends, prepend=0)


class _WordIndex(dict):
    """word -> row; an unknown word gets the next row and is queued in ``new`` to be encoded (one dict lookup a
    word, in C: the Python-level ``__missing__`` runs once per distinct word)."""

    def __init__(self) -> None:
        super().__init__()
        self.new: list[str] = []

    def __missing__(self, word: str) -> int:
        self[word] = row = len(self)
        self.new.append(word)
        return row


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x), dtype=np.int64)
    np.cumsum(x[:-1], out=out[1:])
    return out


def flatten(encodings) -> tuple[np.ndarray, np.ndarray]:
    """Encodings -> (their ids concatenated (int64), number of ids of each)."""
    lens = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=int(lens.sum()))
    return ids, lens


_NPY_HEADER = 128
"""Bytes of an ``.npy`` header of a 1-D array (numpy pads headers to a multiple of 64); the ids are streamed in
behind a placeholder and the true header, for the final length, written last."""


def _npy_header(dtype, n: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (n,)})
    assert buf.tell() == _NPY_HEADER, buf.tell()
    return buf.getvalue()


def _write_ids(f, ids: np.ndarray, dtype) -> None:
    ids.astype(dtype).tofile(f)


class SplitWriter:
    """Encodes one split's documents in batches and streams the ids to ``out/{stem}.ids.npy``; ``close()`` writes
    the offsets and returns the counts. Memory stays flat: one batch of sentences (and the encoder's table of
    distinct words, which several writers may share), whatever the size of the corpus.

    Sentences that tokenize to nothing (e.g. only control characters) are dropped, and their documents shrink;
    documents left without sentences are dropped.
    """

    def __init__(self, encode: SentenceEncoder, out: Path, stem: str, dtype, tag: str,
                 batch_sentences: int = 20000) -> None:
        self.encode, self.out, self.stem, self.dtype, self.tag = encode, out, stem, dtype, tag
        self.batch_sentences = batch_sentences
        self.sent_lens: list[np.ndarray] = []  # int32 per batch: compact even for 540 MB of text
        self.art_sizes: list[int] = []
        self.n_tokens = self.n_sent = 0
        self.batch: list[str] = []
        self.batch_arts: list[int] = []  # sentences per article in the batch (articles never straddle batches)
        self.t0 = self.last = time.perf_counter()
        self.f = open(out / f"{stem}.ids.npy", "wb")
        self.f.write(_npy_header(dtype, 0))  # placeholder, same size as the final header

    def add(self, sents: list[str]) -> None:
        """One document, as its sentences."""
        self.batch.extend(sents)
        self.batch_arts.append(len(sents))
        if len(self.batch) >= self.batch_sentences:
            self._flush()
            now = time.perf_counter()
            if now - self.last > 10:
                log(self.tag, f"{self.stem}: {self.n_sent:,} sentences, {self.n_tokens:,} tokens, "
                              f"{self.n_tokens / (now - self.t0):,.0f} tokens/s")
                self.last = now

    def _flush(self) -> None:
        ids, lens = self.encode(self.batch)
        _write_ids(self.f, ids, self.dtype)
        keep = lens > 0
        kept = np.concatenate([[0], np.cumsum(keep)])[np.cumsum(self.batch_arts)]  # kept sentences up to each end
        self.art_sizes.extend(int(k) for k in np.diff(kept, prepend=0) if k)
        self.sent_lens.append(lens[keep].astype(np.int32))
        self.n_tokens += len(ids)
        self.n_sent += int(keep.sum())
        self.batch.clear()
        self.batch_arts.clear()

    def close(self) -> dict[str, int]:
        """Write what is left and the offsets; the counts: ``{"articles", "sentences", "tokens"}``."""
        with self.f:
            if self.batch:
                self._flush()
            self.f.seek(0)
            self.f.write(_npy_header(self.dtype, self.n_tokens))  # byte for byte what np.save writes
        lens = np.concatenate(self.sent_lens) if self.sent_lens else np.zeros(0, dtype=np.int32)
        np.save(self.out / f"{self.stem}.sent.npy", np.concatenate([[0], np.cumsum(lens, dtype=np.int64)]))
        np.save(self.out / f"{self.stem}.art.npy",
                np.concatenate([[0], np.cumsum(self.art_sizes, dtype=np.int64)]).astype(np.int64))
        elapsed = time.perf_counter() - self.t0
        log(self.tag, f"{self.stem}: {len(self.art_sizes):,} articles, {self.n_sent:,} sentences, {self.n_tokens:,} "
                      f"tokens in {elapsed:.1f} s ({self.n_tokens / max(elapsed, 1e-9):,.0f} tokens/s)")
        return {"articles": len(self.art_sizes), "sentences": self.n_sent, "tokens": self.n_tokens}

    def abandon(self) -> None:
        """Close the file after a failure (the build's temporary directory is removed with it)."""
        self.f.close()
