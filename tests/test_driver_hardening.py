"""What a hostile week broke in the driver (issue #12 items 2, 11, 13, 15): each test
reproduced the failure first."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

import model_fallback as mf
from model_fallback import Candidate, CooldownTracker, FailoverReason, Outcome
from model_fallback import events as ev
from model_fallback.otel import OTelObserver
from model_fallback.prometheus import PrometheusObserver

pytestmark = pytest.mark.anyio
CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4"]


class UnprintableError(Exception):
    """An SDK error whose __str__/__repr__ read a response that is not there."""

    status_code = 503

    def __str__(self) -> str:
        return self.response.text  # type: ignore[attr-defined,no-any-return]

    def __repr__(self) -> str:
        return self.response.text  # type: ignore[attr-defined,no-any-return]


async def test_an_error_whose_str_raises_still_exhausts_cleanly() -> None:
    """AllCandidatesFailedError, the run span ended and not left current, the run counted."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()

    async def run(c: Candidate) -> str:
        raise UnprintableError()

    with pytest.raises(mf.AllCandidatesFailedError) as info:
        await mf.run_with_model_fallback(
            run, CHAIN, observers=[OTelObserver(tracer_provider=tp), PrometheusObserver(registry=registry)]
        )
    text = str(info.value)
    assert text.startswith("All models failed (2): ") and "UnprintableError" in text
    assert repr(info.value)  # never raises either
    assert not trace.get_current_span().get_span_context().is_valid
    assert "model_fallback.run" in [s.name for s in exporter.get_finished_spans()]
    assert 'model_fallback_runs_total{outcome="exhausted"} 1.0' in generate_latest(registry).decode()
    assert [a.reason for a in info.value.attempts] == [FailoverReason.OVERLOADED] * 2


async def test_a_synchronous_run_is_refused_at_its_first_call() -> None:
    """A plain function returning a value: one call, a clear TypeError, no model charged,
    no further provider called. An async generator function is refused before any call."""
    calls: list[str] = []
    cooldowns = CooldownTracker()

    def sync_run(c: Candidate) -> str:
        calls.append(str(c))
        return "answer"

    with pytest.raises(TypeError, match="awaitable"):
        await mf.run_with_model_fallback(sync_run, CHAIN, cooldowns=cooldowns)  # type: ignore[arg-type]
    assert calls == ["openai/gpt-4o"]
    assert not cooldowns.is_cooling(Candidate.parse("openai/gpt-4o"))

    async def agen(c: Candidate) -> Any:
        calls.append("agen")
        yield "x"

    with pytest.raises(TypeError, match="async generator"):
        await mf.run_with_model_fallback(agen, CHAIN)  # type: ignore[arg-type]
    assert "agen" not in calls

    # a lambda that returns a coroutine is an async run and is accepted
    async def call(c: Candidate) -> str:
        return f"ok {c}"

    result = await mf.run_with_model_fallback(lambda c: call(c), CHAIN)
    assert result.value == "ok openai/gpt-4o"


class _Exit(BaseException):
    """A BaseException subclass that is not cancellation (e.g. gevent's GreenletExit)."""


class BaseRaiser(ev.Observer):
    component = "base_raiser"

    def attempt_ended(self, event: ev.AttemptEnded) -> None:
        raise _Exit("observer bug")

    def run_ended(self, event: ev.RunEnded) -> None:
        raise _Exit("observer bug")


async def test_an_observer_raising_a_base_exception_after_success_is_isolated() -> None:
    """The result is returned, no span is left current, and the observer is disabled."""
    tp = TracerProvider()
    raiser = BaseRaiser()

    async def run(c: Candidate) -> str:
        return "ok"

    observers = ev.ObserverSet([OTelObserver(tracer_provider=tp), raiser])
    result = await mf.run_with_model_fallback(run, CHAIN, observers=observers)
    assert result.value == "ok"
    assert not trace.get_current_span().get_span_context().is_valid
    assert observers.is_disabled(raiser)


