"""GLUE metric values, checked against hand computation on fixed predictions.

The predictions go through the module's own validation path: ``Trainer.validate`` runs ``setup`` (which picks the
task's metrics), ``validation_step`` (loss, argmax, metric updates, per dev split) and ``on_validation_epoch_end``
(compute and log). Only ``forward`` is replaced, by a table of fixed logits looked up by the example number held in
``input_ids``. The expected values are computed here from the definitions GLUE scores with (Wang et al., 2018:
Matthews correlation for CoLA, F1 of the positive class and accuracy for MRPC/QQP, Pearson and Spearman for
STS-B, accuracy elsewhere), over all examples of a split at once, never as a mean of batch values.

Then the averages of lit_lm.glue.scoring, pure arithmetic: the leaderboard's GLUE score reproduced from its published
rows, the BERT-style headline (WNLI out, reported beside it), mean ± sd over seeds and the table.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from data_modules.glue_tasks import TASKS, GLUETask
from data_modules.tokenizer import train_tokenizer
from lit_lm.classification import SequenceClassification
from lit_lm.glue.scoring import official_metrics, render_table, summarize

LOGIT = 2.0  # the logit of the predicted class; the others are 0


# ---------------------------------------------------------------------------------------------------------------------
# the definitions, by hand


def _confusion(preds: list[int], labels: list[int]) -> tuple[int, int, int, int]:
    tp = sum(p == 1 and y == 1 for p, y in zip(preds, labels))
    tn = sum(p == 0 and y == 0 for p, y in zip(preds, labels))
    fp = sum(p == 1 and y == 0 for p, y in zip(preds, labels))
    fn = sum(p == 0 and y == 1 for p, y in zip(preds, labels))
    return tp, tn, fp, fn


def matthews(preds: list[int], labels: list[int]) -> float:
    """(TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); 0 when a factor is 0, as GLUE's scorer (sklearn) says."""
    tp, tn, fp, fn = _confusion(preds, labels)
    denom = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / math.sqrt(denom)


def f1_positive(preds: list[int], labels: list[int]) -> float:
    tp, _, fp, fn = _confusion(preds, labels)
    return 2 * tp / (2 * tp + fp + fn)


def accuracy(preds: list[int], labels: list[int]) -> float:
    return sum(p == y for p, y in zip(preds, labels)) / len(labels)


def pearson(a: list[float], b: list[float]) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def average_ranks(v: list[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    return pearson(average_ranks(a), average_ranks(b))


def cross_entropy_mean(preds: list[int], labels: list[int], num_labels: int) -> float:
    """Mean over examples of -log softmax(logits)[label], logits = LOGIT at the prediction and 0 elsewhere."""
    z = math.exp(LOGIT) + num_labels - 1
    return sum(math.log(z) - (LOGIT if p == y else 0.0) for p, y in zip(preds, labels)) / len(labels)


# ---------------------------------------------------------------------------------------------------------------------
# the module's validation path on fixed predictions


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory) -> Path:
    texts = ["the cat sat on the mat", "a dog ran in the park", "it was not the best film"] * 4
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(texts, 60, show_progress=False).save(str(path))
    return path


class FixedPredictions(L.LightningDataModule):
    """What ``SequenceClassification.setup`` reads from the GLUE data module, with one loader per dev split; each
    batch's ``input_ids`` hold the examples' numbers in that split (rows of the logits table)."""

    def __init__(self, task: GLUETask, labels: list[list], batch_sizes: list[list[int]]) -> None:
        super().__init__()
        self.task, self.val_splits, self.tokenizer_json = task, task.dev, None
        self._labels, self._batch_sizes = labels, batch_sizes

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        loaders = []
        for split, (labels, sizes) in enumerate(zip(self._labels, self._batch_sizes)):
            assert sum(sizes) == len(labels)
            batches, start = [], 0
            for n in sizes:
                rows = torch.arange(start, start + n)
                dtype = torch.float32 if self.task.is_regression else torch.long
                y = torch.tensor(labels[start : start + n], dtype=dtype)
                batches.append({"input_ids": torch.stack([rows, torch.full_like(rows, split)], 1),
                                "token_type_ids": torch.zeros(n, 2, dtype=torch.long),
                                "attention_mask": torch.ones(n, 2, dtype=torch.long), "labels": y})
                start += n
            loaders.append(DataLoader(batches, batch_size=None))
        return loaders[0] if len(loaders) == 1 else loaders


def validate(tokenizer_path: Path, task_name: str, preds: list[list], labels: list[list],
             batch_sizes: list[list[int]], monkeypatch) -> dict[str, float]:
    """The logged values of one ``Trainer.validate`` whose model outputs ``preds`` (class ids, or scores), per split."""
    task = TASKS[task_name]
    assert len(preds) == len(labels) == len(batch_sizes) == len(task.dev)
    module = SequenceClassification(tokenizer=str(tokenizer_path), config="tiny", num_labels=task.num_labels)
    tables = []
    for p in preds:
        if task.is_regression:
            tables.append(torch.tensor(p, dtype=torch.float32)[:, None])
        else:
            tables.append(LOGIT * torch.nn.functional.one_hot(torch.tensor(p), task.num_labels).float())

    def fixed_logits(input_ids, token_type_ids=None, attention_mask=None, token_index=None):
        return tables[int(input_ids[0, 1])][input_ids[:, 0]]

    monkeypatch.setattr(module, "forward", fixed_logits)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, datamodule=FixedPredictions(task, labels, batch_sizes))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


