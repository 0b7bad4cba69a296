"""The transcript file's edges (issue #12, items 5, 10 and 15 a/b/d): real files, FIFOs,
symlinks, chmod/utime, and a subprocess wherever the old behaviour was to hang, so that a hang
fails the test instead of freezing the suite."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import model_fallback as mf
from model_fallback.session import SessionFile, SessionLockPathError

pytestmark = pytest.mark.anyio


# --- item 10: read() survives a pathological line --------------------------------------


async def test_a_100000_deep_line_is_an_invalid_line_not_a_crash(tmp_path: Path) -> None:
    """One line nested 100 000 deep (json raises RecursionError on it) is reported like any other
    invalid line; the entries around it are returned."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=2)
    await sf.append({"n": 1})
    with open(path, "ab") as f:
        f.write(b"[" * 100_000 + b"]" * 100_000 + b"\n")
        f.write(b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"\n")
    await sf.append({"n": 2})
    t = await sf.read()
    assert t == [{"n": 1}, {"n": 2}]
    assert t.invalid_lines == (2, 3) and t.torn_tail is None
    async with sf.locked() as held:
        assert await held.read() == [{"n": 1}, {"n": 2}]


# --- item 15a: held.read() verifies a pending fence -------------------------------------


async def test_held_read_after_a_cancelled_prompt_verifies_the_pending_fence(tmp_path: Path) -> None:
    """After a cancelled prompt the fence is pending; another SessionFile changed the file
    meanwhile. held.read() must verify the fence like append() does: a takeover, not the other
    writer's entries served as if they were this turn's."""
    path = tmp_path / "s.jsonl"
    sf, other = SessionFile(path, lock_timeout=2), SessionFile(path, lock_timeout=2)
    async with sf.locked() as held:
        await held.append({"by": "me"})
        with anyio.move_on_after(0.2):
            async with held.released_for_prompt():
                await other.append({"by": "other"})
                await anyio.sleep(60)
        with pytest.raises(mf.SessionTakeoverError):
            await held.read()
        with pytest.raises(mf.SessionTakeoverError):  # and the session stays poisoned
            await held.append({"by": "me"})


async def test_held_read_after_a_cancelled_prompt_without_change_reads(tmp_path: Path) -> None:
    """The same with nobody else writing: held.read() verifies, finds nothing, reads."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=2)
    async with sf.locked() as held:
        await held.append({"n": 1})
        with anyio.move_on_after(0.1):
            async with held.released_for_prompt():
                await anyio.sleep(60)
        assert await held.read() == [{"n": 1}]
        await held.append({"n": 2})
    assert await sf.read() == [{"n": 1}, {"n": 2}]


# --- item 15b: metadata-only changes are not takeovers ----------------------------------


async def test_chmod_and_atime_only_changes_are_not_takeovers(tmp_path: Path) -> None:
    """A chmod, a chown to the same owner and an atime-only utime during the prompt change the
    file's ctime but not its content: no takeover."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=2)
    async with sf.locked() as held:
        await held.append({"n": 1})
        async with held.released_for_prompt():
            before = os.stat(path)
            os.chmod(path, 0o600)
            os.chown(path, before.st_uid, before.st_gid)
            os.utime(path, ns=(before.st_atime_ns + 10**9, before.st_mtime_ns))
            assert os.stat(path).st_ctime_ns != before.st_ctime_ns
        await held.append({"n": 2})
    assert [e["n"] for e in await sf.read()] == [1, 2]


async def test_same_size_rewrite_is_still_a_takeover(tmp_path: Path) -> None:
    """Dropping ctime must not hide content changes: an in-place rewrite of the same size (same
    inode, new mtime) is still a takeover."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=2)
    async with sf.locked() as held:
        await held.append({"n": 1})
        with pytest.raises(mf.SessionTakeoverError):
            async with held.released_for_prompt():
                with open(path, "r+b") as f:
                    f.write(b'{"n":7}')


# --- item 15d: entries that JSON cannot round-trip --------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_non_standard_floats_are_refused_before_any_write(tmp_path: Path, value: float) -> None:
    """NaN and infinities would be written as non-standard JSON (NaN, Infinity) that other JSON
    readers reject: a clear ValueError, and nothing is written."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=2)
    await sf.append({"n": 1})
    size = path.stat().st_size
    with pytest.raises(ValueError, match="NaN or Infinity"):
        await sf.append({"n": 2, "score": [1.0, value]})
    async with sf.locked() as held:
        with pytest.raises(ValueError, match="NaN or Infinity"):
            await held.append({"n": 3, "x": {"y": value}})
    assert path.stat().st_size == size


