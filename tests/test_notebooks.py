"""Each notebook is paired with a percent-format source (notebooks/<name>.py, jupytext) and committed without
outputs: the two must hold the same cells, or one of them was edited without ``jupytext --sync notebooks/0*.py``.
Modules whose name starts with ``_`` (notebooks/_runs.py) are code the notebooks import, not notebooks.
(Executing the notebooks is nbmake's job: ``python -m pytest --nbmake notebooks``.)"""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(p for p in NOTEBOOKS.glob("*.py") if not p.name.startswith("_"))


def cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_every_notebook_has_a_source():
    assert SOURCES, f"no notebook sources in {NOTEBOOKS}"
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [p.stem for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_notebook_matches_its_source_and_has_no_outputs(source: Path):
    notebook = source.with_suffix(".ipynb")
    text, nb = jupytext.read(source), jupytext.read(notebook)
    assert text.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert cells(nb) == cells(text), f"{notebook.name} differs from {source.name}: jupytext --sync notebooks/0*.py"
    assert nb.metadata["kernelspec"] == text.metadata["kernelspec"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs or c.execution_count for c in code), f"{notebook.name} has outputs; commit it without"
