"""Reading the GLUE release: one split file of a task (``read_tsv``) or the hub's copy ``nyu-mll/glue`` (``load_hub``,
``hub_examples``) into ``Examples``; every malformed line is a one-line error naming ``path:lineno``.

The files are tab-separated, one example a line, and are NOT CSV: SST-2 and MNLI sentences contain unbalanced quote
characters, so lines are split on tabs and nothing else. SST-2 looks like this (GLUE keeps a trailing space)::

    sentence<TAB>label
    it 's a charming and often affecting journey . <TAB>1

and its test split ``index<TAB>sentence`` has no labels (GLUE scores submissions on its server). The release's other
quirks are read as they are: CoLA's train and dev files have no header (``GLUETask.columns``), MRPC's train and dev
headers start with a UTF-8 BOM, CoLA's dev file and the diagnostic set end without a final newline, STS-B's test file
has one column fewer (no score); tests/data_modules/test_glue_real.py reads every file of the real release.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from data_modules import sources
from data_modules.glue_tasks import GLUETask


def _hub_split(split: str) -> str:
    """Local file stem -> hub split name (``dev_matched`` -> ``validation_matched``)."""
    return split.replace("dev", "validation", 1) if split.startswith("dev") else split


@dataclass
class Examples:
    """The rows of one split: one or two texts each, labels (None for test splits) and GLUE indices."""

    texts: list[tuple[str, ...]]
    labels: Optional[list]  # class ids (int) or scores (float)
    index: list[int]


def read_tsv(path: str | Path, task: GLUETask, labelled: bool) -> Examples:
    """Read one split file of ``task``; every malformed line is a one-line error naming ``path:lineno``."""
    path = Path(path)
    lines = list(sources.read_lines(path, "GLUE layout"))
    if not lines or (len(lines) == 1 and not lines[0]):
        raise ValueError(f"{path}: empty file; expected the GLUE {task.name} layout")
    text_cols = task.text if labelled or task.test_text is None else task.test_text
    if labelled and task.columns is not None:  # CoLA train/dev: no header, fixed columns
        header, first = list(task.columns), 1
    else:
        header, first = lines[0].split("\t"), 2
        lines = lines[1:]
        need = [*text_cols, task.label] if labelled else [*text_cols]
        missing = [c for c in need if c not in header]
        if missing:
            raise ValueError(f"{path}:1: header {chr(9).join(header)!r} does not fit GLUE {task.name} "
                             f"(missing column(s) {', '.join(missing)}; expected columns {', '.join(need)})")
    if lines and not lines[-1]:  # the newline that ends the last row
        lines = lines[:-1]
    if not lines:
        raise ValueError(f"{path}: no examples after the header")
    text_at = [header.index(c) for c in text_cols]
    label_at = header.index(task.label) if labelled else None
    index_at = header.index(task.test_index) if not labelled and task.test_index in header else None
    texts, labels, index = [], [] if labelled else None, []
    for lineno, line in enumerate(lines, first):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ValueError(f"{path}:{lineno}: expected {len(header)} tab-separated fields "
                             f"({', '.join(header)}), got {len(fields)}")
        texts.append(tuple(sources.join_contractions(fields[i]) for i in text_at))
        if labelled:
            labels.append(_parse_label(fields[label_at], task, f"{path}:{lineno}"))
        if index_at is not None:
            try:
                index.append(int(fields[index_at]))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: index {fields[index_at]!r} is not an integer") from None
        else:
            index.append(lineno - first)
    return Examples(texts, labels, index)


def _parse_label(value: str, task: GLUETask, where: str):
    if task.is_regression:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: label {value!r} is not a number (task {task.name} is a regression)") from None
    if value not in task.labels:
        raise ValueError(f"{where}: label {value!r} is not one of {', '.join(task.labels)} (task {task.name})")
    return task.labels.index(value)


def hub_examples(ds, task: GLUETask, split: str, labelled: bool) -> Examples:
    """One split of the hub dataset (its labels are class ids already; test labels are -1 there)."""
    d = ds[_hub_split(split)]
    texts = [tuple(map(sources.join_contractions, row)) for row in zip(*(d[c] for c in task.hub_text))]
    labels = None
    if labelled:
        labels = [float(x) for x in d["label"]] if task.is_regression else [int(x) for x in d["label"]]
    return Examples(texts, labels, [int(i) for i in d["idx"]])


def load_hub(task: GLUETask):
    """``nyu-mll/glue`` from the hub, or a one-line error at once when it cannot be reached."""
    hint = f"pass --data.data_dir DIR holding the GLUE files ({', '.join(task.files)})"
    return sources.load_hub("nyu-mll/glue", task.name, hint)
