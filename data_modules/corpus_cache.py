"""The preprocessed cache of one or more corpora: its key, its layout, its completeness check and its build.

``build`` (run once, by ``prepare_data`` through ``cache.build_once``) trains the WordPiece tokenizer on the train
text of every source, carves validation and test from train where a source has none (by document, from the seed),
streams every split through the word-level encoder (``encoding.SplitWriter``) and writes the count baselines and,
last, ``meta.json``. The directory is named by a hash of ``cache_key``: every setting that changes the result and
every source's ``Corpus.identity()`` (a sha256 of each file's bytes), so editing one file rebuilds.

Layout: ``tokenizer.json``, ``baselines.json``, ``meta.json`` and per split ``{stem}.{ids,sent,art}.npy`` (see
``encoding``), where the stem is the split's name for one source (``train``, as WikiText's caches always were) and
``source{i}.{split}`` for source i of several.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from data_modules.baselines import MAX_TRAIN_TOKENS, count_baselines
from data_modules.cache import log
from data_modules.corpus_content import Corpus
from data_modules.encoding import SentenceEncoder, SplitWriter
from data_modules.tokenizer import load_tokenizer, special_ids, take_bytes, train_tokenizer

FORMAT_VERSION = 3
"""Bump when the cache layout or the text processing changes, so old caches are not reused (2: negations joined by
sources.join_contractions, count baselines in baselines.json; 3: any corpus format, content hashes in the key,
carved splits, several sources, line_by_line)."""

SPLITS = ("train", "validation", "test")

MIN_DOCUMENTS = 2
"""Documents every split needs: NSP draws a random sentence B from another document of the same split."""


@dataclass(frozen=True)
class Preprocessing:
    """The data module's settings that change the cache (everything else acts after it, in setup)."""

    vocab_size: int
    lowercase: bool
    tokenizer: Optional[str]
    tokenizer_sample_bytes: Optional[int]
    val_fraction: float
    seed: int
    line_by_line: bool


def stem(i: int, n_sources: int, split: str) -> str:
    """File stem of source ``i``'s ``split`` in a cache of ``n_sources`` sources."""
    return split if n_sources == 1 else f"source{i}.{split}"


def carved_splits(corpus: Corpus) -> tuple[str, ...]:
    """The splits carved from ``corpus``'s train (those it does not have itself)."""
    return tuple(s for s in SPLITS[1:] if s not in corpus.splits)


def tokenizer_identity(prep: Preprocessing) -> dict:
    if prep.tokenizer is None:
        return {"train": {"vocab_size": prep.vocab_size, "lowercase": prep.lowercase, "min_frequency": 2,
                          "sample_bytes": prep.tokenizer_sample_bytes}}
    tok = load_tokenizer(prep.tokenizer, "--data.tokenizer")
    return {"sha256": hashlib.sha256(tok.to_str().encode()).hexdigest()}


def cache_key(corpora: list[Corpus], prep: Preprocessing) -> dict:
    """Everything that changes the cached result (and nothing else: max_seq_len, masking, shares act later). The
    seed is in it only where it acts here: when a split is carved."""
    key = {"format": FORMAT_VERSION, "vocab_size": prep.vocab_size, "lowercase": prep.lowercase,
           "tokenizer": tokenizer_identity(prep)}
    identities = [c.identity() for c in corpora]
    if len(corpora) == 1:
        key["source"] = identities[0]
    else:
        key["sources"] = identities
    if prep.line_by_line:
        key["line_by_line"] = True
    if any(carved_splits(c) for c in corpora):
        key["carve"] = {"val_fraction": prep.val_fraction, "seed": prep.seed}
    return key


