"""Several corpora in one training stream, each with its share: a fixed index table over their datasets.

The table is built once from the seed: source k contributes ``counts[k]`` samples an epoch, all of its samples
repeated ``counts[k] // len(k)`` times plus a seed-chosen subset for the rest (or only a subset, when it is
downsampled). An epoch therefore has a defined length, the sampler shuffles the table like any dataset, and exact
resume holds as on one corpus. A sample's ``index`` is its row in the table, so a repeated sample gets other masks.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset


def mixture_counts(sizes: list[int], shares: list[float | None]) -> list[int]:
    """Samples an epoch per source: the epoch keeps the sources' total size, split by the shares, rounded by largest
    remainder, at least 1 each. Shares are normalised when every source has one; sources without one split what
    the others leave (1 - their sum) in proportion to their sizes; with no share at all, the sizes decide."""
    total = sum(sizes)
    given = sum(s for s in shares if s is not None)
    missing = sum(n for s, n in zip(shares, sizes) if s is None)
    if missing and given >= 1:
        raise ValueError(f"--data.sources: the shares given sum to {given:g}, leaving nothing for the sources "
                         f"without one; give every source a share or keep the sum below 1")
    rest = 1.0 - given if given else 1.0
    weights = np.array([s if s is not None else rest * n / missing for s, n in zip(shares, sizes)], dtype=np.float64)
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]] += 1
    return [max(1, int(c)) for c in counts]


class MixtureDataset(Dataset):
    """Rows ``(source, sample)`` over ``datasets``: ``counts[k]`` rows of source k (see the module docstring);
    takes int or ``(epoch, index)`` keys like the datasets it draws from."""

    def __init__(self, datasets: list[Dataset], counts: list[int], seed: int) -> None:
        self.datasets = datasets
        parts = []
        for k, (ds, c) in enumerate(zip(datasets, counts)):
            n = len(ds)
            rest = np.random.default_rng([seed, 524287, k]).permutation(n)[: c % n]
            rows = np.concatenate([np.tile(np.arange(n, dtype=np.int64), c // n), np.sort(rest)])
            parts.append(np.stack([np.full(len(rows), k, dtype=np.int64), rows], axis=1))
        self.table = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.table)

    def sources(self, indices) -> np.ndarray:
        """The source of each row in ``indices``."""
        return self.table[np.asarray(indices, dtype=np.int64), 0]

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        k, row = (int(v) for v in self.table[int(index)])
        item = self.datasets[k][(epoch, row)]
        return {**item, "index": int(index), "source": k}  # the source: validation reports each one's metrics
