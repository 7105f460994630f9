"""Corpus readers: what a user configured (a folder, a file or a glob of text, JSON Lines, CSV/TSV, Parquet or WikiText
release files; or a HuggingFace hub dataset) -> its splits -> documents, each a list of sentences ready for the
tokenizer.

``open_corpus(CorpusSource(...))`` resolves the files (sorted, so the order is the same on every machine), detects
or checks the format and finds the splits the source itself has; ``Corpus.documents(split)`` streams the documents
(one file, and in it one document, at a time: a corpus far larger than memory reads in constant memory);
``Corpus.identity()`` names the content (a sha256 of every file's bytes) for the cache key. One registry,
``FORMATS``, knows each file format's suffixes and reader.

Sentences: WikiText is tokenised (space-separated tokens), so a standalone ``.``, ``?`` or ``!`` ends a sentence
(``split_sentences``); running text from every other format is split by ``split_text`` (a full stop, ``?`` or ``!``
followed by a space and an upper-case letter, a digit or an opening quote, unless the word before is an
abbreviation or an initial).

The WikiText release layout, one paragraph per line, every line starting with a space::

     = Article title =
     = = Section = =
     First paragraph , with space @-@ separated tokens , 1 @,@ 000 and 3 @.@ 5 . Another sentence .
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional

from data_modules import sources

READER_VERSION = 1
"""Bump when a reader's output changes for the same input, so caches keyed on ``Corpus.identity()`` rebuild."""

SPLIT_NAMES = ("train", "validation", "test")
WIKITEXT_INFIX = {"train": "train", "validation": "valid", "test": "test"}
"""Split name -> the infix of its WikiText release file (``wiki.valid.tokens`` holds the validation split)."""

_SPLIT_OF_NAME = {"train": "train", "valid": "validation", "validation": "validation", "dev": "validation",
                  "test": "test"}
_SPLIT_FILE = re.compile(r"(train|valid|validation|dev|test)(?:[-_.]\d.*)?", re.IGNORECASE)
"""A file named for a split: ``train.jsonl``, ``dev.tsv``, or a shard like ``train-00000-of-00002.parquet``."""
_WIKITEXT_FILE = re.compile(r"wiki\.(train|valid|test)\.(tokens|raw)")


@dataclass(frozen=True)
class CorpusSource:
    """One corpus as configured: local files (``path``) or a HuggingFace hub dataset (``hub_dataset``)."""

    path: Optional[str] = None
    """A folder (read recursively, hidden files skipped), a file or a glob (``**`` recurses); None with hub_dataset."""
    format: Optional[str] = None
    """One of FORMATS (wikitext, text, jsonl, csv, tsv, parquet); None detects it from the file names."""
    text_column: str = "text"
    """The JSONL key, CSV/TSV header column, Parquet or hub column that holds the text."""
    document_per_file: bool = False
    """Plain text: every file is one document (else documents are separated by blank lines, BERT's format)."""
    variant: Optional[Literal["tokens", "raw"]] = None
    """WikiText: ``tokens`` (word-level files with ``<unk>``) or ``raw``; None takes the first complete one."""
    detokenize: bool = True
    """WikiText: rejoin the `` @-@ ``, `` @,@ `` and `` @.@ `` splits."""
    hub_dataset: Optional[str] = None
    """A HuggingFace hub dataset (``datasets.load_dataset``), read when ``path`` is None."""
    hub_config: Optional[str] = None
    """The hub dataset's configuration."""
    hub_splits: Optional[dict[str, str]] = None
    """Our split (train, validation, test) -> the hub's split name; None: those of the three the dataset has
    (``valid`` or ``dev`` stand for validation)."""
    share: Optional[float] = None
    """This source's weight in a mixture of sources (the data module's business; carried here)."""
    name: Optional[str] = None
    """Label in logs and metrics; None: from the folder, file or dataset name."""


# ---------------------------------------------------------------------------------------------------------------------
# WikiText: the release layout (articles cut at " = Title = " headings; tokenised text)

_HEADING = re.compile(r"(=(?: =)*) (.*) \1")  # " = T = " (article), " = = T = = " (section), ...
_SENTENCE_END = {".", "?", "!"}


class Article(NamedTuple):
    title: str
    paragraphs: list[str]


