"""The samples data_modules ships (``data_modules/samples/``: a tiny corpus in WikiText's release layout and a small
sentiment set in SST-2's), named by their place in the repository and found from any directory, in a checkout and
after ``pip install .`` alike.

A wheel has no repository around it: pyproject.toml ships the samples as package data of data_modules. A relative
path that does not exist where the command runs, and names one of them, is read from the installed copy; any other
path is left as given, so an error names what the user typed. lit_lm.resources finds ``cli.yaml`` and ``configs/``
by the same rule (``find`` with its own ``installed``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Optional, Union


def installed_sample(parts: tuple[str, ...]) -> Optional[Path]:
    """The installed copy of the repository path ``parts`` when it names a sample (``data_modules/samples/...``)."""
    if parts[:2] != ("data_modules", "samples"):
        return None
    copy = files("data_modules").joinpath(*parts[1:])
    # installed as files (not zipped): a real path, for jsonargparse and open()
    return Path(str(copy)) if copy.is_file() or copy.is_dir() else None


def find(path: Union[str, Path, None],
         installed: Callable[[tuple[str, ...]], Optional[Path]] = installed_sample) -> Optional[str]:
    """``path`` if it exists (relative to the working directory) or is absolute; else the installed copy of what it
    names (``installed``: the samples); else ``path`` (None stays None: no path given)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or not p.parts:
        return str(path)
    copy = installed(p.parts)
    return str(copy) if copy is not None else str(path)
