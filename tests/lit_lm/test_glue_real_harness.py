"""A real ``lit-lm glue`` over the real GLUE release tree (``data_root/glue``): every task it holds fine-tunes a few
steps from a tiny pretraining checkpoint and reports its official dev metrics; the tasks whose files are absent (QQP,
MNLI, and QNLI, which has dev and test only) fail in one line each while the others run. Only the command line and
its output files are used, as a user would."""

from __future__ import annotations

import json
import math

import pytest
from one_line import run_main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

OFFICIAL = {"cola": ["matthews"], "sst2": ["accuracy"], "mrpc": ["f1", "accuracy"], "stsb": ["pearson", "spearman"],
            "rte": ["accuracy"], "wnli": ["accuracy"]}
"""The tasks the release tree holds whole, and their official metrics (Wang et al., 2019, table 1)."""


def test_glue_on_every_real_task(glue_root, quickstart_run, tmp_path, capfd, monkeypatch):
    ckpt = quickstart_run / "checkpoints" / "last.ckpt"
    code, output = run_main(
        ["glue", "--pretrained", str(ckpt), "--data_dir", str(glue_root), "--seeds", "1",  # all nine tasks (default)
         "--save_dir", str(tmp_path / "runs"), "--name", "real",
         # a smoke test's budget: 3 steps, 2 dev batches of 16 rows of at most 64 tokens, one thread
         "--trainer.max_steps", "3", "--trainer.limit_val_batches", "2", "--data.batch_size", "16",
         "--data.max_seq_len", "64", "--trainer.precision", "32-true", "--trainer.accelerator", "cpu",
         "--data.num_workers", "0", "--data.cache_dir", str(tmp_path / "cache"),
         "--trainer.enable_progress_bar", "false"],
        capfd, monkeypatch, cwd=tmp_path)
    out = tmp_path / "runs" / "real"
    results = json.loads((out / "results.json").read_text())

    assert list(results["tasks"]) == list(OFFICIAL), output
    for task, names in OFFICIAL.items():
        entry = results["tasks"][task]
        assert [k for k in entry if k != "score"] == names
        values = [entry[n]["per_seed"]["1"] for n in names]
        assert all(math.isfinite(v) and -1.0 <= v <= 1.0 for v in values), (task, values)
        run = json.loads((out / task / "seed1" / "result.json").read_text())
        assert run["steps"] == 3 and run["metrics"] == dict(zip(names, values))
    # the headline: GLUE-5, BERT-style (CoLA, SST-2, MRPC, STS-B, RTE); WNLI beside it; no leaderboard score
    bert = results["bert_style"]
    assert bert["tasks"] == ["cola", "sst2", "mrpc", "stsb", "rte"] and bert["complete"] is False
    assert math.isfinite(bert["mean"]) and results["leaderboard"] is None

    # the absent files: one line each, naming what is missing, and the harness fails at the end (exit code 1)
    failed = {f["task"]: f["error"] for f in results["failed"]}
    assert failed == {
        "qqp": f"--data_dir {glue_root}: no QQP/ directory for GLUE qqp (expected QQP/{{train.tsv,dev.tsv,test.tsv}})",
        "mnli": f"--data_dir {glue_root}: no MNLI/ directory for GLUE mnli (expected MNLI/{{train.tsv,dev_matched.tsv,"
                f"dev_mismatched.tsv,test_matched.tsv,test_mismatched.tsv}})",
        "qnli": f"{glue_root / 'QNLI'}: missing train.tsv of GLUE qnli",
    }
    assert code == 1
    last = [line for line in output.splitlines() if line.strip()][-1]
    assert last.startswith("lit-lm: error: 3 failed: ") and all(f"{t} ({why})" in last for t, why in failed.items())
    table = (out / "results.md").read_text()
    assert "| QNLI | accuracy | failed |" in table
    assert "| **GLUE-5, BERT-style** (CoLA, SST-2, MRPC, STS-B, RTE) |" in table
    assert "BERT-style average over 5 of the 8 tasks BERT averaged" in table and "leaderboard |" not in table