def read_release_lines(path: str | Path) -> Iterator[str]:
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


def _release_paragraph(paragraph: str, detok: bool) -> str:
    """A release paragraph as the tokenizer should see it (``<unk>`` -> ``[UNK]``: the tokenizer then reads it as its
    unknown token instead of the pieces ``<``, ``unk``, ``>``)."""
    p = sources.join_contractions(paragraph.replace("<unk>", "[UNK]"))
    return detokenize(p) if detok else p


def article_sentences(article: Article, detok: bool = True) -> list[str]:
    """The sentences of an article, paragraphs in order, ready for the tokenizer."""
    out = []
    for p in article.paragraphs:
        out.extend(split_sentences(_release_paragraph(p, detok)))
    return out


def release_documents(lines: Iterable[str], detok: bool = True, line_by_line: bool = False) -> Iterator[list[str]]:
    """Articles of release-format lines as lists of sentences (empty articles dropped); ``line_by_line``: every
    paragraph (headings dropped) as a document of one sentence."""
    for article in split_articles(lines):
        if line_by_line:
            for p in article.paragraphs:
                text = " ".join(_release_paragraph(p, detok).split())
                if text:
                    yield [text]
            continue
        sents = article_sentences(article, detok)
        if sents:
            yield sents


# ---------------------------------------------------------------------------------------------------------------------
# running text: a rule-based sentence splitter

_BOUNDARY = re.compile(r"[.?!][.?!\"'”’»)\]]* (?=[\"'“‘«(\[]?[^\W_a-z])|[。！？]+[」』”’）)]* ?")
"""A candidate sentence end: ``.``, ``?`` or ``!`` (closing quotes and brackets included), a space and something
that may start a sentence (the check on it is finished in Python); or a CJK full stop, which needs no space."""
_OPENING = "\"'“‘«(["
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt ft vs cf fig figs no nos vol vols pp ed eds al inc ltd co corp dept univ gen col lt "
    "sgt capt cmdr adm gov sen rep rev hon jan feb mar apr jun jul aug sep sept oct nov dec approx est ca".split())
"""Words that end in a full stop without ending the sentence (lower-cased, without the stop). ``etc.`` is not one:
before a capital it ends its sentence more often than not."""
_DOTTED = re.compile(r"(?:[^\W\d_]{1,3}\.)+[^\W\d_]{1,3}")  # e.g, i.e, U.S, Ph.D, a.m (the final stop is cut off)


def split_text(line: str) -> list[str]:
    """Split a line of running text into sentences; whitespace is normalised to single spaces.

    A sentence ends after ``.``, ``?`` or ``!`` (and any closing quotes or brackets) followed by a space and an
    upper-case letter, a digit or an opening quote or bracket; not after an abbreviation (``Dr.``, ``No.``, ``Fig.``;
    see ``_ABBREVIATIONS``), a single letter (an initial: ``J. R. R. Tolkien``) or a dotted short form (``e.g.``,
    ``U.S.``), so those never end a sentence even where they do. Decimals (``3.5``) have no space after the stop. A
    CJK full stop (``。！？``) always ends one. Deterministic and simple on purpose: BERT's segments are built from
    several sentences anyway.
    """
    text = " ".join(line.split())
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        i, end = m.start(), m.end()
        if text[i] in ".?!":
            nxt = text[end]
            if nxt in _OPENING and end + 1 < len(text):
                nxt = text[end + 1]
            if not (nxt.isupper() or nxt.isdigit()):
                continue
            if text[i] == "." and _is_abbreviation(text[text.rfind(" ", 0, i) + 1:i].lstrip(_OPENING)):
                continue
        sentence = text[start:end].rstrip()
        if sentence:
            out.append(sentence)
        start = end
    if start < len(text):
        out.append(text[start:])
    return out


def _is_abbreviation(word: str) -> bool:
    """Whether ``word`` (the text before a full stop, without it) is a short form rather than a sentence's end."""
    return ((len(word) == 1 and word.isalpha()) or word.lower() in _ABBREVIATIONS
            or _DOTTED.fullmatch(word) is not None)


