"""Building a preprocessed cache directory so that it exists complete or not at all, and once.

Both data modules write their cache the same way: into a temporary directory beside the final one, named by
host and pid, renamed onto the final name in one step when complete (``building``). A killed build leaves only a
temporary directory, which the next build on that host removes; a full disk or a read-only directory is a
one-line error.

Lightning calls ``prepare_data`` once per node, so nodes sharing a filesystem reach the build together.
``build_once`` makes them take turns: the first takes an exclusive lock beside the cache and builds; the others
say in one line that they wait for it, then find the cache complete and use it. Builders that call ``building``
without ``build_once`` cannot corrupt the cache either (the first rename wins, the others use its result), but
each does the whole build.
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
from typing import Optional

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent builders there each build, and the first rename wins
    fcntl = None  # type: ignore[assignment]

# flock errors meaning "this filesystem does not lock" (some FUSE and Lustre mounts), not "someone holds it"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF}


def log(tag: str, message: str) -> None:
    print(f"[{tag}] {message}", file=sys.stderr, flush=True)


def _not_writable(cache_dir: Path, e: OSError) -> PermissionError:
    return PermissionError(f"--data.cache_dir {cache_dir}: cannot write there ({e.strerror}: {e.filename}); "
                           f"pass a writable --data.cache_dir (a complete cache there would be used as is)")


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
        raise _not_writable(cache_dir, e) from None
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


def lock_path(final: Path) -> Path:
    """The lock file of the cache ``final``: beside it, so every host that sees the cache sees the lock."""
    return final.parent / f".{final.name}.lock"


@contextmanager
def cache_lock(final: Path, tag: str) -> Iterator[None]:
    """Hold the exclusive lock on building ``final``, waiting (and saying so in one line) while another process,
    on this host or another one sharing the filesystem, holds it.

    An ``fcntl.flock`` on ``lock_path(final)``: the kernel, or on NFS the server's lock manager, drops it when its
    holder exits, killed or not, so a crashed build leaves no stale lock behind (only the file, which the next
    holder takes over). The holder deletes the file before it lets go, so the cache dir keeps only caches; a waiter
    that then gets the lock on the deleted file sees that the path now names another file (or none) and locks that
    one instead. Where the filesystem does not lock (some FUSE and Lustre mounts), the build goes on unlocked after
    one line saying so. The lock only saves work: the build itself stays safe without it (``building``).
    """
    if fcntl is None:
        yield
        return
    path = lock_path(final)
    said_waiting, locked = False, True
    while True:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise _not_writable(final.parent, e) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not said_waiting:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                log(tag, f"waiting for another process's build of {final} ({holder} holds {path})")
                said_waiting = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                os.close(fd)
                raise
            locked = False
            log(tag, f"{path}: this filesystem does not lock ({e.strerror}); building without waiting for others")
            break
        try:
            mine = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            mine = False
        if mine:
            break
        os.close(fd)  # the previous holder deleted this file on its way out: lock the one the path names now
    try:
        if locked:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()}".encode(), 0)  # named in the waiters' line
        yield
    finally:
        if locked:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.close(fd)  # releases the lock


def build_once(final: Path, tag: str, problem: Callable[[Path], Optional[str]], build: Callable[[Path], None]) -> bool:
    """Build the cache ``final`` by ``build(tmp)`` (which writes the cache into ``tmp``) unless it is complete;
    True when this process built it. ``problem(final)`` says why ``final`` cannot be used (None: it is complete).

    One builder at a time (``cache_lock``): a process that waited for another's build checks again and uses that
    cache instead of building its own. A complete cache is used without taking the lock, so a read-only cache dir
    holding one works. A ``final`` that is not complete (a killed copy, a damaged disk) is discarded, under the
    lock, and rebuilt, with one line saying what was wrong with it.
    """
    if problem(final) is None:
        return False
    with cache_lock(final, tag):
        why = problem(final)
        if why is None:
            log(tag, f"another process built {final}; using it")
            return False
        if final.exists():
            log(tag, f"{final}: {why}; rebuilding it")
            discard(final)
        with building(final, tag, lambda d: problem(d) is None) as tmp:
            build(tmp)
    return True
