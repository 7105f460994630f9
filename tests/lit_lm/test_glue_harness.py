"""``python -m lit_lm glue``: the harness end to end on a synthetic mini-GLUE in the release layout, the official
metrics of fixed predictions through the data module, and real SST-2 against ``python -m lit_lm validate``. The GLUE
averages as pure arithmetic (the leaderboard's rows, BERT-style, mean ± sd): tests/lit_lm/test_glue_metrics.py."""

from __future__ import annotations

import json
import math
import random
import shutil
import zipfile
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from data_modules.glue import GLUEDataModule
from data_modules.glue_tasks import TASKS
from data_modules.tokenizer import train_tokenizer
from lit_lm.glue.plan import make_plan, task_flags
from lit_lm.glue.scoring import glue_score, official_metrics, task_score
from lit_lm.classification import SequenceClassification
from one_line import assert_one_line_error, run_main

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------------------------------
# a synthetic GLUE release tree: every task's file names, headers and column layout, with the real files' quirks
# (MRPC's byte-order mark, CoLA's header-less train/dev, MNLI's 12- vs 16-column train/dev, unbalanced quotes)

WORDS = "the a film cat dog house river plan idea road song tree city book".split()
CUES = {2: ("bad", "good"), 3: ("yes", "maybe", "no")}  # the label is the first word of the (second) text
MNLI_LABELS = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")
SIZES = {"train": 48, "dev": 16, "dev_matched": 16, "dev_mismatched": 12, "test": 12, "test_matched": 10,
         "test_mismatched": 11}
TEST_ROWS = {"CoLA.tsv": 12, "SST-2.tsv": 12, "MRPC.tsv": 12, "STS-B.tsv": 12, "QQP.tsv": 12, "MNLI-m.tsv": 10,
             "MNLI-mm.tsv": 11, "QNLI.tsv": 12, "RTE.tsv": 12, "WNLI.tsv": 12, "AX.tsv": 9}


def _text(rng: random.Random, cue: str = "") -> str:
    words = [cue] * bool(cue) + rng.sample(WORDS, 5)
    if rng.random() < 0.3:
        words.insert(2, '"')  # an unbalanced quote: the files are read with no quoting
    return " ".join(words)


