"""A resolved corpus (data_modules/corpus_content.py): hub rows read as documents, and the content identity behind
the cache key (a sha256 of every file's bytes)."""

import hashlib
import json
import os

import pytest

from corpus_reading import docs
from data_modules import corpus_detection
from data_modules.corpus_content import file_sha256
from data_modules.corpus_detection import open_corpus
from data_modules.corpus_formats import CorpusSource


# ---- documents ------------------------------------------------------------------------------------------------------


def test_wikitext_hub_rows_are_release_lines(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    release = tmp_path / "wiki.valid.tokens"
    release.write_text(" = T = \n \n A <unk> . B . \n \n = U = \n \n C @-@ D . \n")
    rows = [line + "\n" for line in release.read_text().split("\n")[:-1]]  # as the hub holds them: "\n" kept
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": rows}) for s in ("train", "validation", "test")})
    calls = []
    monkeypatch.setattr(corpus_detection.sources, "load_hub", lambda d, c, hint: calls.append((d, c, hint)) or dd)
    corpus = open_corpus(CorpusSource(hub_dataset="Salesforce/wikitext", hub_config="wikitext-103-raw-v1"))
    assert (corpus.format, corpus.name, corpus.splits) == ("wikitext", "wikitext-103-raw-v1", {
        "train": "train", "validation": "validation", "test": "test"})
    assert "wiki.{train,valid,test}.tokens" in calls[0][2]
    assert list(corpus.documents("test")) == docs(release) == [["A [UNK] .", "B ."], ["C-D ."]]
    ident = corpus.identity()
    assert ident["hub"]["fingerprints"]["train"] == dd["train"]._fingerprint


# ---- identity -------------------------------------------------------------------------------------------------------


def test_identity_hashes_content(tmp_path):
    a = tmp_path / "a" / "doc.txt"
    a.parent.mkdir()
    a.write_text("Some text here.\n")
    before = open_corpus(CorpusSource(str(a.parent))).identity()
    assert before["files"] == {"train": [["doc.txt", hashlib.sha256(b"Some text here.\n").hexdigest()]]}
    json.dumps(before)  # JSON-able
    st = a.stat()
    a.write_text("Some text hers.\n")  # one byte, same size...
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the same mtime
    assert a.stat().st_size == st.st_size and a.stat().st_mtime_ns == st.st_mtime_ns
    assert open_corpus(CorpusSource(str(a.parent))).identity() != before
    b = tmp_path / "b" / "doc.txt"  # the same bytes elsewhere: the same identity
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    assert open_corpus(CorpusSource(str(b.parent))).identity() == open_corpus(CorpusSource(str(a.parent))).identity()
    per_file = open_corpus(CorpusSource(str(a.parent), document_per_file=True)).identity()
    assert per_file["options"] == {"document_per_file": True} and per_file["files"] == open_corpus(
        CorpusSource(str(a.parent))).identity()["files"]


def test_file_sha256_matches_hashlib(tmp_path):
    p = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # more than one 1 MiB chunk, not a multiple of it
    p.write_bytes(data)
    assert file_sha256(p) == hashlib.sha256(data).hexdigest()