# ---------------------------------------------------------------------------------------------------------------------
# tests

# 24 examples, TP=9 TN=6 FP=4 FN=5: MCC = (54 - 20) / sqrt(13 * 14 * 10 * 11) = 0.24030, F1 = 18 / 27 = 2/3
LABELS = [1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0]
PREDS = [1, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0]
SIZES = [7, 17]  # unequal batches: a mean of batch values would differ from the value over the split


def test_hand_values_of_the_fixed_predictions():
    assert _confusion(PREDS, LABELS) == (9, 6, 4, 5)
    assert matthews(PREDS, LABELS) == pytest.approx(34 / math.sqrt(13 * 14 * 10 * 11))
    assert f1_positive(PREDS, LABELS) == pytest.approx(2 / 3)
    assert average_ranks([5.0, 1.0, 5.0, 3.0, 5.0]) == [4.0, 1.0, 4.0, 2.0, 4.0]
    # the batches are unequal enough that a mean of per-batch values is not the split's value
    a, b = (PREDS[:7], LABELS[:7]), (PREDS[7:], LABELS[7:])
    assert abs((matthews(*a) + matthews(*b)) / 2 - matthews(PREDS, LABELS)) > 0.05
    assert abs((f1_positive(*a) + f1_positive(*b)) / 2 - f1_positive(PREDS, LABELS)) > 0.02


def test_cola_matthews_correlation(tokenizer_path, monkeypatch):
    got = validate(tokenizer_path, "cola", [PREDS], [LABELS], [SIZES], monkeypatch)
    assert set(got) == {"val/loss", "val/acc", "val/mcc"}
    assert got["val/mcc"] == pytest.approx(matthews(PREDS, LABELS), abs=1e-6)
    assert got["val/mcc"] == pytest.approx(0.24030, abs=1e-5)
    assert got["val/acc"] == pytest.approx(15 / 24, abs=1e-6)
    assert got["val/loss"] == pytest.approx(cross_entropy_mean(PREDS, LABELS, 2), abs=1e-5)


def test_cola_matthews_correlation_of_a_constant_prediction_is_zero(tokenizer_path, monkeypatch):
    """The classic CoLA failure, a model that calls every sentence acceptable, scores MCC 0 in GLUE."""
    labels = [1, 1, 0, 0, 1, 0, 1, 1]
    got = validate(tokenizer_path, "cola", [[1] * 8], [labels], [[8]], monkeypatch)
    assert got["val/mcc"] == pytest.approx(matthews([1] * 8, labels)) == 0.0