def _write(path: Path, header: list[str] | None, rows: list[list[str]], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")


def write_mini_glue(root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)

    def labelled(split: str, k: int) -> list[int]:  # test rows have cues too: the submission can be checked
        return [i % k for i in range(SIZES[split])]

    # CoLA: train/dev without header (source, label, original label, sentence); test with one
    for split in ("train", "dev"):
        _write(root / "CoLA" / f"{split}.tsv", None,
               [["gj04", str(y), "" if y else "*", _text(rng, CUES[2][y])] for y in labelled(split, 2)])
    _write(root / "CoLA/test.tsv", ["index", "sentence"],
           [[str(i), _text(rng, CUES[2][y])] for i, y in enumerate(labelled("test", 2))])
    # SST-2
    for split in ("train", "dev"):
        _write(root / "SST-2" / f"{split}.tsv", ["sentence", "label"],
               [[_text(rng, CUES[2][y]) + " ", str(y)] for y in labelled(split, 2)])
    _write(root / "SST-2/test.tsv", ["index", "sentence"],
           [[str(i), _text(rng, CUES[2][y])] for i, y in enumerate(labelled("test", 2))])
    # MRPC: train/dev headers start with a UTF-8 byte-order mark
    for split in ("train", "dev"):
        _write(root / "MRPC" / f"{split}.tsv", ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
               [[str(y), str(100 + i), str(200 + i), _text(rng), _text(rng, CUES[2][y])]
                for i, y in enumerate(labelled(split, 2))], bom=True)
    _write(root / "MRPC/test.tsv", ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
           [[str(i), "1", "2", _text(rng), _text(rng, CUES[2][y])] for i, y in enumerate(labelled("test", 2))])
    # STS-B: a score in [0, 5]
    sts = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
    for split in ("train", "dev"):
        _write(root / "STS-B" / f"{split}.tsv", [*sts, "score"],
               [[str(i), "main-news", "f", "2012", str(i), "none", "none", _text(rng), _text(rng, CUES[2][y]),
                 f"{4.0 * y + 0.5:.3f}"] for i, y in enumerate(labelled(split, 2))])
    _write(root / "STS-B/test.tsv", sts,
           [[str(i), "main-news", "f", "2012", str(i), "none", "none", _text(rng), _text(rng, CUES[2][y])]
            for i, y in enumerate(labelled("test", 2))])
    # QQP: id-indexed test
    for split in ("train", "dev"):
        _write(root / "QQP" / f"{split}.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
               [[str(i), str(2 * i), str(2 * i + 1), _text(rng), _text(rng, CUES[2][y]), str(y)]
                for i, y in enumerate(labelled(split, 2))])
    _write(root / "QQP/test.tsv", ["id", "question1", "question2"],
           [[str(i), _text(rng), _text(rng, CUES[2][y])] for i, y in enumerate(labelled("test", 2))])
    # MNLI: train 12 columns, dev 16 (five annotator labels), test 10
    mnli = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]

    def mnli_row(i: int, y: int, n_labels: int) -> list[str]:
        s1, s2 = _text(rng), _text(rng, CUES[3][y])
        return [str(i), str(i), f"{i}e", "fiction", f"( {s1} )", f"( {s2} )", f"(ROOT {s1})", f"(ROOT {s2})", s1, s2,
                *[MNLI_LABELS[y]] * n_labels]

    _write(root / "MNLI/train.tsv", [*mnli, "label1", "gold_label"],
           [mnli_row(i, y, 2) for i, y in enumerate(labelled("train", 3))])
    for split in ("dev_matched", "dev_mismatched"):
        _write(root / "MNLI" / f"{split}.tsv", [*mnli, "label1", "label2", "label3", "label4", "label5", "gold_label"],
               [mnli_row(i, y, 6) for i, y in enumerate(labelled(split, 3))])
    for split in ("test_matched", "test_mismatched"):
        _write(root / "MNLI" / f"{split}.tsv", mnli, [mnli_row(i, y, 0) for i, y in enumerate(labelled(split, 3))])
    # QNLI, RTE (label strings), WNLI (0/1)
    for task, cols, labels in (("QNLI", ["question", "sentence"], NLI2), ("RTE", ["sentence1", "sentence2"], NLI2),
                               ("WNLI", ["sentence1", "sentence2"], ("0", "1"))):
        for split in ("train", "dev"):
            _write(root / task / f"{split}.tsv", ["index", *cols, "label"],
                   [[str(i), _text(rng), _text(rng, CUES[2][y]), labels[y]] for i, y in enumerate(labelled(split, 2))])
        _write(root / task / "test.tsv", ["index", *cols],
               [[str(i), _text(rng), _text(rng, CUES[2][y])] for i, y in enumerate(labelled("test", 2))])
    # the diagnostic set, predicted by the MNLI model as AX.tsv
    _write(root / "diagnostic/diagnostic.tsv", ["index", "sentence1", "sentence2"],
           [[str(i), _text(rng), _text(rng, CUES[3][i % 3])] for i in range(TEST_ROWS["AX.tsv"])])
    return root


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mini_glue(tmp_path_factory) -> Path:
    return write_mini_glue(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    rng = random.Random(1)
    texts = [_text(rng, cue) for cue in (*CUES[2], *CUES[3]) for _ in range(20)]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(texts, 200, min_frequency=1, show_progress=False).save(str(path))
    return path


def tiny(tmp_path: Path, tokenizer: Path, max_steps: int = 2) -> list[str]:
    """A tiny random-init encoder on the CPU, a few steps: the recipe's machinery, not its budget."""
    return ["--data.tokenizer", str(tokenizer), "--model.config", "tiny", "--model.lr", "1e-3",
            "--data.max_seq_len", "32", "--data.batch_size", "16", "--data.num_workers", "0",
            "--data.cache_dir", str(tmp_path / "cache"), "--trainer.max_steps", str(max_steps),
            "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false",
            "--trainer.num_sanity_val_steps", "0", "--trainer.log_every_n_steps", "1"]


def _lines(output: str, prefix: str = "glue: ") -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


# ---------------------------------------------------------------------------------------------------------------------
# end to end on the mini-GLUE


def test_harness_end_to_end_on_mini_glue(tmp_path, mini_glue, tokenizer, capfd, monkeypatch):
    # 32 steps at lr 2e-3: enough for a tiny encoder to learn the cue words of every classification task
    learn = [*tiny(tmp_path, tokenizer, max_steps=32), "--model.lr", "2e-3", "--trainer.max_epochs", "1000",
             "--trainer.check_val_every_n_epoch", "1000"]
    command = ["glue", "--data_dir", str(mini_glue), "--save_dir", str(tmp_path / "runs"), "--name", "tiny",
               "--seeds", "1", "--predict", *learn]
    code, out = run_main(command, capfd, monkeypatch, cwd=tmp_path)
    assert code == 0, out
    out_dir = tmp_path / "runs/tiny"

    # one line as each run starts and ends: task, seed, metric(s), time
    lines = _lines(out)
    for k, task in enumerate(TASKS, 1):
        assert f"glue: [{k}/9] {task} seed 1: started -> {out_dir / task / 'seed1'}" in lines, out
        (end,) = [line for line in lines if line.startswith(f"glue: [{k}/9] {task} seed 1: done in ")]
        assert all(name in end for name, _ in TASKS[task].leaderboard_metrics) and "(32 steps)" in end, end
        run = out_dir / task / "seed1"  # a normal fit run: TensorBoard, its config, the last checkpoint
        assert (run / "config.yaml").is_file() and (run / "checkpoints/last.ckpt").is_file()
        assert list(run.glob("events.out.tfevents.*")) and (run / "result.json").is_file()
    config = yaml.safe_load((out_dir / "mrpc/seed1/config.yaml").read_text())  # what reruns this one run alone
    assert config["data"]["init_args"]["task_name"] == "mrpc" and config["seed_everything"] == 1
    assert config["data"]["init_args"]["data_dir"] == str(mini_glue / "MRPC")
    assert config["trainer"]["max_epochs"] == 1000  # the command line wins over the task's override (5)

    # results.json: every metric of every run, keyed by task and official metric name
    results = json.loads((out_dir / "results.json").read_text())
    assert set(results["tasks"]) == set(TASKS)
    assert {task: set(e) - {"score"} for task, e in results["tasks"].items()} == {
        "cola": {"matthews"}, "sst2": {"accuracy"}, "mrpc": {"f1", "accuracy"}, "stsb": {"pearson", "spearman"},
        "qqp": {"f1", "accuracy"}, "mnli": {"matched", "mismatched"}, "qnli": {"accuracy"}, "rte": {"accuracy"},
        "wnli": {"accuracy"}}
    for task in TASKS:
        run = json.loads((out_dir / task / "seed1/result.json").read_text())
        for name, value in run["metrics"].items():
            assert results["tasks"][task][name]["per_seed"] == {"1": value}
        if task != "stsb":  # the labels are learnable: the metrics went through with the right label order
            assert min(run["metrics"].values()) >= 0.9, (task, run["metrics"])
    # all nine ran: the BERT-style average (WNLI out) and the leaderboard's (WNLI in), both complete
    without = [results["tasks"][t]["score"]["mean"] for t in TASKS if t != "wnli"]
    bert, board = results["bert_style"], results["leaderboard"]
    assert bert["mean"] == pytest.approx(sum(without) / 8) and bert["complete"] and "wnli" not in bert["tasks"]
    scores = [results["tasks"][t]["score"]["mean"] for t in TASKS]
    assert board["mean"] == pytest.approx(sum(scores) / 9) and board["complete"]

    # the table, in results.md and at the end of the output: the BERT-style headline first, then the leaderboard's
    table = (out_dir / "results.md").read_text()
    acc = results["tasks"]["sst2"]["accuracy"]["mean"]
    assert f"| SST-2 | accuracy | {100 * acc:.1f} | {100 * acc:.1f} |" in table
    headline = f"| **GLUE-8, BERT-style** | mean of the task scores, WNLI out | **{100 * bert['mean']:.1f}** |"
    leaderboard = f"| GLUE score, leaderboard | mean of the nine task scores, WNLI in | {100 * board['mean']:.1f} |"
    assert headline in table and leaderboard in table and table.index(headline) < table.index(leaderboard)
    assert "not comparable" not in table
    assert table.split("\n\n", 2)[2] in out  # printed (title and encoder line aside)

    # the submission: the server's file names, one row per test example, the server's label strings
    with zipfile.ZipFile(out_dir / "submission.zip") as z:
        assert sorted(z.namelist()) == sorted(TEST_ROWS)
        files = {name: z.read(name).decode().splitlines() for name in z.namelist()}
    labels = {"CoLA.tsv": ("0", "1"), "SST-2.tsv": ("0", "1"), "MRPC.tsv": ("0", "1"), "QQP.tsv": ("0", "1"),
              "WNLI.tsv": ("0", "1"), "QNLI.tsv": NLI2, "RTE.tsv": NLI2, "MNLI-m.tsv": MNLI_LABELS,
              "MNLI-mm.tsv": MNLI_LABELS, "AX.tsv": MNLI_LABELS}
    for name, rows in files.items():
        assert rows[0] == "index\tprediction" and len(rows) == 1 + TEST_ROWS[name], name
        index, pred = zip(*(r.split("\t") for r in rows[1:]))
        assert list(map(int, index)) == list(range(TEST_ROWS[name]))
        if name == "STS-B.tsv":
            assert all(0.0 <= float(p) <= 5.0 for p in pred)
        else:  # the test rows carry the cue of label i % k: the predictions are in index order and named right
            expected = [labels[name][i % len(labels[name])] for i in range(len(pred))]
            assert sum(p == e for p, e in zip(pred, expected)) >= 0.9 * len(pred), (name, pred)

    # rerun: everything is skipped, nothing retrains; a run killed before its result (result.json missing) reruns
    mtime = (out_dir / "cola/seed1/checkpoints/last.ckpt").stat().st_mtime_ns
    (out_dir / "rte/seed1/result.json").unlink()
    code, out = run_main(command, capfd, monkeypatch, cwd=tmp_path)
    assert code == 0, out
    skipped = [line for line in _lines(out) if ": done before, skipped" in line]
    assert len(skipped) == 8 and "glue: [8/9] rte seed 1: started" in out, out
    assert (out_dir / "cola/seed1/checkpoints/last.ckpt").stat().st_mtime_ns == mtime
    assert json.loads((out_dir / "results.json").read_text())["tasks"]["cola"] == results["tasks"]["cola"]

    # other arguments under the same name are refused, not mixed into the table; --overwrite reruns
    code, out = run_main([*command, "--tasks", "rte", "--trainer.max_steps", "2"], capfd, monkeypatch, cwd=tmp_path)
    assert code == 1
    assert_one_line_error(out, "1 failed", "rte seed 1", "other arguments", "--trainer.max_steps 2", "--overwrite")
    code, out = run_main([*command, "--tasks", "rte", "--trainer.max_steps", "2", "--overwrite"], capfd, monkeypatch,
                         cwd=tmp_path)
    assert code == 0 and "glue: [1/1] rte seed 1: started" in out and "(2 steps)" in out, out


def test_missing_or_broken_tasks_are_reported_and_the_others_run(tmp_path, mini_glue, tokenizer, capfd, monkeypatch):
    glue = tmp_path / "glue"  # SST-2 complete, RTE without dev.tsv, no CoLA/, QNLI with a bad label in dev.tsv
    for task in ("SST-2", "RTE", "QNLI"):
        shutil.copytree(mini_glue / task, glue / task)
    (glue / "RTE/dev.tsv").unlink()
    dev = (glue / "QNLI/dev.tsv").read_text().splitlines()
    dev[3] = dev[3].rsplit("\t", 1)[0] + "\tmaybe"
    (glue / "QNLI/dev.tsv").write_text("\n".join(dev) + "\n")
    code, out = run_main(["glue", "--data_dir", str(glue), "--save_dir", str(tmp_path / "runs"), "--tasks",
                          "cola,sst2,rte,qnli", "--seeds", "1,2", *tiny(tmp_path, tokenizer)], capfd, monkeypatch,
                         cwd=tmp_path)
    assert code == 1, out
    assert f"glue: cola: FAILED, not run: --data_dir {glue}: no CoLA/ directory for GLUE cola" in out
    assert f"glue: rte: FAILED, not run: {glue / 'RTE'}: missing dev.tsv of GLUE rte" in out
    assert "glue: [7/8] qnli seed 1: FAILED after" in out and "dev.tsv:4: label 'maybe' is not one of" in out, out
    assert "glue: [3/8] sst2 seed 1: done in" in out and "glue: [4/8] sst2 seed 2: done in" in out
    assert_one_line_error(out, "4 failed: cola (", "CoLA/", "rte (", "missing dev.tsv", "qnli seeds 1, 2 (", "'maybe'")

    # what ran is scored: mean ± sd over the two seeds, hand-computed from the runs' own results
    results = json.loads((tmp_path / "runs/random/results.json").read_text())
    acc = [json.loads((tmp_path / f"runs/random/sst2/seed{s}/result.json").read_text())["metrics"]["accuracy"]
           for s in (1, 2)]
    entry = results["tasks"]["sst2"]["accuracy"]
    assert entry["mean"] == pytest.approx((acc[0] + acc[1]) / 2)
    assert entry["sd"] == pytest.approx(abs(acc[0] - acc[1]) / math.sqrt(2))  # sample sd of two values
    assert set(results["tasks"]) == {"sst2"} and len(results["failed"]) == 4
    table = (tmp_path / "runs/random/results.md").read_text()
    assert "| CoLA | Matthews corr. | failed |" in table and "| RTE | accuracy | failed |" in table
    assert "| **GLUE-1, BERT-style** (SST-2) |" in table and "leaderboard |" not in table
    assert "BERT-style average over 1 of the 8 tasks BERT averaged: not comparable" in table

    # adding --predict to a finished run predicts from its last checkpoint, without training again
    code, out = run_main(["glue", "--data_dir", str(glue), "--save_dir", str(tmp_path / "runs"), "--tasks", "sst2",
                          "--seeds", "1,2", "--predict", *tiny(tmp_path, tokenizer)], capfd, monkeypatch, cwd=tmp_path)
    assert code == 0, out
    for seed in (1, 2):
        assert f"glue: [{seed}/2] sst2 seed {seed}: done before, skipped (accuracy " in out
        assert f"--overwrite reruns); predicted SST-2.tsv 12" in out
    best = max((1, 2), key=lambda s: (acc[s - 1], -s))
    with zipfile.ZipFile(tmp_path / "runs/random/submission.zip") as z:
        assert z.namelist() == ["SST-2.tsv"]
        assert z.read("SST-2.tsv") == (tmp_path / f"runs/random/sst2/seed{best}/SST-2.tsv").read_bytes()


# ---------------------------------------------------------------------------------------------------------------------
# the arithmetic: metrics of fixed predictions, task scores, the GLUE average


def _validate_fixed(task: str, data_dir: Path, tokenizer: Path, cache: Path, outputs: list) -> dict[str, float]:
    """``trainer.validate`` of a model whose outputs are fixed, row by row in dev order (class ids or scores)."""
    dm = GLUEDataModule(task_name=task, data_dir=str(data_dir), tokenizer=str(tokenizer), cache_dir=str(cache),
                        batch_size=4, num_workers=0)
    model = SequenceClassification(tokenizer=str(tokenizer), config="tiny", num_labels=dm.task.num_labels)
    queue = list(outputs)

    def forward(input_ids, token_type_ids=None, attention_mask=None, token_index=None):
        rows = torch.tensor([queue.pop(0) for _ in range(input_ids.shape[0])])
        if dm.task.is_regression:
            return rows.float()[:, None]
        return torch.nn.functional.one_hot(rows, dm.task.num_labels).float()

    model.forward = forward
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    logged = {k: v for d in trainer.validate(model, datamodule=dm, verbose=False) for k, v in d.items()}
    assert not queue  # every dev row was scored once
    return official_metrics(task, logged)


def test_official_metrics_of_fixed_predictions(tmp_path, mini_glue, tokenizer):
    # dev labels are i % k (write_mini_glue); CoLA and MRPC: 16 rows, 8 positive; wrong at rows 0 (a false positive)
    # and 1, 3 (false negatives): TP 6, FN 2, FP 1, TN 7
    binary = [1 - (i % 2) if i in (0, 1, 3) else i % 2 for i in range(16)]
    cola = _validate_fixed("cola", mini_glue / "CoLA", tokenizer, tmp_path, binary)
    assert cola == {"matthews": pytest.approx((6 * 7 - 1 * 2) / math.sqrt((6 + 1) * (6 + 2) * (7 + 1) * (7 + 2)))}
    mrpc = _validate_fixed("mrpc", mini_glue / "MRPC", tokenizer, tmp_path, binary)
    assert mrpc == {"f1": pytest.approx(2 * 6 / (2 * 6 + 1 + 2)), "accuracy": pytest.approx(13 / 16)}
    assert list(mrpc) == ["f1", "accuracy"]  # the leaderboard's order
    # MNLI: matched wrong at 4 of 16 rows, mismatched at 6 of 12
    matched = [(i % 3 + (i < 4)) % 3 for i in range(16)]
    mismatched = [(i % 3 + (i % 2)) % 3 for i in range(12)]
    mnli = _validate_fixed("mnli", mini_glue / "MNLI", tokenizer, tmp_path, matched + mismatched)
    assert mnli == {"matched": pytest.approx(12 / 16), "mismatched": pytest.approx(6 / 12)}
    # STS-B on a dev set of five scores, predictions 1, 2, 3, 4, 10: the same ranks as 1..5
    stsb = tmp_path / "STS-B"
    shutil.copytree(mini_glue / "STS-B", stsb)
    lines = (stsb / "dev.tsv").read_text().splitlines()
    (stsb / "dev.tsv").write_text("\n".join([lines[0], *(line.rsplit("\t", 1)[0] + f"\t{y:.1f}"
                                                        for line, y in zip(lines[1:], [1, 2, 3, 5, 4]))]) + "\n")
    scores = _validate_fixed("stsb", stsb, tokenizer, tmp_path, [1.0, 2.0, 3.0, 4.0, 10.0])
    # Pearson: x - 4 = (-3, -2, -1, 0, 6), y - 3 = (-2, -1, 0, 2, 1): 14 / sqrt(50 * 10); Spearman: ranks (1..5) vs
    # (1, 2, 3, 5, 4): 1 - 6 * 2 / (5 * 24) = 0.9
    assert scores == {"pearson": pytest.approx(14 / math.sqrt(500), abs=1e-6), "spearman": pytest.approx(0.9)}

    # task scores are the means of their metrics; the GLUE score the mean of the task scores
    assert task_score(mrpc) == pytest.approx((0.8 + 0.8125) / 2)
    assert task_score(mnli) == pytest.approx(0.625)
    by_task = {"cola": cola, "mrpc": mrpc, "stsb": scores, "mnli": mnli}
    expected = (cola["matthews"] + 0.80625 + (14 / math.sqrt(500) + 0.9) / 2 + 0.625) / 4
    assert glue_score({t: task_score(m) for t, m in by_task.items()}) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# the command line: options, one-line errors, the recipe


@pytest.mark.parametrize("args, needles", [
    (["--tasks", "sst2,foo"], ["--tasks sst2,foo", "'foo' is not a GLUE task"]),
    (["--tasks", "ax"], ["AX is not fine-tuned", "--predict"]),
    (["--seeds", "1,x"], ["--seeds 1,x", "integers"]),
    (["--data.task_name", "cola"], ["--data.task_name is set by the harness", "--tasks"]),
    (["--seed_everything", "3"], ["--seed_everything is set by the harness", "--seeds"]),
    (["--trainer.logger.init_args.save_dir", "x"], ["--trainer.logger.init_args.save_dir is set by the harness"]),
    (["--bogus"], ["unrecognized argument --bogus"]),
    (["--random_init"], ["--random_init needs --pretrained"]),
    (["--pretrained", "no/such.ckpt"], ["--pretrained no/such.ckpt: no such file or directory"]),
    (["--data_dir", "no/such/dir"], ["--data_dir no/such/dir: no such directory"]),
    (["--trainer.max_stepz", "3"], ["max_stepz"]),  # the first run's arguments are parsed before anything runs
    (["--model.lr", "fast"], ["lr", "fast"]),
    (["--data.tokenizer", "no/tok.json"], ["no/tok.json", "no such tokenizer file"]),  # the first run is built
    (["--trainer.devices", "2"], ["--trainer.devices 2", "one device", "CUDA_VISIBLE_DEVICES"]),
])
def test_bad_arguments_are_one_line_errors(args, needles, tmp_path, tokenizer, capfd, monkeypatch):
    code, out = run_main(["glue", "--data.tokenizer", str(tokenizer), "--save_dir", str(tmp_path), *args], capfd,
                         monkeypatch, cwd=tmp_path)
    assert code == 2, out
    assert_one_line_error(out, *needles)
    assert not list(tmp_path.iterdir())  # nothing ran


def test_help_lists_the_options_and_the_task_overrides(capfd, monkeypatch):
    code, out = run_main(["glue", "--help"], capfd, monkeypatch)
    assert code == 0
    for option in ("--pretrained", "--random_init", "--data_dir", "--tasks", "--seeds", "--config", "--name",
                   "--save_dir", "--predict", "--overwrite", "mrpc: --trainer.max_epochs 5", "--trainer.max_steps"):
        assert option in out, option
    # every per-task override (GLUETask.max_epochs: MRPC, WNLI), where the recipe (configs/sst2.yaml) sends its reader
    overridden = [task for task in TASKS if task_flags(task)]
    assert overridden == ["mrpc", "wnli"] and task_flags("cola") == []
    for task in overridden:
        assert f"{task}: --trainer.max_epochs {TASKS[task].max_epochs}" in out, task


def test_random_init_uses_the_architecture_and_tokenizer_of_pretrained(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    plan = make_plan(["--pretrained", str(ckpt), "--random_init", "--save_dir", str(tmp_path / "glue")])
    assert plan.out == tmp_path / "glue" / "run-random"
    args = plan.fit_args("rte", 3)
    for pair in (["--model.pretrained", "null"], ["--data.tokenizer", str(ckpt)], ["--model.config", str(ckpt)],
                 ["--seed_everything", "3"], ["--data.task_name", "rte"]):
        assert any(args[i:i + 2] == pair for i in range(len(args))), pair
    hf = tmp_path / "bert-base-uncased"
    hf.mkdir()
    plan = make_plan(["--pretrained", str(hf), "--random_init", "--data_dir", str(tmp_path)])
    assert plan.out == Path("runs/glue/bert-base-uncased-random")
    assert "--trainer.max_epochs" in plan.fit_args("mrpc", 1) and plan.task_dir("stsb") == tmp_path / "STS-B"
    assert plan.fit_args("mrpc", 1)[-2:] == ["--trainer.max_epochs", "5"]  # the task's override, then user flags


# ---------------------------------------------------------------------------------------------------------------------
# real SST-2


def test_real_sst2_dev_accuracy_equals_lit_lm_validate(tmp_path, data_root, tokenizer, capfd, monkeypatch):
    if not (data_root / "SST-2/train.tsv").is_file():
        pytest.skip(f"real data not found: {data_root / 'SST-2'} has no train.tsv")
    code, out = run_main(["glue", "--data_dir", str(data_root), "--tasks", "sst2", "--save_dir", str(tmp_path / "runs"),
                          "--name", "real", *tiny(tmp_path, tokenizer, max_steps=3), "--data.batch_size", "64"],
                         capfd, monkeypatch, cwd=tmp_path)
    assert code == 0, out
    run = tmp_path / "runs/real/sst2/seed42"
    accuracy = json.loads((tmp_path / "runs/real/results.json").read_text())["tasks"]["sst2"]["accuracy"]["mean"]
    assert f"| SST-2 | accuracy | {100 * accuracy:.1f} |" in out
    assert json.loads((run / "result.json").read_text())["logged"]["val/acc"] == accuracy

    code, out = run_main(["validate", "--config", str(run / "config.yaml"), "--ckpt_path",
                          str(run / "checkpoints/last.ckpt"), "--trainer.logger", "false"], capfd, monkeypatch,
                         cwd=tmp_path)
    assert code == 0, out
    (line,) = [line for line in out.splitlines() if "val/acc" in line and "val/acc_" not in line]
    printed = float(next(w for w in line.replace("│", " ").replace("|", " ").split() if w[0].isdigit()))
    assert printed == pytest.approx(accuracy, abs=1e-6)
    assert 872 * accuracy == pytest.approx(round(872 * accuracy), abs=1e-3)  # all 872 dev sentences were scored
