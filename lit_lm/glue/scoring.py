"""The GLUE arithmetic, as pure functions: official dev metrics, task scores, the GLUE score, mean ± sd over seeds, and
the results table.

The GLUE score (Wang et al., 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language
Understanding", ICLR, section 3.4): "The benchmark site shows per-task scores and a macro-average of those scores
[...]. For tasks with multiple metrics (e.g., accuracy and F1), we use an unweighted average of the metrics as the
score for the task when computing the overall macro-average." So a task scores the mean of its metrics (MRPC and
QQP: F1 and accuracy; STS-B: Pearson and Spearman; MNLI: matched and mismatched accuracy) and the GLUE score is the
unweighted mean over the nine tasks, WNLI included, the diagnostic AX not. Checked against the leaderboard's rows:
BERT-large (CoLA 60.5, SST-2 94.9, MRPC 89.3/85.4, STS-B 87.6/86.5, QQP 72.1/89.3, MNLI 86.7/85.9, QNLI 92.7, RTE
70.1, WNLI 65.1) scores 80.5 this way, BERT-base 78.3; MNLI-m and MNLI-mm as two columns would give 81.1 and 78.9
(tests/lit_lm/test_glue_harness.py). The score without WNLI is reported too: Cramming (Geiping and Goldstein, 2023;
cramming/config/eval/GLUE.yaml comments wnli out) averages the other eight. BERT's table 1 "Average" is another mean
again (one metric per task, MNLI-m and -mm as two columns, no WNLI).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from data_modules.glue import TASKS

_METRIC_NAMES = {"matthews": "Matthews corr.", "accuracy": "accuracy", "f1": "F1", "pearson": "Pearson",
                 "spearman": "Spearman", "matched": "matched acc.", "mismatched": "mismatched acc."}
"""A table's name for each official metric (``GLUETask.leaderboard_metrics``)."""


def official_metrics(task: str, logged: Mapping[str, float]) -> dict[str, float]:
    """The official dev metric(s) of ``task`` from the dict ``trainer.validate`` returned (fractions, as logged)."""
    wanted = TASKS[task].leaderboard_metrics
    missing = [key for _, key in wanted if key not in logged]
    if missing:
        raise ValueError(f"validation of {task} logged no {', '.join(missing)} (got {', '.join(sorted(logged))})")
    return {name: float(logged[key]) for name, key in wanted}


def task_score(metrics: Mapping[str, float]) -> float:
    """A task's GLUE score: the unweighted mean of its metrics (Wang et al., 2019, section 3.4)."""
    return sum(metrics.values()) / len(metrics)


def glue_score(task_scores: Mapping[str, float], without: Sequence[str] = ()) -> Optional[float]:
    """The unweighted mean of the task scores (GLUE's macro-average), leaving out ``without``; None if none is left."""
    scores = [s for t, s in task_scores.items() if t not in without]
    return sum(scores) / len(scores) if scores else None


def mean_sd(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """Mean and sample standard deviation (n - 1); the sd is None for a single value."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(runs: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict[str, Any]:
    """Per task and metric: mean, sd and the per-seed values; the task score likewise; the GLUE averages.

    ``runs``: task -> seed -> official metrics. The averages are over the tasks present; their sd is that of the
    per-seed averages, over the seeds every present task has.
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

    def average(without: Sequence[str]) -> Optional[dict[str, Any]]:
        included = [t for t in tasks if t not in without]
        if not included:
            return None
        mean = glue_score({t: tasks[t]["score"]["mean"] for t in included})
        common = set.intersection(*(set(runs[t]) for t in included))
        per_seed = {s: glue_score({t: task_score(runs[t][s]) for t in included}) for s in sorted(common)}
        sd = statistics.stdev(per_seed.values()) if len(per_seed) > 1 else None
        return {"mean": mean, "sd": sd, "per_seed": {str(s): v for s, v in per_seed.items()}, "tasks": included,
                "complete": len(included) == len([t for t in TASKS if t not in without])}

    return {"tasks": tasks, "glue_score": average(()), "glue_score_without_wnli": average(("wnli",))}


def pct(value: float) -> str:
    """A fraction as the tables show it: ×100, one decimal."""
    return f"{100 * value:.1f}"


def metrics_line(metrics: Mapping[str, float]) -> str:
    """One run's official metrics in a line of progress: ``f1 91.2, accuracy 88.0``."""
    return ", ".join(f"{name} {pct(v)}" for name, v in metrics.items())


def _mean_sd(entry: Mapping[str, Any]) -> str:
    return pct(entry["mean"]) + ("" if entry["sd"] is None else f" ± {pct(entry['sd'])}")


def render_table(summary: Mapping[str, Any], seeds: Sequence[int], failed: Optional[Mapping[str, str]] = None) -> str:
    """The results as a markdown table: dev metrics ×100, mean ± sd over seeds, the per-seed values, the averages."""
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
    for key, label in (("glue_score", "GLUE score"), ("glue_score_without_wnli", "GLUE score without WNLI")):
        avg = summary[key]
        if avg is None or (key == "glue_score_without_wnli" and "wnli" not in summary["tasks"]):
            continue  # without WNLI it would repeat the line above
        per_seed = ", ".join(pct(v) for v in avg["per_seed"].values())
        shown = "**" + _mean_sd(avg) + "**" if key == "glue_score" else _mean_sd(avg)
        lines.append(f"| {label} | mean of the task scores | {shown} | {per_seed} |")
    notes = ["", "Task score = the mean of its metrics; GLUE score = the unweighted mean of the task scores (Wang et "
             "al., 2019, section 3.4, as the leaderboard computes it; the diagnostic AX is not part of it); sd over "
             "seeds (n - 1)."]
    avg = summary["glue_score"]
    if avg is not None and not avg["complete"]:
        names = ", ".join(TASKS[t].display_name for t in avg["tasks"])
        notes.append(f"Averages over {len(avg['tasks'])} of the {len(TASKS)} tasks ({names}): not comparable with a "
                     f"full GLUE score.")
    return "\n".join(lines + notes) + "\n"