@pytest.mark.parametrize("task_name", ["mrpc", "qqp"])
def test_f1_of_the_positive_class_and_accuracy(tokenizer_path, monkeypatch, task_name):
    got = validate(tokenizer_path, task_name, [PREDS], [LABELS], [SIZES], monkeypatch)
    assert set(got) == {"val/loss", "val/acc", "val/f1"}
    assert got["val/f1"] == pytest.approx(f1_positive(PREDS, LABELS), abs=1e-6)
    assert got["val/f1"] == pytest.approx(2 / 3, abs=1e-6)  # not the negative class's 4/7, nor their mean
    assert got["val/acc"] == pytest.approx(accuracy(PREDS, LABELS), abs=1e-6)


def test_mnli_accuracy_is_micro_on_each_dev_split(tokenizer_path, monkeypatch):
    """Three imbalanced classes, so the fraction right (GLUE's accuracy) differs from the mean of per-class
    recalls (torchmetrics' default, macro); matched and mismatched are scored apart."""
    matched_y = [0] * 10 + [1] * 3 + [2] * 2
    matched_p = [0] * 9 + [1] + [1, 0, 0] + [2, 0]  # 9 + 1 + 1 right of 15; macro would be (0.9 + 1/3 + 0.5) / 3
    mism_y = [2] * 6 + [0, 1]
    mism_p = [2] * 6 + [1, 0]  # 6 of 8; macro (0 + 0 + 1) / 3
    got = validate(tokenizer_path, "mnli", [matched_p, mism_p], [matched_y, mism_y], [[4, 11], [3, 5]], monkeypatch)
    assert set(got) == {"val/loss", "val/acc", "val_mismatched/loss", "val_mismatched/acc"}
    assert accuracy(matched_p, matched_y) == 11 / 15
    assert got["val/acc"] == pytest.approx(accuracy(matched_p, matched_y), abs=1e-6)
    assert got["val_mismatched/acc"] == pytest.approx(6 / 8, abs=1e-6)
    assert got["val/loss"] == pytest.approx(cross_entropy_mean(matched_p, matched_y, 3), abs=1e-5)
    assert got["val_mismatched/loss"] == pytest.approx(cross_entropy_mean(mism_p, mism_y, 3), abs=1e-5)


def test_stsb_pearson_and_spearman_with_ties(tokenizer_path, monkeypatch):
    labels = [0.0, 1.2, 2.5, 2.5, 3.0, 3.8, 4.0, 4.0, 4.0, 5.0, 1.2, 0.4]
    scores = [0.5, 0.9, 2.0, 3.5, 3.5, 3.5, 4.8, 2.2, 4.1, 4.9, 1.0, 1.0]
    got = validate(tokenizer_path, "stsb", [scores], [labels], [[5, 7]], monkeypatch)
    assert set(got) == {"val/loss", "val/pearson", "val/spearman"}
    assert got["val/pearson"] == pytest.approx(pearson(scores, labels), abs=1e-5)
    assert got["val/spearman"] == pytest.approx(spearman(scores, labels), abs=1e-5)
    # the ties matter: ranking them in order of appearance instead of averaging gives another value
    def ordinal(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: (v[i], i))
        return [order.index(k) + 1.0 for k in range(len(v))]

    assert abs(pearson(ordinal(scores), ordinal(labels)) - spearman(scores, labels)) > 1e-3
    assert got["val/loss"] == pytest.approx(sum((s - y) ** 2 for s, y in zip(scores, labels)) / 12, abs=1e-5)


