"""The corpus readers (data_modules/readers.py): every format, format and split detection, the sentence splitter,
the content-hash identity, and every bad input as a one-line error naming the file and line, row or byte."""

import csv
import hashlib
import json
import os
import time

import pytest

from data_modules import readers
from data_modules.readers import FORMATS, CorpusSource, open_corpus, split_text


def docs(path, split="train", line_by_line=False, **kw):
    return list(open_corpus(CorpusSource(str(path), **kw)).documents(split, line_by_line))


def error(exc, fn, *args, **kw) -> str:
    """The message of the ``exc`` that ``fn`` raises: one line."""
    with pytest.raises(exc) as e:
        result = fn(*args, **kw)
        if hasattr(result, "__next__"):  # a generator raises when read
            list(result)
    message = str(e.value)
    assert "\n" not in message and message, message
    return message


def read_all(source: CorpusSource, split="train"):
    return list(open_corpus(source).documents(split))


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


# ---- WikiText -------------------------------------------------------------------------------------------------------

GOLDEN = {  # sha256 of the valid split's articles (sentences joined by \n, articles by \n\n) as the code of c15abc1 read them
    ("tokens", True): "dabf76f7882d7d38e5916a9e498d595325683c41773414a03ae07ab6df20c7bc",
    ("tokens", False): "f6d29a5117bf340dcbc3a382c7da34dabac36a62fe200746adb573bdb4816ca7",
    ("raw", True): "1ec6f9fba021df19990204ecf3e8310c52fb9547a42e70c2770ee278ab1d8dda",
}


def _digest(articles) -> str:
    h = hashlib.sha256()
    for sents in articles:
        h.update(("\n".join(sents) + "\n\n").encode())
    return h.hexdigest()


@pytest.mark.parametrize("variant, detok", list(GOLDEN))
def test_wikitext_documents_unchanged(data_root, variant, detok):
    import data_modules.wikitext as wt

    path = data_root / "wikitext-2" / f"wiki.valid.{variant}"
    if variant == "tokens":  # the release folder (WikiText-2 has no wiki.train.raw: the raw file is read alone)
        corpus = open_corpus(CorpusSource(str(path.parent), variant=variant, detokenize=detok))
        assert corpus.format == "wikitext" and list(corpus.splits) == ["train", "validation", "test"]
        ours = list(corpus.documents("validation"))
    else:
        corpus = open_corpus(CorpusSource(str(path), detokenize=detok))
        assert corpus.format == "wikitext" and list(corpus.splits) == ["train"]
        ours = list(corpus.documents("train"))
    theirs = [s for s in (wt.article_sentences(a, detok) for a in wt.split_articles(wt.read_lines(path))) if s]
    assert ours == theirs and len(ours) == 60
    assert _digest(ours) == GOLDEN[variant, detok]


def test_wikitext_line_by_line_and_single_file(tmp_path):
    p = tmp_path / "wiki.train.tokens"
    p.write_text(" = T = \n \n A <unk> of 1 @.@ 5 m . Next . \n \n = = S = = \n \n Para two . \n")
    assert docs(p) == [["A [UNK] of 1.5 m .", "Next .", "Para two ."]]
    assert docs(p, line_by_line=True) == [["A [UNK] of 1.5 m . Next ."], ["Para two ."]]
    assert open_corpus(CorpusSource(str(p))).format == "wikitext"


def test_wikitext_missing_files_listed(tmp_path):
    (tmp_path / "wiki.train.tokens").write_text(" = T = \n \n x . \n")
    (tmp_path / "wiki.valid.raw").write_text(" = T = \n \n x . \n")
    msg = error(FileNotFoundError, open_corpus, CorpusSource(str(tmp_path)))
    assert msg == (f"--data.data_dir {tmp_path}: no complete WikiText release (tokens: missing wiki.valid.tokens, "
                   f"wiki.test.tokens; raw: missing wiki.train.raw, wiki.test.raw)")
    msg = error(FileNotFoundError, open_corpus, CorpusSource(str(tmp_path), variant="raw"), flag="--x")
    assert msg == f"--x {tmp_path}: no complete WikiText release (raw: missing wiki.train.raw, wiki.test.raw)"


