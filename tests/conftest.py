"""Shared fixtures. Real data (GLUE SST-2, WikiText) is found through one fixture, ``data_root``; the HF reference
(``transformers``) through ``require_transformers``. CI fails when a test skipped for want of either."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

HF_REFERENCE_MISSING = "transformers not installed (the HF reference)"
"""The skip reason of every test that needs HuggingFace ``transformers``; .ci/run fails when it appears in the log."""


def require_transformers() -> Any:
    """``transformers`` (the HF reference the parity, export and config tests compare with), or skip the test or
    module with the fixed reason above. Only a missing package skips: one that is installed but fails to import is
    a broken environment and raises."""
    __tracebackhide__ = True  # the skip summary names the test's line, not this one
    return pytest.importorskip("transformers", reason=HF_REFERENCE_MISSING, exc_type=ModuleNotFoundError)


@pytest.fixture(scope="session")
def transformers() -> Any:
    """``require_transformers()`` as a fixture."""
    return require_transformers()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """``$LIT_LM_DATA`` or ``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    root = Path(os.environ.get("LIT_LM_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set LIT_LM_DATA to the folder holding SST-2/ and wikitext-*)")
    return root


@pytest.fixture(scope="session")
def wikitext2(data_root, tmp_path_factory) -> dict:
    """Data-module arguments for real WikiText-2 with one cache shared by the session's tests."""
    src = data_root / "wikitext-2"
    if not (src / "wiki.train.tokens").is_file():
        pytest.skip(f"real data not found: {src} has no wiki.train.tokens")
    cache = tmp_path_factory.mktemp("wikitext2-cache")
    return dict(data_dir=str(src), cache_dir=str(cache), vocab_size=8000, tokenizer_sample_bytes=2_000_000)


@pytest.fixture(scope="session")
def glue_root(data_root, tmp_path_factory) -> Path:
    """The real GLUE release tree, ``data_root/glue`` (CoLA/, SST-2/, MRPC/, ..., diagnostic/). Its SST-2 is a
    symbolic link to ../SST-2; where the copy stored that link as a plain file holding its target (as git does
    without symlink support), the tree is rebuilt of links in a temporary folder, so the tests see the layout
    ``lit-lm glue --data_dir`` expects either way (tests/data_modules/test_glue_real.py checks the entry itself)."""
    root = data_root / "glue"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (the GLUE release tree)")
    if (root / "SST-2").is_dir():
        return root
    tree = tmp_path_factory.mktemp("glue")
    for entry in root.iterdir():
        stub = entry.name == "SST-2" and entry.is_file()
        (tree / entry.name).symlink_to((root / entry.read_text().strip()) if stub else entry)
    return tree


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> Path:
    """One short quickstart pretraining through the real CLI, shared by the tests that need a checkpoint."""
    from lit_lm.cli import main

    out = tmp_path_factory.mktemp("runs")
    cwd = os.getcwd()
    os.chdir(REPO)  # the quickstart config names the bundled corpus relative to the checkout
    try:
        main(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml",
              "--trainer.max_steps=30", "--trainer.val_check_interval=10", "--trainer.enable_progress_bar=false",
              f"--trainer.logger.init_args.save_dir={out}", f"--data.cache_dir={out / 'cache'}"])
    finally:
        os.chdir(cwd)
    return out / "quickstart"


@pytest.fixture
def one_thread():
    """Tiny matmuls on one thread: a second only adds synchronisation, and these machines are shared. Modules of
    tiny models use it for every test (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def save_checkpoint(module: Any, path: Path) -> Path:
    """A checkpoint of ``module`` written by Lightning itself (with the module's on_save_checkpoint), without
    training: what a tiny test needs as a lit-lm .ckpt."""
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    """A 600-token WordPiece tokenizer trained on the bundled SST-2 sample (tokenizer.json)."""
    from data_modules.glue import SAMPLE_DIR
    from data_modules.glue_reading import read_tsv
    from data_modules.glue_tasks import TASKS
    from data_modules.tokenizer import train_tokenizer

    texts = [t[0] for t in read_tsv(SAMPLE_DIR / "train.tsv", TASKS["sst2"], labelled=True).texts]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(texts, 600, show_progress=False).save(str(path))
    return path
