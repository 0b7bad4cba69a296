"""Streaming fallback with real async generators: before the first chunk a failure falls
back like a run; after it, a typed interruption; the iterator is closed on every exit."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import model_fallback as mf
from model_fallback import (
    AllCandidatesFailedError,
    Candidate,
    CooldownTracker,
    FailoverReason,
    Outcome,
    StreamInterruptedError,
    stream_with_model_fallback,
)
from model_fallback import events as ev

pytestmark = pytest.mark.anyio
CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"]


def http_error(status: int, message: str = "") -> Exception:
    e = Exception(message or f"HTTP {status}")
    e.status = status  # type: ignore[attr-defined]
    return e


class Provider:
    """Streams per model: a list of steps, each a chunk, an exception to raise, or
    ("sleep", seconds). Records calls and whether each generator was closed."""

    def __init__(self, plans: dict[str, list[Any]]) -> None:
        self.plans = plans
        self.calls: list[str] = []
        self.closed: list[str] = []

    def __call__(self, c: Candidate) -> AsyncIterator[str]:
        self.calls.append(c.model)
        return self._gen(c.model, self.plans.get(c.model, ["a", "b", "c"]))

    async def _gen(self, model: str, steps: list[Any]) -> AsyncIterator[str]:
        try:
            for step in steps:
                if isinstance(step, BaseException):
                    raise step
                if isinstance(step, tuple) and step[0] == "sleep":
                    await anyio.sleep(step[1])
                    continue
                yield step
        finally:
            self.closed.append(model)


class Recorder(ev.Observer):
    def __init__(self) -> None:
        self.ended: list[ev.AttemptEnded] = []
        self.runs: list[ev.RunEnded] = []

    def attempt_ended(self, event: ev.AttemptEnded) -> None:
        self.ended.append(event)

    def run_ended(self, event: ev.RunEnded) -> None:
        self.runs.append(event)


async def test_a_failure_before_the_first_chunk_falls_back() -> None:
    """A 429 before any chunk: classified, cooled down, the next candidate streams."""
    p = Provider({"gpt-4o": [http_error(429, "Too Many Requests")]})
    cooldowns = CooldownTracker()
    rec = Recorder()
    async with stream_with_model_fallback(p, CHAIN, cooldowns=cooldowns, observers=[rec]) as stream:
        assert stream.candidate == Candidate.parse("anthropic/claude-sonnet-4")
        chunks = [c async for c in stream]
    assert chunks == ["a", "b", "c"] and stream.chunks == 3
    assert p.calls == ["gpt-4o", "claude-sonnet-4"]
    assert p.closed == ["gpt-4o", "claude-sonnet-4"]
    assert [a.outcome for a in stream.attempts] == [Outcome.PROVIDER_FAILURE, Outcome.SUCCESS]
    assert stream.attempts[0].reason is FailoverReason.RATE_LIMIT
    assert cooldowns.is_cooling(Candidate.parse(CHAIN[0]))
    # the serving attempt was reported when the stream ended, with its figures
    served = rec.ended[-1]
    assert served.chunks == 3 and served.time_to_first_chunk_s is not None
    assert rec.runs[-1].outcome is ev.RunOutcome.SUCCESS and rec.runs[-1].fallback_depth == 1


async def test_first_chunk_timeout_is_a_provider_timeout() -> None:
    """A stream that never sends its first chunk within first_chunk_timeout: next one."""
    p = Provider({"gpt-4o": [("sleep", 10), "late"]})
    with anyio.fail_after(5):
        async with stream_with_model_fallback(p, CHAIN, first_chunk_timeout=0.2) as stream:
            chunks = [c async for c in stream]
    assert chunks == ["a", "b", "c"]
    assert stream.attempts[0].reason is FailoverReason.TIMEOUT
    assert "gpt-4o" in p.closed


async def test_after_the_first_chunk_an_interruption_is_typed_and_never_switches() -> None:
    """A 503 after three chunks raises StreamInterruptedError: candidate, reason,
    chunks_delivered, __cause__; the candidate cools down; no other candidate is called."""
    cause = http_error(503, "The model is overloaded")
    p = Provider({"gpt-4o": ["a", "b", "c", cause]})
    cooldowns = CooldownTracker()
    rec = Recorder()
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        async with stream_with_model_fallback(p, CHAIN, cooldowns=cooldowns, observers=[rec]) as stream:
            async for chunk in stream:
                got.append(chunk)
    err = info.value
    assert got == ["a", "b", "c"]
    assert err.candidate == Candidate.parse("openai/gpt-4o")
    assert err.reason is FailoverReason.OVERLOADED and err.chunks_delivered == 3
    assert err.__cause__ is cause
    assert isinstance(err, mf.FailoverError)
    assert p.calls == ["gpt-4o"]
    assert cooldowns.is_cooling(Candidate.parse("openai/gpt-4o"))
    assert stream.attempts[-1].outcome is Outcome.PROVIDER_FAILURE
    assert rec.ended[-1].interrupted and rec.runs[-1].outcome is ev.RunOutcome.INTERRUPTED
    again = pickle.loads(pickle.dumps(err))
    assert again.chunks_delivered == 3 and again.reason is FailoverReason.OVERLOADED


async def test_idle_timeout_between_chunks() -> None:
    """A stall between chunks longer than idle_timeout: interrupted with reason timeout."""
    p = Provider({"gpt-4o": ["a", ("sleep", 10), "b"]})
    with anyio.fail_after(5), pytest.raises(StreamInterruptedError) as info:
        async with stream_with_model_fallback(p, CHAIN, idle_timeout=0.2) as stream:
            async for _ in stream:
                pass
    assert info.value.reason is FailoverReason.TIMEOUT and info.value.chunks_delivered == 1
    assert isinstance(info.value.__cause__, TimeoutError)
    assert p.closed == ["gpt-4o"]


async def test_coordination_errors_propagate_unchanged_before_and_after() -> None:
    """A lock timeout before the first chunk stops the chain at once; one after it is
    re-raised as is (never an interruption)."""
    lock = mf.SessionWriteLockTimeoutError(path="/s.jsonl", waited_s=1.0)
    p = Provider({"gpt-4o": [lock]})
    with pytest.raises(mf.SessionWriteLockTimeoutError) as info:
        async with stream_with_model_fallback(p, CHAIN):
            pass
    assert info.value is lock and p.calls == ["gpt-4o"]

    takeover = mf.SessionTakeoverError(path="/s.jsonl")
    p2 = Provider({"gpt-4o": ["a", takeover]})
    rec = Recorder()
    with pytest.raises(mf.SessionTakeoverError) as info2:
        async with stream_with_model_fallback(p2, CHAIN, observers=[rec]) as stream:
            async for _ in stream:
                pass
    assert info2.value is takeover
    assert stream.attempts[-1].outcome is Outcome.COORDINATION_ABORT
    assert rec.runs[-1].outcome is ev.RunOutcome.COORDINATION_ABORT


async def test_every_candidate_failing_before_the_first_chunk() -> None:
    """All fail before their first chunk: AllCandidatesFailedError, every stream closed."""
    p = Provider({m: [http_error(500)] for m in ("gpt-4o", "claude-sonnet-4", "gemini-2.5-pro")})
    with pytest.raises(AllCandidatesFailedError) as info:
        async with stream_with_model_fallback(p, CHAIN):
            pass
    assert len(info.value.attempts) == 3
    assert sorted(p.closed) == sorted(p.calls)


@pytest.mark.parametrize("how", ["end", "break", "body_error", "cancel"])
async def test_the_iterator_is_closed_on_every_exit(how: str) -> None:
    """Normal end, break, an error in the caller's loop body, cancellation: the provider's
    generator is closed each time; cancellation cools nothing down."""
    p = Provider({"gpt-4o": ["a", "b", ("sleep", 10), "c"] if how == "cancel" else ["a", "b", "c", "d"]})
    cooldowns = CooldownTracker()
    rec = Recorder()

    async def consume() -> None:
        async with stream_with_model_fallback(p, CHAIN, cooldowns=cooldowns, observers=[rec]) as stream:
            async for chunk in stream:
                if how == "break" and chunk == "b":
                    break
                if how == "body_error" and chunk == "b":
                    raise ValueError("the caller's own processing failed")

    if how == "body_error":
        with pytest.raises(ValueError, match="own processing"):
            await consume()
    elif how == "cancel":
        with anyio.move_on_after(0.2):
            await consume()
    else:
        await consume()
    assert p.closed == ["gpt-4o"]
    assert not cooldowns.is_cooling(Candidate.parse("openai/gpt-4o"))
    expected = ev.RunOutcome.CANCELLED if how == "cancel" else ev.RunOutcome.SUCCESS
    assert rec.runs[-1].outcome is expected


async def test_an_empty_stream_and_sdk_style_open() -> None:
    """open_stream may be an async function returning the stream (as SDKs do); a stream
    that ends before any chunk is a success with no chunks."""
    p = Provider({"gpt-4o": []})

    async def open_stream(c: Candidate) -> AsyncIterator[str]:
        return p(c)

    async with stream_with_model_fallback(open_stream, CHAIN) as stream:
        assert [c async for c in stream] == []
    assert stream.chunks == 0 and stream.attempts[-1].outcome is Outcome.SUCCESS


async def test_bad_arguments_fail_before_any_call() -> None:
    """Negative timeouts and a non-callable opener fail at once; bad chains on entry."""
    p = Provider({})
    with pytest.raises(ValueError, match="idle_timeout"):
        stream_with_model_fallback(p, CHAIN, idle_timeout=-1)
    with pytest.raises(ValueError, match="first_chunk_timeout"):
        stream_with_model_fallback(p, CHAIN, first_chunk_timeout=0)
    with pytest.raises(TypeError):
        stream_with_model_fallback("not callable", CHAIN)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        async with stream_with_model_fallback(p, ["nope"]):
            pass
    assert p.calls == []

    async def returns_a_list(c: Candidate) -> Any:
        return ["a"]

    with pytest.raises(TypeError, match="async iterable"):
        async with stream_with_model_fallback(returns_a_list, CHAIN):
            pass


async def test_a_caller_bug_in_the_opener_stops_the_chain() -> None:
    """A NameError in the caller's open_stream is the caller's: one call, unchanged."""

    async def open_stream(c: Candidate) -> AsyncIterator[str]:
        return undefined_client.stream(c.model)  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(NameError):
        async with stream_with_model_fallback(open_stream, CHAIN):
            pass
