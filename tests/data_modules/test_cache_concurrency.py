"""Concurrent cache builders: Lightning runs ``prepare_data`` once per node, so nodes sharing a filesystem build
the same cache at the same time. With ``cache.build_once`` one of them builds and the others wait, then use it.

Real processes race here (``subprocess``: separate interpreters, as on separate nodes); each build appends its pid
to a marker file, so the number of builds is counted, not inferred. Deadlines are generous (a loaded machine):
they only turn a hang into a failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from data_modules import cache
from data_modules.cache import build_once, lock_path

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 300.0

# One builder process: argv = final, marker, gate, mode. The build appends its pid to the marker, then in mode
# "gate" waits until the gate file exists, in mode "start" waits for the gate before calling build_once (all
# racers leave the start line together), in mode "die" SIGKILLs itself mid-build, holding the lock.
BUILDER = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    from data_modules.cache import build_once

    final, marker, gate, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]

    def wait_for_gate():
        deadline = time.monotonic() + 300
        while not gate.exists():
            if time.monotonic() > deadline:
                sys.exit("gate never opened")
            time.sleep(0.01)

    def build(tmp):
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\\n")
        if mode == "gate":
            wait_for_gate()
        elif mode == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        elif mode == "start":
            time.sleep(0.5)  # long enough for every racer to reach the lock
        (tmp / "data.txt").write_text(f"built by {os.getpid()}")
        (tmp / "meta.json").write_text("{}")

    if mode == "start":
        wait_for_gate()
    built = build_once(final, "test", lambda d: None if (d / "meta.json").is_file() else "no meta.json", build)
    print(json.dumps({"built": built, "pid": os.getpid()}))
""")


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_builder_outlives_its_test():
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:  # a failed test left it waiting
            proc.kill()
            proc.wait()


def _popen(args: list[str], err: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with err.open("w") as f:  # the child writes through its own copy of the descriptor
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=f, text=True)
    _STARTED.append(proc)
    return proc


def _start(tmp_path: Path, name: str, mode: str, final: Path, gate: Path) -> tuple[subprocess.Popen, Path]:
    err = tmp_path / f"{name}.err"
    args = [sys.executable, "-c", BUILDER, str(final), str(tmp_path / "builds"), str(gate), mode]
    return _popen(args, err), err


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {DEADLINE_S:.0f} s waiting for {what}")
        time.sleep(0.05)


def _builds(tmp_path: Path) -> list[int]:
    marker = tmp_path / "builds"
    return [int(line) for line in marker.read_text().split()] if marker.exists() else []


def _result(proc: subprocess.Popen, err: Path) -> dict:
    out, _ = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err.read_text()
    return json.loads(out)


def _leftovers(cache_dir: Path, final: Path) -> list[str]:
    """Everything in the cache dir besides the cache: temporary or damaged copies, a lock file not cleaned up."""
    return sorted(p.name for p in cache_dir.iterdir() if p != final)


def test_a_second_builder_waits_for_the_first_and_uses_its_cache(tmp_path):
    cache_dir = tmp_path / "cache"
    final, gate = cache_dir / "demo-0123", tmp_path / "gate"
    first, first_err = _start(tmp_path, "first", "gate", final, gate)
    _wait_until(lambda: len(_builds(tmp_path)) == 1, "the first build to start")  # it holds the lock now
    second, second_err = _start(tmp_path, "second", "none", final, gate)
    # without a lock the second builds at once: the marker gets a second line instead of the waiting line
    _wait_until(lambda: "waiting" in second_err.read_text() or len(_builds(tmp_path)) > 1,
                "the second builder to wait or to build")
    gate.touch()
    one, two = _result(first, first_err), _result(second, second_err)
    assert _builds(tmp_path) == [one["pid"]], "more than one build"
    assert one["built"] is True and two["built"] is False
    assert (final / "data.txt").read_text() == f"built by {one['pid']}" and (final / "meta.json").is_file()
    waiting = [line for line in second_err.read_text().splitlines() if "waiting" in line]
    assert len(waiting) == 1 and str(final) in waiting[0] and "another process's build" in waiting[0]
    assert f"pid {one['pid']}" in waiting[0]  # the line names who builds
    assert "waiting" not in first_err.read_text()
    assert _leftovers(cache_dir, final) == []


def test_racers_released_together_build_once(tmp_path):
    """Four processes leave the start line together, past the "is it complete?" check before any has built."""
    cache_dir = tmp_path / "cache"
    final, gate = cache_dir / "demo-4567", tmp_path / "gate"
    racers = [_start(tmp_path, f"racer{i}", "start", final, gate) for i in range(4)]
    time.sleep(1.0)  # let them import and reach the start line (a late one finds the cache built, which is fine)
    gate.touch()
    results = [_result(p, err) for p, err in racers]
    assert len(_builds(tmp_path)) == 1, f"{len(_builds(tmp_path))} builds"
    assert sum(r["built"] for r in results) == 1
    builder = next(r["pid"] for r in results if r["built"])
    assert (final / "data.txt").read_text() == f"built by {builder}"
    assert _leftovers(cache_dir, final) == []


