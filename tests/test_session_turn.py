"""run_embedded_turn with the driver's attempt_timeout: a hung model call is cut, the fence it
left pending is verified by the next attempt (real files, real locks, real timeouts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import model_fallback as mf
from model_fallback import events as ev
from model_fallback.session import SessionFile, SessionWriteLock, run_embedded_turn

pytestmark = pytest.mark.anyio

CHAIN = ["openai/gpt-4o", "anthropic/claude", "google/gemini"]


class Fences(ev.Observer):
    def __init__(self) -> None:
        self.checked: list[ev.FenceChecked] = []

    def fence_checked(self, e: ev.FenceChecked) -> None:
        self.checked.append(e)


async def test_timed_out_primary_falls_back_and_the_turn_completes(tmp_path: Path) -> None:
    """A hung primary cut by attempt_timeout is a provider timeout; the next candidate serves and
    the reply is appended under the re-acquired lock (no 'needs the lock' error, no exhaustion)."""
    path = tmp_path / "s.jsonl"
    fences = Fences()
    sf = SessionFile(path, lock_timeout=5, observers=[fences])
    calls: list[str] = []

    async def run(c: mf.Candidate) -> str:
        calls.append(str(c))
        if c.provider == "openai":
            await anyio.sleep(60)
        return f"hello from {c}"

    result = await run_embedded_turn(sf, {"role": "user", "content": "hi"}, run, CHAIN, attempt_timeout=0.3)
    assert calls == CHAIN[:2]
    assert str(result.candidate) == "anthropic/claude" and result.value == "hello from anthropic/claude"
    assert [(a.outcome, a.reason) for a in result.attempts] == [
        (mf.Outcome.PROVIDER_FAILURE, mf.FailoverReason.TIMEOUT),
        (mf.Outcome.SUCCESS, None),
    ]
    # the cancelled prompt's fence was verified once (by the second attempt), then the second's own
    assert [f.takeover for f in fences.checked] == [False, False]
    assert await sf.read() == [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "hello from anthropic/claude",
            "model": "anthropic/claude",
            "fallback_depth": 1,
        },
    ]
    # the turn left the lock free
    async with SessionWriteLock(path, acquire_timeout=0.5):
        pass


async def test_takeover_during_a_timed_out_prompt_stops_the_chain(tmp_path: Path) -> None:
    """Another writer changes the session while the primary hangs: the timeout is recorded, the next
    attempt's verification raises the takeover itself, and no further model is called."""
    path = tmp_path / "s.jsonl"
    fences = Fences()
    sf, other = SessionFile(path, lock_timeout=5, observers=[fences]), SessionFile(path, lock_timeout=5)
    calls: list[str] = []

    async def run(c: mf.Candidate) -> str:
        calls.append(str(c))
        await other.append({"role": "system", "content": "compacted"})
        await anyio.sleep(60)
        return "never"

    with pytest.raises(mf.SessionTakeoverError) as info:
        await run_embedded_turn(sf, {"role": "user", "content": "hi"}, run, CHAIN, attempt_timeout=0.3)
    assert calls == CHAIN[:1]
    assert mf.coordination_kind(info.value) == "session_takeover"
    assert info.value.after.size > info.value.before.size
    assert [f.takeover for f in fences.checked] == [True]
    assert [e["role"] for e in await sf.read()] == ["user", "system"]


async def test_lock_kept_past_a_timed_out_prompt_is_a_lock_timeout(tmp_path: Path) -> None:
    """Someone takes the session lock while the primary hangs and keeps it: the next attempt cannot
    re-acquire and the turn raises SessionWriteLockTimeoutError, calling no other model."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=0.3)
    intruder = SessionWriteLock(path, acquire_timeout=5)
    calls: list[str] = []

    async def run(c: mf.Candidate) -> str:
        calls.append(str(c))
        await intruder.acquire()
        await anyio.sleep(60)
        return "never"

    try:
        with pytest.raises(mf.SessionWriteLockTimeoutError) as info:
            await run_embedded_turn(sf, {"role": "user", "content": "hi"}, run, CHAIN, attempt_timeout=0.3)
    finally:
        intruder.release()
    assert calls == CHAIN[:1]
    assert info.value.path == str(path) and info.value.owner_alive is True
    assert mf.coordination_kind(info.value) == "write_lock_timeout"


async def test_every_attempt_timing_out_is_exhaustion_not_a_local_error(tmp_path: Path) -> None:
    """When every candidate hangs, the run is exhausted with one timeout per candidate (each later
    attempt verified the fence first); the transcript keeps only the user entry."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=5)
    calls: list[str] = []

    async def run(c: mf.Candidate) -> Any:
        calls.append(str(c))
        await anyio.sleep(60)

    with pytest.raises(mf.AllCandidatesFailedError) as info:
        await run_embedded_turn(sf, {"role": "user", "content": "hi"}, run, CHAIN[:2], attempt_timeout=0.2)
    assert calls == CHAIN[:2]
    assert [a.reason for a in info.value.attempts] == [mf.FailoverReason.TIMEOUT] * 2
    assert await sf.read() == [{"role": "user", "content": "hi"}]