async def test_observers_made_per_request_that_raise_are_not_kept() -> None:
    """A raising observer created per run is freed with its run: no process-wide growth."""

    class PerRequest(ev.Observer):
        component = "per_request"
        payload = b""

        def __init__(self) -> None:
            self.payload = bytes(2048)

        def run_started(self, event: ev.RunStarted) -> None:
            raise RuntimeError("broken per-request observer")

    async def run(c: Candidate) -> str:
        return "ok"

    for _ in range(200):  # warm up the caches
        await mf.run_with_model_fallback(run, CHAIN, observers=[PerRequest()])
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(3000):
        await mf.run_with_model_fallback(run, CHAIN, observers=[PerRequest()])
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 1_500_000, f"{grown} bytes kept for 3000 per-request observers"


async def test_many_concurrent_runs_make_one_probe_per_cooldown() -> None:
    """2000 runs arrive while every candidate cools down: one run probes the primary, one
    (which found the primary's probe taken) probes the secondary, the 1998 others skip
    both: one probe per candidate per cooldown across every run sharing the tracker, not
    one per run."""
    cooldowns = CooldownTracker()
    for c in CHAIN:
        cooldowns.record_failure(Candidate.parse(c), FailoverReason.RATE_LIMIT)
    calls: list[str] = []
    gate = anyio.Event()

    async def run(c: Candidate) -> str:
        calls.append(str(c))
        await gate.wait()
        return "ok"

    outcomes: list[str] = []

    async def one() -> None:
        try:
            await mf.run_with_model_fallback(run, CHAIN, cooldowns=cooldowns)
            outcomes.append("ok")
        except mf.AllCandidatesFailedError as exc:
            assert all(a.outcome is Outcome.SKIPPED for a in exc.attempts)
            outcomes.append("skipped")

    async with anyio.create_task_group() as tg:
        for _ in range(2000):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert calls == ["openai/gpt-4o", "anthropic/claude-sonnet-4"]
    assert outcomes.count("ok") == 2 and outcomes.count("skipped") == 1998
    assert not cooldowns.is_cooling(Candidate.parse("openai/gpt-4o"))  # the probe succeeded


async def test_a_probe_that_ends_without_a_verdict_frees_the_slot() -> None:
    """A cancelled probe (or one stopped by a coordination error) leaves no verdict: the
    next run may probe again."""
    cooldowns = CooldownTracker()
    for c in CHAIN:
        cooldowns.record_failure(Candidate.parse(c), FailoverReason.RATE_LIMIT)
    calls: list[str] = []

    async def slow(c: Candidate) -> str:
        calls.append(str(c))
        await anyio.sleep(10)
        return "late"

    with anyio.move_on_after(0.05):
        await mf.run_with_model_fallback(slow, CHAIN, cooldowns=cooldowns)

    async def fast(c: Candidate) -> str:
        calls.append(str(c))
        return "ok"

    assert (await mf.run_with_model_fallback(fast, CHAIN, cooldowns=cooldowns)).value == "ok"
    assert calls == ["openai/gpt-4o", "openai/gpt-4o"]


async def test_the_members_of_all_candidates_failed_are_redacted() -> None:
    """Each member FailoverError's message (printed in tracebacks of the group) has the key
    redacted; the provider's original error stays attached, unchanged, as __cause__."""
    key = "sk-proj-" + "Zx81kQ2mN7vB4cT9rW3yH6jL0pF5sD1a"

    async def run(c: Candidate) -> str:
        e = Exception(f"Incorrect API key provided: {key}")
        e.status = 401  # type: ignore[attr-defined]
        raise e

    with pytest.raises(mf.AllCandidatesFailedError) as info:
        await mf.run_with_model_fallback(run, CHAIN)
    for member in info.value.exceptions:
        assert key not in str(member) and key[:16] not in member.message
        assert key in str(member.__cause__)
    assert key not in str(info.value)