def test_wikitext_hub_rows_are_release_lines(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    release = tmp_path / "wiki.valid.tokens"
    release.write_text(" = T = \n \n A <unk> . B . \n \n = U = \n \n C @-@ D . \n")
    rows = [line + "\n" for line in release.read_text().split("\n")[:-1]]  # as the hub holds them: "\n" kept
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": rows}) for s in ("train", "validation", "test")})
    calls = []
    monkeypatch.setattr(readers.sources, "load_hub", lambda d, c, hint: calls.append((d, c, hint)) or dd)
    corpus = open_corpus(CorpusSource(hub_dataset="Salesforce/wikitext", hub_config="wikitext-103-raw-v1"))
    assert (corpus.format, corpus.name, corpus.splits) == ("wikitext", "wikitext-103-raw-v1", {
        "train": "train", "validation": "validation", "test": "test"})
    assert "wiki.{train,valid,test}.tokens" in calls[0][2]
    assert list(corpus.documents("test")) == docs(release) == [["A [UNK] .", "B ."], ["C-D ."]]
    ident = corpus.identity()
    assert ident["hub"]["fingerprints"]["train"] == dd["train"]._fingerprint


def test_hub_rows_splits_and_columns(monkeypatch):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"body": ["One. Two.", "", "Three."], "n": [1, 2, 3]}),
                               "dev": datasets.Dataset.from_dict({"body": ["Dev."], "n": [0]})})
    monkeypatch.setattr(readers.sources, "load_hub", lambda d, c, hint: dd)
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


# ---- detection ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fmt", [("a.txt", "text"), ("a.TEXT", "text"), ("notes", "text"), ("a.jsonl", "jsonl"),
                                       ("a.json", "jsonl"), ("a.csv", "csv"), ("a.tsv", "tsv"),
                                       ("a.parquet", "parquet"), ("wiki.test.raw", "wikitext"),
                                       ("x.tokens", "wikitext")])
def test_format_detected_from_the_suffix(name, fmt):
    assert readers._format_of(readers.Path(name)) == fmt
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


# ---- the sentence splitter ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, sentences", [
    ("It is big. It is red! Is it? Yes.", ["It is big.", "It is red!", "Is it?", "Yes."]),
    ("Dr. Smith met Mr. Jones at 3.5 km. They talked.", ["Dr. Smith met Mr. Jones at 3.5 km.", "They talked."]),
    ("See e.g. Table 1. The U.S. Army came. Next.", ["See e.g. Table 1.", "The U.S. Army came.", "Next."]),
    ("J. R. R. Tolkien wrote it. No. 5 is next. Fig. 3 too.", ["J. R. R. Tolkien wrote it.", "No. 5 is next.", "Fig. 3 too."]),
    ('He said "Go." Then he left. (It rained.) "Why?" she asked.',
     ['He said "Go."', "Then he left.", "(It rained.)", '"Why?" she asked.']),
    ("In 1990. 1991 was better.", ["In 1990.", "1991 was better."]),
    ("lower. case after a stop. Ends with etc. Then more.", ["lower. case after a stop.", "Ends with etc.", "Then more."]),
    ("Wait... What? Über. Ölpreis", ["Wait...", "What?", "Über.", "Ölpreis"]),
    ("  spaced \t out.   Next  ", ["spaced out.", "Next"]),
    ("这是第一句。这是第二句！好", ["这是第一句。", "这是第二句！", "好"]),
    ("no end mark", ["no end mark"]),
    ("", []),
])
def test_split_text(text, sentences):
    assert split_text(text) == sentences
    assert split_text(text) == split_text(text)  # deterministic


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
    assert readers.file_sha256(p) == hashlib.sha256(data).hexdigest()


# ---- bad input: one line naming the file and line, row or byte --------------------------------------------------------


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
