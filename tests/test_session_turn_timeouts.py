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


async def test_lock_timeout_beneath_the_last_429_and_the_report_explains_the_counts(
    tmp_path: Path,
) -> None:
    """The last candidate answers 429 while a compactor holds the lock past the re-acquire
    timeout: the lock timeout is attached beneath the 429 and explicit provider metadata wins,
    so the run ends exhausted, not as a coordination abort. The session layer counted a lock
    timeout that aborted no run, and the simulate report says why its two lines differ."""
    from model_fallback.simulate import Stats, format_report

    path = tmp_path / "s.jsonl"
    chain = ["openai/gpt-4o"]
    stats = Stats(chain=tuple(mf.Candidate.parse(c) for c in chain))
    sf = SessionFile(path, lock_timeout=0.2, observers=[stats])

    class RateLimited(Exception):
        status_code = 429

    async with anyio.create_task_group() as tg:

        async def hold_for(seconds: float, held: anyio.Event) -> None:
            async with SessionWriteLock(path, acquire_timeout=5):
                held.set()
                await anyio.sleep(seconds)

        async def run(c: mf.Candidate) -> str:
            held = anyio.Event()
            tg.start_soon(hold_for, 0.4, held)
            await held.wait()
            raise RateLimited("Too Many Requests")

        with pytest.raises(mf.AllCandidatesFailedError) as info:
            await run_embedded_turn(sf, {"role": "user", "content": "hi"}, run, chain, observers=[stats])
    (failure,) = info.value.exceptions
    assert failure.reason is mf.FailoverReason.RATE_LIMIT
    chained: list[BaseException] = []
    node = failure.__cause__
    while node is not None and all(node is not e for e in chained):
        chained.append(node)
        node = node.__cause__ or node.__context__
    assert node is None, "the error chain loops back on itself"
    assert [type(e) for e in chained] == [RateLimited, mf.SessionWriteLockTimeoutError]
    assert stats.lock_timeouts == 1 and not stats.coordination_aborts
    text = format_report(stats.report(scenario="t", seed=0, interrupted=False, config={}))
    assert "0 takeover(s) and 1 lock timeout(s) seen by the session layer ended no run as a" in text
