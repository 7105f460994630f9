"""A resolved corpus (``Corpus``): where each of its splits is, their documents, and an identity of its content for
the cache key (a sha256 of every file's bytes, or a hub dataset's fingerprints).

``corpus_detection.open_corpus`` makes one from a ``CorpusSource``; ``Corpus.documents(split)`` streams the documents
(one file, and in it one document, at a time: a corpus far larger than memory reads in constant memory).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from data_modules.corpus_formats import FORMATS, CorpusSource, row_documents
from data_modules.wikitext_release import release_documents

READER_VERSION = 1
"""Bump when a reader's output changes for the same input (corpus_formats, sentence_splitter, wikitext_release), so
caches keyed on ``Corpus.identity()`` rebuild."""


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
                yield from row_documents(texts, line_by_line)
            return
        read = FORMATS[self.format].read
        for path in self.splits[split]:
            yield from read(path, self.source, line_by_line)


def _hub_texts(ds, column: str) -> Iterator[str]:
    for batch in ds.select_columns([column]).iter(batch_size=1000):
        yield from batch[column]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks into one buffer."""
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()

