"""Count baselines of masked-token prediction: how often a table of train counts guesses a validation token right.

An MLM that reaches only the unigram rate has learned word frequencies and no context (the "plateau" BERT-style runs
sit on for thousands of steps, where run_mlm users ask why the loss is stuck near 7); one past the left-bigram rate
uses its left neighbour; one past the both-neighbours rate uses both sides. Each baseline predicts a token from its
true (unmasked) neighbours in the split's token stream, with counts from the train stream:

- ``unigram``: the most frequent train token, everywhere;
- ``left_bigram`` / ``right_bigram``: the most frequent token after its left (before its right) neighbour;
- ``both_neighbours``: the most frequent token between its two neighbours, backing off to ``left_bigram`` for
  neighbour pairs that train never shows.

Special tokens are never predicted ([UNK] is never masked by the collator), so tokens with ``ignore`` ids are not
scored. A model sees less than these baselines do: its neighbours are themselves masked 15% of the time.
"""

from __future__ import annotations

import numpy as np

MAX_TRAIN_TOKENS = 20_000_000
"""Counts come from at most this many train tokens (WikiText-2 has 2.4M; a fifth of WikiText-103 keeps the sort at
a few seconds and under 1 GB)."""


def _argmax_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct key, the value seen most often with it (ties: the smallest value): (keys, best values)."""
    pairs, counts = np.unique(keys.astype(np.int64) * (1 << 20) + values, return_counts=True)
    k, v = pairs >> 20, pairs & ((1 << 20) - 1)
    order = np.lexsort((-counts, k))  # by key, then by count descending
    k, v = k[order], v[order]
    first = np.r_[True, k[1:] != k[:-1]]
    return k[first], v[first]


def _lookup(table_keys: np.ndarray, table_values: np.ndarray, keys: np.ndarray, default: np.ndarray) -> np.ndarray:
    at = np.searchsorted(table_keys, keys).clip(0, max(len(table_keys) - 1, 0))
    found = (table_keys[at] == keys) if len(table_keys) else np.zeros(len(keys), dtype=bool)
    return np.where(found, table_values[at], default)


def count_baselines(train: np.ndarray, val: np.ndarray, vocab_size: int, ignore: tuple[int, ...] = ()) -> dict[str, float]:
    """Accuracy of each count baseline on the tokens of ``val`` (both 1-D id streams, no special tokens added)."""
    if vocab_size >= 1 << 20:
        raise ValueError(f"count_baselines: vocab_size {vocab_size} >= 2^20")
    train = np.asarray(train[:MAX_TRAIN_TOKENS], dtype=np.int64)
    val = np.asarray(val, dtype=np.int64)
    if len(train) < 3 or len(val) < 3:
        return {}
    def ordinary(x: np.ndarray) -> np.ndarray:  # True where x is not a special token
        return ~np.isin(x, ignore)

    scored = ordinary(val[1:-1])  # the middle tokens: both neighbours exist
    left, mid, right = val[:-2][scored], val[1:-1][scored], val[2:][scored]

    counts = np.bincount(train, minlength=vocab_size)
    counts[list(ignore)] = 0
    top = int(counts.argmax())
    unigram = np.full(len(mid), top)

    ok = ordinary(train[1:])  # never predict a special token
    after_left = _lookup(*_argmax_by_key(train[:-1][ok], train[1:][ok]), left, unigram)
    ok = ordinary(train[:-1])
    before_right = _lookup(*_argmax_by_key(train[1:][ok], train[:-1][ok]), right, unigram)
    ok = ordinary(train[1:-1])
    pair = train[:-2] * vocab_size + train[2:]
    between = _lookup(*_argmax_by_key(pair[ok], train[1:-1][ok]), left * vocab_size + right, after_left)

    def acc(pred: np.ndarray) -> float:
        return round(float((pred == mid).mean()), 4)

    return {"unigram": acc(unigram), "left_bigram": acc(after_left), "right_bigram": acc(before_right),
            "both_neighbours": acc(between), "tokens": int(len(mid))}
