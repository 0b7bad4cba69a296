"""Local OS errors in the session layer are never charged to models (issue #12, items 1 and 8).

Real files, real processes, real kernel errors:

* the session directory deleted, and the ``.lock`` swapped for a symlink, while the prompt is
  out: in this process, through ``run_embedded_turn`` and ``run_with_model_fallback``;
* EMFILE: ``RLIMIT_NOFILE`` lowered and the descriptor table filled in a subprocess, during
  the prompt;
* EFBIG: ``RLIMIT_FSIZE`` lowered in a subprocess with ``SIGXFSZ`` ignored, so that a write
  to the regular session file stops short at the limit and the next one fails with EFBIG;
* ENOSPC and EROFS: a real 64 KiB tmpfs mounted in a private mount namespace
  (``unshare -m``; the mount disappears with the process). The disk is filled, or the tmpfs
  remounted read-only, from inside the model call. Where mount namespaces are not available
  these tests are skipped (and fail in CI).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import model_fallback as mf
from model_fallback import events as ev
from model_fallback.session import SessionFile, SessionLockPathError, run_embedded_turn
from tests.conftest import IN_CI

pytestmark = pytest.mark.anyio

CHAIN = ["openai/gpt-4o", "anthropic/claude", "google/gemini"]


class Runs(ev.Observer):
    """Records how each run ended and its attempts."""

    def __init__(self) -> None:
        self.ended: list[ev.RunEnded] = []

    def run_ended(self, e: ev.RunEnded) -> None:
        self.ended.append(e)


def assert_local_abort(runs: Runs, err: BaseException, calls: list[str], expected_errno: int) -> None:
    """One attempt, ended as a coordination abort of kind session_io; the model was called once."""
    assert calls == CHAIN[:1], "a later candidate was called"
    (run,) = runs.ended
    assert run.outcome is ev.RunOutcome.COORDINATION_ABORT
    assert [(a.outcome, a.coordination_kind) for a in run.attempts] == [
        (mf.Outcome.COORDINATION_ABORT, "session_io")
    ]
    assert isinstance(err, mf.SessionIOError) and isinstance(err, OSError)
    assert mf.coordination_kind(err) == "session_io" and mf.classify_failure(err) is None
    assert err.errno == expected_errno
    assert isinstance(err.__cause__, OSError) and err.__cause__.errno == expected_errno


async def test_session_dir_deleted_during_the_prompt_is_session_io(tmp_path: Path) -> None:
    """The model answers, but the session directory (whose name contains "model") was deleted
    meanwhile: re-acquiring the lock fails with ENOENT. That is a local error: the run is a
    coordination abort of kind session_io, not model_not_found, and no other model is called."""
    d = tmp_path / "model-sessions"
    d.mkdir()
    sf = SessionFile(d / "s.jsonl", lock_timeout=2)
    calls: list[str] = []
    runs = Runs()

    async def run(c: mf.Candidate) -> str:
        calls.append(str(c))
        shutil.rmtree(d)
        return "a good answer"

    with pytest.raises(mf.SessionIOError) as info:
        await run_embedded_turn(sf, {"role": "user", "content": "hi"}, run, CHAIN, observers=[runs])
    assert_local_abort(runs, info.value, calls, errno.ENOENT)
    assert info.value.operation == "reacquire" and info.value.path == str(d / "s.jsonl")
    assert isinstance(info.value, FileNotFoundError)  # still what a missing directory always was


async def test_lock_swapped_for_a_symlink_during_the_prompt_is_session_io(tmp_path: Path) -> None:
    """A hand-written attempt through run_with_model_fallback: someone replaces the ``.lock``
    with a symlink while the prompt is out. The re-acquire refuses it (ELOOP) as a session_io
    coordination error; the second candidate is never called; the target is untouched."""
    path = tmp_path / "s.jsonl"
    target = tmp_path / "precious"
    target.write_text("precious")
    sf = SessionFile(path, lock_timeout=2)
    calls: list[str] = []
    runs = Runs()
    async with sf.locked() as held:

        async def attempt(c: mf.Candidate) -> str:
            async with held.released_for_prompt():
                calls.append(str(c))
                lock = Path(f"{path}.lock")
                lock.unlink()
                lock.symlink_to(target)
                return "a good answer"

        with pytest.raises(SessionLockPathError) as info:
            await mf.run_with_model_fallback(attempt, CHAIN, observers=[runs])
        # poisoned: the turn cannot go on writing
        with pytest.raises(SessionLockPathError):
            await held.append({"late": True})
    assert_local_abort(runs, info.value, calls, errno.ELOOP)
    assert target.read_text() == "precious"


PROMPT_FAULT = textwrap.dedent(
    """
    import errno, json, os, resource, subprocess, sys
    import anyio
    import model_fallback as mf
    from model_fallback import events as ev
    from model_fallback.session import SessionFile, run_embedded_turn

    CHAIN = ["openai/gpt-4o", "anthropic/claude", "google/gemini"]
    directory, fault = sys.argv[1], sys.argv[2]
    hog = []

    def emfile():
        # Lower the descriptor limit and fill the table: the next open() is EMFILE.
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        try:
            while True:
                hog.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc

    def enospc():
        # Fill the (64 KiB tmpfs) disk to the last byte.
        fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:
                os.write(fd, b"\\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        os.close(fd)

    def erofs():
        subprocess.run(["mount", "-o", "remount,ro", directory], check=True)

    class Runs:
        ended = []
        def run_ended(self, e):
            self.ended.append(e)

    async def main():
        sf = SessionFile(os.path.join(directory, "s.jsonl"), lock_timeout=2)
        calls, runs = [], Runs()

        async def run(c):
            calls.append(str(c))
            {"emfile": emfile, "enospc": enospc, "erofs": erofs}[fault]()
            return "a good answer"

        try:
            await run_embedded_turn(sf, {"role": "user", "content": "hi"}, run, CHAIN, observers=[runs])
            err = None
        except Exception as exc:
            err = exc
        for fd in hog:
            os.close(fd)
        (run,) = runs.ended
        print(json.dumps({
            "calls": calls,
            "outcome": str(run.outcome),
            "attempts": [[str(a.outcome), a.coordination_kind] for a in run.attempts],
            "error": type(err).__name__,
            "is_session_io": isinstance(err, mf.SessionIOError),
            "kind": mf.coordination_kind(err),
            "errno": getattr(err, "errno", None),
            "cause_errno": getattr(err.__cause__, "errno", None),
            "operation": getattr(err, "operation", None),
        }))

    anyio.run(main)
    """
)


def expect_local_abort(out: dict[str, Any], expected_errno: int) -> None:
    assert out["calls"] == CHAIN[:1]
    assert out["outcome"] == "coordination_abort", out
    assert out["attempts"] == [["coordination_abort", "session_io"]]
    assert out["is_session_io"] and out["kind"] == "session_io"
    assert out["errno"] == expected_errno and out["cause_errno"] == expected_errno


def run_json(cmd: list[str], timeout: float = 20) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_descriptors_exhausted_during_the_prompt_is_session_io(tmp_path: Path) -> None:
    """EMFILE for real: the model call lowers RLIMIT_NOFILE and fills the descriptor table, then
    answers. Re-opening the lock fails with EMFILE: a session_io abort after one attempt (before,
    every later candidate was charged an `unknown` failure and the run was exhausted)."""
    out = run_json([sys.executable, "-c", PROMPT_FAULT, str(tmp_path), "emfile"])
    expect_local_abort(out, errno.EMFILE)
    assert out["operation"] == "reacquire"


def in_tmpfs(tmp_path: Path, code: str, *args: str, size: str = "64k") -> list[str]:
    """The command running ``python -c code <mnt> args...`` in a private mount namespace with a
    fresh tmpfs of *size* at ``<tmp_path>/mnt``; skipped (failed in CI) where that is impossible."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    unshare = shutil.which("unshare")
    prefix = [unshare, "-m"] if os.geteuid() == 0 else [unshare, "-r", "-m"]
    probe = None
    if unshare:
        probe = subprocess.run(
            [*prefix, "mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    if probe is None or probe.returncode != 0:
        msg = f"cannot mount a tmpfs in a private mount namespace: {probe.stderr if probe else 'no unshare'}"
        if IN_CI:
            pytest.fail(f"CI=true and {msg}")
        pytest.skip(msg)
    assert unshare is not None
    script = 'mount -t tmpfs -o "size=$1" tmpfs "$2" && shift 2 && exec "$@"'
    return [*prefix, "sh", "-c", script, "sh", size, str(mnt), sys.executable, "-c", code, str(mnt), *args]


def test_disk_full_during_the_prompt_is_session_io(tmp_path: Path) -> None:
    """ENOSPC for real: the model call fills a 64 KiB tmpfs, then answers. Re-acquiring the lock
    cannot record its holder (the metadata write is ENOSPC): a session_io abort, one attempt."""
    out = run_json(in_tmpfs(tmp_path, PROMPT_FAULT, "enospc"))
    expect_local_abort(out, errno.ENOSPC)
    assert out["operation"] == "reacquire"


def test_read_only_filesystem_during_the_prompt_is_session_io(tmp_path: Path) -> None:
    """EROFS for real: the model call remounts the tmpfs read-only, then answers. Re-opening the
    lock for writing fails with EROFS: a session_io abort, one attempt."""
    out = run_json(in_tmpfs(tmp_path, PROMPT_FAULT, "erofs"))
    expect_local_abort(out, errno.EROFS)
    assert out["operation"] == "reacquire"


APPEND_FAULT = textwrap.dedent(
    """
    import errno, json, os, resource, signal, sys
    import anyio
    import model_fallback as mf
    from model_fallback.session import SessionFile

    directory, fault = sys.argv[1], sys.argv[2]
    path = os.path.join(directory, "s.jsonl")
    filler = os.path.join(directory, "filler")
    out = {}

    def fill_disk():
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        for chunk in (4096, 1):
            try:
                while True:
                    os.write(fd, b"\\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        os.close(fd)

    async def main():
        sf = SessionFile(path, lock_timeout=2)
        await sf.append({"n": 1, "pad": "a" * 2000})
        size = os.path.getsize(path)
        async with sf.locked() as held:
            if fault == "efbig":
                # Writes past size + 100 bytes stop short at the limit; the next one is EFBIG.
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
            else:
                fill_disk()
            try:
                await held.append({"n": 2, "pad": "b" * 20000})
                out["failed"] = None
            except OSError as exc:
                out["failed"] = [type(exc).__name__, exc.errno, mf.coordination_kind(exc)]
            out["size_kept"] = os.path.getsize(path) == size
            # Still at the limit / still full: a short line fits where the partial one was.
            await held.append({"n": 3})
            # the condition goes away: later appends work, in the same holder and in others
            if fault == "efbig":
                resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            else:
                os.unlink(filler)
            await held.append({"n": 4})
        await sf.append({"n": 5})
        t = await sf.read()
        out["entries"] = [e["n"] for e in t]
        out["clean"] = t.clean
        print(json.dumps(out))

    anyio.run(main)
    """
)


def expect_rolled_back(out: dict[str, Any], expected_errno: int) -> None:
    assert out["failed"] == ["SessionIOError", expected_errno, "session_io"], out
    assert out["size_kept"], "the failed append left a partial line behind"
    assert out["entries"] == [1, 3, 4, 5] and out["clean"], out


def test_append_cut_short_by_efbig_is_rolled_back(tmp_path: Path) -> None:
    """EFBIG for real (RLIMIT_FSIZE, SIGXFSZ ignored): the write stops short at the limit and the
    next write fails. The partial line is truncated away and the error is a session_io error; a
    short line still fits under the limit, and once it is lifted appends go on; the transcript
    reads clean."""
    out = run_json([sys.executable, "-c", APPEND_FAULT, str(tmp_path), "efbig"])
    expect_rolled_back(out, errno.EFBIG)


def test_append_cut_short_by_a_full_disk_is_rolled_back(tmp_path: Path) -> None:
    """ENOSPC for real (a full 64 KiB tmpfs): the 20 KB line fills the last page and fails. The
    partial line is truncated away, so a short line still fits in the disk's last page; after
    space is freed, appends go on; the transcript is clean."""
    out = run_json(in_tmpfs(tmp_path, APPEND_FAULT, "enospc"))
    expect_rolled_back(out, errno.ENOSPC)


FAILED_APPEND_IN_PROMPT = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    import anyio
    import model_fallback as mf
    from model_fallback.session import SessionFile

    async def main(path):
        sf = SessionFile(path, lock_timeout=2)
        out = {}
        async with sf.locked() as held:
            await held.append({"n": 1, "pad": "a" * 2000})
            async with held.released_for_prompt():
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 100, resource.RLIM_INFINITY))
                try:
                    await held.append({"n": 2, "pad": "b" * 20000})
                except mf.SessionIOError as exc:
                    out["failed"] = exc.errno
                resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            await held.append({"n": 3})
        out["entries"] = [e["n"] for e in await sf.read()]
        print(json.dumps(out))

    anyio.run(main, sys.argv[1])
    """
)


def test_own_failed_append_during_the_prompt_is_not_a_takeover(tmp_path: Path) -> None:
    """This holder's own append fails (EFBIG) while the prompt is out and is rolled back; the
    rollback moved the file's mtime, but it was this holder's doing: the fence must not call it
    a takeover, and the turn goes on."""
    out = run_json([sys.executable, "-c", FAILED_APPEND_IN_PROMPT, str(tmp_path / "s.jsonl")])
    assert out == {"failed": errno.EFBIG, "entries": [1, 3]}


HELD_EMFILE = textwrap.dedent(
    """
    import errno, json, os, resource, sys
    import anyio
    import model_fallback as mf
    from model_fallback.session import SessionFile

    async def main(path):
        sf = SessionFile(path, lock_timeout=2)
        out, hog = {}, []
        async with sf.locked() as held:
            await held.append({"n": 1})
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            try:
                while True:
                    hog.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE, exc
            for name, op in (("read", held.read), ("append", lambda: held.append({"n": 2}))):
                try:
                    await op()
                    out[name] = "ok"
                except mf.SessionIOError as exc:
                    out[name] = [exc.operation, exc.errno, mf.coordination_kind(exc)]
            for fd in hog:
                os.close(fd)
            # a failed read or append does not poison the turn: the lock is still held
            await held.append({"n": 3})
            out["entries"] = [e["n"] for e in await held.read()]
        print(json.dumps(out))

    anyio.run(main, sys.argv[1])
    """
)


def test_read_and_append_out_of_descriptors_are_session_io(tmp_path: Path) -> None:
    """EMFILE while holding the lock: read() and append() raise SessionIOError naming the
    operation (not a raw OSError); once descriptors are free the same holder goes on."""
    out = run_json([sys.executable, "-c", HELD_EMFILE, str(tmp_path / "s.jsonl")])
    assert out == {
        "read": ["read", errno.EMFILE, "session_io"],
        "append": ["append", errno.EMFILE, "session_io"],
        "entries": [1, 3],
    }


async def test_parent_that_is_not_a_directory_fails_before_any_model_call(tmp_path: Path) -> None:
    """A path whose parent is a regular file is the caller's input: constructing the SessionFile
    does no I/O (it cannot fail on the filesystem), and the first operation raises a
    SessionIOError (ENOTDIR) before any model is called and before any run starts."""
    parent = tmp_path / "not-a-dir"
    parent.write_text("")
    sf = SessionFile(parent / "s.jsonl", lock_timeout=2)
    calls: list[str] = []
    runs = Runs()

    async def run(c: mf.Candidate) -> str:
        calls.append(str(c))
        return "answer"

    with pytest.raises(mf.SessionIOError) as info:
        await run_embedded_turn(sf, {"role": "user", "content": "hi"}, run, CHAIN, observers=[runs])
    assert info.value.errno == errno.ENOTDIR and info.value.operation == "acquire"
    assert calls == [] and runs.ended == []
    with pytest.raises(mf.SessionIOError):
        await sf.append({"n": 1})
    with pytest.raises(mf.SessionIOError):
        await sf.read()