def cache_name(corpora: list[Corpus], key: dict) -> str:
    """``{format}-{hash}``: ``wikitext-1a2b3c4d5e6f``, ``jsonl-...``; ``mixture-...`` for several sources."""
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"))
    kind = corpora[0].format if len(corpora) == 1 else "mixture"
    return f"{kind}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def cache_problem(cache: Path) -> Optional[str]:
    """Why the cache directory ``cache`` cannot be used, or None when it is complete. Cheap: reads meta.json and the
    arrays' headers, and checks their lengths against the counts meta.json (written last) recorded."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
        if not (cache / "tokenizer.json").is_file():
            return "no tokenizer.json"
        for name, c in meta["counts"].items():
            ids, sent, art = (np.load(cache / f"{name}.{kind}.npy", mmap_mode="r") for kind in ("ids", "sent", "art"))
            if (len(ids), len(sent), len(art)) != (c["tokens"], c["sentences"] + 1, c["articles"] + 1):
                return (f"{name} holds {len(ids)} ids, {len(sent) - 1} sentences, {len(art) - 1} articles; meta.json "
                        f"counts {c['tokens']}, {c['sentences']}, {c['articles']}")
    except FileNotFoundError as e:
        name = Path(e.filename).name
        return f"no {name}" + (": its build did not finish" if name == "meta.json" else "")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # truncated .npy, bad JSON, ...
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return None


# ---------------------------------------------------------------------------------------------------------------------
# carving validation and test from train


def carve(documents: Iterable[list[str]], carved: tuple[str, ...], fraction: float, seed: int, corpus: Corpus,
          report: Optional[dict] = None) -> Iterator[tuple[str, list[str]]]:
    """``(split, document)`` for every train document of ``corpus``, each carved split (``carved``) taking about
    ``fraction`` of the documents and at least ``MIN_DOCUMENTS``; the rest stay in train.

    Document i goes to the k-th carved split when the i-th draw of ``default_rng([seed, 8191])`` falls in
    ``[k * fraction, (k + 1) * fraction)``: deterministic from the seed, one pass, whole documents. A carved split
    that the draws leave short takes the last train documents instead; to know that before a train document reaches
    the tokenizer, the last ``MIN_DOCUMENTS * len(carved)`` train documents are held back until the stream ends.
    Fills ``report`` (split -> documents) at the end; too few documents for the splits is a one-line error.
    """
    counts = {s: 0 for s in ("train", *carved)}
    held: list[list[str]] = []  # the latest train documents, not yet handed out
    hold = MIN_DOCUMENTS * len(carved)
    rng = np.random.default_rng([seed, 8191])
    draws = np.zeros(0)
    n = 0
    for doc in documents:
        if n % 65536 == 0:
            draws = rng.random(65536)
        k = int(draws[n % 65536] // fraction)  # 0: the first carved split, 1: the second, more: train
        n += 1
        if k < len(carved):
            counts[carved[k]] += 1
            yield carved[k], doc
            continue
        counts["train"] += 1
        held.append(doc)
        if len(held) > hold:
            yield "train", held.pop(0)
    for split in carved:  # short splits take the last train documents (held back for this)
        while counts[split] < MIN_DOCUMENTS and held:
            counts[split] += 1
            counts["train"] -= 1
            yield split, held.pop()
    need = MIN_DOCUMENTS * (1 + len(carved))
    if any(c < MIN_DOCUMENTS for c in counts.values()):
        raise ValueError(f"{corpus.where('train')}: {n} documents; carving {' and '.join(carved)} from train needs "
                         f"at least {need} ({MIN_DOCUMENTS} for each of {', '.join(counts)}: NSP draws a random next "
                         f"sentence from another document){'; ' + _hint(corpus) if _hint(corpus) else ''}")
    for doc in held:
        yield "train", doc
    if report is not None:
        report.update(counts)


def _hint(corpus: Corpus) -> str:
    """What a document is in ``corpus``'s format, for the too-few-documents errors."""
    if corpus.format == "text" and not corpus.source.document_per_file:
        return "documents are separated by blank lines, or one per file with --data.document_per_file"
    if corpus.format == "wikitext":
        return "articles start at ' = Title = ' lines"
    return ""


def train_documents(corpus: Corpus, prep: Preprocessing) -> Iterator[list[str]]:
    """The documents of ``corpus``'s train split that stay in train (never a carved one)."""
    docs = corpus.documents("train", prep.line_by_line)
    carved = carved_splits(corpus)
    if not carved:
        yield from docs
        return
    for split, doc in carve(docs, carved, prep.val_fraction, prep.seed, corpus):
        if split == "train":
            yield doc


# ---------------------------------------------------------------------------------------------------------------------
# the build


