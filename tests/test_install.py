"""``pip install .`` (not editable) is a working install: from a directory outside the checkout, ``lit-lm --help``,
``lit-lm glue --help`` and the quickstart config run, with the configs and the bundled sample read from the
installed package (lit_lm.resources). About 30 s.

The package goes into a fresh virtual environment that sees this interpreter's site-packages through a .pth file
(torch, Lightning ... are not installed again: no network), with --no-build-isolation (setuptools from here too).
A .pth line adds a directory, not the .pth files in it, so the checkout's editable install stays out of sight.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "LIT_LM_DEBUG")}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ directory of a fresh environment holding lit-lm installed from a copy of the checkout."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # a copy, so the build leaves no build/ or egg-info behind in the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "notebooks",
        "benchmarks"))
    wheel_dir = tmp / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                  "-w", str(wheel_dir), str(src)], cwd=tmp)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheel_dir.glob("lit_lm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # every package of the source tree is in the wheel (pyproject.toml lists them by name)
    packages = {str(p.parent.relative_to(REPO)) for top in ("lit_lm", "data_modules") for p in (REPO / top).rglob("__init__.py")}
    assert {f"{p}/__init__.py" for p in packages} <= names
    assert {"lit_lm/_files/cli.yaml", "lit_lm/_files/configs/quickstart.yaml",
            "data_modules/samples/wikitext/wiki.train.tokens"} <= names

    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp).stdout.strip()
    (Path(purelib) / "project_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
               cwd=tmp)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return env_dir / "bin"


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """An empty working directory outside the checkout."""
    assert REPO not in tmp_path.parents
    return tmp_path


def test_the_installed_package_is_the_one_imported(installed, elsewhere):
    out = _run([str(installed / "python"), "-c", "import lit_lm, data_modules; print(lit_lm.__file__); "
                "print(data_modules.__file__)"], cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert all(Path(line).is_relative_to(installed.parent) for line in out.stdout.splitlines()), out.stdout


def test_help_and_glue_help(installed, elsewhere):
    out = _run([str(installed / "lit-lm"), "--help"], cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert all(command in out.stdout for command in ("fit", "validate", "predict", "glue", "export", "config"))
    out = _run([str(installed / "lit-lm"), "glue", "--help"], cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert "--pretrained" in out.stdout and "--config" in out.stdout
    # the default recipe is the installed copy, a file that exists here
    default = out.stdout.split("the fine-tuning recipe (default:", 1)[1].split(")", 1)[0].split()
    assert Path("".join(default)).is_file(), out.stdout


def test_quickstart_from_outside_the_checkout(installed, elsewhere):
    """The quickstart command as the README gives it, named from a directory without cli.yaml, configs/ or
    data_modules/: the configs and the bundled corpus come from the package."""
    out = _run([str(installed / "lit-lm"), "fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml",
                "--trainer.max_steps", "2", "--trainer.limit_val_batches", "2", "--data.num_workers", "0",
                "--trainer.enable_progress_bar", "false"], cwd=elsewhere)
    assert out.returncode == 0, out.stdout + out.stderr
    ckpt = elsewhere / "runs" / "quickstart" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), out.stdout + out.stderr
    assert "pretraining" in out.stdout and "2 steps" in out.stdout, out.stdout  # the summary line of the run
    import torch

    assert torch.load(ckpt, weights_only=True)["global_step"] == 2
