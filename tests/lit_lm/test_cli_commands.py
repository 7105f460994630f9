"""``lit-lm --help``: every command listed with its line of help (from the one table, lit_lm.cli.COMMANDS), each
command's own help reachable, an unknown command one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from one_line import REPO, cli_error, run_main

from lit_lm.cli import COMMANDS
from lit_lm.lightning_cli import LitLMCLI


def _listed(output: str) -> dict[str, str]:
    """The command lines of the listing: name -> its help."""
    rows = [line.split(None, 1) for line in output.splitlines() if line.startswith("  ") and line.strip()]
    return {row[0]: row[1] for row in rows if len(row) == 2}


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["-h"], 0), ([], 2)])
def test_help_lists_every_command_with_its_line(args, code, capfd, monkeypatch):
    exit_code, out = run_main(args, capfd, monkeypatch)
    assert exit_code == code, out
    assert _listed(out) == {name: command.help for name, command in COMMANDS.items()}, out
    # lit-lm's own and LightningCLI's (whatever Lightning's version has), in the table and so in the listing
    assert {"glue", "export", "config", "fit", "predict"} <= set(_listed(out))
    assert set(LitLMCLI.subcommands()) <= set(_listed(out))
    assert "lit-lm COMMAND --help" in out and "lit-lm fit --help" in out  # how to get each one's help


def test_python_m_lit_lm_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "lit_lm", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert list(_listed(out.stdout)) == list(COMMANDS)


@pytest.mark.parametrize("name, needles", [
    ("glue", ["usage: lit-lm glue", "--pretrained", "--tasks"]),
    ("export", ["usage: lit-lm export", "checkpoint", "out_dir"]),
    ("config", ["usage: lit-lm config", "--config.n_layer"]),
    ("fit", ["usage: lit-lm [options] fit", "--trainer.max_steps", "--model", "--data"]),  # LightningCLI's full help
])
def test_each_command_has_its_help(name, needles, capfd, monkeypatch):
    code, out = run_main([name, "--help"], capfd, monkeypatch)
    assert code == 0, out
    for needle in needles:
        assert needle in out, needle


def test_unknown_command_is_one_line(capfd, monkeypatch):
    cli_error(["fitt", "--config", "cli.yaml"], capfd, monkeypatch, "unknown command 'fitt'",
              f"expected one of {', '.join(COMMANDS)}", "lit-lm --help")


def test_export_without_its_arguments_is_one_line(capfd, monkeypatch):
    cli_error(["export"], capfd, monkeypatch, "the following arguments are required: checkpoint, out_dir",
              "see lit-lm export --help")
