"""GLUE (Wang et al., 2018) for sequence classification: SST-2 first, the other tasks through the same table.

``prepare_data`` (once, on rank 0) reads the original GLUE layout (``train.tsv``, ``dev.tsv``, ``test.tsv``; MNLI has
``dev_matched`` / ``dev_mismatched`` and ``test_matched`` / ``test_mismatched``) or the HuggingFace hub copy
``nyu-mll/glue``, tokenizes every split with the fine-tuned model's own tokenizer and caches the ids in
``cache_dir/glue-<task>-<hash>/``, where the hash covers the task, the source files' identity, the tokenizer and
``max_seq_len``. ``setup`` only loads that directory. Batches are padded per batch (dynamic padding).

The task table is data_modules.glue_tasks; reading the release files, data_modules.glue_reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import lightning as L
import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from data_modules import resources
from data_modules.cache import build_once, log
from data_modules.collators import PadCollator, pin_memory
from data_modules.glue_reading import Examples, hub_examples, load_hub, read_tsv
from data_modules.glue_tasks import get_task
from data_modules.tokenizer import load_tokenizer, special_ids

FORMAT_VERSION = 2  # 2: PTB contractions joined (sources.join_contractions)
"""Bump when the cache layout or the text processing changes, so old caches are not reused."""

SAMPLE_DIR = Path(__file__).parent / "samples" / "sst2"
"""A small sentiment set in the SST-2 layout, written for this project (quickstart and tests)."""


# ---------------------------------------------------------------------------------------------------------------------
# dataset


class GLUEDataset(Dataset):
    """Tokenized examples of one split, from the cache: ``{"input_ids", "token_type_ids", "label", "index"}``."""

    def __init__(self, directory: Path, split: str, rows: Optional[np.ndarray] = None) -> None:
        load = lambda name: np.load(directory / f"{split}.{name}.npy", mmap_mode="r")  # noqa: E731
        self.ids, self.types, self.offsets, self.index = load("ids"), load("types"), load("offsets"), load("index")
        self.labels = load("labels") if (directory / f"{split}.labels.npy").exists() else None
        self.rows = np.arange(len(self.offsets) - 1) if rows is None else rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        r = int(self.rows[i])
        a, b = int(self.offsets[r]), int(self.offsets[r + 1])
        out = {"input_ids": np.asarray(self.ids[a:b], dtype=np.int64),
               "token_type_ids": np.asarray(self.types[a:b], dtype=np.int64), "index": int(self.index[r])}
        if self.labels is not None:
            label = self.labels[r]
            out["label"] = float(label) if self.labels.dtype.kind == "f" else int(label)
        return out


def _tokenize(examples: Examples, tok: Tokenizer) -> dict[str, np.ndarray]:
    encodings = tok.encode_batch([t[0] if len(t) == 1 else t for t in examples.texts])
    lens = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    out = {
        "ids": np.fromiter((i for e in encodings for i in e.ids), dtype=np.int32, count=int(lens.sum())),
        "types": np.fromiter((i for e in encodings for i in e.type_ids), dtype=np.int8, count=int(lens.sum())),
        "offsets": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        "index": np.asarray(examples.index, dtype=np.int64),
    }
    if examples.labels is not None:
        out["labels"] = np.asarray(examples.labels, dtype=np.float32 if isinstance(examples.labels[0], float) else np.int64)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# the data module


class GLUEDataModule(L.LightningDataModule):
    """A GLUE task (SST-2 by default) as padded batches of token ids for sequence classification.

    Args:
        task_name: GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte or wnli (linked to --model.num_labels).
        data_dir: directory holding the task's GLUE files (SST-2: train.tsv, dev.tsv, test.tsv); None loads
            ``nyu-mll/glue`` from the HuggingFace hub.
        tokenizer: the fine-tuned model's tokenizer (tokenizer.json, HF directory or lit-lm .ckpt); the CLI sets it to
            --model.pretrained when not given.
        max_seq_len: truncate longer examples (special tokens included). The longest SST-2 sentence is 65 tokens with
            a 20k WordPiece vocabulary trained on SST-2 (92 with a 2k one), so 128 truncates nothing there.
        batch_size: training batch size per device (also used for evaluation and prediction).
        num_workers: DataLoader worker processes.
        cache_dir: where tokenized splits are cached (one sub-directory per task, source, tokenizer and length).
        train_subset: train on a fixed random subset of this many training examples (None: all of them).
        subset_seed: seed of that subset, independent of ``seed`` so runs with other seeds see the same examples.
        seed: seed of the training order; None (the configs' choice) takes the run's ``seed_everything``, so one
            seed sets both the head's initialisation and the data order.
    """

    def __init__(
        self,
        task_name: str = "sst2",
        data_dir: Optional[str] = None,
        tokenizer: Optional[str] = None,
        max_seq_len: int = 128,
        batch_size: int = 32,
        num_workers: int = 2,
        cache_dir: str = "~/.cache/lit-lm",
        train_subset: Optional[int] = None,
        subset_seed: int = 0,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.task = get_task(task_name)
        checks = [
            # 512: BERT's position table (the model checks its own max_position_embeddings)
            (8 <= max_seq_len <= 512, f"--data.max_seq_len={max_seq_len}: expected 8..512"),
            (batch_size >= 1, f"--data.batch_size={batch_size}: expected >= 1"),
            (num_workers >= 0, f"--data.num_workers={num_workers}: expected >= 0"),
            (train_subset is None or train_subset >= 1, f"--data.train_subset={train_subset}: expected >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.save_hyperparameters()
        self.task_name, self.data_dir, self.tokenizer_source = task_name, data_dir, tokenizer
        self.max_seq_len, self.batch_size, self.num_workers = max_seq_len, batch_size, num_workers
        self.cache_dir = Path(cache_dir).expanduser()
        if seed is None:  # LightningCLI seeds (and sets PL_GLOBAL_SEED) before it builds the data module
            seed = int(os.environ.get("PL_GLOBAL_SEED", 42))
        self.train_subset, self.subset_seed, self.seed = train_subset, subset_seed, seed
        # set by setup()
        self.tokenizer: Optional[Tokenizer] = None
        self.tokenizer_json: Optional[str] = None
        self.datasets: dict[str, GLUEDataset] = {}

    @property
    def val_splits(self) -> tuple[str, ...]:
        return self.task.dev

    @property
    def test_splits(self) -> tuple[str, ...]:
        return self.task.test

    # -- sources and cache identity -----------------------------------------------------------------------------------

    def source_files(self) -> dict[str, Path]:
        """Split -> GLUE file in ``data_dir``; one error listing every missing file."""
        root = Path(resources.find(self.data_dir)).expanduser()  # the bundled sample from any directory too
        if not root.is_dir():
            raise FileNotFoundError(f"--data.data_dir {root}: no such directory")
        files = {Path(name).stem: root / name for name in self.task.files}
        missing = [p.name for p in files.values() if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"--data.data_dir {root}: missing {', '.join(missing)} of GLUE {self.task.name}")
        return files

    def _load_tokenizer(self) -> Tokenizer:
        if self.tokenizer_source is None:
            raise ValueError("--data.tokenizer is not set: give the model's tokenizer (tokenizer.json, HF directory "
                             "or lit-lm .ckpt), or --model.pretrained, which provides it")
        tok = load_tokenizer(self.tokenizer_source, "--data.tokenizer")
        special_ids(tok, f"--data.tokenizer {self.tokenizer_source}")
        tok.no_padding()
        # longest_first, as BERT's run_classifier.py truncates pairs; [CLS]/[SEP] are counted in max_length
        tok.enable_truncation(self.max_seq_len)
        return tok

    def cache_path(self, tok: Tokenizer) -> Path:
        if self.data_dir is None:
            source = {"hub": "nyu-mll/glue"}
        else:
            source = {name: [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns]
                      for name, p in self.source_files().items()}
        key = {"format": FORMAT_VERSION, "task": self.task.name, "source": source, "max_seq_len": self.max_seq_len,
               "tokenizer": hashlib.sha256(tok.to_str().encode()).hexdigest()}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        return self.cache_dir / f"glue-{self.task.name}-{digest}"

    # -- prepare_data: tokenize once ----------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        tok = self._load_tokenizer()
        final = self.cache_path(tok)

        def build(tmp: Path) -> None:
            counts = {}
            for split, examples in self._read_splits():
                for name, array in _tokenize(examples, tok).items():
                    np.save(tmp / f"{split}.{name}.npy", array)
                counts[split] = len(examples.index)
            meta = {"task": self.task.name, "data_dir": self.data_dir, "max_seq_len": self.max_seq_len, "counts": counts}
            (tmp / "tokenizer.json").write_text(tok.to_str())
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            log("glue", f"{self.task.name}: {counts} tokenized")

        # one builder at a time across the nodes sharing the cache dir (Lightning prepares data once per node)
        build_once(final, "glue", lambda d: None if (d / "meta.json").is_file() else "no meta.json", build)

    def _read_splits(self) -> Iterator[tuple[str, Examples]]:
        splits = [("train", True), *((s, True) for s in self.task.dev), *((s, False) for s in self.task.test)]
        if self.data_dir is None:
            ds = load_hub(self.task)
            for split, labelled in splits:
                yield split, hub_examples(ds, self.task, split, labelled)
        else:
            files = self.source_files()
            for split, labelled in splits:
                yield split, read_tsv(files[split], self.task, labelled)

    # -- setup: load the cache ----------------------------------------------------------------------------------------

    def setup(self, stage: Optional[str] = None) -> None:
        tok = self._load_tokenizer()
        cache = self.cache_path(tok)
        if not (cache / "meta.json").is_file():
            raise FileNotFoundError(f"{cache}: no tokenized cache; prepare_data() must run first")
        self.tokenizer, self.tokenizer_json = tok, (cache / "tokenizer.json").read_text()
        splits = {"fit": ["train", *self.val_splits], "validate": list(self.val_splits), "predict": list(self.test_splits)}
        for split in splits.get(stage, ["train", *self.val_splits, *self.test_splits]):
            if split in self.datasets:
                continue
            rows = None
            if split == "train" and self.train_subset is not None:
                n = len(np.load(cache / "train.index.npy", mmap_mode="r"))
                if self.train_subset < n:
                    rows = np.sort(np.random.default_rng(self.subset_seed).choice(n, self.train_subset, replace=False))
            self.datasets[split] = GLUEDataset(cache, split, rows)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, generator=generator,
                          collate_fn=PadCollator(self.tokenizer.token_to_id("[PAD]"), max_len=self.max_seq_len),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0, pin_memory=pin_memory())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        loaders = [self._loader(s, shuffle=False) for s in self.val_splits]
        return loaders[0] if len(loaders) == 1 else loaders

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        """The unlabelled GLUE test split(s), for a submission file."""
        loaders = [self._loader(s, shuffle=False) for s in self.test_splits]
        return loaders[0] if len(loaders) == 1 else loaders
