"""A deterministic, resumable, distributed sampler that hands the epoch to the dataset.

Why not ``torch.utils.data.DistributedSampler``: the NSP pairs and the MLM masks are drawn from the epoch, so the
epoch must travel with every index (also into persistent workers, which never see ``set_epoch``), and an exact
resume needs to skip the samples of the current epoch that were already consumed. Hence ``(epoch, index)`` tuples
and a ``start`` in the state. Sharding works like DistributedSampler's (same permutation on every rank, rank r takes
every num_replicas-th element), so Lightning's own distributed sampler must be switched off for this loader
(``Trainer(use_distributed_sampler=False)``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for this rank's share of a permutation of ``range(num_samples)`` seeded by
    ``(seed, epoch)``.

    ``drop_last`` truncates the permutation to a multiple of ``num_replicas`` (every rank gets the same count);
    otherwise it is padded by wrapping around, so some samples appear twice in an epoch.
    """

    def __init__(
        self,
        num_samples: int,
        shuffle: bool = True,
        seed: int = 42,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        if num_samples < 0 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"ResumableSampler: need num_samples >= 0 and 0 <= rank < num_replicas, "
                             f"got num_samples={num_samples}, rank={rank}, num_replicas={num_replicas}")
        self.num_samples, self.shuffle, self.seed = num_samples, shuffle, seed
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch = 0
        self.start = 0  # samples of this rank's current epoch to skip on the next __iter__
        self._yielded = 0  # samples of the current epoch handed out so far (including the skipped ones)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.num_replicas
        return -(-self.num_samples // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._yielded = 0
        self.epoch = epoch

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's indices for ``epoch``, in order, without any skip."""
        n = self.num_samples
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        total = len(self) * self.num_replicas
        if total > n:  # pad by wrapping around (drop_last=False), as DistributedSampler does
            order = np.resize(order, total)
        return order[:total][self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start = self.epoch, self.start
        self.start = 0  # the skip applies to one iteration only
        self._yielded = start
        for i in self.indices(epoch)[start:]:
            self._yielded += 1
            yield epoch, int(i)

    def state_dict(self) -> dict[str, int]:
        """``start`` counts the samples this sampler has handed out in the current epoch. A DataLoader prefetches
        ahead of the training step, so a training loop that wants an exact resume should store
        ``batches_done * batch_size`` as ``start`` instead."""
        return {"epoch": self.epoch, "start": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.start = int(state["start"])
        self._yielded = self.start
