"""Shared fixtures. Real data (GLUE SST-2, WikiText) is found through one fixture, ``data_root``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """``$LIT_LM_DATA`` or ``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    root = Path(os.environ.get("LIT_LM_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set LIT_LM_DATA to the folder holding SST-2/ and wikitext-*)")
    return root
