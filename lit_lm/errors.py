"""One-line errors: what lit-lm shows for bad input, reduced to one line here, for every command.

A user's mistake is reported as ``lit-lm: error: <one line naming the file, row or flag and what was expected>``, never
as a traceback or a usage screen. The libraries underneath speak otherwise (jsonargparse: a validation tree; argparse:
a usage screen and ``sys.exit``); this module turns each into its line. It imports nothing of lit-lm, so the command
line (lit_lm.cli) and the GLUE harness (lit_lm.glue) both use it without importing each other.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

PREFIX = "lit-lm: error: "
"""How every error line starts (tests/one_line.py asserts it)."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as lit-lm's error line on stderr and exit (2: bad input, as argparse; 1: a run failed)."""
    print(PREFIX + message, file=sys.stderr, flush=True)
    sys.exit(code)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are a ValueError of one line (printed by lit_lm.cli.main), not a usage
    screen and an exit from inside the parser."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(f"{message} (see {self.prog} --help)")


def config_error(message: str) -> str:
    """jsonargparse's many-line validation report, reduced to the option and the specific complaint."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return "invalid arguments"
    # a link's compute_fn (e.g. num_labels of --data.task_name) raised one of our one-line errors
    linked = re.search(r"Call to compute_fn of link .* failed: (--.*)", lines[0])
    if linked:
        return linked.group(1)
    specific = re.compile(r"not accepted|not expected|[Uu]nrecognized|[Uu]nknown|Expected a (?!<class 'NoneType'>)|"
                          r"does not exist|not a valid|must be|invalid|No action for")
    detail = next((line.removeprefix("- ") for line in lines[1:] if specific.search(line)), None)
    head = lines[0].rstrip(":")
    # a nested report ('Parser key "data": ... Parser key "variant": ...'): name the option as the user types it
    keys = re.findall(r'Parser key "([^"]+)"', str(message))
    if detail and len(keys) > 1:
        given = re.findall(r"Given value: (.*)", str(message))
        value = f" (given {given[0]!r})" if given and not given[0].startswith(("Namespace(", "NestedArg(")) else ""
        return f"--{'.'.join(keys)}: {detail}{value}"
    return f"{head}: {detail}" if detail and detail != head else head


_UNION_REPORT = "Does not validate against any of the Union subtypes"


def user_error(e: BaseException) -> str:
    """The message of an error to show as it is. jsonargparse wraps an error raised while it builds the model or the
    data module (``Optional[LightningModule]``) in its many-line union report, with the real error as the cause."""
    while _UNION_REPORT in str(e) and e.__cause__ is not None:
        e = e.__cause__
    message = str(e)
    if _UNION_REPORT in message:  # no cause kept: the report lists one error per union member, ours first
        errors = [line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- ")]
        message = next((m for m in errors if not m.startswith("Expected a <class 'NoneType'>")), message)
    return " ".join(message.splitlines())


def one_line(e: BaseException) -> str:
    """Any error as one short line (the GLUE harness's report of a failed run): a parse error as ``config_error``
    has it, anything else its first line."""
    if isinstance(e, argparse.ArgumentError):
        return config_error(str(e))
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
