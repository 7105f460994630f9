"""The GLUE arithmetic, as pure functions: official dev metrics, task scores, the two GLUE averages, mean ± sd over
seeds, and the results table.

A task scores the unweighted mean of its official metrics (Wang et al., 2019, "GLUE: A Multi-Task Benchmark and
Analysis Platform for Natural Language Understanding", ICLR, section 3.4: "For tasks with multiple metrics (e.g.,
accuracy and F1), we use an unweighted average of the metrics as the score for the task"): MRPC and QQP F1 and
accuracy, STS-B Pearson and Spearman, MNLI matched and mismatched accuracy. Two averages of the task scores:

- **BERT-style, the headline**: the unweighted mean over the tasks run, WNLI left out, as BERT left it out (Devlin et
  al., 2019, section 4.1, footnote on WNLI: "every trained system that's been submitted to GLUE has performed worse
  than the 65.1 baseline accuracy of predicting the majority class"; GLUE's FAQ says why: hypotheses shared between
  its train and dev sets carry opposite labels, so a model that fits train is punished on dev). WNLI is still run and
  reported beside it. With the release tree here (no MNLI or QQP, QNLI without train) that is the mean over CoLA,
  SST-2, MRPC, STS-B and RTE: ``GLUE-5``. BERT's table 1 averaged the same tasks with one metric each (MRPC F1,
  STS-B Spearman, MNLI-m and -mm as two columns); task scores are kept here so that each task's number is the
  leaderboard's (Cramming, Geiping and Goldstein, 2023, likewise averages the eight without WNLI).
- **the leaderboard's GLUE score**: the same mean over all nine tasks, WNLI in, the diagnostic AX not (section 3.4:
  "a macro-average of those scores"); only when all nine ran. Checked against the leaderboard's rows: BERT-large
  (CoLA 60.5, SST-2 94.9, MRPC 89.3/85.4, STS-B 87.6/86.5, QQP 72.1/89.3, MNLI 86.7/85.9, QNLI 92.7, RTE 70.1, WNLI
  65.1) scores 80.5 this way, BERT-base 78.3; MNLI-m and MNLI-mm as two columns would give 81.1 and 78.9
  (tests/lit_lm/test_glue_harness.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from data_modules.glue_tasks import TASKS

_METRIC_NAMES = {"matthews": "Matthews corr.", "accuracy": "accuracy", "f1": "F1", "pearson": "Pearson",
                 "spearman": "Spearman", "matched": "matched acc.", "mismatched": "mismatched acc."}
"""A table's name for each official metric (``GLUETask.leaderboard_metrics``)."""

_CORRELATIONS = ("matthews", "pearson", "spearman")
"""The metrics that are 0 for a prediction unrelated to the labels, a constant one included."""


def official_metrics(task: str, logged: Mapping[str, float]) -> dict[str, float]:
    """The official dev metric(s) of ``task`` from the dict ``trainer.validate`` returned (fractions, as logged).

    A correlation that is NaN scores 0: torchmetrics' Pearson of a constant prediction (zero variance) is NaN, where
    its Spearman of the same prediction is 0, as GLUE's scorer (sklearn) makes the Matthews correlation of a constant
    prediction; a NaN would otherwise make every average over seeds and tasks NaN. result.json keeps the logged value.
    """
    wanted = TASKS[task].leaderboard_metrics
    missing = [key for _, key in wanted if key not in logged]
    if missing:
        raise ValueError(f"validation of {task} logged no {', '.join(missing)} (got {', '.join(sorted(logged))})")
    values = {name: float(logged[key]) for name, key in wanted}
    return {name: 0.0 if math.isnan(v) and name in _CORRELATIONS else v for name, v in values.items()}


def task_score(metrics: Mapping[str, float]) -> float:
    """A task's GLUE score: the unweighted mean of its metrics (Wang et al., 2019, section 3.4)."""
    return sum(metrics.values()) / len(metrics)


def glue_score(task_scores: Mapping[str, float]) -> Optional[float]:
    """The unweighted mean of the task scores (GLUE's macro-average); None for no task."""
    return sum(task_scores.values()) / len(task_scores) if task_scores else None


