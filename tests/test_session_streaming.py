"""stream_embedded_turn: a session turn that streams under the prompt-release fence (real
files, real locks, a real second writer; the provider streams are real async generators)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import model_fallback as mf
from model_fallback import events as ev
from model_fallback.session import SessionFile, SessionWriteLock, stream_embedded_turn

pytestmark = pytest.mark.anyio

CHAIN = ["openai/gpt-4o", "anthropic/claude", "google/gemini"]
USER = {"role": "user", "content": "hi"}


def http_error(status: int, message: str = "") -> Exception:
    e = Exception(message or f"HTTP {status}")
    e.status = status  # type: ignore[attr-defined]
    return e


class Provider:
    """Streams per provider: a list of steps, each a chunk, an exception to raise,
    ("sleep", seconds), or an async callable run at that point (a second writer).
    Records the calls and which generators were closed."""

    def __init__(self, plans: dict[str, list[Any]]) -> None:
        self.plans = plans
        self.calls: list[str] = []
        self.closed: list[str] = []

    def __call__(self, c: mf.Candidate) -> AsyncIterator[Any]:
        self.calls.append(c.provider)
        return self._gen(c.provider, self.plans.get(c.provider, ["Hel", "lo"]))

    async def _gen(self, name: str, steps: list[Any]) -> AsyncIterator[Any]:
        try:
            for step in steps:
                if isinstance(step, BaseException):
                    raise step
                if isinstance(step, tuple) and step[0] == "sleep":
                    await anyio.sleep(step[1])
                elif callable(step):
                    await step()
                else:
                    yield step
        finally:
            self.closed.append(name)


class Recorder(ev.Observer):
    def __init__(self) -> None:
        self.ended: list[ev.AttemptEnded] = []
        self.runs: list[ev.RunEnded] = []
        self.fences: list[ev.FenceChecked] = []

    def attempt_ended(self, event: ev.AttemptEnded) -> None:
        self.ended.append(event)

    def run_ended(self, event: ev.RunEnded) -> None:
        self.runs.append(event)

    def fence_checked(self, event: ev.FenceChecked) -> None:
        self.fences.append(event)


def second_writer(path: Path, note: str = "compacted") -> Callable[[], Awaitable[None]]:
    """Another SessionFile on the same path (as a maintenance job has) appending an entry."""

    async def write() -> None:
        await SessionFile(path, lock_timeout=5).append({"role": "system", "content": note})

    return write


async def lock_is_free(path: Path) -> bool:
    try:
        async with SessionWriteLock(path, acquire_timeout=0.5):
            return True
    except mf.SessionWriteLockTimeoutError:
        return False


async def test_a_streamed_turn_appends_the_user_entry_and_the_reply(tmp_path: Path) -> None:
    """The lock is released while the caller reads the stream (another process could read
    the transcript), then re-acquired: the reply is the chunks delivered, joined."""
    path = tmp_path / "s.jsonl"
    rec = Recorder()
    sf = SessionFile(path, lock_timeout=5, observers=[rec])
    p = Provider({"openai": ["Hel", "lo", ", world"]})
    got: list[str] = []
    async with stream_embedded_turn(sf, USER, p, CHAIN, observers=[rec]) as stream:
        async for chunk in stream:
            got.append(chunk)
            # released for the prompt: a reader elsewhere gets the lock at once
            assert await SessionFile(path, lock_timeout=0.5).read() == [USER]
    assert got == ["Hel", "lo", ", world"] and stream.chunks == 3
    assert await sf.read() == [
        USER,
        {"role": "assistant", "content": "Hello, world", "model": "openai/gpt-4o", "fallback_depth": 0},
    ]
    assert [f.takeover for f in rec.fences] == [False]
    assert rec.runs[-1].outcome is ev.RunOutcome.SUCCESS and rec.ended[-1].chunks == 3
    assert p.closed == ["openai"]
    assert await lock_is_free(path)


async def test_a_failure_before_the_first_chunk_goes_through_the_fence(tmp_path: Path) -> None:
    """A 429 before any chunk: the release is left (lock re-acquired, fence verified), the
    candidate cools down, the next one streams and the reply says which served."""
    path = tmp_path / "s.jsonl"
    rec = Recorder()
    sf = SessionFile(path, lock_timeout=5, observers=[rec])
    p = Provider({"openai": [http_error(429, "Too Many Requests")]})
    cooldowns = mf.CooldownTracker()
    async with stream_embedded_turn(sf, USER, p, CHAIN, cooldowns=cooldowns) as stream:
        assert [c async for c in stream] == ["Hel", "lo"]
    assert p.calls == ["openai", "anthropic"]
    assert [(a.outcome, a.reason) for a in stream.attempts] == [
        (mf.Outcome.PROVIDER_FAILURE, mf.FailoverReason.RATE_LIMIT),
        (mf.Outcome.SUCCESS, None),
    ]
    assert cooldowns.is_cooling(mf.Candidate.parse("openai/gpt-4o"))
    assert [f.takeover for f in rec.fences] == [False, False]  # one release per attempt
    assert (await sf.read())[-1] == {
        "role": "assistant",
        "content": "Hello",
        "model": "anthropic/claude",
        "fallback_depth": 1,
    }


async def test_a_takeover_during_the_stream_is_raised_when_it_ends(tmp_path: Path) -> None:
    """A second writer appends while the caller reads: every chunk is delivered, then the
    end of the stream raises SessionTakeoverError; nothing is appended as a reply, the run
    is a coordination abort, no model cools down, the lock is left free."""
    path = tmp_path / "s.jsonl"
    rec = Recorder()
    sf = SessionFile(path, lock_timeout=5, observers=[rec])
    p = Provider({"openai": ["a", second_writer(path), "b", "c"]})
    cooldowns = mf.CooldownTracker()
    got: list[str] = []
    with pytest.raises(mf.SessionTakeoverError):
        async with stream_embedded_turn(sf, USER, p, CHAIN, cooldowns=cooldowns, observers=[rec]) as stream:
            async for chunk in stream:
                got.append(chunk)
    assert got == ["a", "b", "c"] and stream.chunks == 3
    assert p.calls == ["openai"] and p.closed == ["openai"]
    assert await SessionFile(path).read() == [USER, {"role": "system", "content": "compacted"}]
    assert [f.takeover for f in rec.fences] == [True]
    assert stream.attempts[-1].outcome is mf.Outcome.COORDINATION_ABORT
    assert rec.runs[-1].outcome is ev.RunOutcome.COORDINATION_ABORT
    assert rec.ended[-1].chunks == 3
    assert not cooldowns.is_cooling(mf.Candidate.parse("openai/gpt-4o"))
    assert await lock_is_free(path)


async def test_a_takeover_found_when_the_caller_breaks(tmp_path: Path) -> None:
    """The caller leaves the block early: the provider's stream is closed, the fence is
    verified then, the takeover is raised on leaving the block; no reply."""
    path = tmp_path / "s.jsonl"
    rec = Recorder()
    p = Provider({"openai": ["a", second_writer(path), "b", "c", "d"]})
    with pytest.raises(mf.SessionTakeoverError):
        async with stream_embedded_turn(
            SessionFile(path, lock_timeout=5), USER, p, CHAIN, observers=[rec]
        ) as stream:
            async for chunk in stream:
                if chunk == "b":
                    break
    assert p.closed == ["openai"]
    assert [e["role"] for e in await SessionFile(path).read()] == ["user", "system"]
    assert rec.runs[-1].outcome is ev.RunOutcome.COORDINATION_ABORT
    assert await lock_is_free(path)


async def test_a_break_without_takeover_appends_what_was_delivered(tmp_path: Path) -> None:
    """A break is the caller's choice: the reply holds the chunks it received, the rest of
    the provider's stream is closed unread."""
    path = tmp_path / "s.jsonl"
    p = Provider({"openai": ["a", "b", "c", "d"]})
    async with stream_embedded_turn(SessionFile(path), USER, p, CHAIN) as stream:
        async for chunk in stream:
            if chunk == "b":
                break
    assert p.closed == ["openai"]
    assert (await SessionFile(path).read())[-1]["content"] == "ab"