def test_a_constant_stsb_prediction_scores_zero_not_nan(tokenizer_path, monkeypatch):
    """An encoder that predicts one score for every pair (a random init after a few steps does) has no correlation
    with the labels: torchmetrics logs Pearson NaN but Spearman 0; the official metrics score both 0, so the seed's
    and the task's averages stay numbers (a NaN there once ended a whole lit-lm glue without results.json)."""
    labels = [0.0, 1.2, 2.5, 3.8, 5.0, 0.4]
    got = validate(tokenizer_path, "stsb", [[2.5] * 6], [labels], [[2, 4]], monkeypatch)
    assert math.isnan(got["val/pearson"]) and got["val/spearman"] == 0.0
    metrics = official_metrics("stsb", got)
    assert metrics == {"pearson": 0.0, "spearman": 0.0}
    summary = summarize({"stsb": {1: metrics, 2: {"pearson": 0.2, "spearman": 0.4}}})
    assert summary["bert_style"]["mean"] == pytest.approx(0.15) and summary["bert_style"]["sd"] == pytest.approx(
        0.3 / math.sqrt(2))
    nan = official_metrics("rte", {"val/acc": float("nan")})
    assert math.isnan(nan["accuracy"])  # only correlations are 0; any other NaN shows as one, and nothing raises
    rte = summarize({"rte": {1: nan, 2: {"accuracy": 0.5}}})["tasks"]["rte"]["score"]
    assert math.isnan(rte["mean"]) and math.isnan(rte["sd"])


# ---------------------------------------------------------------------------------------------------------------------
# the averages (lit_lm.glue.scoring)

LEADERBOARD = {  # GLUE test leaderboard rows (x100) and their published scores (BERT paper; facebookresearch/XLM,
    # ERNIE 2.0 READMEs): CoLA, SST-2, MRPC F1/acc, STS-B P/S, QQP F1/acc, MNLI-m/mm, QNLI, RTE, WNLI
    "BERT-large": ([60.5, 94.9, (89.3, 85.4), (87.6, 86.5), (72.1, 89.3), (86.7, 85.9), 92.7, 70.1, 65.1], 80.5),
    "BERT-base": ([52.1, 93.5, (88.9, 84.8), (87.1, 85.8), (71.2, 89.2), (84.6, 83.4), 90.5, 66.4, 65.1], 78.3),
    "ERNIE-2.0-base": ([55.2, 95.0, (89.9, 86.1), (86.5, 87.6), (73.2, 89.8), (86.1, 85.5), 92.9, 74.8, 65.1], 80.6),
}


def _leaderboard_runs(row: list) -> dict[str, dict[int, dict[str, float]]]:
    runs = {}
    for task, value in zip(TASKS, row):
        values = value if isinstance(value, tuple) else (value,)
        runs[task] = {1: {name: v / 100 for (name, _), v in zip(TASKS[task].leaderboard_metrics, values)}}
    return runs


@pytest.mark.parametrize("model", LEADERBOARD)
def test_glue_score_is_the_leaderboards(model):
    row, published = LEADERBOARD[model]
    summary = summarize(_leaderboard_runs(row))
    board = summary["leaderboard"]
    assert round(100 * board["mean"], 1) == published and board["complete"] and board["tasks"] == list(TASKS)
    # not the mean over ten columns with MNLI-m and -mm apart (BERT-large: 81.1), nor over all 13 numbers (82.0)
    scores = [sum(v) / len(v) if isinstance(v, tuple) else v for v in row]
    assert round(sum([*scores[:5], *row[5], *scores[6:]]) / 10, 1) != published
    flat = [x for v in row for x in (v if isinstance(v, tuple) else (v,))]
    assert round(sum(flat) / len(flat), 1) != published
    # BERT-style: the mean of the other eight task scores, WNLI (65.1 in every row) out
    bert = summary["bert_style"]
    assert 100 * bert["mean"] == pytest.approx((100 * board["mean"] * 9 - 65.1) / 8)
    assert bert["complete"] and bert["tasks"] == [t for t in TASKS if t != "wnli"]


def _runs(scores: dict[str, list[float]]) -> dict[str, dict[int, dict[str, float]]]:
    """task -> seed -> metrics, every metric of a task equal to its per-seed value (so its task score is that)."""
    return {t: {seed: {name: v for name, _ in TASKS[t].leaderboard_metrics} for seed, v in enumerate(values, 1)}
            for t, values in scores.items()}


