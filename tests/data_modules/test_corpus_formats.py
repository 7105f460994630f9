"""The corpus file formats (data_modules/corpus_formats.py): plain text, JSON Lines, CSV/TSV and Parquet read into
documents, and their bad input as a one-line error naming the file and line, row or byte."""

import csv
import json

import pytest

from corpus_reading import docs, error
from data_modules.corpus_detection import open_corpus
from data_modules.corpus_formats import CorpusSource


# ---- plain text -----------------------------------------------------------------------------------------------------


def test_text_blank_lines_separate_documents_with_bom_and_crlf(tmp_path):
    lf = tmp_path / "lf.txt"
    lf.write_text("First doc. It has two lines.\nSecond line here.\n\n  \nSecond doc, one line.\n\n\n")
    crlf = tmp_path / "crlf" / "a.txt"
    crlf.parent.mkdir()
    crlf.write_bytes(("\ufeff" + lf.read_text()).replace("\n", "\r\n").encode())
    expected = [["First doc.", "It has two lines.", "Second line here."], ["Second doc, one line."]]
    assert docs(lf) == expected
    assert docs(crlf) == expected  # BOM and CR gone
    assert docs(crlf.parent) == expected  # a folder of one file


def test_document_per_file(tmp_path):
    (tmp_path / "a.txt").write_text("One. Two.\n\nThree.\n")
    (tmp_path / "b.txt").write_text("Four.\n")
    assert docs(tmp_path) == [["One.", "Two."], ["Three."], ["Four."]]
    assert docs(tmp_path, document_per_file=True) == [["One.", "Two.", "Three."], ["Four."]]


def test_line_by_line(tmp_path):
    (tmp_path / "a.txt").write_text("  Great   movie. Loved it!  \n\nbad\n   \n")
    assert docs(tmp_path, line_by_line=True) == [["Great movie. Loved it!"], ["bad"]]
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "A review. Two sentences."}\n{"text": "line one\\nline two"}\n{"text": ""}\n')
    assert docs(rows, line_by_line=True) == [["A review. Two sentences."], ["line one line two"]]
    assert docs(rows) == [["A review.", "Two sentences."], ["line one", "line two"]]


def test_contractions_joined(tmp_path):
    (tmp_path / "a.txt").write_text("It does n't work. It doesn 't either.\n")
    assert docs(tmp_path) == [["It doesn't work.", "It doesn't either."]]


# ---- tabular formats ------------------------------------------------------------------------------------------------


def test_jsonl(tmp_path):
    p = tmp_path / "c.jsonl"
    rows = [{"text": "Row one. Still one?", "id": 1}, {"text": None}, {"text": ""}, {"text": "Multi\n\nline"},
            {"body": "x", "text": "Last!"}]
    p.write_bytes(("\ufeff" + "\n".join(json.dumps(r) for r in rows) + "\n\n").encode())
    assert docs(p) == [["Row one.", "Still one?"], ["Multi", "line"], ["Last!"]]
    q = tmp_path / "rows.json"  # .json: also JSON Lines
    q.write_text('{"content": "Hello there."}\n')
    assert docs(q, text_column="content") == [["Hello there."]]


def test_csv_quoting_and_column(tmp_path):
    p = tmp_path / "c.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "body"])
        w.writerows([[1, 'Has, a comma. And "quotes".'], [2, "Two\nlines"], [3, ""]])
    assert docs(p, text_column="body") == [['Has, a comma.', 'And "quotes".'], ["Two", "lines"]]