async def test_a_takeover_during_a_slow_first_chunk_stops_the_chain(tmp_path: Path) -> None:
    """The primary never sends its first chunk within first_chunk_timeout while a second
    writer changes the session: the takeover is raised as itself (not a model timeout),
    and no further candidate is called."""
    path = tmp_path / "s.jsonl"
    rec = Recorder()
    p = Provider({"openai": [second_writer(path), ("sleep", 30), "late"]})
    with anyio.fail_after(10), pytest.raises(mf.SessionTakeoverError):
        async with stream_embedded_turn(
            SessionFile(path, lock_timeout=5), USER, p, CHAIN, observers=[rec], first_chunk_timeout=0.3
        ):
            pytest.fail("the block must not be entered")
    assert p.calls == ["openai"] and p.closed == ["openai"]
    assert rec.runs[-1].outcome is ev.RunOutcome.COORDINATION_ABORT
    assert await lock_is_free(path)


async def test_a_slow_first_chunk_is_a_timeout_and_the_next_candidate_serves(tmp_path: Path) -> None:
    """first_chunk_timeout without a takeover: a provider timeout, the chain goes on."""
    path = tmp_path / "s.jsonl"
    p = Provider({"openai": [("sleep", 30), "late"]})
    with anyio.fail_after(10):
        async with stream_embedded_turn(SessionFile(path), USER, p, CHAIN, first_chunk_timeout=0.3) as stream:
            assert [c async for c in stream] == ["Hel", "lo"]
    assert stream.attempts[0].reason is mf.FailoverReason.TIMEOUT
    assert str(stream.candidate) == "anthropic/claude"
    assert (await SessionFile(path).read())[-1]["model"] == "anthropic/claude"


