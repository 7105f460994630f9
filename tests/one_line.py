"""The one assertion behind every "a one-line error" test: it looks at the whole of what a command printed (stdout
and stderr), not only at its last line, so a traceback or a usage screen above the message fails the test."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
ERROR = re.compile(r"\berror\b", re.IGNORECASE)


def assert_one_line_error(output: str, *needles: str, max_lines: int = 1) -> str:
    """The error line of ``output``: it starts with ``lit-lm: error:`` and holds each of ``needles``; nothing after
    it but at most ``max_lines - 1`` lines, and no traceback or usage screen anywhere. Lines before the first line
    that says "error" (a seed notice, a progress line) are the run's own output and allowed."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback (most recent call last)" not in output, output
    assert not any(line.startswith("usage:") for line in lines), output
    first = next((i for i, line in enumerate(lines) if ERROR.search(line)), None)
    assert first is not None, f"no error line in:\n{output}"
    tail = lines[first:]
    assert len(tail) <= max_lines, f"{len(tail)} lines from the first error line:\n" + "\n".join(tail)
    message = tail[0]
    assert message.startswith("lit-lm: error: "), message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def run_main(args: list[str], capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
             cwd: Optional[Path] = None) -> tuple[int, str]:
    """``python -m lit_lm ARGS`` in this process: (exit code, everything written to stdout and stderr)."""
    from lit_lm.cli import main

    monkeypatch.chdir(cwd or REPO)
    monkeypatch.setattr(sys, "argv", ["lit-lm"])
    # The libraries' log handlers hold the sys.stderr of the test that first imported them, closed since:
    # point them at this test's, so the run's log lines land in the output checked here.
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)] + [logging.root]
    handlers = [h for lg in loggers for h in getattr(lg, "handlers", []) if type(h) is logging.StreamHandler]
    previous = [h.stream for h in handlers]
    for h in handlers:
        h.stream = sys.stderr  # not setStream(): it flushes the old, closed stream
    capfd.readouterr()
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        for h, stream in zip(handlers, previous):
            h.stream = stream
    captured = capfd.readouterr()
    return code, captured.out + captured.err


def cli_error(args: list[str], capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *needles: str,
              cwd: Optional[Path] = None) -> str:
    """Run the CLI, expect exit code 2 and a one-line error holding ``needles``; return that line."""
    code, output = run_main(args, capfd, monkeypatch, cwd)
    assert code == 2, f"exit code {code}:\n{output}"
    return assert_one_line_error(output, *needles)