def test_tsv_keeps_unbalanced_quotes(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text('sentence\tlabel\n"quoted start and no end \t1\nplain \t0\n')
    assert docs(p, text_column="sentence") == [['"quoted start and no end'], ["plain"]]


def test_parquet_streams_batches(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = [f"Document {i}. It ends." if i % 7 else None for i in range(3000)]
    p = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": pa.array(texts, pa.large_string()), "n": list(range(3000))}), p,
                   row_group_size=1000)
    out = docs(p)
    assert len(out) == sum(t is not None for t in texts) and out[0] == ["Document 1.", "It ends."]
    assert out[-1] == ["Document 2999.", "It ends."]  # past the first row group and batch
    assert docs(p, line_by_line=True)[0] == ["Document 1. It ends."]


def test_sst2_train_tsv_is_a_corpus(data_root):
    corpus = open_corpus(CorpusSource(str(data_root / "SST-2" / "train.tsv"), text_column="sentence"))
    assert (corpus.format, corpus.name, list(corpus.splits)) == ("tsv", "SST-2", ["train"])
    out = list(corpus.documents("train", line_by_line=True))
    assert len(out) == 67_349 and out[0] == ["hide new secretions from the parental units"]
    folder = open_corpus(CorpusSource(str(data_root / "SST-2"), text_column="sentence"))
    assert {k: [p.name for p in v] for k, v in folder.splits.items()} == {
        "train": ["train.tsv"], "validation": ["dev.tsv"], "test": ["test.tsv"]}


# ---- bad input: one line naming the file and line, row or byte ------------------------------------------------------


def test_invalid_utf8_names_line_and_byte_offset(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"Fine.\n\nAlso fine.\ncaf\xe9 au lait\n")
    assert error(ValueError, docs, tmp_path) == (
        f"{p}:4: invalid UTF-8 at byte 3 of the line, byte 21 of the file (b'\\xe9 au'); expected UTF-8 text")
    assert p.read_bytes()[21] == 0xE9


def test_binary_file_in_a_text_folder(tmp_path):
    (tmp_path / "a.txt").write_text("Fine.\n")
    png = tmp_path / "image"
    png.write_bytes(b"ok\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert error(ValueError, docs, tmp_path) == (
        f"{png}:2: invalid UTF-8 at byte 0 of the line, byte 3 of the file (b'\\x89PNG'); expected UTF-8 text "
        f"(it looks binary: NUL bytes in its first 8 KiB)")
    png.write_bytes(b"ok\nab\x00c\n")
    assert error(ValueError, docs, tmp_path) == (
        f"{png}:2: NUL byte at byte 5 of the file: it looks binary; expected UTF-8 text in the plain text format")


def test_bad_jsonl_rows(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "ok"}\n\n{"text": "unterminated}\n')
    assert error(ValueError, docs, p) == (
        f"{p}:3: not JSON (Unterminated string starting at at column 10); expected one JSON object per line")
    p.write_text('{"text": "ok"}\n{"body": "x", "id": 2}\n')
    assert error(ValueError, docs, p) == f"{p}:2: no key 'text' (the text column); keys present: body, id"
    p.write_text('["a list"]\n')
    assert error(ValueError, docs, p) == f"{p}:1: a JSON array; expected one JSON object per line"
    p.write_text('{"text": 3}\n')
    assert error(ValueError, docs, p) == f"{p}:1: 'text' holds a JSON number; expected a string"


def test_bad_csv_and_tsv(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id,body\n1,x\n")
    assert error(ValueError, open_corpus, CorpusSource(str(p))) == (
        f"{p}:1: no column 'text' (the text column) in the header; columns present: id, body")
    t = tmp_path / "t.tsv"
    t.write_text("sentence\tlabel\nok\t1\nno label\n")
    assert error(ValueError, open_corpus, CorpusSource(str(t))) == (
        f"{t}:1: no column 'text' (the text column) in the header; columns present: sentence, label")
    assert error(ValueError, docs, t, text_column="sentence") == (
        f"{t}:3: 1 fields; expected 2 as in the header (sentence, label)")
    empty = tmp_path / "e.csv"
    empty.write_text("")
    assert error(ValueError, open_corpus, CorpusSource(str(empty))) == (
        f"{empty}:1: no header row; expected a CSV file whose first row names its columns")


def test_bad_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": ["x"], "n": [1]}), p)
    assert error(ValueError, open_corpus, CorpusSource(str(p))) == (
        f"{p}: no column 'text' (the text column); columns present: body, n")
    assert error(ValueError, open_corpus, CorpusSource(str(p), text_column="n")) == (
        f"{p}: column 'n' is of type int64; expected text (string)")
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet at all\n")
    msg = error(ValueError, open_corpus, CorpusSource(str(fake)))
    assert msg.startswith(f"{fake}: not a Parquet file (ArrowInvalid: ")
