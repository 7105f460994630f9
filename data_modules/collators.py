"""Batch collators: dynamic MLM masking for pretraining, plain padding for classification.

Both pad to the longest row of the batch rounded up to a bucket (``shapes.LENGTH_STEP`` unless
``pad_to_multiple_of`` says otherwise) and add the layout the model reads without asking the device: where the real
tokens sit (``token_index``), how many there are (``n_tokens``) and, for MLM, where the masked ones are
(``masked_index``, ``masked_labels``, ``n_masked``); see data_modules/shapes.py.
"""

from __future__ import annotations

import numpy as np
import torch

from data_modules import shapes
from data_modules.tokenizer import SPECIAL_TOKENS, SpecialIds

def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea and Flood, 2014): a bijection of uint64 whose outputs look independent
    for consecutive inputs, so hashing (seed, epoch, index, position, stream) gives each draw its own number."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _draws(keys: np.ndarray, T: int, stream: int) -> np.ndarray:
    """uint64 draws (B, T): one per (row key, position, stream), the same whatever batch the row is in."""
    with np.errstate(over="ignore"):
        pos = np.arange(T, dtype=np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15)
        return _mix(_mix(keys[:, None] ^ pos) + np.uint64(stream) * np.uint64(0xD1B54A32D192ED03))


def _uniform(bits: np.ndarray) -> np.ndarray:
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53  # the top 53 bits: a float in [0, 1)


def pin_memory() -> bool:
    """Whether loaders pin their batches: on a CUDA machine, so the copy to the GPU runs asynchronously (Lightning
    copies with non_blocking=True) beside the step instead of before it."""
    return torch.cuda.is_available()