def mean_sd(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """Mean and sample standard deviation (n - 1); the sd is None for a single value, NaN when a value is."""
    if len(values) > 1 and any(math.isnan(v) for v in values):
        return math.nan, math.nan  # statistics.stdev raises on a NaN instead of returning one
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


BERT_LEAVES_OUT = ("wnli",)
"""The tasks the BERT-style average leaves out (Devlin et al., 2019, section 4.1, footnote on WNLI); run and shown
beside it."""


def summarize(runs: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict[str, Any]:
    """Per task and metric: mean, sd and the per-seed values; the task score likewise; the two GLUE averages.

    ``runs``: task -> seed -> official metrics. ``bert_style`` averages the tasks present but WNLI (None if none is);
    ``leaderboard`` all nine, only when all nine are present (else None). An average's sd is that of its per-seed
    averages, over the seeds every averaged task has.
    """
    tasks: dict[str, Any] = {}
    for task in (t for t in TASKS if runs.get(t)):
        by_seed = runs[task]
        entry = {}
        for name, _ in TASKS[task].leaderboard_metrics:
            values = {seed: m[name] for seed, m in by_seed.items()}
            mean, sd = mean_sd(list(values.values()))
            entry[name] = {"mean": mean, "sd": sd, "per_seed": {str(s): v for s, v in values.items()}}
        scores = {seed: task_score(m) for seed, m in by_seed.items()}
        mean, sd = mean_sd(list(scores.values()))
        entry["score"] = {"mean": mean, "sd": sd, "per_seed": {str(s): v for s, v in scores.items()}}
        tasks[task] = entry

    def average(included: list[str], out_of: list[str]) -> Optional[dict[str, Any]]:
        if not included:
            return None
        mean = glue_score({t: tasks[t]["score"]["mean"] for t in included})
        common = set.intersection(*(set(runs[t]) for t in included))
        per_seed = {s: glue_score({t: task_score(runs[t][s]) for t in included}) for s in sorted(common)}
        sd = mean_sd(list(per_seed.values()))[1]
        return {"mean": mean, "sd": sd, "per_seed": {str(s): v for s, v in per_seed.items()}, "tasks": included,
                "complete": included == out_of}

    bert_tasks = [t for t in TASKS if t not in BERT_LEAVES_OUT]
    return {"tasks": tasks,
            "bert_style": average([t for t in tasks if t in bert_tasks], bert_tasks),
            "leaderboard": average(list(tasks), list(TASKS)) if len(tasks) == len(TASKS) else None}


def average_name(average: Mapping[str, Any]) -> str:
    """``GLUE-5`` for a BERT-style average over five tasks, ``GLUE`` for the leaderboard's nine."""
    return "GLUE" if len(average["tasks"]) == len(TASKS) else f"GLUE-{len(average['tasks'])}"


def pct(value: float) -> str:
    """A fraction as the tables show it: ×100, one decimal."""
    return f"{100 * value:.1f}"


def metrics_line(metrics: Mapping[str, float]) -> str:
    """One run's official metrics in a line of progress: ``f1 91.2, accuracy 88.0``."""
    return ", ".join(f"{name} {pct(v)}" for name, v in metrics.items())


def _mean_sd(entry: Mapping[str, Any]) -> str:
    return pct(entry["mean"]) + ("" if entry["sd"] is None else f" ± {pct(entry['sd'])}")


def render_table(summary: Mapping[str, Any], seeds: Sequence[int], failed: Optional[Mapping[str, str]] = None) -> str:
    """The results as a markdown table: dev metrics ×100, mean ± sd over seeds, the per-seed values, then the
    BERT-style average first (the headline) and the leaderboard's GLUE score when all nine tasks ran."""
    lines = [f"| task | metric | dev ×100, mean ± sd | per seed ({', '.join(map(str, seeds))}) |",
             "|---|---|---:|---|"]
    for task, t in TASKS.items():
        names = [n for n, _ in t.leaderboard_metrics]
        metric = " / ".join(_METRIC_NAMES[n] for n in names)
        if task in summary["tasks"]:
            e = summary["tasks"][task]
            per_seed = ", ".join("/".join(pct(e[n]["per_seed"][str(s)]) for n in names)
                                 for s in seeds if str(s) in e[names[0]]["per_seed"])
            lines.append(f"| {t.display_name} | {metric} | {' / '.join(_mean_sd(e[n]) for n in names)} | {per_seed} |")
        elif failed and task in failed:
            lines.append(f"| {t.display_name} | {metric} | failed | {failed[task]} |")
    bert, board = summary["bert_style"], summary["leaderboard"]
    if bert is not None:
        names = "" if bert["complete"] else f" ({', '.join(TASKS[t].display_name for t in bert['tasks'])})"
        lines.append(f"| **{average_name(bert)}, BERT-style**{names} | mean of the task scores, WNLI out | "
                     f"**{_mean_sd(bert)}** | {', '.join(pct(v) for v in bert['per_seed'].values())} |")
    if board is not None:
        lines.append(f"| GLUE score, leaderboard | mean of the nine task scores, WNLI in | {_mean_sd(board)} | "
                     f"{', '.join(pct(v) for v in board['per_seed'].values())} |")
    notes = ["", "Task score = the mean of its metrics. BERT-style = the unweighted mean of the task scores with WNLI "
             "left out (Devlin et al., 2019, section 4.1: WNLI's dev set punishes a model that fits its train set); "
             "WNLI is reported beside it, not averaged. GLUE score, leaderboard = the mean of all nine task scores, "
             "WNLI in (Wang et al., 2019, section 3.4), shown when all nine ran; the diagnostic AX is in neither. sd "
             "over seeds (n - 1)."]
    if bert is not None and not bert["complete"]:
        notes.append(f"BERT-style average over {len(bert['tasks'])} of the {len(TASKS) - len(BERT_LEAVES_OUT)} "
                     f"tasks BERT averaged: not comparable with a full GLUE score.")
    return "\n".join(lines + notes) + "\n"
