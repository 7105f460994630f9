"""Building a preprocessed cache directory so that it exists complete or not at all.

Both data modules write their cache the same way: into a temporary directory beside the final one, named by
host and pid, renamed onto the final name in one step when complete. A killed build leaves only a temporary
directory, which the next build on that host removes; several builders sharing a filesystem cannot race (the
first rename wins, the others use its result); a full disk or a read-only directory is a one-line error.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def log(tag: str, message: str) -> None:
    print(f"[{tag}] {message}", file=sys.stderr, flush=True)


def remove_stale_builds(final: Path, tag: str) -> None:
    """Delete temporary build dirs of ``final`` left by killed builders on this host (their pid is gone)."""
    host = socket.gethostname()
    for d in final.parent.glob(f".{final.name}.{host}.*"):
        try:
            pid = int(d.name.split(".")[3])
            os.kill(pid, 0)
        except ProcessLookupError:
            log(tag, f"removing {d} left by a killed build")
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


def discard(cache: Path) -> None:
    """Move a damaged cache aside (one rename: nobody sees it half-deleted), then delete it."""
    aside = cache.with_name(f".{cache.name}.{socket.gethostname()}.{os.getpid()}.damaged")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(cache, aside)
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def building(final: Path, tag: str, is_complete: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a temporary directory to write the cache into; on success it becomes ``final`` by one rename.

    ``is_complete(final)`` tells whether a directory another process renamed there first can be used.
    """
    cache_dir = final.parent
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_builds(final, tag)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{socket.gethostname()}.{os.getpid()}.", dir=cache_dir))
    except PermissionError as e:
        raise PermissionError(f"--data.cache_dir {cache_dir}: cannot write there ({e.strerror}: {e.filename}); "
                              f"pass a writable --data.cache_dir (a complete cache there would be used as is)") from None
    try:
        yield tmp
        try:
            os.rename(tmp, final)  # atomic: a cache dir exists complete or not at all
            log(tag, f"cache written to {final}")
        except OSError:
            if not is_complete(final):
                raise
            log(tag, f"another process built {final} first; using it")
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(e.errno, f"--data.cache_dir {cache_dir}: no space left on the device while writing the "
                                   f"{tag} cache (the partial build was removed); free space there or pass another "
                                   f"--data.cache_dir") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
