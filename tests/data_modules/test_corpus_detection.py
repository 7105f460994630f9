"""Resolving a configured source (data_modules/corpus_detection.py): files, format and splits detected from the
names, WikiText's release folder, hub datasets, and every problem as a one-line error naming the flag or file."""

import json
import os
import time
from pathlib import Path

import pytest

from corpus_reading import docs, error
from data_modules import corpus_detection
from data_modules.corpus_detection import format_of, open_corpus
from data_modules.corpus_formats import FORMATS, CorpusSource


# ---- files, formats and splits --------------------------------------------------------------------------------------


def test_folder_is_read_recursively_in_sorted_order_hidden_skipped(tmp_path):
    for rel, text in [("b/z.txt", "Z."), ("a.txt", "A."), ("b/c.txt", "C."), (".hidden.txt", "H."),
                      (".git/x.txt", "X."), ("noext", "N.")]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text + "\n")
    os.symlink(tmp_path, tmp_path / "b" / "loop")  # a link back up the tree is read once, not forever
    corpus = open_corpus(CorpusSource(str(tmp_path)))
    assert corpus.format == "text" and corpus.name == tmp_path.name
    assert [p.relative_to(tmp_path).as_posix() for p in corpus.files] == ["a.txt", "b/c.txt", "b/z.txt", "noext"]
    assert list(corpus.documents("train")) == [["A."], ["C."], ["Z."], ["N."]]


@pytest.mark.parametrize("name, fmt", [("a.txt", "text"), ("a.TEXT", "text"), ("notes", "text"), ("a.jsonl", "jsonl"),
                                       ("a.json", "jsonl"), ("a.csv", "csv"), ("a.tsv", "tsv"),
                                       ("a.parquet", "parquet"), ("wiki.test.raw", "wikitext"),
                                       ("x.tokens", "wikitext")])
def test_format_detected_from_the_suffix(name, fmt):
    assert format_of(Path(name)) == fmt
    assert set(FORMATS) == {"wikitext", "text", "jsonl", "csv", "tsv", "parquet"}


def test_named_format_reads_any_file_and_filters_a_folder(tmp_path):
    (tmp_path / "notes.md").write_text("Markdown is text. Read as such.\n")
    (tmp_path / "rows.jsonl").write_text('{"text": "A row."}\n')
    assert docs(tmp_path / "notes.md", format="text") == [["Markdown is text.", "Read as such."]]
    assert docs(tmp_path, format="jsonl") == [["A row."]]  # the .jsonl files of the folder
    assert len(docs(tmp_path, format="text")) == 2  # text: every file


def test_glob(tmp_path):
    for name in ("a.txt", "b.txt", "c.csv"):
        (tmp_path / name).write_text("text\nHello.\n" if name.endswith(".csv") else f"{name}.\n")
    corpus = open_corpus(CorpusSource(str(tmp_path / "*.txt")))
    assert corpus.format == "text" and corpus.name == tmp_path.name
    assert list(corpus.documents("train")) == [["a.txt."], ["b.txt."]]
    assert docs(str(tmp_path / "**" / "*.csv")) == [["Hello."]]


def test_splits_from_file_names(tmp_path):
    for name in ("train.jsonl", "valid.jsonl", "test.jsonl"):
        (tmp_path / name).write_text(json.dumps({"text": f"From {name}."}) + "\n")
    corpus = open_corpus(CorpusSource(str(tmp_path)))
    assert list(corpus.splits) == ["train", "validation", "test"]
    assert list(corpus.documents("validation")) == [["From valid.jsonl."]]
    shards = tmp_path / "shards"
    shards.mkdir()
    for name in ("train-00000-of-00002.txt", "train-00001-of-00002.txt", "dev.txt"):
        (shards / name).write_text(f"{name}\n")
    assert {k: [p.name for p in v] for k, v in open_corpus(CorpusSource(str(shards))).splits.items()} == {
        "train": ["train-00000-of-00002.txt", "train-00001-of-00002.txt"], "validation": ["dev.txt"]}
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("test_notes.txt", "b.txt"):  # no train file: every file is train, whatever its name
        (plain / name).write_text("x\n")
    assert list(open_corpus(CorpusSource(str(plain))).splits) == ["train"]
    with pytest.raises(KeyError, match="no 'test' split"):
        open_corpus(CorpusSource(str(plain))).documents("test")


# ---- WikiText's release folder and hub datasets ---------------------------------------------------------------------


def test_wikitext_missing_files_listed(tmp_path):
    (tmp_path / "wiki.train.tokens").write_text(" = T = \n \n x . \n")
    (tmp_path / "wiki.valid.raw").write_text(" = T = \n \n x . \n")
    msg = error(FileNotFoundError, open_corpus, CorpusSource(str(tmp_path)))
    assert msg == (f"--data.data_dir {tmp_path}: no complete WikiText release (tokens: missing wiki.valid.tokens, "
                   f"wiki.test.tokens; raw: missing wiki.train.raw, wiki.test.raw)")
    msg = error(FileNotFoundError, open_corpus, CorpusSource(str(tmp_path), variant="raw"), flag="--x")
    assert msg == f"--x {tmp_path}: no complete WikiText release (raw: missing wiki.train.raw, wiki.test.raw)"