def _text_sentences(text: str, line_by_line: bool) -> list[str]:
    """Sentences of a block of running text (lines split apart, then each line split), or the whole block as one."""
    text = sources.join_contractions(text)
    if line_by_line:
        one = " ".join(text.split())
        return [one] if one else []
    out = []
    for line in text.splitlines():
        out.extend(split_text(line))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# the formats: one reader per file format


def _read_wikitext(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    return release_documents(read_release_lines(path), source.detokenize, line_by_line)


def _read_text(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    """Blank lines separate documents (BERT's input format), or the file is one (``document_per_file``)."""
    doc: list[str] = []
    for line in sources.read_lines(path, "plain text format"):
        if line_by_line:
            yield from ([s] for s in _text_sentences(line, True))
        elif line and not line.isspace():
            doc.extend(split_text(sources.join_contractions(line)))
        elif doc and not source.document_per_file:
            yield doc
            doc = []
    if doc:
        yield doc


def _documents(texts: Iterable[Any], line_by_line: bool) -> Iterator[list[str]]:
    """One document per row text; rows without text are skipped."""
    for text in texts:
        if text:
            sents = _text_sentences(text, line_by_line)
            if sents:
                yield sents


def _read_jsonl(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    return _documents(_jsonl_texts(path, source.text_column), line_by_line)


def _jsonl_texts(path: Path, column: str) -> Iterator[str | None]:
    for lineno, line in enumerate(sources.read_lines(path, "JSON Lines format"), 1):
        if not line or line.isspace():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not JSON ({e.msg} at column {e.colno}); expected one JSON object "
                             f"per line") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: a JSON {_json_type(row)}; expected one JSON object per line")
        if column not in row:
            raise ValueError(f"{path}:{lineno}: no key {column!r} (the text column); keys present: "
                             f"{_listing(row.keys())}")
        text = row[column]
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{path}:{lineno}: {column!r} holds a JSON {_json_type(text)}; expected a string")
        yield text


def _csv_reader(path: Path, delimiter: str):
    """(csv reader over the checked lines of ``path``, header). Tab-separated files are read unquoted: SST-2-style
    TSVs hold unbalanced ``"`` inside their sentences."""
    csv.field_size_limit(2**31 - 1)  # a document may be longer than the module's default of 128 KiB per field
    name = "CSV" if delimiter == "," else "TSV"
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader(sources.read_lines(path, f"{name} format", keepends=True), delimiter=delimiter,
                        quoting=quoting)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: {e}; expected a {name} header row") from None
    if not header:
        raise ValueError(f"{path}:1: no header row; expected a {name} file whose first row names its columns")
    return reader, header


def _column_index(path: Path, header: list[str], column: str) -> int:
    """Index of the text column in a CSV/TSV header, or a one-line error listing the columns present."""
    if column not in header:
        raise ValueError(f"{path}:1: no column {column!r} (the text column) in the header; columns present: "
                         f"{_listing(header)}")
    return header.index(column)


def _check_csv(path: Path, source: CorpusSource, delimiter: str) -> None:
    _column_index(path, _csv_reader(path, delimiter)[1], source.text_column)


def _csv_texts(path: Path, source: CorpusSource, delimiter: str) -> Iterator[str]:
    reader, header = _csv_reader(path, delimiter)
    at = _column_index(path, header, source.text_column)
    try:
        for row in reader:
            if not row:  # a blank line
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{reader.line_num}: {len(row)} fields; expected {len(header)} as in the "
                                 f"header ({_listing(header)})")
            yield row[at]
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: {e}") from None


def _read_csv(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    return _documents(_csv_texts(path, source, ","), line_by_line)


def _read_tsv(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    return _documents(_csv_texts(path, source, "\t"), line_by_line)


def _parquet_file(path: Path, source: CorpusSource):
    """The opened Parquet file, its text column checked: present, and of a string type."""
    import pyarrow as pa  # only here: installed with datasets, needed for Parquet only
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: not a Parquet file ({type(e).__name__}: {_first_line(e)})") from None
    schema = pf.schema_arrow
    if source.text_column not in schema.names:
        raise ValueError(f"{path}: no column {source.text_column!r} (the text column); columns present: "
                         f"{_listing(schema.names)}")
    t = schema.field(source.text_column).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)):
        raise ValueError(f"{path}: column {source.text_column!r} is of type {t}; expected text (string)")
    return pf


def _read_parquet(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    def texts() -> Iterator[str | None]:  # streamed a batch at a time: memory stays flat
        for batch in _parquet_file(path, source).iter_batches(batch_size=1024, columns=[source.text_column]):
            yield from batch.column(0).to_pylist()

    return _documents(texts(), line_by_line)


@dataclass(frozen=True)
class Format:
    """A corpus file format: how its files are named and read."""

    name: str
    suffixes: tuple[str, ...]
    """File name suffixes (lower-case, with the dot; ``""``: no suffix) detected as this format."""
    read: Callable[[Path, CorpusSource, bool], Iterator[list[str]]]
    """(file, source, line_by_line) -> the file's documents, each a list of sentences."""
    check: Optional[Callable[[Path, CorpusSource], Any]] = None
    """A cheap check of a file when the corpus is opened (the header or schema), so a missing column fails at once."""


FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("wikitext", (".tokens", ".raw"), _read_wikitext),
    Format("text", (".txt", ".text", ""), _read_text),
    Format("jsonl", (".jsonl", ".json"), _read_jsonl),
    Format("csv", (".csv",), _read_csv, lambda p, s: _check_csv(p, s, ",")),
    Format("tsv", (".tsv",), _read_tsv, lambda p, s: _check_csv(p, s, "\t")),
    Format("parquet", (".parquet",), _read_parquet, _parquet_file),
]}
"""The corpus file formats by name (``--data.format``); a hub dataset's rows are read by ``Corpus`` itself."""