async def test_a_stall_after_the_first_chunk_is_an_interruption(tmp_path: Path) -> None:
    """A stall past idle_timeout: StreamInterruptedError (reason timeout, two chunks
    delivered); the fence was verified, nothing appended, no other candidate called."""
    path = tmp_path / "s.jsonl"
    p = Provider({"openai": ["a", "b", ("sleep", 30), "c"]})
    got: list[str] = []
    with anyio.fail_after(10), pytest.raises(mf.StreamInterruptedError) as info:
        async with stream_embedded_turn(
            SessionFile(path, lock_timeout=5), USER, p, CHAIN, idle_timeout=0.3
        ) as stream:
            async for chunk in stream:
                got.append(chunk)
    err = info.value
    assert got == ["a", "b"]
    assert err.reason is mf.FailoverReason.TIMEOUT and err.chunks_delivered == 2
    assert isinstance(err.__cause__, TimeoutError)
    assert p.calls == ["openai"] and p.closed == ["openai"]
    assert await SessionFile(path).read() == [USER]
    assert await lock_is_free(path)


async def test_lock_contention_at_the_end_is_a_lock_timeout_not_a_stalled_model(tmp_path: Path) -> None:
    """A compactor holds the lock when the stream ends: re-acquiring it is not under the
    idle timeout, so the turn ends with SessionWriteLockTimeoutError (a coordination
    error) rather than an interruption charged to the model."""
    path = tmp_path / "s.jsonl"
    rec = Recorder()
    holding = anyio.Event()

    async def compactor() -> None:
        async with SessionWriteLock(path, acquire_timeout=5):
            holding.set()
            await anyio.sleep(1.5)

    async with anyio.create_task_group() as tg:

        async def start_compactor() -> None:
            tg.start_soon(compactor)
            await holding.wait()

        p = Provider({"openai": ["a", start_compactor, "b"]})
        with pytest.raises(mf.SessionWriteLockTimeoutError):
            async with stream_embedded_turn(
                SessionFile(path, lock_timeout=0.5), USER, p, CHAIN, observers=[rec], idle_timeout=0.2
            ) as stream:
                async for _ in stream:
                    pass
    assert stream.chunks == 2
    assert rec.runs[-1].outcome is ev.RunOutcome.COORDINATION_ABORT
    assert await SessionFile(path).read() == [USER]


async def test_a_provider_failure_mid_stream_is_an_interruption(tmp_path: Path) -> None:
    """A 503 after two chunks: StreamInterruptedError with the original as cause; the
    candidate cools down; the transcript keeps the user entry only."""
    path = tmp_path / "s.jsonl"
    cause = http_error(503, "The model is overloaded")
    p = Provider({"openai": ["a", "b", cause]})
    cooldowns = mf.CooldownTracker()
    with pytest.raises(mf.StreamInterruptedError) as info:
        async with stream_embedded_turn(SessionFile(path), USER, p, CHAIN, cooldowns=cooldowns) as stream:
            async for _ in stream:
                pass
    assert info.value.__cause__ is cause and info.value.chunks_delivered == 2
    assert info.value.reason is mf.FailoverReason.OVERLOADED
    assert cooldowns.is_cooling(mf.Candidate.parse("openai/gpt-4o"))
    assert await SessionFile(path).read() == [USER]


async def test_cancellation_leaves_at_once_without_waiting_for_the_lock(tmp_path: Path) -> None:
    """Cancelled while a compactor holds the lock: the block is left at once (the lock is
    not waited for), the provider's stream is closed, nothing is appended."""
    path = tmp_path / "s.jsonl"
    rec = Recorder()
    holding = anyio.Event()

    async def compactor() -> None:
        async with SessionWriteLock(path, acquire_timeout=5):
            holding.set()
            await anyio.sleep(2)

    async with anyio.create_task_group() as tg:

        async def start_compactor() -> None:
            tg.start_soon(compactor)
            await holding.wait()

        p = Provider({"openai": ["a", start_compactor, ("sleep", 30), "b"]})
        started = time.monotonic()
        with anyio.move_on_after(0.3):
            async with stream_embedded_turn(
                SessionFile(path, lock_timeout=5), USER, p, CHAIN, observers=[rec]
            ) as stream:
                async for _ in stream:
                    pass
        assert time.monotonic() - started < 1.0
    assert p.closed == ["openai"]
    assert rec.runs[-1].outcome is ev.RunOutcome.CANCELLED
    assert await SessionFile(path).read() == [USER]


