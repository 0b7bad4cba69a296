"""The transcript file's edges (issue #12, items 5, 10 and 15 a/b/d): real files, FIFOs,
symlinks, chmod/utime, and a subprocess wherever the old behaviour was to hang, so that a hang
fails the test instead of freezing the suite."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

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