# ---------------------------------------------------------------------------------------------------------------------
# a resolved source


class Corpus:
    """A resolved source: its format, name and splits (local files, or a loaded hub dataset).

    ``splits`` holds the splits the source itself has: ``train`` always, ``validation`` and ``test`` only when
    present (files named for them, WikiText's ``wiki.{train,valid,test}.*``, or hub splits); each maps to its files
    (sorted) or, for a hub dataset, to the hub's split name.
    """

    def __init__(self, source: CorpusSource, format: str, name: str, splits: dict[str, Any], hub: Any = None,
                 root: Optional[Path] = None) -> None:
        self.source, self.format, self.name, self.splits = source, format, name, splits
        self.hub = hub  # the loaded datasets.DatasetDict (hub sources only)
        self.root = root  # file names in identity() are relative to this folder

    def __repr__(self) -> str:
        return f"Corpus({self.name!r}, format={self.format!r}, splits={ {k: self.where(k) for k in self.splits} })"

    @property
    def files(self) -> list[Path]:
        """Every file of every split (none for a hub dataset)."""
        return [] if self.hub is not None else [p for files in self.splits.values() for p in files]

    def where(self, split: str) -> str:
        """The split's source in words, for messages: its file, ``N files under DIR``, or ``hub split 'x' of D``."""
        if self.hub is not None:
            return f"hub split {self.splits[split]!r} of {self.source.hub_dataset}"
        files = self.splits[split]
        return str(files[0]) if len(files) == 1 else f"{len(files)} files under {self.root}"

    def size(self, split: str) -> Optional[int]:
        """Bytes of the split's files (None for a hub split)."""
        return None if self.hub is not None else sum(p.stat().st_size for p in self.splits[split])

    def identity(self) -> dict:
        """What the documents depend on, JSON-able: the format and reader options, and every file's name (relative
        to the corpus's folder) and sha256 of its bytes (size and modification time can stay the same while the
        text changes); for a hub dataset its name, config, split names and the datasets fingerprint of each split.
        Reads every file once, in 1 MiB chunks (about 1 GB/s with SHA-NI)."""
        s = self.source
        options: dict[str, Any] = {"wikitext": {"detokenize": s.detokenize},
                                   "text": {"document_per_file": s.document_per_file}}.get(
            self.format, {"text_column": s.text_column})
        out: dict[str, Any] = {"reader": READER_VERSION, "format": self.format, "options": options}
        if self.hub is not None:
            out["hub"] = {"dataset": s.hub_dataset, "config": s.hub_config, "splits": dict(self.splits),
                          "fingerprints": {k: getattr(self.hub[v], "_fingerprint", None) for k, v in self.splits.items()}}
        else:
            out["files"] = {split: [[p.relative_to(self.root).as_posix(), file_sha256(p)] for p in files]
                            for split, files in self.splits.items()}
        return out

    def documents(self, split: str, line_by_line: bool = False) -> Iterator[list[str]]:
        """The split's documents in order, each as its list of sentences (never empty), ready for the tokenizer;
        ``line_by_line``: every non-empty line (text, WikiText paragraphs) or row's text (tabular, hub), whitespace
        normalised, as a document of one sentence. Streams: call it again to read the split again."""
        if split not in self.splits:
            raise KeyError(f"{self.name}: no {split!r} split (it has {', '.join(self.splits)})")
        return self._documents(split, line_by_line)

    def _documents(self, split: str, line_by_line: bool) -> Iterator[list[str]]:
        if self.hub is not None:
            texts = _hub_texts(self.hub[self.splits[split]], self.source.text_column)
            if self.format == "wikitext":  # release lines, one a row
                yield from release_documents((t.rstrip("\r\n") for t in texts), self.source.detokenize, line_by_line)
            else:
                yield from _documents(texts, line_by_line)
            return
        read = FORMATS[self.format].read
        for path in self.splits[split]:
            yield from read(path, self.source, line_by_line)


