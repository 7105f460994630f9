"""Exact resume of the training data: the checkpoint records how far into which epoch of which data training got.

A mixin of the pretraining data module (``corpus.CorpusDataModule``), which sets ``_train_sampler`` and
``_train_data`` when it builds the train loader and applies ``_resume_position`` to the new sampler. The sampler
position lives in the data module's state_dict, not in the DataLoader, so Lightning's check for a resumable
DataLoader misses it and warns on every mid-epoch resume: that warning is silenced here.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Dataset

from data_modules.mixture import MixtureDataset
from data_modules.nsp import NSPDataset
from data_modules.sampling import ResumableSampler

warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def _tables(ds: Dataset) -> Iterator[np.ndarray]:
    """The arrays that fix what every index of ``ds`` is: the NSP pair plan, the packed or line rows; for a mixture
    its table and its sources' tables."""
    if isinstance(ds, MixtureDataset):
        yield ds.table
        for sub in ds.datasets:
            yield from _tables(sub)
    else:
        yield ds.plan if isinstance(ds, NSPDataset) else ds.rows


class ResumableTrainData:
    """``state_dict`` / ``load_state_dict`` of the train sampler's position, and where a resumed loader starts.

    Expects of its class: ``trainer``, ``batch_size``, ``max_seq_len``, ``seed`` and ``_log(message)``."""

    _train_sampler: ResumableSampler | None = None
    _train_data: dict | None = None  # what the train sampler indexes (_train_identity), saved with its state
    _resume: dict | None = None  # sampler state from a checkpoint, applied to the next train loader
    _resume_data: dict | None = None  # the data that state indexed (None: a checkpoint that did not say)

    def state_dict(self) -> dict:
        """The train sampler's position, counted in batches whose training step ran (not batches the loader
        prefetched), and the data it indexes: Lightning saves this with every checkpoint and hands it back before
        the loader is built. The position is per rank and the same on every rank (each takes one batch a step)."""
        if self._train_sampler is None or self.trainer is None:
            return {}
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"sampler": {"epoch": self._train_sampler.epoch, "start": done * self.batch_size},
                "data": self._train_data}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume, self._resume_data = state_dict.get("sampler"), state_dict.get("data")
        self._state_loaded = True

    def _say_if_state_missing(self) -> None:
        """Lightning hands a data module its state by class name: a checkpoint written under another data module
        class (a run begun with ``WikiText103DataModule``, now resumed by ``CorpusDataModule``) gives it none, and
        the data would silently start the epoch over. Say so in one line, with the way to resume exactly."""
        trainer = self.trainer
        if trainer is None or not trainer.ckpt_path or getattr(self, "_state_loaded", False):
            return
        if not trainer.is_global_zero:
            return
        self._state_loaded = True  # once
        self._log(f"{trainer.ckpt_path} holds no {type(self).__name__} state (written by another data module class?): "
                  f"the training data starts its epoch over; resume with that class (--data.class_path) to continue "
                  f"exactly where it stopped")

    def _train_identity(self, ds: Dataset) -> dict:
        """What a train index means: the number of samples and a hash of the pair plan (NSP) or of the packed rows,
        with max_seq_len and the seed (the permutation and the per-sample draws). A hash of the content, not of
        the cache's name, so a corpus copied elsewhere (another cache directory) is still the same data. A mixture
        hashes its index table and the tables of its sources."""
        h = hashlib.sha256(f"{type(ds).__name__}:{self.max_seq_len}:{self.seed}:".encode())
        for table in _tables(ds):
            h.update(np.ascontiguousarray(table).tobytes())
        return {"num_samples": len(ds), "max_seq_len": self.max_seq_len, "digest": h.hexdigest()[:16]}

    def _resume_position(self, sampler: ResumableSampler) -> dict[str, int]:
        """Where the resumed train loader starts. On the checkpoint's data: right after the last trained batch, or
        at the next epoch if the checkpoint was written at an epoch's end. On other data (BERT's second phase at a
        longer max_seq_len builds other pairs; or another corpus or seed) the saved position points into another
        permutation: the new data starts at the first batch of a fresh epoch (the epoch number is kept, or the next
        one after an epoch's end), and Lightning's count of this epoch's batches is rewound to zero to match, so
        the epoch runs the new data's full length. Says so in one line on rank zero."""
        state, old, self._resume, self._resume_data = self._resume, self._resume_data, None, None
        B = self.batch_size
        same = old is None or (old.get("num_samples"), old.get("digest")) == (self._train_data["num_samples"],
                                                                               self._train_data["digest"])
        per_rank = len(sampler) if same else len(ResumableSampler(old["num_samples"], num_replicas=sampler.num_replicas,
                                                                  rank=sampler.rank))
        epoch = state["epoch"] + (state["start"] >= per_rank // B * B)  # saved at the epoch's end: the next one
        if same:
            return {"epoch": epoch, "start": 0} if epoch > state["epoch"] else state
        if self.trainer is not None:
            current = self.trainer.fit_loop.epoch_loop.batch_progress.current
            done = current.processed  # all four counters move together, so Lightning's restart logic holds
            current.ready, current.started, current.processed, current.completed = (
                current.ready - done, current.started - done, 0, current.completed - done)
        if self.trainer is None or self.trainer.is_global_zero:
            new = self._train_data
            step = f", global step {self.trainer.global_step} continues" if self.trainer is not None else ""
            self._log(f"the training data differs from the checkpoint's ({old['num_samples']:,} samples at max_seq_len "
                      f"{old.get('max_seq_len')}, now {new['num_samples']:,} at max_seq_len {new['max_seq_len']}): "
                      f"epoch {epoch} restarts at its first batch on the new data{step}")
        return {"epoch": epoch, "start": 0}
