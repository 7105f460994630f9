"""WikiText-103 for BERT pretraining: articles -> sentences -> WordPiece ids in a memory-mapped cache -> NSP + MLM.

``prepare_data`` (once, on rank 0) reads the release files (``wiki.{train,valid,test}.tokens`` or ``.raw``, as in
Merity et al., 2016) or the HuggingFace hub copy, cuts them into articles and sentences, trains the WordPiece
tokenizer on train, and writes token ids + offsets per split to ``cache_dir/wikitext-<hash>/``, where the hash covers
everything that changes the result. ``setup`` (every rank) only memory-maps that directory.

The release layout, one paragraph per line, every line starting with a space::

     = Article title =
     = = Section = =
     First paragraph , with space @-@ separated tokens , 1 @,@ 000 and 3 @.@ 5 . Another sentence .
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from data_modules import sources
from data_modules.baselines import count_baselines
from data_modules.cache import build_once, log
from data_modules.collators import MLMCollator
from data_modules.nsp import NSPDataset
from data_modules.packing import PackedDataset
from data_modules.sampling import ResumableSampler
from data_modules.tokenizer import SpecialIds, continuation_mask, load_tokenizer, special_ids, train_tokenizer

# The sampler position lives in this data module's state_dict (see state_dict below), not in the DataLoader, so
# Lightning's check for a resumable DataLoader misses it and warns on every mid-epoch resume.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")

FORMAT_VERSION = 2
"""Bump when the cache layout or the text processing changes, so old caches are not reused (2: negations joined by
sources.join_contractions, count baselines in baselines.json)."""

SPLITS = {"train": "train", "validation": "valid", "test": "test"}
"""Split name -> the infix of its release file (``wiki.valid.tokens`` holds the validation split)."""

SAMPLE_DIR = Path(__file__).parent / "samples" / "wikitext"
"""A tiny corpus in the release layout, written for this project (quickstart and tests)."""

_HEADING = re.compile(r"(=(?: =)*) (.*) \1")  # " = T = " (article), " = = T = = " (section), ...
_SENTENCE_END = {".", "?", "!"}


class Article(NamedTuple):
    title: str
    paragraphs: list[str]


# ---------------------------------------------------------------------------------------------------------------------
# text: pure functions


def read_lines(path: str | Path) -> Iterator[str]:
    """The lines of a release file; NUL bytes and invalid UTF-8 are errors naming ``file:line`` (sources.read_lines)."""
    return sources.read_lines(path, "WikiText release layout")


def split_articles(lines: Iterable[str]) -> Iterator[Article]:
    """Group release-format lines into articles.

    An article starts at a top-level heading: a line that is exactly `` = Title = `` (surrounding spaces ignored)
    followed by a blank line, as the release writes every heading. Sub-headings (`` = = Section = = `` and deeper)
    stay inside their article but are dropped, they are not sentences. A heading-shaped line NOT followed by a blank
    line is text: WikiText-2 train has 29 such lines (table legends like `` = Goals ; A = ``), and with this rule the
    counts are the published 600 / 60 / 60 articles. Blank lines are ignored; every other line is one paragraph
    (stripped). Lines before the first heading form an article titled ``""``. Articles without paragraphs are dropped.
    """
    title, paragraphs = "", []
    pending: tuple[str, re.Match] | None = None  # a heading-shaped line, until we know whether a blank line follows
    for line in lines:
        text = line.strip()
        if pending is not None:
            pending_text, m = pending
            pending = None
            if text:  # not followed by a blank line: it is text
                paragraphs.append(pending_text)
            elif m.group(1) == "=":
                if paragraphs:
                    yield Article(title, paragraphs)
                title, paragraphs = m.group(2), []
        if not text:
            continue
        m = _HEADING.fullmatch(text)
        if m is None:
            paragraphs.append(text)
        else:
            pending = (text, m)
    if paragraphs:  # (a heading on the very last line has no text and is dropped)
        yield Article(title, paragraphs)


def detokenize(text: str) -> str:
    """Undo WikiText's split of hyphens and number separators: `` @-@ `` -> ``-``, `` @,@ `` -> ``,``,
    `` @.@ `` -> ``.`` (so ``3 @.@ 5`` is ``3.5`` again)."""
    return text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")


def split_sentences(paragraph: str) -> list[str]:
    """Split a WikiText paragraph after every standalone ``.``, ``?`` or ``!`` token that another token follows.

    WikiText tokens are separated by spaces, so an abbreviation like ``H.`` or a decimal ``3.5`` is one token and
    does not end a sentence; a closing quote or bracket after the full stop starts the next sentence (kept simple and
    deterministic on purpose). Whitespace is normalised to single spaces.
    """
    sentences, current = [], []
    tokens = paragraph.split()
    for i, tok in enumerate(tokens):
        current.append(tok)
        if tok in _SENTENCE_END and i + 1 < len(tokens):
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def article_sentences(article: Article, detok: bool = True) -> list[str]:
    """The sentences of an article, paragraphs in order, ready for the tokenizer (``<unk>`` -> ``[UNK]``:
    the tokenizer then reads it as its unknown token instead of the pieces ``<``, ``unk``, ``>``)."""
    out = []
    for p in article.paragraphs:
        p = sources.join_contractions(p.replace("<unk>", "[UNK]"))
        out.extend(split_sentences(detokenize(p) if detok else p))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# sources


def _load_hub(dataset: str, config: str):
    return sources.load_hub(dataset, config, "pass --data.data_dir DIR holding the release files "
                                             "wiki.{train,valid,test}.tokens (or .raw)")


def _hub_lines(ds, split: str) -> Iterator[str]:
    for batch in ds[split].iter(batch_size=1000):
        for text in batch["text"]:
            yield text.rstrip("\r\n")


# ---------------------------------------------------------------------------------------------------------------------
# the data module


class WikiText103DataModule(L.LightningDataModule):
    """WikiText-103 (or any corpus in its release layout) as BERT MLM + NSP batches.

    Args:
        data_dir: directory holding ``wiki.{train,valid,test}.<variant>`` as released by Salesforce; None loads
            ``hub_dataset`` from the HuggingFace hub instead.
        variant: ``tokens`` (the word-level files with ``<unk>``) or ``raw`` (the character-level files); None takes
            the first whose three files are all in ``data_dir``.
        hub_dataset: HuggingFace dataset used when ``data_dir`` is None.
        hub_config: configuration of ``hub_dataset``.
        cache_dir: where the preprocessed, tokenized corpus is cached (one sub-directory per preprocessing config).
        vocab_size: the tokenizer is trained to at most this many tokens; the model's embedding has this many rows.
        lowercase: lower-case (and strip accents) in the trained tokenizer, as BERT-uncased.
        detokenize: rejoin WikiText's `` @-@ ``, `` @,@ `` and `` @.@ `` splits before tokenizing.
        tokenizer: reuse this tokenizer (tokenizer.json, HF directory or lit-lm .ckpt) instead of training one.
        tokenizer_sample_bytes: train the tokenizer on the first this-many bytes of train text (None: all of it);
            about 100 MB is plenty for 30k WordPieces and saves time and memory on the 540 MB train split.
        max_seq_len: longest pretraining sequence, special tokens included.
        short_seq_prob: probability of a shorter random sequence length (BERT: 0.1).
        nsp_prob: probability that sentence B is a random sentence from another article (label 1).
        nsp: build next-sentence pairs; False (linked from --model.nsp) packs contiguous text to ``max_seq_len``
            instead (RoBERTa's FULL-SENTENCES, data_modules.packing).
        mlm_probability: fraction of tokens to mask and predict (BERT: 0.15).
        whole_word_masking: mask all the WordPieces of a word together.
        batch_size: training batch size per device.
        val_batch_size: validation / test batch size per device (None: ``batch_size``).
        num_workers: DataLoader worker processes.
        pad_to_multiple_of: round padded batch lengths up to a multiple of this (8 suits tensor cores).
        seed: seed of the pairs, the masks and the shuffling.
        max_val_pairs: use at most this many validation (and test) pairs, a fixed evenly spaced subset (None: all).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        variant: Literal["tokens", "raw"] | None = None,
        hub_dataset: str = "Salesforce/wikitext",
        hub_config: str = "wikitext-103-raw-v1",
        cache_dir: str = "~/.cache/lit-lm",
        vocab_size: int = 30522,
        lowercase: bool = True,
        detokenize: bool = True,
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
            (8 <= max_seq_len <= 512, f"--data.max_seq_len={max_seq_len}: expected 8..512"),
            (vocab_size > 5, f"--data.vocab_size={vocab_size}: expected > 5 (the special tokens take 5)"),
            (batch_size >= 1, f"--data.batch_size={batch_size}: expected >= 1"),
            (val_batch_size is None or val_batch_size >= 1, f"--data.val_batch_size={val_batch_size}: expected >= 1"),
            (num_workers >= 0, f"--data.num_workers={num_workers}: expected >= 0"),
            (0.0 <= short_seq_prob <= 1.0, f"--data.short_seq_prob={short_seq_prob}: expected 0..1"),
            (0.0 <= nsp_prob <= 1.0, f"--data.nsp_prob={nsp_prob}: expected 0..1"),
            (0.0 < mlm_probability < 1.0, f"--data.mlm_probability={mlm_probability}: expected in (0, 1)"),
            (tokenizer_sample_bytes is None or tokenizer_sample_bytes > 0,
             f"--data.tokenizer_sample_bytes={tokenizer_sample_bytes}: expected > 0"),
            (max_val_pairs is None or max_val_pairs >= 1, f"--data.max_val_pairs={max_val_pairs}: expected >= 1"),
            (pad_to_multiple_of is None or pad_to_multiple_of >= 1,
             f"--data.pad_to_multiple_of={pad_to_multiple_of}: expected >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.save_hyperparameters()
        self.data_dir, self.variant = data_dir, variant
        self.hub_dataset, self.hub_config = hub_dataset, hub_config
        self.cache_dir = Path(cache_dir).expanduser()
        self.vocab_size, self.lowercase, self.detokenize = vocab_size, lowercase, detokenize
        self.tokenizer_source, self.tokenizer_sample_bytes = tokenizer, tokenizer_sample_bytes
        self.max_seq_len, self.short_seq_prob, self.nsp_prob, self.nsp = max_seq_len, short_seq_prob, nsp_prob, nsp
        self.mlm_probability, self.whole_word_masking = mlm_probability, whole_word_masking
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.pad_to_multiple_of = num_workers, pad_to_multiple_of
        self.seed, self.max_val_pairs = seed, max_val_pairs
        # set by setup()
        self.tokenizer: Tokenizer | None = None
        self.tokenizer_json: str | None = None
        self.special: SpecialIds | None = None
        self.baselines: dict | None = None  # count baselines of the validation split (data_modules.baselines)
        self.datasets: dict[str, Dataset] = {}
        self._train_sampler: ResumableSampler | None = None
        self._train_data: dict | None = None  # what the train sampler indexes (_train_identity), saved with its state
        self._resume: dict[str, int] | None = None  # sampler state from a checkpoint, applied to the next train loader
        self._resume_data: dict | None = None  # the data that state indexed (None: a checkpoint that did not say)

    # -- source and cache identity ------------------------------------------------------------------------------------

    def source_files(self) -> dict[str, Path]:
        """Split -> release file in ``data_dir``; a one-line error when the directory or a file is missing."""
        root = Path(self.data_dir).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"--data.data_dir {root}: no such directory")
        variants = [self.variant] if self.variant else ["tokens", "raw"]
        missing = {}
        for v in variants:
            files = {split: root / f"wiki.{infix}.{v}" for split, infix in SPLITS.items()}
            absent = [p.name for p in files.values() if not p.is_file()]
            if not absent:
                return files
            missing[v] = absent
        listing = "; ".join(f"{v}: missing {', '.join(a)}" for v, a in missing.items())
        raise FileNotFoundError(f"--data.data_dir {root}: no complete WikiText release ({listing})")

    def _source_identity(self) -> dict:
        if self.data_dir is None:
            return {"hub": self.hub_dataset, "config": self.hub_config}
        files = self.source_files()
        return {"dir": str(Path(self.data_dir).expanduser().resolve()), "variant": next(iter(files.values())).suffix[1:],
                "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files.values()}}

    def _tokenizer_identity(self) -> dict:
        if self.tokenizer_source is None:
            return {"train": {"vocab_size": self.vocab_size, "lowercase": self.lowercase, "min_frequency": 2,
                              "sample_bytes": self.tokenizer_sample_bytes}}
        tok = load_tokenizer(self.tokenizer_source, "--data.tokenizer")
        return {"sha256": hashlib.sha256(tok.to_str().encode()).hexdigest()}

    def cache_key(self) -> dict:
        """Everything that changes the cached result (and nothing else: max_seq_len, masking etc. act later)."""
        return {"format": FORMAT_VERSION, "source": self._source_identity(), "vocab_size": self.vocab_size,
                "lowercase": self.lowercase, "detokenize": self.detokenize, "tokenizer": self._tokenizer_identity()}

    def cache_path(self) -> Path:
        canonical = json.dumps(self.cache_key(), sort_keys=True, separators=(",", ":"))
        return self.cache_dir / f"wikitext-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"

    # -- prepare_data: build the cache once ---------------------------------------------------------------------------

    def _split_lines(self, hub=None) -> dict[str, Iterable[str]]:
        if hub is not None:
            return {split: _ReIterable(_hub_lines, hub, split) for split in SPLITS}
        return {split: _ReIterable(read_lines, path) for split, path in self.source_files().items()}

    def prepare_data(self) -> None:
        final = self.cache_path()
        if final.is_dir() and _cache_problem(final) is None:
            _log(f"reusing cache at {final}")
            return

        def build(tmp: Path) -> None:
            meta = self._build(tmp)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

        # one builder at a time across the nodes sharing the cache dir (Lightning prepares data once per node);
        # build_once discards a damaged copy itself, under the lock
        build_once(final, "wikitext", _cache_problem, build)

    def _build(self, out: Path) -> dict:
        t0 = time.perf_counter()
        hub = _load_hub(self.hub_dataset, self.hub_config) if self.data_dir is None else None
        sources = self._split_lines(hub)
        timings = {}

        if self.tokenizer_source is not None:
            tok = load_tokenizer(self.tokenizer_source, "--data.tokenizer")
            _check_vocab(tok.get_vocab_size(), self.vocab_size, f"--data.tokenizer {self.tokenizer_source}")
        else:
            _log(f"training a WordPiece tokenizer of at most {self.vocab_size} tokens on train"
                 + (f" (first {self.tokenizer_sample_bytes} bytes)" if self.tokenizer_sample_bytes else ""))
            t = time.perf_counter()
            texts = _take_bytes(self._sentences(sources["train"], "train"), self.tokenizer_sample_bytes)
            tok = train_tokenizer(texts, self.vocab_size, lowercase=self.lowercase, show_progress=False)
            timings["tokenizer_s"] = round(time.perf_counter() - t, 2)
            _log(f"tokenizer trained: {tok.get_vocab_size()} tokens in {timings['tokenizer_s']} s")
        special_ids(tok, f"--data.tokenizer {self.tokenizer_source}" if self.tokenizer_source else "the trained tokenizer")
        (out / "tokenizer.json").write_text(tok.to_str())

        dtype = np.uint16 if tok.get_vocab_size() <= 65535 else np.int32
        counts = {}
        for split in SPLITS:
            t = time.perf_counter()
            counts[split] = _tokenize_split(self._sentences(sources[split], split), tok, out, split, dtype)
            timings[f"{split}_s"] = round(time.perf_counter() - t, 2)
            if counts[split]["articles"] < 2:  # NSP draws random B's from another article
                raise ValueError(f"{sources[split]}: {counts[split]['articles']} articles with text; need at least 2 "
                                 f"(articles start at ' = Title = ' lines)")
        t = time.perf_counter()
        baselines = count_baselines(np.load(out / "train.ids.npy", mmap_mode="r"),
                                    np.load(out / "validation.ids.npy", mmap_mode="r"), tok.get_vocab_size(),
                                    ignore=special_ids(tok).all)
        (out / "baselines.json").write_text(json.dumps(baselines, indent=2) + "\n")
        timings["baselines_s"] = round(time.perf_counter() - t, 2)
        _log(f"count baselines of the validation split: {baselines}")
        timings["total_s"] = round(time.perf_counter() - t0, 2)
        return {"key": self.cache_key(), "vocab_size_reached": tok.get_vocab_size(), "ids_dtype": np.dtype(dtype).name,
                "counts": counts, "timings": timings, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def _sentences(self, lines: Iterable[str], split: str) -> Iterator[list[str]]:
        """Articles of a split as lists of sentences (empty articles dropped)."""
        for article in split_articles(lines):
            sents = article_sentences(article, self.detokenize)
            if sents:
                yield sents

    # -- setup: memory-map the cache ----------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        cache = self.cache_path()
        if not cache.is_dir():
            raise FileNotFoundError(f"{cache}: no preprocessed cache; prepare_data() must run first")
        problem = _cache_problem(cache)
        if problem is not None:
            raise ValueError(f"{cache}: damaged cache ({problem}); run prepare_data() again to rebuild it")
        if self.tokenizer is None:
            self.tokenizer_json = (cache / "tokenizer.json").read_text()
            self.tokenizer = Tokenizer.from_str(self.tokenizer_json)
            _check_vocab(self.tokenizer.get_vocab_size(), self.vocab_size, f"tokenizer {cache / 'tokenizer.json'}")
            self.special = special_ids(self.tokenizer)
            path = cache / "baselines.json"
            self.baselines = json.loads(path.read_text()) if path.is_file() else None
        splits = {"fit": ["train", "validation"], "validate": ["validation"], "test": ["test"], "predict": []}
        for split in splits.get(stage, list(SPLITS)) if stage else list(SPLITS):
            if split in self.datasets:
                continue
            arrays = [np.load(cache / f"{split}.{name}.npy", mmap_mode="r") for name in ("ids", "sent", "art")]
            if not self.nsp:  # MLM only: packed text (its masks already change per epoch in the collator)
                ds = PackedDataset(*arrays, self.special, self.max_seq_len)
            else:  # evaluation splits: fixed pairs (epoch 0), so the validation loss is comparable across runs
                ds = NSPDataset(*arrays, self.special, self.max_seq_len, self.short_seq_prob, self.nsp_prob,
                                seed=self.seed, fixed_epoch=None if split == "train" else 0)
            if split != "train" and self.max_val_pairs is not None and self.max_val_pairs < len(ds):
                ds = _FixedSubset(ds, np.linspace(0, len(ds) - 1, self.max_val_pairs).round().astype(np.int64))
            self.datasets[split] = ds

    def _collator(self, seed: int) -> MLMCollator:
        cont = continuation_mask(self.tokenizer) if self.whole_word_masking else None
        return MLMCollator(self.special, self.tokenizer.get_vocab_size(), self.mlm_probability,
                           self.whole_word_masking, cont, seed=seed, pad_to_multiple_of=self.pad_to_multiple_of)

    def train_dataloader(self) -> DataLoader:
        ds = self.datasets["train"]
        sampler = ResumableSampler(len(ds), shuffle=True, seed=self.seed)
        self._train_data = self._train_identity(ds)
        if self._resume is not None:
            sampler.load_state_dict(self._resume_position(sampler))
        self._train_sampler = sampler
        # A generator of its own: creating the iterator then draws no number from torch's global RNG, whose
        # state (dropout) is saved in checkpoints and must evolve the same in a resumed and an uninterrupted run.
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler,
                          collate_fn=self._collator(self.seed), num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, drop_last=True,
                          generator=torch.Generator().manual_seed(self.seed))

    # -- exact resume: the checkpoint records how far into which epoch training got ------------------------------

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

    def _train_identity(self, ds: Dataset) -> dict:
        """What a train index means: the number of samples and a hash of the pair plan (NSP) or of the packed rows,
        with max_seq_len and the seed (the permutation and the per-sample draws). A hash of the content, not of
        the cache's name, so a corpus copied elsewhere (another cache directory) is still the same data."""
        table = ds.plan if isinstance(ds, NSPDataset) else ds.rows
        h = hashlib.sha256(f"{type(ds).__name__}:{self.max_seq_len}:{self.seed}:".encode())
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
            _log(f"the training data differs from the checkpoint's ({old['num_samples']:,} samples at max_seq_len "
                 f"{old.get('max_seq_len')}, now {new['num_samples']:,} at max_seq_len {new['max_seq_len']}): "
                 f"epoch {epoch} restarts at its first batch on the new data{step}")
        return {"epoch": epoch, "start": 0}

    def _eval_loader(self, split: str) -> DataLoader:
        ds = self.datasets[split]
        # fixed masks on fixed pairs: the validation loss is comparable across epochs and runs
        return DataLoader(ds, batch_size=self.val_batch_size, collate_fn=self._collator(seed=0),
                          sampler=ResumableSampler(len(ds), shuffle=False, drop_last=False),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


# ---------------------------------------------------------------------------------------------------------------------
# helpers


class _ReIterable:
    """Calls ``fn(*args)`` afresh on every iteration, so a split can be read twice (tokenizer, then ids)."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __str__(self) -> str:  # names the source in error messages
        return str(self.args[0]) if isinstance(self.args[0], Path) else f"hub split {self.args[1]!r}"

    def __iter__(self):
        return iter(self.fn(*self.args))


class _FixedSubset(Dataset):
    """The pairs at ``indices`` of an NSPDataset; takes int or (epoch, index) keys like the dataset does."""

    def __init__(self, dataset: NSPDataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        return self.dataset[(epoch, int(self.indices[i]))]


def _log(message: str) -> None:
    log("wikitext", message)


def _check_vocab(actual: int, configured: int, what: str) -> None:
    if actual > configured:
        raise ValueError(f"{what} has {actual} tokens but --data.vocab_size={configured} (linked to "
                         f"--model.vocab_size); set --data.vocab_size to at least {actual}")


def _take_bytes(articles: Iterable[list[str]], limit: int | None) -> Iterator[str]:
    """Sentences of the first articles until ``limit`` UTF-8 bytes (None: all)."""
    total = 0
    for sents in articles:
        for s in sents:
            yield s
            total += len(s.encode()) + 1
        if limit is not None and total >= limit:
            return


class _SentenceEncoder:
    """Token ids of sentences, encoding every distinct space-separated word only once.

    BERT's pipeline (BertNormalizer, BertPreTokenizer, WordPiece) never looks across a space, so the ids of a
    sentence are the ids of its words one after another. WikiText-103's 103M words hold only ~270k distinct ones:
    encoding those once and gathering with numpy does a small fraction of the work of encoding every sentence
    (``encode_batch`` over sentences ran at ~110k tokens/s on this project's 2 shared cores; see
    benchmarks/data_pipeline.py). Tokenizers built otherwise (``--data.tokenizer``) are encoded sentence by sentence.
    """

    max_words = 1 << 20
    """Start the word table over past this many words, so a corpus with a long tail cannot grow it without bound."""

    def __init__(self, tok: Tokenizer) -> None:
        # a copy without padding or truncation, which a tokenizer.json from elsewhere may switch on
        self.tok = Tokenizer.from_str(tok.to_str())
        self.tok.no_padding()
        self.tok.no_truncation()
        specials_with_space = any(" " in t.content for t in tok.get_added_tokens_decoder().values())
        self.word_level = (isinstance(tok.normalizer, (normalizers.BertNormalizer, type(None)))
                           and isinstance(tok.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
                           and isinstance(tok.model, models.WordPiece) and not specials_with_space)
        self._reset()

    def _reset(self) -> None:
        self.index = _WordIndex()  # word -> row in the table below
        self.pieces = np.zeros(0, dtype=np.int64)  # ids of all known words, concatenated
        self.start = np.zeros(0, dtype=np.int64)  # where each word's ids begin in ``pieces``
        self.length = np.zeros(0, dtype=np.int64)

    def __call__(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``sentences`` -> (ids of all of them concatenated (int64), number of ids per sentence)."""
        if not self.word_level:
            return _flatten(self.tok.encode_batch(sentences, add_special_tokens=False))
        if len(self.index) > self.max_words:
            self._reset()
        # split on " " only: every other character (tabs, controls) is the tokenizer's to handle, inside a word
        n_words = np.fromiter(map(str.count, sentences, itertools.repeat(" ")), dtype=np.int64, count=len(sentences)) + 1
        words = " ".join(sentences).split(" ")
        w = np.fromiter(map(self.index.__getitem__, words), dtype=np.int64, count=len(words))  # new words get rows
        if self.index.new:
            ids, lens = _flatten(self.tok.encode_batch(self.index.new, add_special_tokens=False))
            self.index.new = []
            self.start = np.concatenate([self.start, len(self.pieces) + _exclusive_cumsum(lens)])
            self.length = np.concatenate([self.length, lens])
            self.pieces = np.concatenate([self.pieces, ids])
        w_len = self.length[w]
        # gather: token j of word k sits at pieces[start[k] + j]
        ids = self.pieces[np.repeat(self.start[w] - _exclusive_cumsum(w_len), w_len) + np.arange(int(w_len.sum()))]
        # ids up to each sentence's last word ("".split(" ") is [""]: every sentence has a word)
        sent_ends = np.cumsum(w_len)[np.cumsum(n_words) - 1]
        return ids, np.diff(sent_ends, prepend=0)


class _WordIndex(dict):
    """word -> row; an unknown word gets the next row and is queued in ``new`` to be encoded (one dict lookup a
    word, in C: the Python-level ``__missing__`` runs once per distinct word)."""

    def __init__(self) -> None:
        super().__init__()
        self.new: list[str] = []

    def __missing__(self, word: str) -> int:
        self[word] = row = len(self)
        self.new.append(word)
        return row


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x), dtype=np.int64)
    np.cumsum(x[:-1], out=out[1:])
    return out


def _flatten(encodings) -> tuple[np.ndarray, np.ndarray]:
    """Encodings -> (their ids concatenated (int64), number of ids of each)."""
    lens = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=int(lens.sum()))
    return ids, lens