def _hub_texts(ds, column: str) -> Iterator[str]:
    for batch in ds.select_columns([column]).iter(batch_size=1000):
        yield from batch[column]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# open_corpus: resolve a source


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
                _WIKITEXT_FILE.fullmatch(p.name) for p in root.iterdir() if p.is_file())):
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


def _format_of(path: Path) -> Optional[str]:
    if _WIKITEXT_FILE.fullmatch(path.name):
        return "wikitext"
    suffix = path.suffix.lower()
    return next((name for name, f in FORMATS.items() if suffix in f.suffixes), None)


def _detect(files: list[Path], flag: str, format_flag: str, where: str) -> str:
    found: dict[str, Path] = {}
    for p in files:
        fmt = _format_of(p)
        if fmt is None:
            raise ValueError(f"{p}: cannot tell the format from the suffix {p.suffix!r}; expected "
                             f"{_suffix_listing()}, or name it with {format_flag} (one of {', '.join(FORMATS)})")
        found.setdefault(fmt, p)
        if len(found) > 1:
            (f1, p1), (f2, p2) = found.items()
            raise ValueError(f"{flag} {where}: mixed formats ({p1} is {f1}, {p2} is {f2}); name one with {format_flag} "
                             f"or narrow {flag} to one format's files")
    return next(iter(found))


def _suffix_listing() -> str:
    return ", ".join(s or "no suffix" for f in FORMATS.values() for s in f.suffixes)


def _split_of(path: Path) -> Optional[str]:
    """The split a file is named for (``train.jsonl``, ``dev.tsv``, ``train-00000-of-00002.parquet``,
    ``wiki.valid.tokens``), or None."""
    m = _WIKITEXT_FILE.fullmatch(path.name)
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
        raise ValueError(f"{where}: no 'train' split (the hub has {_listing(ds.keys())}); map one with hub_splits")
    for ours, theirs in splits.items():
        if theirs not in ds:
            raise ValueError(f"{where}: no split {theirs!r} (for {ours}); the hub has {_listing(ds.keys())}")
        features = ds[theirs].features
        if source.text_column not in features:
            raise ValueError(f"{where} split {theirs!r}: no column {source.text_column!r} (the text column); columns "
                             f"present: {_listing(features)}")
        dtype = getattr(features[source.text_column], "dtype", type(features[source.text_column]).__name__)
        if dtype not in ("string", "large_string"):
            raise ValueError(f"{where} split {theirs!r}: column {source.text_column!r} is of type {dtype}; expected "
                             f"text (string)")
    name = source.name or _hub_name(dataset, config)
    return Corpus(source, "wikitext" if wikitext else "hub", name, splits, hub=ds)


def _hub_name(dataset: str, config: Optional[str]) -> str:
    last = dataset.rstrip("/").rsplit("/", 1)[-1]
    return last if not config else config if config.startswith(last) else f"{last}-{config}"


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def _listing(names: Iterable[Any], limit: int = 10) -> str:
    names = [str(n) for n in names]
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return (", ".join(names[:limit]) or "none") + more


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else ""