def _pad(rows: list[np.ndarray], T: int, value: int) -> np.ndarray:
    out = np.full((len(rows), T), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class MLMCollator:
    """Masks ``mlm_probability`` of each sequence's tokens the BERT way and pads the batch.

    Per sequence, exactly ``max(1, round(mlm_probability * n))`` of its ``n`` non-special tokens are chosen (as in
    BERT's create_pretraining_data.py, halves rounded up), then 80% of them become [MASK], 10% a random non-special
    token, 10% stay unchanged; ``labels`` hold the original id there and -100 everywhere else. With
    ``whole_word_masking`` whole words (a token and its ``##`` continuations) are chosen until the count is reached,
    skipping words that would overshoot it (BERT's rule); at least one word is always masked.
    The draws are a counter-based hash of (seed, epoch, index, position), for all rows of a batch at once, so a sample's
    masks depend on nothing but its own (epoch, index): not on the worker, the batch or the batch size. (One numpy
    generator per row cost 6.7 of the 8.7 ms of a 128-row batch; whole-word masking still builds one per row.)

    Args:
        special: special token ids; none of them ([PAD] [UNK] [CLS] [SEP] [MASK]) is ever chosen or drawn.
        vocab_size: random replacements are drawn from ``[len(SPECIAL_TOKENS), vocab_size)`` (special ids excluded).
        mlm_probability: fraction of tokens to predict (BERT: 0.15).
        whole_word_masking: mask all the pieces of a word together.
        continuation: bool array over the vocabulary, True for ``##`` pieces (``tokenizer.continuation_mask``);
            needed for whole-word masking.
        seed: base of the per-sample random generator.
        pad_to_multiple_of: round the padded length up to a multiple of this (None: ``shapes.LENGTH_STEP``).
        max_len: the data's max_seq_len: rounding never pads past it.
    """

    def __init__(
        self,
        special: SpecialIds,
        vocab_size: int,
        mlm_probability: float = 0.15,
        whole_word_masking: bool = False,
        continuation: np.ndarray | None = None,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
        max_len: int | None = None,
    ) -> None:
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability={mlm_probability} must be in (0, 1)")
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size={vocab_size} leaves no ordinary tokens to sample replacements from")
        if whole_word_masking and continuation is None:
            raise ValueError("whole_word_masking needs the continuation mask (data_modules.tokenizer.continuation_mask)")
        self.special, self.vocab_size = special, vocab_size
        self.mlm_probability, self.whole_word_masking = mlm_probability, whole_word_masking
        self.continuation = continuation
        self.seed, self.max_len = seed, max_len
        self.pad_to_multiple_of = pad_to_multiple_of or shapes.LENGTH_STEP
        # Never chosen as a target nor drawn as a replacement: [CLS]/[SEP] (BERT's create_pretraining_data.py
        # skips these two), [PAD] (not text), [MASK] (already hides a token) and [UNK] (predicting it teaches
        # nothing: the word behind it is lost). BERT draws replacements from the whole vocabulary, specials
        # included; a replacement here is always an ordinary word piece, as the text the model later reads.
        # A lookup table instead of np.isin(ids, specials): the same answer, ~10x less time per sample.
        self._is_special = np.zeros(max(vocab_size, max(special.all) + 1), dtype=bool)
        self._is_special[list(special.all)] = True

    def mask(self, input_ids: np.ndarray, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One sequence -> (masked input ids, labels), as it comes out of any batch."""
        ids = np.asarray(input_ids, dtype=np.int64)
        out, labels = self.mask_batch(ids[None], np.array([len(ids)]), np.array([epoch]), np.array([index]))
        return out[0], labels[0]

    def mask_batch(self, ids: np.ndarray, lengths: np.ndarray, epochs: np.ndarray, indices: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded rows (B, T) -> (masked ids, labels), all rows at once."""
        if self.whole_word_masking:
            return self._mask_whole_words(ids, lengths, epochs, indices)
        B, T = ids.shape
        with np.errstate(over="ignore"):
            keys = _mix(_mix(_mix(np.full(B, self.seed % 2**64, dtype=np.uint64) ^ epochs.astype(np.uint64))
                             ^ indices.astype(np.uint64)) + np.uint64(7919))
        eligible = ~self._is_special[ids] & (np.arange(T)[None, :] < lengths[:, None])
        n_eligible = eligible.sum(1)
        n_mask = np.where(n_eligible > 0, np.maximum(1, (self.mlm_probability * n_eligible + 0.5).astype(np.int64)), 0)
        # the n_mask eligible positions of smallest draw: a uniform choice without replacement
        order = np.where(eligible, _uniform(_draws(keys, T, 1)), 2.0).argsort(axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(T)[None, :].repeat(B, 0), axis=1)
        chosen = rank < n_mask[:, None]
        labels = np.where(chosen, ids, -100)
        r = _uniform(_draws(keys, T, 2))
        out = np.where(chosen & (r < 0.8), self.special.mask, ids)
        rand = chosen & (r >= 0.8) & (r < 0.9)
        return np.where(rand, self._random_tokens(keys, T), out), labels

    def _random_tokens(self, keys: np.ndarray, T: int) -> np.ndarray:
        """A random ordinary token per position (B, T); vocabularies whose specials are not ids 0..4 (e.g. HF BERT)
        redraw the positions that hit one, from further streams."""
        low, n = len(SPECIAL_TOKENS), self.vocab_size - len(SPECIAL_TOKENS)
        tokens = (low + _draws(keys, T, 3) % np.uint64(n)).astype(np.int64)
        stream = 4
        while (bad := self._is_special[tokens]).any():
            tokens = np.where(bad, (low + _draws(keys, T, stream) % np.uint64(n)).astype(np.int64), tokens)
            stream += 1
        return tokens

    def _mask_whole_words(self, ids: np.ndarray, lengths: np.ndarray, epochs: np.ndarray, indices: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
        out, labels = ids.copy(), np.full_like(ids, -100)
        for b in range(len(ids)):
            n = int(lengths[b])
            out[b, :n], labels[b, :n] = self._mask_row_whole_words(ids[b, :n], int(epochs[b]), int(indices[b]))
        return out, labels

    def _mask_row_whole_words(self, ids: np.ndarray, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, index, 7919])
        eligible = np.flatnonzero(~self._is_special[ids])
        labels = np.full(len(ids), -100, dtype=np.int64)
        if len(eligible) == 0:
            return ids.copy(), labels
        n_mask = max(1, int(self.mlm_probability * len(eligible) + 0.5))
        positions = self._whole_words(ids, eligible, n_mask, rng)
        labels[positions] = ids[positions]
        out = ids.copy()
        r = rng.random(len(positions))
        out[positions[r < 0.8]] = self.special.mask
        rand_pos = positions[(r >= 0.8) & (r < 0.9)]
        tokens = rng.integers(len(SPECIAL_TOKENS), self.vocab_size, size=len(rand_pos))
        while (bad := self._is_special[tokens]).any():
            tokens[bad] = rng.integers(len(SPECIAL_TOKENS), self.vocab_size, size=int(bad.sum()))
        out[rand_pos] = tokens
        return out, labels

    def _whole_words(self, ids: np.ndarray, eligible: np.ndarray, n_mask: int, rng: np.random.Generator) -> np.ndarray:
        cont = self.continuation[ids[eligible]]
        # a word starts at a non-continuation piece, or where the eligible positions jump (a [SEP] in between)
        starts = np.flatnonzero(~cont | np.r_[True, np.diff(eligible) > 1])
        words = np.split(eligible, starts[1:])
        chosen: list[np.ndarray] = []
        count = 0
        for w in rng.permutation(len(words)):
            if count + len(words[w]) > n_mask:
                continue
            chosen.append(words[w])
            count += len(words[w])
            if count == n_mask:
                break
        if not chosen:  # every word is longer than the budget: mask one whole word anyway
            chosen.append(words[int(rng.integers(len(words)))])
        return np.sort(np.concatenate(chosen))

    def __call__(self, samples: list[dict]) -> dict:
        rows = [np.asarray(s["input_ids"], dtype=np.int64) for s in samples]
        lengths = np.array([len(r) for r in rows])
        T = shapes.padded_length(lengths, self.pad_to_multiple_of, self.max_len)
        epochs = np.array([int(s.get("epoch", 0)) for s in samples])
        indices = np.array([int(s["index"]) for s in samples])
        input_ids, labels = self.mask_batch(_pad(rows, T, self.special.pad), lengths, epochs, indices)
        attention = np.arange(T)[None, :] < lengths[:, None]
        masked, targets = shapes.masked_index(labels)
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "token_type_ids": torch.from_numpy(_pad([s["token_type_ids"] for s in samples], T, 0)),
            "attention_mask": torch.from_numpy(attention.astype(np.int64)),
            "labels": torch.from_numpy(labels),
            "next_sentence_label": torch.tensor([s["next_sentence_label"] for s in samples], dtype=torch.long),
            "index": torch.from_numpy(indices),
            "token_index": torch.from_numpy(shapes.token_index(lengths, T)),
            "masked_index": torch.from_numpy(masked),
            "masked_labels": torch.from_numpy(targets),
            "n_tokens": int(lengths.sum()),
            "n_masked": int((labels != -100).sum()),
        }
        if "source" in samples[0]:  # a mixture's samples name their source (data_modules.mixture)
            batch["source"] = torch.tensor([s["source"] for s in samples], dtype=torch.long)
        return batch


class PadCollator:
    """Pads ``input_ids`` / ``token_type_ids`` to the batch's longest row for classification; ``labels`` are long,
    or float when the labels are floats (regression tasks such as STS-B)."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None, max_len: int | None = None) -> None:
        self.pad_id, self.max_len = pad_id, max_len
        self.pad_to_multiple_of = pad_to_multiple_of or shapes.LENGTH_STEP

    def __call__(self, samples: list[dict]) -> dict:
        rows = [np.asarray(s["input_ids"], dtype=np.int64) for s in samples]
        lengths = np.array([len(r) for r in rows])
        T = shapes.padded_length(lengths, self.pad_to_multiple_of, self.max_len)
        types = [np.asarray(s.get("token_type_ids", np.zeros(len(r))), dtype=np.int64) for s, r in zip(samples, rows)]
        batch = {
            "input_ids": torch.from_numpy(_pad(rows, T, self.pad_id)),
            "token_type_ids": torch.from_numpy(_pad(types, T, 0)),
            "attention_mask": torch.from_numpy((np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)),
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
            "token_index": torch.from_numpy(shapes.token_index(lengths, T)),
            "n_tokens": int(lengths.sum()),
        }
        if "label" in samples[0]:
            labels = [s["label"] for s in samples]
            dtype = torch.float32 if any(isinstance(x, (float, np.floating)) for x in labels) else torch.long
            batch["labels"] = torch.tensor(labels, dtype=dtype)
        return batch
