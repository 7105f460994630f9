"""Any corpus for BERT pretraining: documents -> sentences -> WordPiece ids in a memory-mapped cache -> NSP + MLM.

``prepare_data`` (once, on rank 0) resolves the sources (``corpus_detection.open_corpus``: a folder, a file or a
glob of text, JSON Lines, CSV/TSV, Parquet or WikiText release files, or a hub dataset) and builds the cache
(``corpus_cache.build``: tokenizer, carved splits, ids, count baselines) under ``cache_dir/<format>-<hash>/``, where
the hash covers every setting and every file's content. ``setup`` (every rank) only memory-maps that directory and
builds the datasets: NSP pairs, packed text (``--model.nsp false``) or one line a sample (``--data.line_by_line``),
and for several sources a mixture with their shares.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tokenizers import Tokenizer

from data_modules import corpus_cache, resources
from data_modules.cache import build_once, log
from data_modules.collators import MLMCollator, pin_memory
from data_modules.corpus_cache import Preprocessing, cache_problem, check_vocab, stem
from data_modules.corpus_content import Corpus
from data_modules.corpus_detection import open_corpus
from data_modules.corpus_formats import FORMATS, CorpusSource
from data_modules.lines import LineDataset
from data_modules.mixture import MixtureDataset, mixture_counts
from data_modules.nsp import NSPDataset
from data_modules.packing import PackedDataset
from data_modules.resume import ResumableTrainData
from data_modules.sampling import ResumableSampler
from data_modules.tokenizer import SpecialIds, continuation_mask, special_ids


class CorpusDataModule(ResumableTrainData, L.LightningDataModule):
    """A corpus (or several) as BERT MLM + NSP batches: packed MLM-only text with ``nsp`` false, one line a sample
    with ``line_by_line``.

    Args:
        data_dir: the corpus: a folder (read recursively), a file or a glob of files of one format; None reads
            ``hub_dataset`` instead (or ``sources``). Files named for a split (``train.jsonl``, ``valid.txt``,
            ``dev.tsv``, WikiText's ``wiki.{train,valid,test}.tokens``) are those splits; otherwise every file is
            train and validation and test are carved from it (``val_fraction``).
        format: wikitext, text, jsonl, csv, tsv or parquet; None detects it from the file names.
        text_column: the JSONL key, CSV/TSV column, Parquet or hub column holding the text.
        document_per_file: plain text: every file is one document (else blank lines separate documents).
        variant: WikiText: ``tokens`` (the word-level files with ``<unk>``) or ``raw``; None takes the first whose
            three files are all there.
        detokenize: WikiText: rejoin the `` @-@ ``, `` @,@ `` and `` @.@ `` splits before tokenizing.
        hub_dataset: HuggingFace dataset read when ``data_dir`` is None (e.g. ``Salesforce/wikitext``).
        hub_config: configuration of ``hub_dataset``.
        hub_splits: our split (train, validation, test) -> the hub's split name; None: those the dataset has.
        sources: several corpora in one run instead of ``data_dir``: a list of ``{path, format, text_column, ...,
            share, name}`` (the fields above, per source; ``path`` or ``hub_dataset``). ``share``: the source's
            weight in the training stream (normalised; a missing share is the source's own fraction of all samples);
            validation and test combine every source's.
        val_fraction: fraction of a source's train documents carved into validation, and again into test, when the
            source has no such split (by document, from ``seed``; each carved split gets at least 2 documents).
        line_by_line: every non-empty line (a row's text in tabular formats) is one sample, ``[CLS] line [SEP]``,
            truncated to ``max_seq_len`` and padded per batch; MLM only (needs ``--model.nsp false``).
        cache_dir: where the preprocessed, tokenized corpus is cached (one sub-directory per preprocessing config).
        vocab_size: the tokenizer is trained to at most this many tokens; the model's embedding has this many rows.
        lowercase: lower-case (and strip accents) in the trained tokenizer, as BERT-uncased.
        tokenizer: reuse this tokenizer (tokenizer.json, HF directory or lit-lm .ckpt) instead of training one.
        tokenizer_sample_bytes: train the tokenizer on the first this-many bytes of train text (None: all of it;
            several sources share it evenly); about 100 MB is plenty for 30k WordPieces.
        max_seq_len: longest pretraining sequence, special tokens included.
        short_seq_prob: probability of a shorter random sequence length (BERT: 0.1).
        nsp_prob: probability that sentence B is a random sentence from another document (label 1).
        nsp: build next-sentence pairs; False (linked from --model.nsp) packs contiguous text to ``max_seq_len``
            instead (RoBERTa's FULL-SENTENCES, data_modules.packing).
        mlm_probability: fraction of tokens to mask and predict (BERT: 0.15).
        whole_word_masking: mask all the WordPieces of a word together.
        batch_size: training batch size per device.
        val_batch_size: validation / test batch size per device (None: ``batch_size``).
        num_workers: DataLoader worker processes.
        pad_to_multiple_of: round padded batch lengths up to a multiple of this (8 suits tensor cores).
        seed: seed of the pairs, the masks, the shuffling, the carved splits and the mixture.
        max_val_pairs: use at most this many validation (and test) samples, a fixed evenly spaced subset (None: all).
    """

    log_tag = "data"
    """The tag of this module's log lines (``[data] ...``)."""

    def __init__(
        self,
        data_dir: str | None = None,
        format: str | None = None,
        text_column: str = "text",
        document_per_file: bool = False,
        variant: Literal["tokens", "raw"] | None = None,
        detokenize: bool = True,
        hub_dataset: str | None = None,
        hub_config: str | None = None,
        hub_splits: dict[str, str] | None = None,
        sources: list[CorpusSource] | None = None,
        val_fraction: float = 0.01,
        line_by_line: bool = False,
        cache_dir: str = "~/.cache/lit-lm",
        vocab_size: int = 30522,
        lowercase: bool = True,
        tokenizer: str | None = None,
        tokenizer_sample_bytes: int | None = None,
        max_seq_len: int = 128,
        short_seq_prob: float = 0.1,
        nsp_prob: float = 0.5,
        nsp: bool = True,
        mlm_probability: float = 0.15,
        whole_word_masking: bool = False,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 2,
        pad_to_multiple_of: int | None = None,
        seed: int = 42,
        max_val_pairs: int | None = None,
    ) -> None:
        super().__init__()
        checks = [
            (variant in (None, "tokens", "raw"), f"--data.variant={variant!r}: expected 'tokens' or 'raw'"),
            (format is None or format in FORMATS, f"--data.format={format!r}: expected one of {', '.join(FORMATS)}"),
            (8 <= max_seq_len <= 512, f"--data.max_seq_len={max_seq_len}: expected 8..512"),
            (vocab_size > 5, f"--data.vocab_size={vocab_size}: expected > 5 (the special tokens take 5)"),
            (batch_size >= 1, f"--data.batch_size={batch_size}: expected >= 1"),
            (val_batch_size is None or val_batch_size >= 1, f"--data.val_batch_size={val_batch_size}: expected >= 1"),
            (num_workers >= 0, f"--data.num_workers={num_workers}: expected >= 0"),
            (0.0 <= short_seq_prob <= 1.0, f"--data.short_seq_prob={short_seq_prob}: expected 0..1"),
            (0.0 <= nsp_prob <= 1.0, f"--data.nsp_prob={nsp_prob}: expected 0..1"),
            (0.0 < mlm_probability < 1.0, f"--data.mlm_probability={mlm_probability}: expected in (0, 1)"),
            (0.0 < val_fraction < 0.5, f"--data.val_fraction={val_fraction}: expected in (0, 0.5) (validation and "
                                       f"test each take this fraction of train)"),
            (tokenizer_sample_bytes is None or tokenizer_sample_bytes > 0,
             f"--data.tokenizer_sample_bytes={tokenizer_sample_bytes}: expected > 0"),
            (max_val_pairs is None or max_val_pairs >= 1, f"--data.max_val_pairs={max_val_pairs}: expected >= 1"),
            (pad_to_multiple_of is None or pad_to_multiple_of >= 1,
             f"--data.pad_to_multiple_of={pad_to_multiple_of}: expected >= 1"),
            (not (line_by_line and nsp), "--data.line_by_line true: one line a sample leaves no sentence pairs for "
                                         "next sentence prediction; add --model.nsp false (linked into --data.nsp)"),
            (not (sources and data_dir is not None), "--data.sources and --data.data_dir: give one of them"),
            (sources is None or len(sources) >= 1, "--data.sources: empty list; give at least one source or use "
                                                   "--data.data_dir"),
        ]
        shares = [s.get("share") if isinstance(s, dict) else s.share for s in sources or []]
        for i, share in enumerate(shares):
            checks.append((share is None or share > 0, f"--data.sources[{i}].share={share}: expected > 0"))
        given = sum(s for s in shares if s is not None and s > 0)
        checks.append((None not in shares or given < 1,
                       f"--data.sources: the shares given sum to {given:g}, leaving nothing for the sources without "
                       f"one; give every source a share or keep the sum below 1"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.save_hyperparameters(ignore=["sources"])
        self._several = bool(sources)
        if sources:
            self.sources = [CorpusSource(**s) if isinstance(s, dict) else s for s in sources]
            self.sources = [replace(s, path=resources.find(s.path)) for s in self.sources]  # as data_dir below
            # plain values in the checkpoint's hyper-parameters: torch.load(weights_only=True) reads no dataclass
            self.hparams["sources"] = [asdict(s) for s in self.sources]
        else:
            self.sources = [CorpusSource(path=resources.find(data_dir), format=format, text_column=text_column,
                                         document_per_file=document_per_file, variant=variant, detokenize=detokenize,
                                         hub_dataset=hub_dataset if data_dir is None else None, hub_config=hub_config,
                                         hub_splits=hub_splits)]
        self.data_dir, self.variant = data_dir, variant
        self.hub_dataset, self.hub_config = hub_dataset, hub_config
        self.cache_dir = Path(cache_dir).expanduser()
        self.vocab_size, self.lowercase, self.detokenize = vocab_size, lowercase, detokenize
        self.tokenizer_source, self.tokenizer_sample_bytes = tokenizer, tokenizer_sample_bytes
        self.val_fraction, self.line_by_line = val_fraction, line_by_line
        self.max_seq_len, self.short_seq_prob, self.nsp_prob, self.nsp = max_seq_len, short_seq_prob, nsp_prob, nsp
        self.mlm_probability, self.whole_word_masking = mlm_probability, whole_word_masking
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.pad_to_multiple_of = num_workers, pad_to_multiple_of
        self.seed, self.max_val_pairs = seed, max_val_pairs
        self.preprocessing = Preprocessing(vocab_size, lowercase, tokenizer, tokenizer_sample_bytes, val_fraction, seed,
                                           line_by_line)
        # set by setup()
        self.tokenizer: Tokenizer | None = None
        self.tokenizer_json: str | None = None
        self.special: SpecialIds | None = None
        self.baselines: dict | None = None  # count baselines of the validation split (data_modules.baselines)
        self.datasets: dict[str, Dataset] = {}
        self.source_names: list[str] = []
        self._resolved: tuple[list[Corpus], dict, Path] | None = None

    def _log(self, message: str) -> None:
        log(self.log_tag, message)

    # -- sources and cache identity -----------------------------------------------------------------------------------

    def _open(self) -> list[Corpus]:
        if not self._several:
            return [open_corpus(self.sources[0])]
        corpora = [open_corpus(s, f"--data.sources[{i}].path", f"--data.sources[{i}].format",
                               f"--data.sources[{i}].hub_dataset") for i, s in enumerate(self.sources)]
        names = [c.name for c in corpora]
        for i, name in enumerate(names):
            if name in names[:i]:  # their validation metrics (val/<name>/mlm_acc) would share one curve
                raise ValueError(f"--data.sources[{i}]: named '{name}' like --data.sources[{names.index(name)}]; give "
                                 f"it a name of its own (--data.sources[{i}].name), the label of its validation metrics")
        return corpora

    def _resolve(self, fresh: bool = False) -> tuple[list[Corpus], dict, Path]:
        """(the opened sources, the cache key, the cache directory); the sources' files are hashed once per call
        with ``fresh`` (prepare_data) and otherwise once per data module."""
        if fresh or self._resolved is None:
            corpora = self._open()
            key = corpus_cache.cache_key(corpora, self.preprocessing)
            self._resolved = corpora, key, self.cache_dir / corpus_cache.cache_name(corpora, key)
        return self._resolved

    def cache_key(self) -> dict:
        """Everything that changes the cached result (corpus_cache.cache_key)."""
        return self._resolve()[1]

    def cache_path(self) -> Path:
        return self._resolve()[2]

    # -- prepare_data: build the cache once ---------------------------------------------------------------------------

    def prepare_data(self) -> None:
        final = self._resolve(fresh=True)[2]
        if final.is_dir() and cache_problem(final) is None:
            self._log(f"reusing cache at {final}")
            return
        # one builder at a time across the nodes sharing the cache dir (Lightning prepares data once per node);
        # build_once discards a damaged copy itself, under the lock
        build_once(final, self.log_tag, cache_problem, self._build)

    def _build(self, out: Path) -> None:
        corpora, key, _ = self._resolve()
        corpus_cache.build(out, corpora, self.preprocessing, key, self.log_tag)
        # the key was computed from the files' content before reading them: a file edited since would leave a cache
        # that matches neither version (hashing once more costs ~1 s per GB, little beside the build)
        before = key["sources"] if "sources" in key else [key["source"]]
        for corpus, identity, now in zip(corpora, before, self._open()):
            where = corpus_cache.changed_files(identity, now.identity())
            if where is not None:
                raise ValueError(f"{corpus.name}: {where} changed while the cache was being built (its content no "
                                 f"longer matches the hash taken at the start); run again once it stays unchanged")

    # -- setup: memory-map the cache ----------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        cache = self.cache_path()
        if not cache.is_dir():
            raise FileNotFoundError(f"{cache}: no preprocessed cache; prepare_data() must run first")
        problem = cache_problem(cache)
        if problem is not None:
            raise ValueError(f"{cache}: damaged cache ({problem}); run prepare_data() again to rebuild it")
        if self.tokenizer is None:
            self.tokenizer_json = (cache / "tokenizer.json").read_text()
            self.tokenizer = Tokenizer.from_str(self.tokenizer_json)
            check_vocab(self.tokenizer.get_vocab_size(), self.vocab_size, f"tokenizer {cache / 'tokenizer.json'}")
            self.special = special_ids(self.tokenizer)
            path = cache / "baselines.json"
            self.baselines = json.loads(path.read_text()) if path.is_file() else None
            self.source_names = [s["name"] for s in json.loads((cache / "meta.json").read_text())["sources"]]
        splits = {"fit": ["train", "validation"], "validate": ["validation"], "test": ["test"], "predict": []}
        for split in splits.get(stage, list(corpus_cache.SPLITS)) if stage else list(corpus_cache.SPLITS):
            if split in self.datasets:
                continue
            n = len(self.source_names)
            parts = [self._dataset(cache, stem(i, n, split), split) for i in range(n)]
            if n == 1:
                ds = parts[0]
            elif split == "train":
                counts = mixture_counts([len(p) for p in parts], [s.share for s in self.sources])
                ds = MixtureDataset(parts, counts, self.seed)
                if self.trainer is None or self.trainer.is_global_zero:
                    self._log(f"mixture of {n} sources, {len(ds):,} training samples an epoch: " + ", ".join(
                        f"{name} {c / len(ds):.1%} ({c:,} of its {len(p):,} samples)"
                        for name, c, p in zip(self.source_names, counts, parts)))
            else:  # every source's samples once, in order: the combined validation (and test) loss
                ds = MixtureDataset(parts, [len(p) for p in parts], self.seed)
            if split != "train" and self.max_val_pairs is not None and self.max_val_pairs < len(ds):
                ds = _FixedSubset(ds, np.linspace(0, len(ds) - 1, self.max_val_pairs).round().astype(np.int64))
            self.datasets[split] = ds

    def _dataset(self, cache: Path, name: str, split: str) -> Dataset:
        ids, sent, art = (np.load(cache / f"{name}.{kind}.npy", mmap_mode="r") for kind in ("ids", "sent", "art"))
        if self.line_by_line:  # one line, one sample
            return LineDataset(ids, sent, self.special, self.max_seq_len)
        if not self.nsp:  # MLM only: packed text (its masks already change per epoch in the collator)
            return PackedDataset(ids, sent, art, self.special, self.max_seq_len)
        # evaluation splits: fixed pairs (epoch 0), so the validation loss is comparable across runs
        return NSPDataset(ids, sent, art, self.special, self.max_seq_len, self.short_seq_prob, self.nsp_prob,
                          seed=self.seed, fixed_epoch=None if split == "train" else 0)

    def _collator(self, seed: int) -> MLMCollator:
        cont = continuation_mask(self.tokenizer) if self.whole_word_masking else None
        return MLMCollator(self.special, self.tokenizer.get_vocab_size(), self.mlm_probability,
                           self.whole_word_masking, cont, seed=seed, pad_to_multiple_of=self.pad_to_multiple_of,
                           max_len=self.max_seq_len)

    def train_dataloader(self) -> DataLoader:
        ds = self.datasets["train"]
        sampler = ResumableSampler(len(ds), shuffle=True, seed=self.seed)
        self._train_data = self._train_identity(ds)
        self._say_if_state_missing()
        if self._resume is not None:
            sampler.load_state_dict(self._resume_position(sampler))
        self._train_sampler = sampler
        # A generator of its own: creating the iterator then draws no number from torch's global RNG, whose
        # state (dropout) is saved in checkpoints and must evolve the same in a resumed and an uninterrupted run.
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler,
                          collate_fn=self._collator(self.seed), num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, drop_last=True, pin_memory=pin_memory(),
                          generator=torch.Generator().manual_seed(self.seed))

    def _eval_loader(self, split: str) -> DataLoader:
        ds = self.datasets[split]
        # fixed masks on fixed pairs: the validation loss is comparable across epochs and runs
        return DataLoader(ds, batch_size=self.val_batch_size, collate_fn=self._collator(seed=0),
                          sampler=ResumableSampler(len(ds), shuffle=False, drop_last=False),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=pin_memory(), generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class _FixedSubset(Dataset):
    """The samples at ``indices`` of a dataset; takes int or (epoch, index) keys like the dataset does."""

    def __init__(self, dataset: Dataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        return self.dataset[(epoch, int(self.indices[i]))]
