"""The GLUE task registry: ``GLUETask`` and ``TASKS``, the one table of each task's facts (its columns and labels in the
release files and on the hub, its metric, its leaderboard columns, its submission files), and ``get_task``.

Only facts, no I/O: data_modules.glue_reading reads the files these facts describe, data_modules.glue tokenizes them,
and lit_lm.glue (the ``lit-lm glue`` harness) plans, scores and submits by the same table.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Literal, Optional

Metric = Literal["accuracy", "f1", "matthews", "pearson_spearman"]


@dataclass(frozen=True)
class GLUETask:
    """One GLUE task: where it keeps its texts and labels (in the release files and on the hub), how it is scored and
    what the GLUE server wants back. ``TASKS`` below is the one table of these facts."""

    name: str
    text: tuple[str, ...]
    """Header names of the one or two text columns (train and dev files)."""
    label: str
    """Header name of the label column."""
    labels: tuple[str, ...]
    """Label values as the files write them, in class-id order (the hub's ClassLabel order); () = regression."""
    metric: Metric
    """The task's GLUE metric besides accuracy (Wang et al., 2018, table 1)."""
    submission: tuple[str, ...]
    """GLUE submission file name per test split."""
    hub_text: tuple[str, ...]
    """Column names of the texts in ``nyu-mll/glue``."""
    dev: tuple[str, ...] = ("dev",)
    test: tuple[str, ...] = ("test",)
    test_text: Optional[tuple[str, ...]] = None
    """Header names of the texts in the test files, when they differ from train/dev."""
    test_index: str = "index"
    columns: Optional[tuple[str, ...]] = None
    """Column names of header-less train/dev files (CoLA); None = the files have a header line."""
    _: KW_ONLY
    directory: str
    """The task's directory in the GLUE release (download_glue_data.py's layout: GLUE_DIR/SST-2/train.tsv ...)."""
    leaderboard_metrics: tuple[tuple[str, str], ...]
    """The dev metric(s) the GLUE leaderboard reports, in its column order: (official name, the key
    SequenceClassification logs in ``trainer.validate``). A task scores their unweighted mean."""
    display: Optional[str] = None
    """The task's name in a results table, when not ``directory``."""
    train: tuple[str, ...] = ("train",)
    """The training split (file stem); () for a test-only set (AX)."""
    diagnostic: Optional[GLUETask] = None
    """A test-only set that this task's model also predicts for the GLUE server (MNLI: AX)."""
    max_epochs: Optional[int] = None
    """Fine-tuning epochs when not the recipe's (``lit-lm glue`` passes ``--trainer.max_epochs``); None: the recipe's.
    HF transformers' examples/pytorch/text-classification/README.md: 3 epochs for every task, "with an exception for
    MRPC and WNLI which are tiny and where we used 5 epochs instead of 3"."""

    @property
    def num_labels(self) -> int:
        return len(self.labels) or 1

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def display_name(self) -> str:
        return self.display or self.directory

    @property
    def files(self) -> list[str]:
        """The split files in the task's directory: train, dev(s), test(s)."""
        return [f"{s}.tsv" for s in (*self.train, *self.dev, *self.test)]


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_NLI3 = ("entailment", "neutral", "contradiction")
_PAIR = ("sentence1", "sentence2")
_ACCURACY = (("accuracy", "val/acc"),)
_F1_ACCURACY = (("f1", "val/f1"), ("accuracy", "val/acc"))

AX = GLUETask("ax", _PAIR, "label", _NLI3, "matthews", ("AX.tsv",), ("premise", "hypothesis"), dev=(),
              test=("diagnostic",), directory="diagnostic", leaderboard_metrics=(), train=())
"""GLUE's diagnostic set: no training or dev data, one unlabelled file (diagnostic/diagnostic.tsv; the hub's ``ax``
config, split ``test``). Not fine-tuned and not part of the GLUE score: the server wants the MNLI model's predictions
on it, with MNLI's label strings, as AX.tsv, and scores them with R3, a three-class Matthews correlation."""

TASKS: dict[str, GLUETask] = {
    t.name: t
    for t in [  # the leaderboard's column order
        GLUETask("cola", ("sentence",), "label", _BINARY, "matthews", ("CoLA.tsv",), ("sentence",),
                 columns=("source", "label", "original_label", "sentence"), directory="CoLA",
                 leaderboard_metrics=(("matthews", "val/mcc"),)),
        GLUETask("sst2", ("sentence",), "label", _BINARY, "accuracy", ("SST-2.tsv",), ("sentence",),
                 directory="SST-2", leaderboard_metrics=_ACCURACY),
        GLUETask("mrpc", ("#1 String", "#2 String"), "Quality", _BINARY, "f1", ("MRPC.tsv",), _PAIR,
                 directory="MRPC", leaderboard_metrics=_F1_ACCURACY, max_epochs=5),
        GLUETask("stsb", _PAIR, "score", (), "pearson_spearman", ("STS-B.tsv",), _PAIR, directory="STS-B",
                 leaderboard_metrics=(("pearson", "val/pearson"), ("spearman", "val/spearman"))),
        GLUETask("qqp", ("question1", "question2"), "is_duplicate", _BINARY, "f1", ("QQP.tsv",),
                 ("question1", "question2"), test_index="id", directory="QQP", leaderboard_metrics=_F1_ACCURACY),
        GLUETask("mnli", _PAIR, "gold_label", _NLI3, "accuracy", ("MNLI-m.tsv", "MNLI-mm.tsv"),
                 ("premise", "hypothesis"), dev=("dev_matched", "dev_mismatched"),
                 test=("test_matched", "test_mismatched"), directory="MNLI", display="MNLI-m/mm", diagnostic=AX,
                 # SequenceClassification logs dev_matched as val/, dev_mismatched as val_mismatched/
                 leaderboard_metrics=(("matched", "val/acc"), ("mismatched", "val_mismatched/acc"))),
        GLUETask("qnli", ("question", "sentence"), "label", _NLI2, "accuracy", ("QNLI.tsv",), ("question", "sentence"),
                 directory="QNLI", leaderboard_metrics=_ACCURACY),
        GLUETask("rte", _PAIR, "label", _NLI2, "accuracy", ("RTE.tsv",), _PAIR, directory="RTE",
                 leaderboard_metrics=_ACCURACY),
        GLUETask("wnli", _PAIR, "label", _BINARY, "accuracy", ("WNLI.tsv",), _PAIR, directory="WNLI",
                 leaderboard_metrics=_ACCURACY, max_epochs=5),
    ]
}
"""The nine GLUE tasks by name (``--data.task_name``), in the leaderboard's column order."""


def get_task(name: str) -> GLUETask:
    if name not in TASKS:
        raise ValueError(f"--data.task_name {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name]
