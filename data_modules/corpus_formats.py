"""The corpus file formats: what a configured source says (``CorpusSource``) and how each format's files become
documents (``FORMATS``: suffixes, reader and a cheap check per format).

A reader streams one file, and in it one document at a time, each document a list of sentences ready for the
tokenizer: plain text (blank lines separate documents, BERT's input format), JSON Lines, CSV/TSV and Parquet with a
text column, and WikiText's release files. Bad input is a one-line error naming the file and its line, row or byte.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from data_modules import sources
from data_modules.sentence_splitter import split_text, text_sentences
from data_modules.wikitext_release import read_release_lines, release_documents


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
# the formats: one reader per file format


def _read_wikitext(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    return release_documents(read_release_lines(path), source.detokenize, line_by_line)


def _read_text(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    """Blank lines separate documents (BERT's input format), or the file is one (``document_per_file``)."""
    doc: list[str] = []
    for line in sources.read_lines(path, "plain text format"):
        if line_by_line:
            yield from ([s] for s in text_sentences(line, True))
        elif line and not line.isspace():
            doc.extend(split_text(sources.join_contractions(line)))
        elif doc and not source.document_per_file:
            yield doc
            doc = []
    if doc:
        yield doc


def row_documents(texts: Iterable[Any], line_by_line: bool) -> Iterator[list[str]]:
    """One document per row's text (a JSONL, CSV/TSV, Parquet or hub row); rows without text are skipped."""
    for text in texts:
        if text:
            sents = text_sentences(text, line_by_line)
            if sents:
                yield sents


def _read_jsonl(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    return row_documents(_jsonl_texts(path, source.text_column), line_by_line)


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
                             f"{listing(row.keys())}")
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
                         f"{listing(header)}")
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
                                 f"header ({listing(header)})")
            yield row[at]
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: {e}") from None


def _read_csv(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    return row_documents(_csv_texts(path, source, ","), line_by_line)


def _read_tsv(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    return row_documents(_csv_texts(path, source, "\t"), line_by_line)


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
                         f"{listing(schema.names)}")
    t = schema.field(source.text_column).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)):
        raise ValueError(f"{path}: column {source.text_column!r} is of type {t}; expected text (string)")
    return pf


def _read_parquet(path: Path, source: CorpusSource, line_by_line: bool) -> Iterator[list[str]]:
    def texts() -> Iterator[str | None]:  # streamed a batch at a time: memory stays flat
        for batch in _parquet_file(path, source).iter_batches(batch_size=1024, columns=[source.text_column]):
            yield from batch.column(0).to_pylist()

    return row_documents(texts(), line_by_line)


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
# helpers


def listing(names: Iterable[Any], limit: int = 10) -> str:
    """Names for an error message: the first ``limit``, comma-separated, and how many there are in all."""
    names = [str(n) for n in names]
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return (", ".join(names[:limit]) or "none") + more


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else ""