@pytest.mark.parametrize(
    "entry",
    [
        {1: "a", "1": "b"},  # collides after encoding: one value would be lost
        {"n": 2, "nested": [{True: "x"}]},
        {None: 1},
        {2.5: 1},
    ],
)
async def test_non_string_keys_are_refused_before_any_write(
    tmp_path: Path, entry: dict[object, object]
) -> None:
    """json.dumps turns 1, True, None, 2.5 keys into strings, so {1: "a", "1": "b"} would lose a
    value silently and {1: "a"} would read back as {"1": "a"}: every non-string key is refused
    with a TypeError naming it, before anything is written."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=2)
    await sf.append({"n": 1})
    size = path.stat().st_size
    with pytest.raises(TypeError, match="keys must be strings"):
        await sf.append(entry)  # type: ignore[arg-type]
    assert path.stat().st_size == size


# --- item 5: non-regular files at the session path --------------------------------------


async def test_append_to_a_fifo_is_refused_not_lost(tmp_path: Path) -> None:
    """A FIFO at the session path: the append used to be acknowledged into the pipe and lost.
    It is refused (a session_io error), and nothing waits."""
    path = tmp_path / "s.jsonl"
    os.mkfifo(path)
    sf = SessionFile(path, lock_timeout=2)
    with pytest.raises(SessionLockPathError, match="not a regular file") as info:
        await sf.append({"lost": True})
    assert mf.coordination_kind(info.value) == "session_io"


FIFO = textwrap.dedent(
    """
    import json, os, sys, time
    import anyio
    import model_fallback as mf
    from model_fallback.session import SessionFile

    async def main(path):
        os.mkfifo(path)
        sf = SessionFile(path, lock_timeout=2)
        out, ticks = {}, 0

        async def ticker():
            nonlocal ticks
            while True:
                await anyio.sleep(0.005)
                ticks += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            for name, op in (("append", lambda: sf.append({"pad": "x" * 1_000_000})), ("read", sf.read)):
                try:
                    await op()
                    out[name] = "ok"
                except mf.SessionIOError as exc:
                    out[name] = [mf.coordination_kind(exc), "not a regular file" in str(exc)]
            async with sf.locked() as held:
                try:
                    await held.read()
                    out["held_read"] = "ok"
                except mf.SessionIOError as exc:
                    out["held_read"] = [mf.coordination_kind(exc), "not a regular file" in str(exc)]
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        out["loop_ran"] = ticks > 5
        print(json.dumps(out))

    anyio.run(main, sys.argv[1])
    """
)


def test_large_append_and_read_of_a_fifo_neither_block_nor_hang(tmp_path: Path) -> None:
    """A 1 MB append to a FIFO used to block the event loop forever (the pipe holds 64 KiB) and
    read() used to hang holding the lock (opening a FIFO for reading waits for a writer). Both
    are refused at once; the loop keeps running. Run in a subprocess: a hang fails the test."""
    proc = subprocess.run(
        [sys.executable, "-c", FIFO, str(tmp_path / "s.jsonl")], capture_output=True, text=True, timeout=10
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    refused = ["session_io", True]
    assert out == {"append": refused, "read": refused, "held_read": refused, "loop_ran": True}


async def test_read_does_not_follow_a_symlinked_session_path(tmp_path: Path) -> None:
    """read() refuses a symlink at the session path, like append() does, instead of serving the
    target's lines as the transcript."""
    target = tmp_path / "elsewhere.jsonl"
    target.write_text('{"secret": 1}\n')
    path = tmp_path / "s.jsonl"
    path.symlink_to(target)
    sf = SessionFile(path, lock_timeout=2)
    with pytest.raises(SessionLockPathError, match="symlink"):
        await sf.read()
    async with sf.locked() as held:
        with pytest.raises(SessionLockPathError, match="symlink"):
            await held.read()
