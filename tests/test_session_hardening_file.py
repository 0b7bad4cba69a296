"""The transcript file's edges (issue #12, items 5, 10 and 15 a/b/d): real files, FIFOs,
symlinks, chmod/utime, and a subprocess wherever the old behaviour was to hang, so that a hang
fails the test instead of freezing the suite."""

from __future__ import annotations

import math
import os
from pathlib import Path

import anyio
import pytest

import model_fallback as mf
from model_fallback.session import SessionFile

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