async def test_reply_entry_builds_the_reply_from_the_chunks(tmp_path: Path) -> None:
    """reply_entry receives the list of chunks delivered (here SDK-like dicts); the default
    refuses chunks that are not strings, after the stream, appending nothing."""
    path = tmp_path / "s.jsonl"
    chunks = [{"delta": "Hel"}, {"delta": "lo"}]
    p = Provider({"openai": chunks})

    def reply(got: list[dict[str, str]]) -> dict[str, Any]:
        return {"role": "assistant", "content": "".join(c["delta"] for c in got), "n": len(got)}

    async with stream_embedded_turn(SessionFile(path), USER, p, CHAIN, reply_entry=reply) as stream:
        async for _ in stream:
            pass
    assert (await SessionFile(path).read())[-1] == {"role": "assistant", "content": "Hello", "n": 2}

    path2 = tmp_path / "s2.jsonl"
    with pytest.raises(TypeError, match="reply_entry"):
        async with stream_embedded_turn(
            SessionFile(path2), USER, Provider({"openai": chunks}), CHAIN
        ) as stream:
            async for _ in stream:
                pass
    assert await SessionFile(path2).read() == [USER]


async def test_every_candidate_failing_and_bad_arguments(tmp_path: Path) -> None:
    """All fail before their first chunk: AllCandidatesFailedError, the user entry stays,
    the lock is free. Bad arguments fail before anything is written."""
    path = tmp_path / "s.jsonl"
    p = Provider({name: [http_error(500)] for name in ("openai", "anthropic", "google")})
    with pytest.raises(mf.AllCandidatesFailedError):
        async with stream_embedded_turn(SessionFile(path), USER, p, CHAIN):
            pass
    assert sorted(p.closed) == sorted(p.calls) == ["anthropic", "google", "openai"]
    assert await SessionFile(path).read() == [USER]
    assert await lock_is_free(path)

    other = tmp_path / "other.jsonl"
    with pytest.raises(ValueError, match="idle_timeout"):
        stream_embedded_turn(SessionFile(other), USER, p, CHAIN, idle_timeout=0)
    with pytest.raises(TypeError, match="SessionFile"):
        stream_embedded_turn(str(other), USER, p, CHAIN)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="open_stream"):
        stream_embedded_turn(SessionFile(other), USER, "nope", CHAIN)  # type: ignore[arg-type]
    assert not other.exists()


async def test_a_takeover_under_a_failed_open_stops_the_chain_at_the_next_attempt(tmp_path: Path) -> None:
    """A second writer changes the session while the primary's stream opens, and the primary
    then fails with a 503: the failure is the provider's (its status comes first), and the
    next attempt's release raises the takeover before its stream is opened."""
    path = tmp_path / "s.jsonl"
    rec = Recorder()
    p = Provider({"openai": [second_writer(path), http_error(503, "overloaded")]})
    with pytest.raises(mf.SessionTakeoverError):
        async with stream_embedded_turn(SessionFile(path, lock_timeout=5), USER, p, CHAIN, observers=[rec]):
            pytest.fail("the block must not be entered")
    assert p.calls == ["openai"]
    assert [(a.outcome, a.reason) for a in rec.runs[-1].attempts] == [
        (mf.Outcome.PROVIDER_FAILURE, mf.FailoverReason.OVERLOADED),
        (mf.Outcome.COORDINATION_ABORT, None),
    ]
    assert await lock_is_free(path)


async def test_an_empty_stream_is_a_turn_with_an_empty_reply(tmp_path: Path) -> None:
    """A stream that ends before any chunk: the prompt is over at once (fence verified), the
    turn is served with an empty reply."""
    path = tmp_path / "s.jsonl"
    p = Provider({"openai": []})
    async with stream_embedded_turn(SessionFile(path), USER, p, CHAIN) as stream:
        assert [c async for c in stream] == []
    assert stream.chunks == 0 and stream.attempts[-1].outcome is mf.Outcome.SUCCESS
    assert (await SessionFile(path).read())[-1]["content"] == ""