def test_hub_rows_splits_and_columns(monkeypatch):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"body": ["One. Two.", "", "Three."], "n": [1, 2, 3]}),
                               "dev": datasets.Dataset.from_dict({"body": ["Dev."], "n": [0]})})
    monkeypatch.setattr(corpus_detection.sources, "load_hub", lambda d, c, hint: dd)
    corpus = open_corpus(CorpusSource(hub_dataset="me/reviews", text_column="body"))
    assert (corpus.format, corpus.name, corpus.splits) == ("hub", "reviews", {"train": "train", "validation": "dev"})
    assert list(corpus.documents("train")) == [["One.", "Two."], ["Three."]]
    assert list(corpus.documents("validation", line_by_line=True)) == [["Dev."]]
    mapped = open_corpus(CorpusSource(hub_dataset="me/reviews", text_column="body", hub_splits={"train": "dev"}))
    assert mapped.splits == {"train": "dev"}
    assert error(ValueError, open_corpus, CorpusSource(hub_dataset="me/reviews")) == (
        "me/reviews split 'train': no column 'text' (the text column); columns present: body, n")
    assert error(ValueError, open_corpus, CorpusSource(hub_dataset="me/reviews", text_column="n")) == (
        "me/reviews split 'train': column 'n' is of type int64; expected text (string)")
    assert error(ValueError, open_corpus, CorpusSource(hub_dataset="me/r", hub_splits={"validation": "dev"})) == (
        "me/r: no 'train' split (the hub has train, dev); map one with hub_splits")
    assert error(ValueError, open_corpus, CorpusSource(hub_dataset="me/r", hub_splits={"train": "x"})) == (
        "me/r: no split 'x' (for train); the hub has train, dev")


def test_hub_unreachable_fails_at_once(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    t = time.perf_counter()
    msg = error(ValueError, open_corpus, CorpusSource(hub_dataset="me/reviews"))
    assert time.perf_counter() - t < 6
    assert msg.startswith("cannot load me/reviews from the HuggingFace hub (127.0.0.1 unreachable")
    assert msg.endswith("; pass --data.data_dir PATH (a folder, a file or a glob) holding a local copy")


# ---- bad input: one line naming the flag or the file ----------------------------------------------------------------


def test_missing_empty_and_unmatched(tmp_path):
    assert error(FileNotFoundError, open_corpus, CorpusSource(str(tmp_path / "nope"))) == (
        f"--data.data_dir {tmp_path / 'nope'}: no such directory or file")
    assert error(FileNotFoundError, open_corpus, CorpusSource(str(tmp_path / "*.txt"))) == (
        f"--data.data_dir {tmp_path / '*.txt'}: the glob matches no file")
    (tmp_path / ".hidden").write_text("x\n")
    assert error(ValueError, open_corpus, CorpusSource(str(tmp_path))) == (
        f"--data.data_dir {tmp_path}: empty folder; expected files of one of the formats wikitext, text, jsonl, csv, "
        f"tsv, parquet")
    assert error(ValueError, open_corpus, CorpusSource()) == (
        "--data.data_dir: no corpus; set --data.data_dir (a folder, a file or a glob) or --data.hub_dataset")
    (tmp_path / "a.txt").write_text("x\n")
    assert error(ValueError, open_corpus, CorpusSource(str(tmp_path), format="jsonl")) == (
        f"--data.data_dir {tmp_path}: no .jsonl/.json file in the folder (--data.format jsonl)")


def test_unknown_format_and_mixed_folder(tmp_path):
    assert error(ValueError, open_corpus, CorpusSource(str(tmp_path), format="xml")) == (
        "--data.format xml: unknown format; expected one of wikitext, text, jsonl, csv, tsv, parquet")
    (tmp_path / "a.txt").write_text("x\n")
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n')
    assert error(ValueError, open_corpus, CorpusSource(str(tmp_path))) == (
        f"--data.data_dir {tmp_path}: mixed formats ({tmp_path / 'a.txt'} is text, {tmp_path / 'b.jsonl'} is jsonl); "
        f"name one with --data.format or narrow --data.data_dir to one format's files")
    (tmp_path / "README.md").write_text("x\n")
    assert error(ValueError, open_corpus, CorpusSource(str(tmp_path))) == (
        f"{tmp_path / 'README.md'}: cannot tell the format from the suffix '.md'; expected .tokens, .raw, .txt, "
        f".text, no suffix, .jsonl, .json, .csv, .tsv, .parquet, or name it with --data.format (one of wikitext, "
        f"text, jsonl, csv, tsv, parquet)")


def test_train_file_beside_unnamed_files(tmp_path):
    (tmp_path / "train.txt").write_text("x\n")
    (tmp_path / "notes.txt").write_text("x\n")
    assert error(ValueError, open_corpus, CorpusSource(str(tmp_path))) == (
        f"{tmp_path / 'notes.txt'}: not named for a split (train, valid, validation, dev, test) while train.txt is; "
        f"rename it or narrow --data.data_dir")
