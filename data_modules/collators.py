"""Batch collators: dynamic MLM masking for pretraining, plain padding for classification.

Both pad to the longest row of the batch (dynamic padding), optionally rounded up to a multiple (tensor cores like
multiples of 8), and return torch tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from data_modules.tokenizer import SPECIAL_TOKENS, SpecialIds


def _padded_length(lengths: list[int], multiple: int | None) -> int:
    T = max(lengths)
    if multiple:
        T = -(-T // multiple) * multiple
    return T


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
    The draw uses ``np.random.default_rng([seed, epoch, index, 7919])``, so a sample's masks depend on nothing but its
    own (epoch, index): not on the worker, the batch or the batch size.

    Args:
        special: special token ids; none of them ([PAD] [UNK] [CLS] [SEP] [MASK]) is ever chosen or drawn.
        vocab_size: random replacements are drawn from ``[len(SPECIAL_TOKENS), vocab_size)`` (special ids excluded).
        mlm_probability: fraction of tokens to predict (BERT: 0.15).
        whole_word_masking: mask all the pieces of a word together.
        continuation: bool array over the vocabulary, True for ``##`` pieces (``tokenizer.continuation_mask``);
            needed for whole-word masking.
        seed: base of the per-sample random generator.
        pad_to_multiple_of: round the padded length up to a multiple of this.
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
        self.seed, self.pad_to_multiple_of = seed, pad_to_multiple_of
        # Never chosen as a target nor drawn as a replacement: [CLS]/[SEP] (BERT's create_pretraining_data.py
        # skips these two), [PAD] (not text), [MASK] (already hides a token) and [UNK] (predicting it teaches
        # nothing: the word behind it is lost). BERT draws replacements from the whole vocabulary, specials
        # included; a replacement here is always an ordinary word piece, as the text the model later reads.
        # A lookup table instead of np.isin(ids, specials): the same answer, ~10x less time per sample.
        self._is_special = np.zeros(max(vocab_size, max(special.all) + 1), dtype=bool)
        self._is_special[list(special.all)] = True

    def mask(self, input_ids: np.ndarray, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One sequence -> (masked input ids, labels)."""
        rng = np.random.default_rng([self.seed, epoch, index, 7919])
        ids = np.asarray(input_ids, dtype=np.int64)
        eligible = np.flatnonzero(~self._is_special[ids])
        labels = np.full(len(ids), -100, dtype=np.int64)
        if len(eligible) == 0:
            return ids.copy(), labels
        n_mask = max(1, int(self.mlm_probability * len(eligible) + 0.5))
        if self.whole_word_masking:
            positions = self._whole_words(ids, eligible, n_mask, rng)
        else:
            positions = np.sort(rng.choice(eligible, size=n_mask, replace=False))
        labels[positions] = ids[positions]
        out = ids.copy()
        r = rng.random(len(positions))
        out[positions[r < 0.8]] = self.special.mask
        rand_pos = positions[(r >= 0.8) & (r < 0.9)]
        out[rand_pos] = self._random_tokens(len(rand_pos), rng)
        return out, labels

    def _random_tokens(self, n: int, rng: np.random.Generator) -> np.ndarray:
        tokens = rng.integers(len(SPECIAL_TOKENS), self.vocab_size, size=n)
        bad = self._is_special[tokens]  # vocabularies whose specials are not ids 0..4 (e.g. HF BERT)
        while bad.any():
            tokens[bad] = rng.integers(len(SPECIAL_TOKENS), self.vocab_size, size=int(bad.sum()))
            bad = self._is_special[tokens]
        return tokens

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

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        masked, labels = [], []
        for s in samples:
            m, lab = self.mask(s["input_ids"], int(s.get("epoch", 0)), int(s["index"]))
            masked.append(m)
            labels.append(lab)
        lengths = [len(m) for m in masked]
        T = _padded_length(lengths, self.pad_to_multiple_of)
        attention = (np.arange(T)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
        return {
            "input_ids": torch.from_numpy(_pad(masked, T, self.special.pad)),
            "token_type_ids": torch.from_numpy(_pad([s["token_type_ids"] for s in samples], T, 0)),
            "attention_mask": torch.from_numpy(attention),
            "labels": torch.from_numpy(_pad(labels, T, -100)),
            "next_sentence_label": torch.tensor([s["next_sentence_label"] for s in samples], dtype=torch.long),
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        }


class PadCollator:
    """Pads ``input_ids`` / ``token_type_ids`` to the batch's longest row for classification; ``labels`` are long,
    or float when the labels are floats (regression tasks such as STS-B)."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_id, self.pad_to_multiple_of = pad_id, pad_to_multiple_of

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        rows = [np.asarray(s["input_ids"], dtype=np.int64) for s in samples]
        lengths = [len(r) for r in rows]
        T = _padded_length(lengths, self.pad_to_multiple_of)
        types = [np.asarray(s.get("token_type_ids", np.zeros(len(r))), dtype=np.int64) for s, r in zip(samples, rows)]
        batch = {
            "input_ids": torch.from_numpy(_pad(rows, T, self.pad_id)),
            "token_type_ids": torch.from_numpy(_pad(types, T, 0)),
            "attention_mask": torch.from_numpy((np.arange(T)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)),
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        }
        if "label" in samples[0]:
            labels = [s["label"] for s in samples]
            dtype = torch.float32 if any(isinstance(x, (float, np.floating)) for x in labels) else torch.long
            batch["labels"] = torch.tensor(labels, dtype=dtype)
        return batch
