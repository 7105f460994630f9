"""A configured source -> a ``Corpus``: its files (sorted, so the order is the same on every machine), its format
(detected from the file names, or checked when named) and the splits the source itself has (files named for a split,
WikiText's release names, or the hub's splits); a hub dataset is loaded here. Every problem is a one-line error
naming the flag or the file and what was expected.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Optional

from data_modules import sources
from data_modules.corpus_content import Corpus
from data_modules.corpus_formats import FORMATS, CorpusSource, listing
from data_modules.wikitext_release import RELEASE_FILE, WIKITEXT_INFIX

SPLIT_NAMES = ("train", "validation", "test")
_SPLIT_OF_NAME = {"train": "train", "valid": "validation", "validation": "validation", "dev": "validation",
                  "test": "test"}
_SPLIT_FILE = re.compile(r"(train|valid|validation|dev|test)(?:[-_.]\d.*)?", re.IGNORECASE)
"""A file named for a split: ``train.jsonl``, ``dev.tsv``, or a shard like ``train-00000-of-00002.parquet``."""


def open_corpus(source: CorpusSource, flag: str = "--data.data_dir", format_flag: str = "--data.format",
                hub_flag: str = "--data.hub_dataset") -> Corpus:
    """Resolve ``source``: its files (sorted), format (detected from the file names or checked) and splits, each
    problem a one-line error naming ``flag`` (or the file) and what was expected. A hub source is loaded here
    (``sources.load_hub``: a one-line error at once when the hub cannot be reached)."""
    if source.format is not None and source.format not in FORMATS:
        raise ValueError(f"{format_flag} {source.format}: unknown format; expected one of {', '.join(FORMATS)}")
    if source.path is None:
        if source.hub_dataset is None:
            raise ValueError(f"{flag}: no corpus; set {flag} (a folder, a file or a glob) or {hub_flag}")
        return _open_hub(source, flag, format_flag)
    raw = os.path.expanduser(source.path)
    root = Path(raw)
    if glob.has_magic(raw):
        files = sorted(Path(p) for p in glob.glob(raw, recursive=True) if os.path.isfile(p))
        if not files:
            raise FileNotFoundError(f"{flag} {source.path}: the glob matches no file")
        root = Path(os.path.commonpath([p.parent for p in files]))
        name = root.resolve().name
    elif root.is_dir():
        if source.format == "wikitext" or (source.format is None and any(
                RELEASE_FILE.fullmatch(p.name) for p in root.iterdir() if p.is_file())):
            return _open_release(source, root, flag)
        files = _folder_files(root)
        if not files:
            raise ValueError(f"{flag} {root}: empty folder; expected files of one of the formats "
                             f"{', '.join(FORMATS)}")
        if source.format not in (None, "text"):  # named: the folder's files of that format
            files = [p for p in files if p.suffix.lower() in FORMATS[source.format].suffixes]
            if not files:
                raise ValueError(f"{flag} {root}: no {'/'.join(FORMATS[source.format].suffixes)} file in the folder "
                                 f"({format_flag} {source.format})")
        name = root.resolve().name
    elif root.is_file():
        files, root = [root], root.parent
        name = files[0].stem if _split_of(files[0]) is None else root.resolve().name
    else:
        raise FileNotFoundError(f"{flag} {source.path}: no such directory or file")
    fmt = source.format or _detect(files, flag, format_flag, source.path)
    check = FORMATS[fmt].check
    if check is not None:
        for p in files:
            check(p, source)
    return Corpus(source, fmt, source.name or name, _file_splits(files, flag), root=root)


def _folder_files(root: Path) -> list[Path]:
    """Every file under ``root``, recursively (linked folders too, each once), hidden files and folders skipped,
    sorted by relative path."""
    out, seen = [], {os.path.realpath(root)}
    for d, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = [x for x in sorted(dirs) if not x.startswith(".") and _first_visit(os.path.join(d, x), seen)]
        out.extend(Path(d) / n for n in names if not n.startswith(".") and os.path.isfile(os.path.join(d, n)))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def _first_visit(folder: str, seen: set[str]) -> bool:
    real = os.path.realpath(folder)
    if real in seen:  # a link back up the tree (or to a folder already read): reading it again would loop
        return False
    seen.add(real)
    return True


def format_of(path: Path) -> Optional[str]:
    """The format a file's name says (WikiText's release names, else the suffix, case ignored), or None."""
    if RELEASE_FILE.fullmatch(path.name):
        return "wikitext"
    suffix = path.suffix.lower()
    return next((name for name, f in FORMATS.items() if suffix in f.suffixes), None)


def _detect(files: list[Path], flag: str, format_flag: str, where: str) -> str:
    found: dict[str, Path] = {}
    for p in files:
        fmt = format_of(p)
        if fmt is None:
            raise ValueError(f"{p}: cannot tell the format from the suffix {p.suffix!r}; expected "
                             f"{_suffixlisting()}, or name it with {format_flag} (one of {', '.join(FORMATS)})")
        found.setdefault(fmt, p)
        if len(found) > 1:
            (f1, p1), (f2, p2) = found.items()
            raise ValueError(f"{flag} {where}: mixed formats ({p1} is {f1}, {p2} is {f2}); name one with {format_flag} "
                             f"or narrow {flag} to one format's files")
    return next(iter(found))


def _suffixlisting() -> str:
    return ", ".join(s or "no suffix" for f in FORMATS.values() for s in f.suffixes)


def _split_of(path: Path) -> Optional[str]:
    """The split a file is named for (``train.jsonl``, ``dev.tsv``, ``train-00000-of-00002.parquet``,
    ``wiki.valid.tokens``), or None."""
    m = RELEASE_FILE.fullmatch(path.name)
    if m:
        return _SPLIT_OF_NAME[m.group(1)]
    m = _SPLIT_FILE.fullmatch(path.name[:len(path.name) - len(path.suffix)])
    return _SPLIT_OF_NAME[m.group(1).lower()] if m else None


def _file_splits(files: list[Path], flag: str) -> dict[str, list[Path]]:
    """Files -> splits. When a file is named for train, every file must be named for a split; otherwise they are
    all train (the data module carves validation and test from it)."""
    named = {p: _split_of(p) for p in files}
    train = next((p for p, s in named.items() if s == "train"), None)
    if train is None:
        return {"train": files}
    other = next((p for p, s in named.items() if s is None), None)
    if other is not None:
        raise ValueError(f"{other}: not named for a split (train, valid, validation, dev, test) while {train.name} "
                         f"is; rename it or narrow {flag}")
    return {s: [p for p in files if named[p] == s] for s in SPLIT_NAMES if s in named.values()}


def _open_release(source: CorpusSource, root: Path, flag: str) -> Corpus:
    """WikiText's release folder: ``wiki.{train,valid,test}.<variant>``, all three, as the release has them."""
    variants = [source.variant] if source.variant else ["tokens", "raw"]
    missing = {}
    for v in variants:
        files = {split: root / f"wiki.{infix}.{v}" for split, infix in WIKITEXT_INFIX.items()}
        absent = [p.name for p in files.values() if not p.is_file()]
        if not absent:
            return Corpus(source, "wikitext", source.name or root.resolve().name,
                          {split: [p] for split, p in files.items()}, root=root)
        missing[v] = absent
    listing = "; ".join(f"{v}: missing {', '.join(a)}" for v, a in missing.items())
    raise FileNotFoundError(f"{flag} {root}: no complete WikiText release ({listing})")


