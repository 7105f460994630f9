"""GLUE (Wang et al., 2018) for sequence classification: SST-2 first, the other tasks through the same table.

``prepare_data`` (once, on rank 0) reads the original GLUE layout (``train.tsv``, ``dev.tsv``, ``test.tsv``; MNLI has
``dev_matched`` / ``dev_mismatched`` and ``test_matched`` / ``test_mismatched``) or the HuggingFace hub copy
``nyu-mll/glue``, tokenizes every split with the fine-tuned model's own tokenizer and caches the ids in
``cache_dir/glue-<task>-<hash>/``, where the hash covers the task, the source files' identity, the tokenizer and
``max_seq_len``. ``setup`` only loads that directory. Batches are padded per batch (dynamic padding).

The files are tab-separated, one example a line, and are NOT CSV: SST-2 and MNLI sentences contain unbalanced quote
characters, so lines are split on tabs and nothing else. SST-2 looks like this (GLUE keeps a trailing space)::

    sentence<TAB>label
    it 's a charming and often affecting journey . <TAB>1

and its test split ``index<TAB>sentence`` has no labels (GLUE scores submissions on its server). The release's other
quirks are read as they are: CoLA's train and dev files have no header (``GLUETask.columns``), MRPC's train and dev
headers start with a UTF-8 BOM, CoLA's dev file and the diagnostic set end without a final newline, STS-B's test file
has one column fewer (no score); tests/data_modules/test_glue_real.py reads every file of the real release.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Literal, Optional

import lightning as L
import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from data_modules import resources, sources
from data_modules.cache import build_once, log
from data_modules.sources import read_lines
from data_modules.collators import PadCollator, pin_memory
from data_modules.tokenizer import load_tokenizer, special_ids

FORMAT_VERSION = 2  # 2: PTB contractions joined (sources.join_contractions)
"""Bump when the cache layout or the text processing changes, so old caches are not reused."""

SAMPLE_DIR = Path(__file__).parent / "samples" / "sst2"
"""A small sentiment set in the SST-2 layout, written for this project (quickstart and tests)."""

Metric = Literal["accuracy", "f1", "matthews", "pearson_spearman"]


@dataclass(frozen=True)
class GLUETask:
    """One GLUE task: where it keeps its texts and labels (in the release files and on the hub), how it is scored and
    what the GLUE server wants back. ``TASKS`` below is the one table of these facts."""

    name: str
    text: tuple[str, ...]
    """Header names of the one or two text columns (train and dev files)."""
    label: str
    """Header name of the label column."""
    labels: tuple[str, ...]
    """Label values as the files write them, in class-id order (the hub's ClassLabel order); () = regression."""
    metric: Metric
    """The task's GLUE metric besides accuracy (Wang et al., 2018, table 1)."""
    submission: tuple[str, ...]
    """GLUE submission file name per test split."""
    hub_text: tuple[str, ...]
    """Column names of the texts in ``nyu-mll/glue``."""
    dev: tuple[str, ...] = ("dev",)
    test: tuple[str, ...] = ("test",)
    test_text: Optional[tuple[str, ...]] = None
    """Header names of the texts in the test files, when they differ from train/dev."""
    test_index: str = "index"
    columns: Optional[tuple[str, ...]] = None
    """Column names of header-less train/dev files (CoLA); None = the files have a header line."""
    _: KW_ONLY
    directory: str
    """The task's directory in the GLUE release (download_glue_data.py's layout: GLUE_DIR/SST-2/train.tsv ...)."""
    leaderboard_metrics: tuple[tuple[str, str], ...]
    """The dev metric(s) the GLUE leaderboard reports, in its column order: (official name, the key
    SequenceClassification logs in ``trainer.validate``). A task scores their unweighted mean."""
    display: Optional[str] = None
    """The task's name in a results table, when not ``directory``."""
    train: tuple[str, ...] = ("train",)
    """The training split (file stem); () for a test-only set (AX)."""
    diagnostic: Optional[GLUETask] = None
    """A test-only set that this task's model also predicts for the GLUE server (MNLI: AX)."""
    max_epochs: Optional[int] = None
    """Fine-tuning epochs when not the recipe's (``lit-lm glue`` passes ``--trainer.max_epochs``); None: the recipe's.
    HF transformers' examples/pytorch/text-classification/README.md: 3 epochs for every task, "with an exception for
    MRPC and WNLI which are tiny and where we used 5 epochs instead of 3"."""

    @property
    def num_labels(self) -> int:
        return len(self.labels) or 1

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def display_name(self) -> str:
        return self.display or self.directory

    @property
    def files(self) -> list[str]:
        """The split files in the task's directory: train, dev(s), test(s)."""
        return [f"{s}.tsv" for s in (*self.train, *self.dev, *self.test)]


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_NLI3 = ("entailment", "neutral", "contradiction")
_PAIR = ("sentence1", "sentence2")
_ACCURACY = (("accuracy", "val/acc"),)
_F1_ACCURACY = (("f1", "val/f1"), ("accuracy", "val/acc"))

AX = GLUETask("ax", _PAIR, "label", _NLI3, "matthews", ("AX.tsv",), ("premise", "hypothesis"), dev=(),
              test=("diagnostic",), directory="diagnostic", leaderboard_metrics=(), train=())
"""GLUE's diagnostic set: no training or dev data, one unlabelled file (diagnostic/diagnostic.tsv; the hub's ``ax``
config, split ``test``). Not fine-tuned and not part of the GLUE score: the server wants the MNLI model's predictions
on it, with MNLI's label strings, as AX.tsv, and scores them with R3, a three-class Matthews correlation."""

TASKS: dict[str, GLUETask] = {
    t.name: t
    for t in [  # the leaderboard's column order
        GLUETask("cola", ("sentence",), "label", _BINARY, "matthews", ("CoLA.tsv",), ("sentence",),
                 columns=("source", "label", "original_label", "sentence"), directory="CoLA",
                 leaderboard_metrics=(("matthews", "val/mcc"),)),
        GLUETask("sst2", ("sentence",), "label", _BINARY, "accuracy", ("SST-2.tsv",), ("sentence",),
                 directory="SST-2", leaderboard_metrics=_ACCURACY),
        GLUETask("mrpc", ("#1 String", "#2 String"), "Quality", _BINARY, "f1", ("MRPC.tsv",), _PAIR,
                 directory="MRPC", leaderboard_metrics=_F1_ACCURACY, max_epochs=5),
        GLUETask("stsb", _PAIR, "score", (), "pearson_spearman", ("STS-B.tsv",), _PAIR, directory="STS-B",
                 leaderboard_metrics=(("pearson", "val/pearson"), ("spearman", "val/spearman"))),
        GLUETask("qqp", ("question1", "question2"), "is_duplicate", _BINARY, "f1", ("QQP.tsv",),
                 ("question1", "question2"), test_index="id", directory="QQP", leaderboard_metrics=_F1_ACCURACY),
        GLUETask("mnli", _PAIR, "gold_label", _NLI3, "accuracy", ("MNLI-m.tsv", "MNLI-mm.tsv"),
                 ("premise", "hypothesis"), dev=("dev_matched", "dev_mismatched"),
                 test=("test_matched", "test_mismatched"), directory="MNLI", display="MNLI-m/mm", diagnostic=AX,
                 # SequenceClassification logs dev_matched as val/, dev_mismatched as val_mismatched/
                 leaderboard_metrics=(("matched", "val/acc"), ("mismatched", "val_mismatched/acc"))),
        GLUETask("qnli", ("question", "sentence"), "label", _NLI2, "accuracy", ("QNLI.tsv",), ("question", "sentence"),
                 directory="QNLI", leaderboard_metrics=_ACCURACY),
        GLUETask("rte", _PAIR, "label", _NLI2, "accuracy", ("RTE.tsv",), _PAIR, directory="RTE",
                 leaderboard_metrics=_ACCURACY),
        GLUETask("wnli", _PAIR, "label", _BINARY, "accuracy", ("WNLI.tsv",), _PAIR, directory="WNLI",
                 leaderboard_metrics=_ACCURACY, max_epochs=5),
    ]
}
"""The nine GLUE tasks by name (``--data.task_name``), in the leaderboard's column order."""


def get_task(name: str) -> GLUETask:
    if name not in TASKS:
        raise ValueError(f"--data.task_name {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name]


def _hub_split(split: str) -> str:
    """Local file stem -> hub split name (``dev_matched`` -> ``validation_matched``)."""
    return split.replace("dev", "validation", 1) if split.startswith("dev") else split


# ---------------------------------------------------------------------------------------------------------------------
# reading the GLUE files: pure functions


@dataclass
class Examples:
    """The rows of one split: one or two texts each, labels (None for test splits) and GLUE indices."""

    texts: list[tuple[str, ...]]
    labels: Optional[list]  # class ids (int) or scores (float)
    index: list[int]


def read_tsv(path: str | Path, task: GLUETask, labelled: bool) -> Examples:
    """Read one split file of ``task``; every malformed line is a one-line error naming ``path:lineno``."""
    path = Path(path)
    lines = list(read_lines(path, "GLUE layout"))
    if not lines or (len(lines) == 1 and not lines[0]):
        raise ValueError(f"{path}: empty file; expected the GLUE {task.name} layout")
    text_cols = task.text if labelled or task.test_text is None else task.test_text
    if labelled and task.columns is not None:  # CoLA train/dev: no header, fixed columns
        header, first = list(task.columns), 1
    else:
        header, first = lines[0].split("\t"), 2
        lines = lines[1:]
        need = [*text_cols, task.label] if labelled else [*text_cols]
        missing = [c for c in need if c not in header]
        if missing:
            raise ValueError(f"{path}:1: header {chr(9).join(header)!r} does not fit GLUE {task.name} "
                             f"(missing column(s) {', '.join(missing)}; expected columns {', '.join(need)})")
    if lines and not lines[-1]:  # the newline that ends the last row
        lines = lines[:-1]
    if not lines:
        raise ValueError(f"{path}: no examples after the header")
    text_at = [header.index(c) for c in text_cols]
    label_at = header.index(task.label) if labelled else None
    index_at = header.index(task.test_index) if not labelled and task.test_index in header else None
    texts, labels, index = [], [] if labelled else None, []
    for lineno, line in enumerate(lines, first):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ValueError(f"{path}:{lineno}: expected {len(header)} tab-separated fields "
                             f"({', '.join(header)}), got {len(fields)}")
        texts.append(tuple(sources.join_contractions(fields[i]) for i in text_at))
        if labelled:
            labels.append(_parse_label(fields[label_at], task, f"{path}:{lineno}"))
        if index_at is not None:
            try:
                index.append(int(fields[index_at]))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: index {fields[index_at]!r} is not an integer") from None
        else:
            index.append(lineno - first)
    return Examples(texts, labels, index)


def _parse_label(value: str, task: GLUETask, where: str):
    if task.is_regression:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: label {value!r} is not a number (task {task.name} is a regression)") from None
    if value not in task.labels:
        raise ValueError(f"{where}: label {value!r} is not one of {', '.join(task.labels)} (task {task.name})")
    return task.labels.index(value)


def hub_examples(ds, task: GLUETask, split: str, labelled: bool) -> Examples:
    """One split of the hub dataset (its labels are class ids already; test labels are -1 there)."""
    d = ds[_hub_split(split)]
    texts = [tuple(map(sources.join_contractions, row)) for row in zip(*(d[c] for c in task.hub_text))]
    labels = None
    if labelled:
        labels = [float(x) for x in d["label"]] if task.is_regression else [int(x) for x in d["label"]]
    return Examples(texts, labels, [int(i) for i in d["idx"]])


def load_hub(task: GLUETask):
    """``nyu-mll/glue`` from the hub, or a one-line error at once when it cannot be reached."""
    hint = f"pass --data.data_dir DIR holding the GLUE files ({', '.join(task.files)})"
    return sources.load_hub("nyu-mll/glue", task.name, hint)


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

