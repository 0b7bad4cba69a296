"""The simulator's streaming turns: mid-stream faults planned per seed, raised as SDKs raise
them, and a short in-process workload whose transcripts and report show the streams."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from model_fallback import (
    Candidate,
    FailoverReason,
    StreamInterruptedError,
    classify_failure,
    stream_with_model_fallback,
)
from model_fallback.simulate import (
    DEFAULT_CHAIN,
    SCENARIOS,
    FaultProfile,
    SimConfig,
    SimulatedProvider,
    Stats,
    Workload,
)
from model_fallback.simulate._report import format_report

pytestmark = pytest.mark.anyio

OPENAI, ANTHROPIC, _ = DEFAULT_CHAIN


def provider(seed: int = 7, **rates: float) -> SimulatedProvider:
    """No fault before the first chunk; the given mid-stream rates; fast."""
    return SimulatedProvider({"*": FaultProfile({}, 0.005, 0.01, **rates)}, seed=seed)


async def collect(
    p: SimulatedProvider, c: Candidate, turn: int, idle: float = 0.5
) -> tuple[list[str], BaseException | None]:
    got: list[str] = []
    try:
        async for chunk in p.stream(c, 0, turn, f"turn {turn} of session 0", idle_timeout=idle):
            got.append(chunk)
    except Exception as exc:
        return got, exc
    return got, None


def test_stream_plans_depend_on_the_seed_and_the_call_only() -> None:
    """The same (seed, session, turn, candidate): the same plan; another turn or candidate:
    plans of their own; the pause between chunks stays under a fifth of the idle timeout."""
    a, b = provider(seed=1, interrupt_rate=0.5), provider(seed=1, interrupt_rate=0.5)
    plans = [a.plan_stream(OPENAI, 0, t, 0.5) for t in range(200)]
    assert plans == [b.plan_stream(OPENAI, 0, t, 0.5) for t in range(200)]
    assert plans != [a.plan_stream(ANTHROPIC, 0, t, 0.5) for t in range(200)]
    assert all(4 <= p.chunks <= 12 and 1 <= p.after < p.chunks and p.gap_s < 0.5 / 5 * 1.5 for p in plans)
    interrupted = sum(p.fault == "interrupt" for p in plans)
    assert 70 < interrupted < 130  # about half
    with pytest.raises(ValueError, match="more than 1"):
        FaultProfile({}, interrupt_rate=0.7, stall_rate=0.6)


async def test_a_whole_stream_is_the_reply_cut_in_chunks() -> None:
    p = provider()
    got, error = await collect(p, OPENAI, 3)
    assert error is None and len(got) == p.plan_stream(OPENAI, 0, 3, 0.5).chunks
    assert "".join(got) == "reply from openai/gpt-4o to 'turn 3 of session 0'"


async def test_an_interruption_is_raised_as_an_sdk_raises_it() -> None:
    """After the planned number of chunks: an overloaded error (Anthropic's in-stream error
    event on a 200 answer) or a dropped connection, classified overloaded / timeout."""
    p = provider(interrupt_rate=1.0)
    seen: set[tuple[str, FailoverReason | None]] = set()
    for turn in range(12):
        for c in (OPENAI, ANTHROPIC):
            plan = p.plan_stream(c, 0, turn, 0.5)
            got, error = await collect(p, c, turn)
            assert error is not None and len(got) == plan.after
            reason = classify_failure(error, provider=c.provider)
            assert reason is (
                FailoverReason.OVERLOADED if plan.interruption == "overloaded" else FailoverReason.TIMEOUT
            )
            if c is ANTHROPIC and plan.interruption == "overloaded":
                assert getattr(error, "status_code", None) == 200
            seen.add((c.provider, reason))
    assert len(seen) == 4  # both kinds, both providers


async def test_a_stall_is_cut_by_the_idle_timeout() -> None:
    """A planned stall: stream_with_model_fallback's idle_timeout interrupts it (reason
    timeout) after the planned chunks, in well under a second."""
    p = provider(stall_rate=1.0)
    plan = p.plan_stream(OPENAI, 0, 5, 0.2)

    def open_stream(c: Candidate) -> object:
        return p.stream(c, 0, 5, "turn 5 of session 0", idle_timeout=0.2)

    with anyio.fail_after(5), pytest.raises(StreamInterruptedError) as info:
        async with stream_with_model_fallback(open_stream, [OPENAI], idle_timeout=0.2) as stream:  # type: ignore[arg-type]
            async for _ in stream:
                pass
    assert info.value.reason is FailoverReason.TIMEOUT and info.value.chunks_delivered == plan.after


def test_a_streaming_workload_reports_streams(tmp_path: Path) -> None:
    """Every turn streams, half of the started streams are interrupted and 30 % stall:
    the transcripts hold whole replies (the chunks joined) for the turns served, the report
    counts the interruptions by candidate and reason and the time to first chunk."""
    scenario = SCENARIOS["healthy"]
    chain = DEFAULT_CHAIN
    config = SimConfig(
        scenario="healthy",
        duration_s=1.5,
        concurrency=2,
        sessions=2,
        candidates=chain,
        seed=11,
        attempt_timeout=1.0,
        lock_timeout=0.5,
        takeover_rate=0.0,
        contention_rate=0.0,
        crash_rate=0.0,
        profiles=scenario.profiles(chain, {}, interrupt_rate=0.5, stall_rate=0.3),
        directory=tmp_path,
        stream_share=1.0,
        idle_timeout=0.2,
    )
    stats = Stats(chain=chain)
    workload = Workload(config, stats, ())
    anyio.run(workload.run)
    report = stats.report(scenario="healthy", seed=11, interrupted=False, config=config.as_dict())
    streams = report["streams"]
    assert streams["turns"] > 10 and sum(streams["served"].values()) > 10
    assert streams["interrupted"] == report["runs"].get("interrupted", 0) > 0
    reasons = {r for by in streams["interruptions"].values() for r in by}
    assert reasons <= {"overloaded", "timeout"} and "timeout" in reasons
    assert all(d["p50"] is not None for d in streams["time_to_first_chunk_s"].values())
    assert report["config"]["stream_share"] == 1.0
    text = format_report(report)
    assert "streaming turns:" in text and "first chunk  openai/gpt-4o" in text
    replies = 0
    for f in tmp_path.glob("session-*.jsonl"):
        for entry in map(json.loads, f.read_text().splitlines()):
            if entry["role"] == "assistant":
                assert entry["content"].startswith(f"reply from {entry['model']} to 'turn ")
                replies += 1
    assert replies == report["runs"].get("success", 0)