def _is_wikitext_hub(dataset: str) -> bool:
    return dataset.rstrip("/").rsplit("/", 1)[-1].lower() == "wikitext"


def _open_hub(source: CorpusSource, flag: str, format_flag: str) -> Corpus:
    dataset, config = source.hub_dataset, source.hub_config
    wikitext = source.format == "wikitext" or (source.format is None and _is_wikitext_hub(dataset))
    if source.format not in (None, "wikitext"):
        raise ValueError(f"{format_flag} {source.format}: a file format; a hub dataset's rows are read as they are "
                         f"(or as WikiText release lines with {format_flag} wikitext)")
    hint = (f"pass {flag} DIR holding the release files wiki.{{train,valid,test}}.tokens (or .raw)" if wikitext
            else f"pass {flag} PATH (a folder, a file or a glob) holding a local copy")
    ds = sources.load_hub(dataset, config, hint)
    where = dataset if config is None else f"{dataset}/{config}"
    if source.hub_splits is not None:
        bad = next((k for k in source.hub_splits if k not in SPLIT_NAMES), None)
        if bad is not None:
            raise ValueError(f"hub_splits: unknown split {bad!r}; expected some of {', '.join(SPLIT_NAMES)}")
        splits = dict(source.hub_splits)
    else:
        aliases = {"train": ["train"], "validation": ["validation", "valid", "dev"], "test": ["test"]}
        splits = {ours: next(h for h in theirs if h in ds) for ours, theirs in aliases.items()
                  if any(h in ds for h in theirs)}
    if "train" not in splits:
        raise ValueError(f"{where}: no 'train' split (the hub has {listing(ds.keys())}); map one with hub_splits")
    for ours, theirs in splits.items():
        if theirs not in ds:
            raise ValueError(f"{where}: no split {theirs!r} (for {ours}); the hub has {listing(ds.keys())}")
        features = ds[theirs].features
        if source.text_column not in features:
            raise ValueError(f"{where} split {theirs!r}: no column {source.text_column!r} (the text column); columns "
                             f"present: {listing(features)}")
        dtype = getattr(features[source.text_column], "dtype", type(features[source.text_column]).__name__)
        if dtype not in ("string", "large_string"):
            raise ValueError(f"{where} split {theirs!r}: column {source.text_column!r} is of type {dtype}; expected "
                             f"text (string)")
    name = source.name or _hub_name(dataset, config)
    return Corpus(source, "wikitext" if wikitext else "hub", name, splits, hub=ds)


def _hub_name(dataset: str, config: Optional[str]) -> str:
    last = dataset.rstrip("/").rsplit("/", 1)[-1]
    return last if not config else config if config.startswith(last) else f"{last}-{config}"

