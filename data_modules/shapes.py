"""Batch shapes from a small fixed set, and where the real tokens sit in them, computed by the collators on the CPU.

Dynamic padding makes the padded length T, the real-token count N and the masked count M new in almost every
batch. Each new size costs three ways: glibc keeps the freed blocks of sizes it never sees again (fine-tuning MRPC
grew past 5 GB that way), ``torch.compile`` recompiles, and CUDA graphs cannot capture the step. So T, N and M are
rounded up to buckets: a handful of shapes per run. And the positions the model needs (which tokens are real,
which are masked) come with the batch as index tensors, so the training step never asks the device for them
(``nonzero`` and boolean-mask indexing wait for the GPU to finish before the host can go on).

The layout contract, read by ``lit_lm.model.Unpadded`` and the MLM loss:

- ``token_index`` (N_bucket,): flat positions ``b * T + t`` of the real tokens in row-major order, then filler
  entries equal to ``B * T`` (one past the end) up to the bucket; the model computes the filler rows and drops them.
- ``masked_index`` (M_bucket,): flat positions of the masked tokens, then filler ``0`` up to the bucket;
  ``masked_labels`` (M_bucket,) holds their original ids and -100 at the filler, which the loss ignores.
- ``n_tokens``, ``n_masked``: the real counts as Python ints, for throughput and FLOPs without a device read.
"""

from __future__ import annotations

import numpy as np

LENGTH_STEP = 32
"""Padded lengths are multiples of this (T in {32, 64, 96, 128} at length 128): attention runs on the padded (B, T)
layout, so a coarser step wastes more of its work on short batches; 32 keeps the waste under a quarter at T >= 128
and is a multiple of 8 (tensor cores)."""

TOKEN_BUCKETS = 16
"""The real-token count N is rounded up to a multiple of B * T / TOKEN_BUCKETS: at most 16 sizes per padded length,
and the filler rows cost at most a sixteenth of B * T more per-token work (eighths cost the CPU's tiny-model step 8%
on the sample corpus's pairs; BENCHMARKS.md, "The loop and the shapes")."""

MASKED_BUCKETS = 256
"""The masked count M is rounded up to a multiple of B * T / MASKED_BUCKETS (at least 8; 64 rows at B128 x T128):
with 15% masking a batch's M varies by a few percent, so two or three sizes per padded length, and the vocabulary
projection, a large share of a small model's step, computes at most ~3% filler rows."""


def round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def padded_length(lengths: np.ndarray, multiple: int | None = LENGTH_STEP, cap: int | None = None) -> int:
    """The batch's padded length: its longest row rounded up to ``multiple`` (None: no rounding), at most ``cap``
    (the data's max_seq_len) but never below the longest row."""
    longest = int(lengths.max())
    T = round_up(longest, multiple) if multiple else longest
    return max(longest, min(T, cap)) if cap else T


def token_index(lengths: np.ndarray, T: int, buckets: int = TOKEN_BUCKETS) -> np.ndarray:
    """Flat positions of the real tokens of right-padded rows of ``lengths`` in a (B, T) batch, then filler
    ``B * T`` up to the next multiple of B * T / ``buckets`` (at most B * T)."""
    B = len(lengths)
    real = np.flatnonzero(np.arange(T)[None, :] < lengths[:, None])  # (N,)
    size = min(B * T, round_up(len(real), max(1, B * T // buckets)))
    return np.concatenate([real, np.full(size - len(real), B * T, dtype=np.int64)])


def masked_index(labels: np.ndarray, buckets: int = MASKED_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the labelled (masked) tokens of a (B, T) label matrix and their labels, both padded to the
    next multiple of max(8, B * T / ``buckets``): filler position 0, filler label -100 (ignored by the loss)."""
    flat = labels.reshape(-1)
    where = np.flatnonzero(flat != -100)
    size = max(8, round_up(len(where), max(8, flat.size // buckets)))
    index = np.zeros(size, dtype=np.int64)
    index[: len(where)] = where
    targets = np.full(size, -100, dtype=np.int64)
    targets[: len(where)] = flat[where]
    return index, targets
