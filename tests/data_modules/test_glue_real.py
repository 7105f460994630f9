"""The real GLUE release files (``data_root/glue``, its README.md gives provenance and counts): every file of every
task there read with ``read_tsv`` (rows, labels, the release's quirks as they are) and through the data module, and
the tasks whose files are absent (MNLI, QQP, QNLI train) refused in one line. SST-2's files in detail:
tests/data_modules/test_glue.py; a real ``lit-lm glue`` over all of them: tests/lit_lm/test_glue_real_harness.py."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

import pytest

from data_modules.glue import SAMPLE_DIR, GLUEDataModule
from data_modules.glue_reading import read_tsv
from data_modules.glue_tasks import TASKS
from data_modules.tokenizer import train_tokenizer

# The tasks ``data_root/glue`` holds (their directories: ``GLUETask.directory``):
# task -> split -> (rows, label counts by the files' label values; None: a test split, no labels)
EXPECTED: dict[str, dict[str, tuple[int, dict[str, int] | None]]] = {
    "cola": {"train": (8551, {"1": 6023, "0": 2528}), "dev": (1043, {"1": 721, "0": 322}), "test": (1063, None)},
    "sst2": {"train": (67349, {"1": 37569, "0": 29780}), "dev": (872, {"1": 444, "0": 428}), "test": (1821, None)},
    "mrpc": {"train": (3668, {"1": 2474, "0": 1194}), "dev": (408, {"1": 279, "0": 129}), "test": (1725, None)},
    "stsb": {"train": (5749, None), "dev": (1500, None), "test": (1379, None)},  # scores: test_stsb_scores_and_genres
    "qnli": {"dev": (5463, {"not_entailment": 2761, "entailment": 2702}), "test": (5463, None)},
    "rte": {"train": (2490, {"entailment": 1249, "not_entailment": 1241}),
            "dev": (277, {"entailment": 146, "not_entailment": 131}), "test": (3000, None)},
    "wnli": {"train": (635, {"0": 323, "1": 312}), "dev": (71, {"0": 40, "1": 31}), "test": (146, None)},
}
FILES = [(task, split) for task, splits in EXPECTED.items() for split in splits]


def _raw(path: Path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("task, split", FILES, ids=[f"{t}-{s}" for t, s in FILES])
def test_every_real_file_reads_with_its_rows_and_labels(glue_root, task, split):
    path = glue_root / TASKS[task].directory / f"{split}.tsv"
    rows, label_counts = EXPECTED[task][split]
    labelled = split != "test"
    ex = read_tsv(path, TASKS[task], labelled=labelled)
    assert len(ex.texts) == len(ex.index) == rows
    assert ex.index == list(range(rows))  # GLUE's index column (CoLA train/dev: the row number) runs 0..n-1
    assert all(len(t) == len(TASKS[task].text) and all(t) for t in ex.texts)  # one or two non-empty texts a row
    raw = _raw(path)
    assert b"\r" not in raw  # LF line ends, nothing converted
    if not labelled:  # GLUE hides the test labels: no label column, and reading one is a one-line error
        assert ex.labels is None
        assert TASKS[task].label not in raw.split(b"\n", 1)[0].decode("utf-8-sig").split("\t")
        with pytest.raises(ValueError) as e:  # (CoLA's: its header is not the 4 columns of train/dev)
            read_tsv(path, TASKS[task], labelled=True)
        assert str(e.value).startswith(f"{path}:1: ") and "\n" not in str(e.value)
    elif label_counts is not None:
        assert Counter(TASKS[task].labels[i] for i in ex.labels) == label_counts


def test_cola_train_and_dev_have_no_header_and_dev_no_final_newline(glue_root):
    cola = TASKS["cola"]
    for split, ends_with_newline in (("train", True), ("dev", False)):
        path = glue_root / "CoLA" / f"{split}.tsv"
        raw = _raw(path)
        first, last = raw.split(b"\n", 1)[0].decode(), raw.rstrip(b"\n").rsplit(b"\n", 1)[1].decode()
        assert first.startswith("gj04\t1\t\t")  # a data row: source, label, original mark, sentence
        assert raw.endswith(b"\n") is ends_with_newline
        ex = read_tsv(path, cola, labelled=True)
        # the first row is an example, not a header, and the unterminated last row is read whole
        assert ex.texts[0] == (first.split("\t")[3],) and ex.texts[-1] == (last.split("\t")[3],)
        assert ex.labels[-1] == cola.labels.index(last.split("\t")[1])
    # the authors' original mark (not read): empty for every acceptable sentence, a star or question marks for all
    # but one of the others
    rows = [line.split("\t") for line in (glue_root / "CoLA/train.tsv").read_text().splitlines()]
    assert Counter(r[2] for r in rows if r[1] == "1") == {"": 6023}
    assert Counter(r[2] for r in rows if r[1] == "0") == {"*": 2461, "?*": 31, "??": 29, "*?": 6, "": 1}
    test = _raw(glue_root / "CoLA/test.tsv")
    assert test.startswith(b"index\tsentence\n") and test.endswith(b"\n")


def test_mrpc_train_and_dev_headers_start_with_a_bom(glue_root):
    bom = "\ufeff".encode()
    for split, has_bom in (("train", True), ("dev", True), ("test", False)):
        path = glue_root / "MRPC" / f"{split}.tsv"
        head = _raw(path).split(b"\n", 1)[0]
        assert head.startswith(bom) is has_bom
        first_column = "Quality" if split != "test" else "index"
        assert head.removeprefix(bom).decode() == f"{first_column}\t#1 ID\t#2 ID\t#1 String\t#2 String"
    # the BOM is not part of the first column's name: the label column is found and every label read
    ex = read_tsv(glue_root / "MRPC/train.tsv", TASKS["mrpc"], labelled=True)
    assert set(ex.labels) == {0, 1}
    # the SentEval sources and GLUE's dev ids ship beside them, as download_glue_data.py leaves them
    ids = (glue_root / "MRPC/dev_ids.tsv").read_text().splitlines()
    assert len(ids) == 408 and all(len(line.split("\t")) == 2 for line in ids)


def test_stsb_scores_and_genres(glue_root):
    stsb = TASKS["stsb"]
    assert stsb.is_regression and stsb.num_labels == 1
    genres = {"train": {"main-news": 3299, "main-captions": 2000, "main-forum": 450},
              # dev and test name the forum genre in the plural
              "dev": {"main-news": 500, "main-captions": 625, "main-forums": 375},
              "test": {"main-news": 500, "main-captions": 625, "main-forums": 254}}
    for split, columns in (("train", 10), ("dev", 10), ("test", 9)):
        path = glue_root / "STS-B" / f"{split}.tsv"
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[0].split("\t")
        assert len(header) == columns and header[:2] == ["index", "genre"] and header[7:9] == ["sentence1", "sentence2"]
        assert ("score" in header) is (split != "test")
        assert Counter(line.split("\t")[1] for line in lines[1:]) == genres[split]
        ex = read_tsv(path, stsb, labelled=split != "test")
        if split != "test":  # float similarity scores from 0 to 5, both ends used
            assert all(isinstance(s, float) and math.isfinite(s) for s in ex.labels)
            assert min(ex.labels) == 0.0 and max(ex.labels) == 5.0
            assert len(set(ex.labels)) > 50 and any(s != round(s) for s in ex.labels)  # averaged grades, not classes
            assert ex.labels == [float(line.split("\t")[9]) for line in lines[1:]]


def test_qnli_is_dev_and_test_only(glue_root):
    qnli = glue_root / "QNLI"
    assert sorted(p.name for p in qnli.iterdir()) == ["dev.tsv", "test.tsv"]
    assert _raw(qnli / "dev.tsv").startswith(b"index\tquestion\tsentence\tlabel\n")
    assert _raw(qnli / "test.tsv").startswith(b"index\tquestion\tsentence\n")
    assert TASKS["qnli"].labels == ("entailment", "not_entailment")  # class ids 0 and 1, as the hub's ClassLabel


def test_diagnostic_set(glue_root):
    """AX, as the harness reads it to predict with the MNLI model: sentence pairs and indices, no labels, and the
    last line (without a newline, as released) read whole."""
    path = glue_root / "diagnostic/diagnostic.tsv"
    raw = _raw(path)
    assert raw.startswith(b"index\tsentence1\tsentence2\n") and not raw.endswith(b"\n") and b"\r" not in raw
    ax = dataclasses.replace(TASKS["mnli"], name="ax")
    ex = read_tsv(path, ax, labelled=False)
    assert ex.labels is None and ex.index == list(range(1104)) and len(ex.texts) == 1104
    last = raw.rsplit(b"\n", 1)[1].decode().split("\t")
    assert ex.texts[-1] == tuple(last[1:]) and all(len(t) == 2 and all(t) for t in ex.texts)


def test_sst2_entry_is_the_shared_sst2_directory(data_root, glue_root):
    """``glue/SST-2`` is a link to ``../SST-2``, or, in a copy without symbolic links, a plain file holding that
    target; either way the files reached are the shared SST-2 files (the glue_root fixture resolves the second)."""
    entry = data_root / "glue" / "SST-2"
    if entry.is_symlink() or entry.is_dir():
        assert entry.resolve() == (data_root / "SST-2").resolve()
    else:
        assert entry.read_text().strip() == "../SST-2"
    for split in ("train", "dev", "test"):
        assert _raw(glue_root / "SST-2" / f"{split}.tsv") == _raw(data_root / "SST-2" / f"{split}.tsv")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> str:
    texts = [t[0] for t in read_tsv(SAMPLE_DIR / "train.tsv", TASKS["sst2"], labelled=True).texts]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(texts, 600, show_progress=False).save(str(path))
    return str(path)


@pytest.mark.parametrize("task", ["cola", "mrpc", "stsb", "rte", "wnli"])  # SST-2's: test_glue.py
def test_data_module_on_real_task(glue_root, tokenizer, task, tmp_path):
    dm = GLUEDataModule(task, data_dir=str(glue_root / TASKS[task].directory), tokenizer=tokenizer, max_seq_len=64,
                        num_workers=0, cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup()
    assert {s: len(d) for s, d in dm.datasets.items()} == {s: rows for s, (rows, _) in EXPECTED[task].items()}
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape[1] <= 64 and batch["labels"].shape == (dm.batch_size,)
    assert batch["labels"].is_floating_point() is (task == "stsb")
    if task != "cola":  # sentence pairs: both segments present
        assert bool((batch["token_type_ids"] == 1).any())
    test = dm.datasets["test"]
    assert test.labels is None and [test[i]["index"] for i in (0, len(test) - 1)] == [0, len(test) - 1]


@pytest.mark.parametrize("task, message", [
    ("qnli", "{root}/QNLI: missing train.tsv of GLUE qnli"),
    ("mnli", "{root}/MNLI: no such directory"),
    ("qqp", "{root}/QQP: no such directory"),
])
def test_absent_files_are_one_line_errors(glue_root, tokenizer, task, message, tmp_path):
    d = glue_root / TASKS[task].directory
    dm = GLUEDataModule(task, data_dir=str(d), tokenizer=tokenizer, num_workers=0, cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        dm.prepare_data()
    assert str(e.value) == "--data.data_dir " + message.format(root=glue_root)