def build(out: Path, corpora: list[Corpus], prep: Preprocessing, key: dict, tag: str) -> dict:
    """Write the cache of ``corpora`` into ``out`` (meta.json last); returns the meta."""
    t0 = time.perf_counter()
    timings = {}
    if prep.tokenizer is not None:
        tok = load_tokenizer(prep.tokenizer, "--data.tokenizer")
        check_vocab(tok.get_vocab_size(), prep.vocab_size, f"--data.tokenizer {prep.tokenizer}")
    else:
        # the sample is shared evenly between the sources, so a small domain corpus has its say in the vocabulary
        limit = None if prep.tokenizer_sample_bytes is None else -(-prep.tokenizer_sample_bytes // len(corpora))
        log(tag, f"training a WordPiece tokenizer of at most {prep.vocab_size} tokens on train"
                 + (f" (first {prep.tokenizer_sample_bytes} bytes)" if prep.tokenizer_sample_bytes else ""))
        t = time.perf_counter()
        texts = (s for c in corpora for s in take_bytes(train_documents(c, prep), limit))
        tok = train_tokenizer(texts, prep.vocab_size, lowercase=prep.lowercase, show_progress=False)
        timings["tokenizer_s"] = round(time.perf_counter() - t, 2)
        log(tag, f"tokenizer trained: {tok.get_vocab_size()} tokens in {timings['tokenizer_s']} s")
    special_ids(tok, f"--data.tokenizer {prep.tokenizer}" if prep.tokenizer else "the trained tokenizer")
    (out / "tokenizer.json").write_text(tok.to_str())

    dtype = np.uint16 if tok.get_vocab_size() <= 65535 else np.int32
    encode = SentenceEncoder(tok)
    counts, sources = {}, []
    for i, corpus in enumerate(corpora):
        t = time.perf_counter()
        counts.update(_encode_corpus(corpus, i, len(corpora), prep, encode, out, dtype, tag))
        timings[f"{stem(i, len(corpora), 'encode')}_s"] = round(time.perf_counter() - t, 2)
        sources.append({"name": corpus.name, "format": corpus.format, "carved": list(carved_splits(corpus)),
                        "stems": {s: stem(i, len(corpora), s) for s in SPLITS}})

    t = time.perf_counter()
    per = MAX_TRAIN_TOKENS // len(corpora)  # each source's share of the count table (baselines.py reads a prefix)
    train = np.concatenate([np.load(out / f"{stem(i, len(corpora), 'train')}.ids.npy", mmap_mode="r")[:per]
                            for i in range(len(corpora))])
    val = np.concatenate([np.load(out / f"{stem(i, len(corpora), 'validation')}.ids.npy", mmap_mode="r")
                          for i in range(len(corpora))])
    baselines = count_baselines(train, val, tok.get_vocab_size(), ignore=special_ids(tok).all)
    (out / "baselines.json").write_text(json.dumps(baselines, indent=2) + "\n")
    timings["baselines_s"] = round(time.perf_counter() - t, 2)
    log(tag, f"count baselines of the validation split: {baselines}")
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    meta = {"key": key, "vocab_size_reached": tok.get_vocab_size(), "ids_dtype": np.dtype(dtype).name,
            "sources": sources, "counts": counts, "timings": timings,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _encode_corpus(corpus: Corpus, i: int, n: int, prep: Preprocessing, encode: SentenceEncoder, out: Path, dtype,
                   tag: str) -> dict[str, dict]:
    """Encode every split of one source (carved ones in the same pass over train); counts by file stem."""
    carved = carved_splits(corpus)
    counts = {}
    for split in [s for s in SPLITS if s in corpus.splits]:
        route = [split, *carved] if split == "train" else [split]
        writers = {s: SplitWriter(encode, out, stem(i, n, s), dtype, tag) for s in route}
        try:
            docs = corpus.documents(split, prep.line_by_line)
            if split == "train" and carved:
                report: dict = {}
                for s, doc in carve(docs, carved, prep.val_fraction, prep.seed, corpus, report):
                    writers[s].add(doc)
                log(tag, f"{corpus.name}: no {' or '.join(carved)} split, carved from train by document "
                         f"(--data.val_fraction {prep.val_fraction}, seed {prep.seed}): "
                         + ", ".join(f"{s} {report[s]:,} documents" for s in ("train", *carved)))
            else:
                for doc in docs:
                    writers[split].add(doc)
        except BaseException:
            for w in writers.values():
                w.abandon()
            raise
        for s, w in writers.items():
            counts[w.stem] = w.close()
            if counts[w.stem]["articles"] < MIN_DOCUMENTS:  # NSP draws random B's from another article
                where = corpus.where(s) if s in corpus.splits else f"{corpus.name}'s carved {s} split"
                noun = "articles" if corpus.format == "wikitext" else "documents"
                hint = f" ({_hint(corpus)})" if _hint(corpus) else ""
                raise ValueError(f"{where}: {counts[w.stem]['articles']} {noun} with text; need at least "
                                 f"{MIN_DOCUMENTS}{hint}")
    return counts


def check_vocab(actual: int, configured: int, what: str) -> None:
    if actual > configured:
        raise ValueError(f"{what} has {actual} tokens but --data.vocab_size={configured} (linked to "
                         f"--model.vocab_size); set --data.vocab_size to at least {actual}")


def changed_files(before: dict, after: dict, path: str = "") -> Optional[str]:
    """The first place where two identities differ (a file name for local files), or None when equal."""
    if before == after:
        return None
    if isinstance(before, dict) and isinstance(after, dict):
        for k in sorted(set(before) | set(after), key=str):
            where = changed_files(before.get(k), after.get(k), k)
            if where is not None:
                return where
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for a, b in zip(before, after):
            if isinstance(a, list) and isinstance(b, list) and a and b and a[0] == b[0] and a != b:
                return str(a[0])  # [relative name, sha256]
            where = changed_files(a, b, path)
            if where is not None:
                return where
    return path or "the corpus"
