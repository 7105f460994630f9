"""The files the commands name by their place in the repository (``cli.yaml``, ``configs/quickstart.yaml``,
``data_modules/samples/wikitext``), found from any directory, in a checkout and after ``pip install .`` alike.

A wheel has no repository around it: pyproject.toml ships ``cli.yaml`` and ``configs/*.yaml`` as package data of
lit_lm (``lit_lm/_files/``) and the samples as package data of data_modules. A relative path that does not exist
where the command runs, and names one of these, is read from the installed copy; any other path is left as given,
so an error names what the user typed.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Optional, Sequence, Union

_CHECKOUT = Path(__file__).resolve().parents[1]  # the repository, when lit_lm is imported from one (editable)


def _installed(parts: tuple[str, ...]) -> Optional[Path]:
    """The installed copy of the repository path ``parts``, if the package ships it."""
    if parts[:2] == ("data_modules", "samples"):
        candidates = [files("data_modules").joinpath(*parts[1:])]
    elif parts[0] in ("cli.yaml", "configs"):
        candidates = [files("lit_lm").joinpath("_files", *parts), _CHECKOUT.joinpath(*parts)]
    else:
        return None
    # installed as files (not zipped): a real path, for jsonargparse and open()
    return next((Path(str(c)) for c in candidates if c.is_file() or c.is_dir()), None)


def find(path: Union[str, Path, None]) -> Optional[str]:
    """``path`` if it exists (relative to the working directory) or is absolute; else, for a path into what the
    package ships (``cli.yaml``, ``configs/...``, ``data_modules/samples/...``), its installed copy; else ``path``
    (None stays None: no path given)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or not p.parts:
        return str(path)
    installed = _installed(p.parts)
    return str(installed) if installed is not None else str(path)


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