def test_a_killed_builder_leaves_no_stale_lock(tmp_path):
    cache_dir = tmp_path / "cache"
    final, gate = cache_dir / "demo-89ab", tmp_path / "gate"
    dead, dead_err = _start(tmp_path, "dead", "die", final, gate)
    dead.communicate(timeout=DEADLINE_S)
    assert dead.returncode == -signal.SIGKILL
    assert lock_path(final).is_file() and not final.exists()  # the file stays; the kernel dropped the lock
    assert any(name.startswith(f".{final.name}.{socket.gethostname()}.") for name in _leftovers(cache_dir, final))
    t0 = time.monotonic()
    after, after_err = _start(tmp_path, "after", "none", final, gate)
    result = _result(after, after_err)
    assert result["built"] is True and _builds(tmp_path) == [dead.pid, result["pid"]]
    assert "waiting" not in after_err.read_text()  # the dead holder's lock went with it
    assert time.monotonic() - t0 < DEADLINE_S
    assert (final / "data.txt").read_text() == f"built by {result['pid']}"
    assert _leftovers(cache_dir, final) == []  # the killed build's temporary directory and lock file are gone too


def test_a_complete_cache_is_used_without_locking_and_a_damaged_one_rebuilt(tmp_path, capsys):
    final = tmp_path / "cache" / "demo-cdef"
    calls = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "meta.json").write_text("{}")

    def problem(d: Path) -> str | None:
        return None if (d / "meta.json").is_file() else "no meta.json"

    final.mkdir(parents=True)
    (final / "half-written.npy").write_text("")  # a copy without meta.json: not complete
    assert build_once(final, "test", problem, build) is True and len(calls) == 1
    assert sorted(p.name for p in final.iterdir()) == ["meta.json"]
    assert f"{final}: no meta.json; rebuilding it" in capsys.readouterr().err
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]  # no lock file, no damaged copy left
    os.chmod(final.parent, 0o555)
    try:
        assert build_once(final, "test", problem, build) is False and len(calls) == 1
    finally:
        os.chmod(final.parent, 0o755)
    assert not lock_path(final).exists()  # a complete cache is used without writing a lock file


def test_a_filesystem_without_locks_still_builds(tmp_path, monkeypatch, capsys):
    import errno

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(cache.fcntl, "flock", no_locks)
    final = tmp_path / "cache" / "demo-f00d"
    build = lambda t: (t / "meta.json").write_text("{}")  # noqa: E731
    assert build_once(final, "test", lambda d: None if (d / "meta.json").is_file() else "no meta.json", build)
    err = capsys.readouterr().err
    assert "does not lock" in err and len([line for line in err.splitlines() if "does not lock" in line]) == 1


def test_two_glue_prepare_data_build_once(tmp_path):
    """The data module itself: two processes run GLUE ``prepare_data`` on the bundled SST-2 sample and one cache dir."""
    from data_modules.glue import SAMPLE_DIR
    from data_modules.glue_reading import read_tsv
    from data_modules.glue_tasks import TASKS
    from data_modules.tokenizer import train_tokenizer

    texts = [t[0] for t in read_tsv(SAMPLE_DIR / "train.tsv", TASKS["sst2"], labelled=True).texts]
    tok = tmp_path / "tokenizer.json"
    train_tokenizer(texts, 300, show_progress=False).save(str(tok))
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        import data_modules.glue as glue

        marker, gate, tokenize = Path(sys.argv[1]), Path(sys.argv[2]), glue._tokenize
        marked = []
        def counted(examples, tok):  # the first split tokenized marks a build; it then waits for the gate
            if not marked:
                with open(marker, "a") as f:
                    f.write(f"{{os.getpid()}} build\\n")
                marked.append(True)
            deadline = time.monotonic() + 300
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            return tokenize(examples, tok)
        glue._tokenize = counted
        dm = glue.GLUEDataModule("sst2", data_dir={str(SAMPLE_DIR)!r}, tokenizer={str(tok)!r},
                                 cache_dir={str(tmp_path / "cache")!r}, num_workers=0)
        dm.prepare_data()
        print(dm.cache_path(dm._load_tokenizer()))
    """)
    marker, gate = tmp_path / "builds", tmp_path / "gate"

    def start(name: str) -> tuple[subprocess.Popen, Path]:
        err = tmp_path / f"{name}.err"
        return _popen([sys.executable, "-c", script, str(marker), str(gate)], err), err

    def n_builds() -> int:
        return len(marker.read_text().splitlines()) if marker.exists() else 0

    first, first_err = start("first")
    _wait_until(lambda: n_builds() == 1, "the first build to start")
    second, second_err = start("second")
    _wait_until(lambda: "waiting" in second_err.read_text() or n_builds() > 1, "the second to wait or to build")
    gate.touch()
    outs = []
    for proc, err in ((first, first_err), (second, second_err)):
        out, _ = proc.communicate(timeout=DEADLINE_S)
        assert proc.returncode == 0, err.read_text()
        outs.append(out.strip())
    assert outs[0] == outs[1] and (Path(outs[0]) / "meta.json").is_file()
    assert n_builds() == 1, "the second prepare_data built the cache again"