def test_bert_style_headline_leaves_wnli_out_and_shows_it_beside():
    """The five tasks with training data here and WNLI: GLUE-5 is the mean of the five; WNLI, far below and spread
    as it is on dev when a model fits its train set, changes nothing in it; no leaderboard score from six tasks."""
    five = {"cola": [0.10, 0.12, 0.08], "sst2": [0.80, 0.81, 0.79], "mrpc": [0.70, 0.72, 0.74],
            "stsb": [0.40, 0.35, 0.45], "rte": [0.50, 0.55, 0.48]}
    with_wnli = summarize(_runs({**five, "wnli": [0.30, 0.56, 0.28]}))
    bert = with_wnli["bert_style"]
    per_seed = [sum(v[i] for v in five.values()) / 5 for i in range(3)]
    assert bert["tasks"] == ["cola", "sst2", "mrpc", "stsb", "rte"] and not bert["complete"]
    assert bert["per_seed"] == pytest.approx({str(i + 1): v for i, v in enumerate(per_seed)})
    assert bert["mean"] == pytest.approx(sum(per_seed) / 3)
    assert bert == summarize(_runs(five))["bert_style"]  # WNLI is not in it
    assert with_wnli["leaderboard"] is None  # six of nine tasks: no leaderboard score
    assert with_wnli["tasks"]["wnli"]["score"]["mean"] == pytest.approx(0.38)  # reported, not averaged

    table = render_table(with_wnli, [1, 2, 3])
    headline = f"| **GLUE-5, BERT-style** (CoLA, SST-2, MRPC, STS-B, RTE) | mean of the task scores, WNLI out | "
    assert headline in table and "| WNLI | accuracy | 38.0 ± 15.6 | 30.0, 56.0, 28.0 |" in table
    assert "leaderboard |" not in table and "WNLI is reported beside it, not averaged" in table
    assert "BERT-style average over 5 of the 8 tasks BERT averaged: not comparable" in table
    only_wnli = summarize(_runs({"wnli": [0.5]}))
    assert only_wnli["bert_style"] is None and only_wnli["leaderboard"] is None
    assert "| **GLUE" not in render_table(only_wnli, [1])


def test_mean_sd_over_seeds_and_the_table():
    runs = {"rte": {1: {"accuracy": 0.6}, 2: {"accuracy": 0.7}, 3: {"accuracy": 0.8}},
            "mrpc": {1: {"f1": 0.9, "accuracy": 0.8}, 2: {"f1": 0.8, "accuracy": 0.7}, 3: {"f1": 0.7, "accuracy": 0.6}}}
    s = summarize(runs)
    assert s["tasks"]["rte"]["accuracy"]["mean"] == pytest.approx(0.7)
    assert s["tasks"]["rte"]["accuracy"]["sd"] == pytest.approx(0.1)  # sample sd: sqrt((0.01 + 0 + 0.01) / 2)
    assert s["tasks"]["mrpc"]["score"]["per_seed"] == pytest.approx({"1": 0.85, "2": 0.75, "3": 0.65})
    # per seed: (0.6 + 0.85) / 2, (0.7 + 0.75) / 2, (0.8 + 0.65) / 2 -> the same average each time: sd 0
    bert = s["bert_style"]
    assert bert["per_seed"] == pytest.approx({"1": 0.725, "2": 0.725, "3": 0.725})
    assert bert["mean"] == pytest.approx(0.725) and bert["sd"] == pytest.approx(0, abs=1e-12)
    assert not bert["complete"] and bert["tasks"] == ["mrpc", "rte"] and s["leaderboard"] is None
    table = render_table(s, [1, 2, 3])
    assert "| RTE | accuracy | 70.0 ± 10.0 | 60.0, 70.0, 80.0 |" in table
    assert "| MRPC | F1 / accuracy | 80.0 ± 10.0 / 70.0 ± 10.0 | 90.0/80.0, 80.0/70.0, 70.0/60.0 |" in table
    assert ("| **GLUE-2, BERT-style** (MRPC, RTE) | mean of the task scores, WNLI out | **72.5 ± 0.0** | 72.5, 72.5, "
            "72.5 |") in table