_NPY_HEADER = 128
"""Bytes of an ``.npy`` header of a 1-D array (numpy pads headers to a multiple of 64); the ids are streamed in
behind a placeholder and the true header, for the final length, written last."""


def _npy_header(dtype, n: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (n,)})
    assert buf.tell() == _NPY_HEADER, buf.tell()
    return buf.getvalue()


def _cache_problem(cache: Path) -> str | None:
    """Why the cache directory ``cache`` cannot be used, or None when it is complete. Cheap: reads meta.json and the
    arrays' headers, and checks their lengths against the counts meta.json (written last) recorded."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
        if not (cache / "tokenizer.json").is_file():
            return "no tokenizer.json"
        for split in SPLITS:
            ids, sent, art = (np.load(cache / f"{split}.{name}.npy", mmap_mode="r") for name in ("ids", "sent", "art"))
            c = meta["counts"][split]
            if (len(ids), len(sent), len(art)) != (c["tokens"], c["sentences"] + 1, c["articles"] + 1):
                return (f"{split} holds {len(ids)} ids, {len(sent) - 1} sentences, {len(art) - 1} articles; meta.json "
                        f"counts {c['tokens']}, {c['sentences']}, {c['articles']}")
    except FileNotFoundError as e:
        return f"no {Path(e.filename).name}" + (": its build did not finish" if Path(e.filename).name == "meta.json" else "")
    except (OSError, ValueError, KeyError, TypeError) as e:  # truncated .npy, bad JSON, ...
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return None


def _write_ids(f, ids: np.ndarray, dtype) -> None:
    ids.astype(dtype).tofile(f)


def _tokenize_split(articles: Iterable[list[str]], tok: Tokenizer, out: Path, split: str, dtype,
                    batch_sentences: int = 20000) -> dict[str, int]:
    """Encode a split in batches and stream the ids to disk; returns counts. Writes ``{split}.ids.npy`` (ids of
    all sentences concatenated), ``{split}.sent.npy`` (sentence offsets) and ``{split}.art.npy`` (article offsets).
    Memory stays flat: one batch of sentences and a table of distinct words, whatever the size of the corpus."""
    encode = _SentenceEncoder(tok)
    sent_lens: list[np.ndarray] = []  # int32 per batch: compact even for 540 MB of text
    art_sizes: list[int] = []
    n_tokens = n_sent = 0
    t0 = last = time.perf_counter()
    batch: list[str] = []
    batch_arts: list[int] = []  # sentences per article in the batch (articles never straddle batches)

    def flush() -> None:
        nonlocal n_tokens, n_sent
        ids, lens = encode(batch)
        _write_ids(f, ids, dtype)
        # sentences that tokenize to nothing (e.g. only control characters) are dropped, and their articles shrink
        keep = lens > 0
        kept = np.concatenate([[0], np.cumsum(keep)])[np.cumsum(batch_arts)]  # kept sentences up to each article's end
        art_sizes.extend(int(k) for k in np.diff(kept, prepend=0) if k)
        sent_lens.append(lens[keep].astype(np.int32))
        n_tokens += len(ids)
        n_sent += int(keep.sum())
        batch.clear()
        batch_arts.clear()

    ids_path = out / f"{split}.ids.npy"
    with open(ids_path, "wb") as f:
        f.write(_npy_header(dtype, 0))  # placeholder, same size as the final header
        for sents in articles:
            batch.extend(sents)
            batch_arts.append(len(sents))
            if len(batch) >= batch_sentences:
                flush()
                now = time.perf_counter()
                if now - last > 10:
                    _log(f"{split}: {n_sent:,} sentences, {n_tokens:,} tokens, {n_tokens / (now - t0):,.0f} tokens/s")
                    last = now
        if batch:
            flush()
        f.seek(0)
        f.write(_npy_header(dtype, n_tokens))  # byte for byte what np.save writes
    lens = np.concatenate(sent_lens) if sent_lens else np.zeros(0, dtype=np.int32)
    np.save(out / f"{split}.sent.npy", np.concatenate([[0], np.cumsum(lens, dtype=np.int64)]))
    np.save(out / f"{split}.art.npy", np.concatenate([[0], np.cumsum(art_sizes, dtype=np.int64)]).astype(np.int64))
    elapsed = time.perf_counter() - t0
    _log(f"{split}: {len(art_sizes):,} articles, {n_sent:,} sentences, {n_tokens:,} tokens in {elapsed:.1f} s "
         f"({n_tokens / max(elapsed, 1e-9):,.0f} tokens/s)")
    return {"articles": len(art_sizes), "sentences": n_sent, "tokens": n_tokens}
