"""The files the commands name by their place in the repository (``cli.yaml``, ``configs/quickstart.yaml``,
``data_modules/samples/wikitext``), found from any directory, in a checkout and after ``pip install .`` alike.

A wheel has no repository around it: pyproject.toml ships ``cli.yaml`` and ``configs/*.yaml`` as package data of
lit_lm (``lit_lm/_files/``) and the samples as package data of data_modules. The rule, and the samples' lookup, are
data_modules.resources': a relative path that does not exist where the command runs, and names one of these, is
read from the installed copy; any other path is left as given, so an error names what the user typed.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Optional, Sequence, Union

from data_modules import resources as data_resources

_CHECKOUT = Path(__file__).resolve().parents[1]  # the repository, when lit_lm is imported from one (editable)


def _installed(parts: tuple[str, ...]) -> Optional[Path]:
    """The installed copy of the repository path ``parts``, if lit_lm (``cli.yaml``, ``configs/``) or data_modules
    (the samples) ships it."""
    if parts[0] not in ("cli.yaml", "configs"):
        return data_resources.installed_sample(parts)
    candidates = [files("lit_lm").joinpath("_files", *parts), _CHECKOUT.joinpath(*parts)]
    # installed as files (not zipped): a real path, for jsonargparse and open()
    return next((Path(str(c)) for c in candidates if c.is_file() or c.is_dir()), None)


def find(path: Union[str, Path, None]) -> Optional[str]:
    """``path`` if it exists (relative to the working directory) or is absolute; else, for a path into what the
    packages ship (``cli.yaml``, ``configs/...``, ``data_modules/samples/...``), its installed copy; else ``path``
    (None stays None: no path given)."""
    return data_resources.find(path, _installed)


def config_args(args: Sequence[str]) -> list[str]:
    """A command line with each ``--config FILE`` (``-c FILE``, ``--config=FILE``) passed through :func:`find`."""
    out, after_flag = [], False
    for arg in args:
        if after_flag:
            arg = find(arg)
        elif arg.startswith("--config="):
            arg = "--config=" + find(arg.removeprefix("--config="))
        after_flag = arg in ("--config", "-c")
        out.append(arg)
    return out
