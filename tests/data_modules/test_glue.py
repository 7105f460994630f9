"""GLUE data module: the real SST-2 files, the bundled sample, the cache, padding, and one-line errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data_modules.glue import SAMPLE_DIR, GLUEDataModule
from data_modules.glue_reading import read_tsv
from data_modules.glue_tasks import TASKS
from data_modules.tokenizer import train_tokenizer

SST2 = TASKS["sst2"]


@pytest.fixture(scope="session")
def sample_tokenizer(tmp_path_factory) -> Path:
    texts = [t[0] for t in read_tsv(SAMPLE_DIR / "train.tsv", SST2, labelled=True).texts]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(texts, 600, show_progress=False).save(str(path))
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _sst2_dir(root: Path, train: str | None = None, dev: str | None = None, test: str | None = None) -> Path:
    _write(root / "train.tsv", train if train is not None else "sentence\tlabel\ngood fun \t1\nbad \t0\n")
    _write(root / "dev.tsv", dev if dev is not None else "sentence\tlabel\nfun \t1\nbad bad \t0\n")
    _write(root / "test.tsv", test if test is not None else "index\tsentence\n0\tgood\n1\tbad\n")
    return root


# ---------------------------------------------------------------------------------------------------------------------
# real SST-2


def test_real_sst2_rows_labels_and_quotes(data_root):
    d = data_root / "SST-2"
    train = read_tsv(d / "train.tsv", SST2, labelled=True)
    dev = read_tsv(d / "dev.tsv", SST2, labelled=True)
    test = read_tsv(d / "test.tsv", SST2, labelled=False)
    assert (len(train.texts), len(dev.texts), len(test.texts)) == (67349, 872, 1821)
    assert (sum(train.labels), len(train.labels) - sum(train.labels)) == (37569, 29780)
    assert (sum(dev.labels), len(dev.labels) - sum(dev.labels)) == (444, 428)
    assert test.labels is None and test.index == list(range(1821))
    # SST-2 has no '"' but PTB quotes, some unbalanced within a row (train.tsv line 209): kept as they are
    row = train.texts[209 - 2][0]
    assert row == "a résumé loaded with credits like `` girl in bar # 3 " and row.count("``") != row.count("''")
    assert train.texts[0][0].endswith(" ")  # GLUE's trailing space survives (the tokenizer ignores it)


def test_unbalanced_double_quote_is_not_csv_quoting(tmp_path):
    # csv.reader would swallow the tab and the next lines into one quoted field
    path = _write(tmp_path / "train.tsv", 'sentence\tlabel\nhe said " it works \t1\nsecond "row \t0\nthird \t1\n')
    ex = read_tsv(path, SST2, labelled=True)
    assert ex.texts == [('he said " it works ',), ('second "row ',), ("third ",)]
    assert ex.labels == [1, 0, 1]


# ---------------------------------------------------------------------------------------------------------------------
# bundled sample


def test_bundled_sample_layout():
    counts = {}
    for split in ("train", "dev"):
        lines = (SAMPLE_DIR / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        assert lines[0] == "sentence\tlabel"
        rows = [line.split("\t") for line in lines[1:]]
        assert all(len(r) == 2 and r[0].endswith(" ") and r[0] == r[0].lower() for r in rows)
        counts[split] = (len(rows), sum(int(r[1]) for r in rows))
    assert counts["train"][0] >= 350 and counts["dev"][0] >= 90
    for n, pos in counts.values():
        assert 0.4 <= pos / n <= 0.6  # roughly balanced
    test = read_tsv(SAMPLE_DIR / "test.tsv", SST2, labelled=False)
    assert len(test.texts) >= 90 and test.index == list(range(len(test.texts)))
    train = {t[0] for t in read_tsv(SAMPLE_DIR / "train.tsv", SST2, True).texts}
    assert not train & {t[0] for t in read_tsv(SAMPLE_DIR / "dev.tsv", SST2, True).texts}
    vocab = {w for s in train for w in s.split()}
    assert len(vocab) > 200  # varied vocabulary


# ---------------------------------------------------------------------------------------------------------------------
# data module


def test_datamodule_tokenizes_caches_and_pads(sample_tokenizer, tmp_path):
    from tokenizers import Tokenizer

    dm = GLUEDataModule(data_dir=str(SAMPLE_DIR), tokenizer=str(sample_tokenizer), batch_size=8, num_workers=0,
                        cache_dir=str(tmp_path))
    dm.prepare_data()
    (cache,) = tmp_path.glob("glue-sst2-*")
    stamp = (cache / "meta.json").stat().st_mtime_ns
    dm.prepare_data()  # reuses the cache
    assert (cache / "meta.json").stat().st_mtime_ns == stamp
    dm.setup("fit")
    tok = Tokenizer.from_file(str(sample_tokenizer))
    first = read_tsv(SAMPLE_DIR / "train.tsv", SST2, True).texts[0][0]
    sample = dm.datasets["train"][0]
    assert sample["input_ids"].tolist() == tok.encode(first).ids and sample["label"] in (0, 1)
    assert sample["token_type_ids"].tolist() == [0] * len(sample["input_ids"])
    batch = next(iter(dm.val_dataloader()))
    lengths = [len(dm.datasets["dev"][i]["input_ids"]) for i in range(8)]
    # padded to the batch's longest row rounded up to the length bucket (data_modules/shapes.py), at most max_seq_len
    assert batch["input_ids"].shape == (8, min(dm.max_seq_len, -(-max(lengths) // 32) * 32))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["labels"].dtype == torch.long and batch["index"].tolist() == list(range(8))
    dm.setup("predict")
    test_batch = next(iter(dm.predict_dataloader()))
    assert "labels" not in test_batch and test_batch["index"].tolist() == list(range(8))
    # another max_seq_len is another cache
    GLUEDataModule(data_dir=str(SAMPLE_DIR), tokenizer=str(sample_tokenizer), max_seq_len=8, num_workers=0,
                   cache_dir=str(tmp_path)).prepare_data()
    assert len(list(tmp_path.glob("glue-sst2-*"))) == 2


def test_truncation_and_pairs(sample_tokenizer, tmp_path):
    long = " ".join(["charming"] * 50)
    root = _write(tmp_path / "rte" / "train.tsv", f"index\tsentence1\tsentence2\tlabel\n0\t{long}\t{long}\tentailment\n"
                                                  "1\tdull\tflat\tnot_entailment\n").parent
    _write(root / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    _write(root / "test.tsv", "index\tsentence1\tsentence2\n0\ta\tb\n")
    dm = GLUEDataModule("rte", data_dir=str(root), tokenizer=str(sample_tokenizer), max_seq_len=16, num_workers=0,
                        cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup("fit")
    s0, s1 = dm.datasets["train"][0], dm.datasets["train"][1]
    assert len(s0["input_ids"]) == 16 and s0["label"] == 0 and s1["label"] == 1
    assert s0["token_type_ids"].tolist() == [0] * 8 + [1] * 8  # longest_first: both halves cut evenly
    assert s1["token_type_ids"].tolist() == [0, 0, 0, 1, 1]  # [CLS] dull [SEP] flat [SEP]


def test_train_subset_is_fixed_by_its_seed(sample_tokenizer, tmp_path):
    def rows(**kw):
        dm = GLUEDataModule(data_dir=str(SAMPLE_DIR), tokenizer=str(sample_tokenizer), num_workers=0,
                            cache_dir=str(tmp_path), train_subset=50, **kw)
        dm.prepare_data()
        dm.setup("fit")
        return dm.datasets["train"].rows.tolist()

    a = rows(subset_seed=0, seed=1)
    assert len(a) == 50 and a == rows(subset_seed=0, seed=2) and a != rows(subset_seed=1)


def test_hub_fails_fast_offline(sample_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    dm = GLUEDataModule(tokenizer=str(sample_tokenizer), cache_dir=str(tmp_path))
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"nyu-mll/glue/sst2.*--data\.data_dir") as e:
        dm.prepare_data()
    assert time.perf_counter() - t < 30 and "\n" not in str(e.value)


def test_missing_tokenizer_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match=r"--data\.tokenizer is not set"):
        GLUEDataModule(data_dir=str(SAMPLE_DIR), cache_dir=str(tmp_path)).prepare_data()


# ---------------------------------------------------------------------------------------------------------------------
# malformed files: one line naming the file and line


@pytest.mark.parametrize(
    "train, message",
    [
        ("sentence\tlabel\ngood \t1\nno label here\n", r"train\.tsv:3: expected 2 tab-separated fields \(sentence, label\), got 1"),
        ("sentence\tlabel\ngood \t1\ta third\n", r"train\.tsv:2: expected 2 tab-separated fields"),
        ("sentence\tlabel\ngood \t1\nbad \t2\n", r"train\.tsv:3: label '2' is not one of 0, 1 \(task sst2\)"),
        ("sentence\tlabel\ngood \tpositive\n", r"train\.tsv:2: label 'positive'"),
        ("index\tsentence\n0\tgood\n", r"train\.tsv:1: header 'index\\tsentence' does not fit GLUE sst2 \(missing column\(s\) label"),
        ("", r"train\.tsv: empty file"),
        ("sentence\tlabel\n", r"train\.tsv: no examples after the header"),
    ],
)
def test_bad_rows(tmp_path, train, message):
    root = _sst2_dir(tmp_path, train=train)
    with pytest.raises(ValueError, match=message) as e:
        read_tsv(root / "train.tsv", SST2, labelled=True)
    assert "\n" not in str(e.value) and str(root / "train.tsv") in str(e.value)


def test_bad_test_index(tmp_path):
    root = _sst2_dir(tmp_path, test="index\tsentence\n0\tgood\nx\tbad\n")
    with pytest.raises(ValueError, match=r"test\.tsv:3: index 'x' is not an integer"):
        read_tsv(root / "test.tsv", SST2, labelled=False)


def test_missing_files_are_listed(sample_tokenizer, tmp_path):
    _write(tmp_path / "train.tsv", "sentence\tlabel\ngood \t1\n")
    dm = GLUEDataModule(data_dir=str(tmp_path), tokenizer=str(sample_tokenizer), cache_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match=r"missing dev\.tsv, test\.tsv of GLUE sst2"):
        dm.prepare_data()


def test_bad_file_reaches_prepare_data(sample_tokenizer, tmp_path):
    root = _sst2_dir(tmp_path / "d", dev="sentence\tlabel\nfun \t1\nbad \t7\n")
    dm = GLUEDataModule(data_dir=str(root), tokenizer=str(sample_tokenizer), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"dev\.tsv:3: label '7'"):
        dm.prepare_data()
    assert not list((tmp_path / "c").glob("glue-*"))  # nothing half-written is left as a cache


# ---------------------------------------------------------------------------------------------------------------------
# the other GLUE tasks, in their original layouts


_LAYOUTS = {
    "cola": ("gj04\t1\t\tthe sailors rode the breeze .\ngj04\t0\t*\tthe breeze rode .\n", None,
             "index\tsentence\n0\tbill coughed .\n", [1, 0], [("the sailors rode the breeze .",), ("the breeze rode .",)]),
    "mrpc": ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA cat sat.\tThe cat sat.\n0\t3\t4\tNo.\tYes.\n", None,
             "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t5\t6\tA.\tB.\n", [1, 0], [("A cat sat.", "The cat sat."), ("No.", "Yes.")]),
    "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tWhy?\tHow?\t0\n8\t3\t4\tWho?\tWho is?\t1\n", None,
            "id\tquestion1\tquestion2\n0\tWhy?\tWhy not?\n", [0, 1], [("Why?", "How?"), ("Who?", "Who is?")]),
    "stsb": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
             "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
             "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man plays.\tA man sings.\t1.250\n", None,
             "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\n"
             "0\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone\tA girl.\tA boy.\n",
             [5.0, 1.25], [("A plane is taking off.", "An air plane is taking off."), ("A man plays.", "A man sings.")]),
    "qnli": ("index\tquestion\tsentence\tlabel\n0\tWhat?\tThis.\tentailment\n1\tWho?\tNo one.\tnot_entailment\n", None,
             "index\tquestion\tsentence\n0\tWhen?\tNow.\n", [0, 1], [("What?", "This."), ("Who?", "No one.")]),
    "rte": ("index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n1\tC.\tD.\tentailment\n", None,
            "index\tsentence1\tsentence2\n0\tE.\tF.\n", [1, 0], [("A.", "B."), ("C.", "D.")]),
    "wnli": ("index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n1\tC.\tD.\t0\n", None,
             "index\tsentence1\tsentence2\n0\tE.\tF.\n", [1, 0], [("A.", "B."), ("C.", "D.")]),
}


@pytest.mark.parametrize("task_name", sorted(_LAYOUTS))
def test_other_task_layouts(task_name, sample_tokenizer, tmp_path):
    train, _, test, labels, texts = _LAYOUTS[task_name]
    task = TASKS[task_name]
    root = tmp_path / task_name
    for split in ("train", *task.dev):
        _write(root / f"{split}.tsv", train)
    _write(root / "test.tsv", test)
    ex = read_tsv(root / "train.tsv", task, labelled=True)
    assert ex.labels == labels and ex.texts == texts
    assert read_tsv(root / "test.tsv", task, labelled=False).index == [0]
    dm = GLUEDataModule(task_name, data_dir=str(root), tokenizer=str(sample_tokenizer), num_workers=0,
                        cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].dtype == (torch.float32 if task_name == "stsb" else torch.long)
    if len(task.text) == 2:
        assert (batch["token_type_ids"] == 1).any()


def test_mnli_matched_and_mismatched(sample_tokenizer, tmp_path):
    head = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2"
    root = tmp_path / "MNLI"
    _write(root / "train.tsv", f"{head}\tlabel1\tgold_label\n0\t1\t1e\tgov\t(x)\t(y)\t(X)\t(Y)\tA \" quote.\tB.\tneutral\tneutral\n"
                               f"1\t2\t2c\tgov\t(x)\t(y)\t(X)\t(Y)\tC.\tD.\tcontradiction\tcontradiction\n")
    dev_head = f"{head}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
    for name in ("dev_matched", "dev_mismatched"):
        _write(root / f"{name}.tsv", f"{dev_head}\n0\t1\t1e\tgov\t(x)\t(y)\t(X)\t(Y)\tE.\tF.\tentailment\tentailment\tentailment\tneutral\tentailment\tentailment\n")
    for name in ("test_matched", "test_mismatched"):
        _write(root / f"{name}.tsv", f"{head}\n0\t1\t1e\tgov\t(x)\t(y)\t(X)\t(Y)\tG.\tH.\n")
    task = TASKS["mnli"]
    ex = read_tsv(root / "train.tsv", task, labelled=True)
    assert ex.labels == [1, 2] and ex.texts[0] == ('A " quote.', "B.")
    assert read_tsv(root / "dev_matched.tsv", task, labelled=True).labels == [0]
    dm = GLUEDataModule("mnli", data_dir=str(root), tokenizer=str(sample_tokenizer), num_workers=0,
                        cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup("validate")
    assert len(dm.val_dataloader()) == 2
    dm.setup("predict")
    assert len(dm.predict_dataloader()) == 2 and task.submission == ("MNLI-m.tsv", "MNLI-mm.tsv")
    bad = tmp_path / "bad"
    shutil_copy = [(root / f.name, bad / f.name) for f in root.iterdir()]
    for src, dst in shutil_copy:
        _write(dst, src.read_text())
    _write(bad / "dev_mismatched.tsv", f"{dev_head}\n0\t1\t1e\tgov\t(x)\t(y)\t(X)\t(Y)\tE.\tF.\tentailment\t\t\t\t\tmaybe\n")
    with pytest.raises(ValueError, match=r"dev_mismatched\.tsv:2: label 'maybe' is not one of entailment, neutral, contradiction"):
        read_tsv(bad / "dev_mismatched.tsv", task, labelled=True)


def test_real_sst2_tokenized_lengths(data_root, tmp_path):
    """With a WordPiece vocabulary trained on SST-2 (it saturates near 20k tokens) the longest example is 65 tokens,
    [CLS] and [SEP] included: the default max_seq_len=128 truncates nothing."""
    train = read_tsv(data_root / "SST-2" / "train.tsv", SST2, labelled=True)
    tok = train_tokenizer([t[0] for t in train.texts], 30522, show_progress=False)
    tok.save(str(tmp_path / "tokenizer.json"))
    dm = GLUEDataModule(data_dir=str(data_root / "SST-2"), tokenizer=str(tmp_path / "tokenizer.json"), num_workers=0,
                        cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup()
    longest = {s: int(np.diff(dm.datasets[s].offsets).max()) for s in ("train", "dev", "test")}
    assert 60 <= max(longest.values()) <= 70, longest
    assert len(dm.datasets["train"]) == 67349 and len(dm.datasets["test"]) == 1821


# ---------------------------------------------------------------------------------------------------------------------
# the fair protocol: one form of negation in both corpora, one seed for init and data order


def test_negations_read_as_running_text_in_sst2_and_wikitext(data_root):
    """SST-2 writes "does n't" (PTB), WikiText "doesn 't": both readers give "doesn't", which BERT's pre-tokenizer
    splits the same way in both corpora (and in a user's text)."""
    from tokenizers import pre_tokenizers

    from data_modules.wikitext_release import article_sentences, read_release_lines, split_articles

    train = read_tsv(data_root / "SST-2" / "train.tsv", SST2, labelled=True)
    raw = (data_root / "SST-2" / "train.tsv").read_text(encoding="utf-8")
    assert raw.count(" n't") > 2000  # the PTB form is in the file ...
    sentences = [t[0] for t in train.texts]
    assert not any(" n't" in s for s in sentences)  # ... and gone after reading
    assert sum(s.count("n't") for s in sentences) == raw.count(" n't")
    wiki = [s for art in split_articles(read_release_lines(data_root / "wikitext-2" / "wiki.valid.tokens"))
            for s in article_sentences(art)]
    assert sum("n 't" in s for s in wiki) == 0 and sum("n't" in s for s in wiki) > 10
    split = pre_tokenizers.BertPreTokenizer().pre_tokenize_str
    words = [w for w, _ in split(next(s for s in sentences if "doesn't" in s))]
    assert "doesn" in words and "'" in words
    assert [w for w, _ in split("it doesn't")] == [w for w, _ in split(article_sentences_text("it doesn 't"))]


def article_sentences_text(text: str) -> str:
    from data_modules.wikitext_release import Article, article_sentences

    return " ".join(article_sentences(Article("t", [text])))


def test_seed_none_takes_the_runs_seed_for_the_data_order(sample_tokenizer, tmp_path, monkeypatch):
    import lightning as L

    def first_batch(seed: int) -> list[int]:
        L.seed_everything(seed)  # what LightningCLI does with seed_everything before building the data module
        dm = GLUEDataModule(data_dir=str(SAMPLE_DIR), tokenizer=str(sample_tokenizer), num_workers=0,
                            cache_dir=str(tmp_path), batch_size=16)
        dm.prepare_data()
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))["index"].tolist()

    assert first_batch(1) == first_batch(1)
    assert first_batch(1) != first_batch(2)
    assert GLUEDataModule(data_dir=str(SAMPLE_DIR), tokenizer=str(sample_tokenizer), seed=7).seed == 7
