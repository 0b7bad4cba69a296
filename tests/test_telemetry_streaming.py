"""Telemetry of streams (DESIGN §9) through ``stream_with_model_fallback`` with both observers:
the attempt span lasts as long as the stream and gets its streaming attributes once, at the
end; an interrupted stream's span is ERROR and the interruption is counted; time to first
chunk is recorded by both pipelines under the same series and labels; nothing per chunk
reaches the OpenTelemetry SDK."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import model_fallback as mf
from model_fallback import telemetry_spec as spec
from model_fallback.otel import OTelObserver
from model_fallback.prometheus import PrometheusObserver

pytestmark = pytest.mark.anyio
CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4"]
A = spec.ATTRIBUTES
STREAM_KEYS = {A.GEN_AI_REQUEST_STREAM, A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, A.STREAM_CHUNKS}


def http_error(status: int, message: str) -> Exception:
    e = Exception(message)
    e.status_code = status  # type: ignore[attr-defined]
    return e


def provider(
    *,
    first_delay: float = 0.0,
    gap: float = 0.0,
    chunks: int = 3,
    fail_after: int | None = None,
    error: Exception | None = None,
    open_error: dict[str, Exception] | None = None,
) -> Any:
    """``open_stream``: an async generator per candidate; *open_error* makes a model fail at
    once (before its first chunk), *fail_after* chunks makes the stream raise *error*."""

    async def open_stream(c: mf.Candidate) -> AsyncIterator[str]:
        if open_error and c.model in open_error:
            raise open_error[c.model]
        await anyio.sleep(first_delay)
        for i in range(chunks):
            if fail_after is not None and i == fail_after:
                raise error or http_error(503, "upstream connection reset")
            if i:
                await anyio.sleep(gap)
            yield f"{c.model}:{i}"

    return open_stream


class Pipelines:
    """An OTelObserver (SDK, in-memory span exporter and metric reader) listed first, as the
    docs recommend, and a PrometheusObserver on its own registry."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tp = TracerProvider()
        self.tp.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.mp = MeterProvider(metric_readers=[self.reader])
        self.otel = OTelObserver(tracer_provider=self.tp, meter_provider=self.mp)
        self.registry = CollectorRegistry()
        self.prom = PrometheusObserver(self.registry, candidates=CHAIN)
        self.observers = (self.otel, self.prom)

    def spans(self, name: str) -> list[Any]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            p
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})

    def close(self) -> None:
        self.tp.shutdown()
        self.mp.shutdown()


@pytest.fixture
def pipes() -> Iterator[Pipelines]:
    p = Pipelines()
    yield p
    p.close()


class SDKCalls:
    """Counts calls into the OpenTelemetry SDK's span and instrument methods."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from opentelemetry.sdk.metrics._internal import instrument
        from opentelemetry.sdk.trace import Span

        self.calls: list[tuple[str, Any]] = []
        for owner, names in (
            (Span, ("set_attribute", "set_attributes", "add_event", "set_status", "end")),
            (instrument._Counter, ("add",)),
            (instrument._Histogram, ("record",)),
        ):
            for name in names:
                original = getattr(owner, name)

                def wrapper(obj: Any, *args: Any, _o: Any = original, _n: str = name, **kw: Any) -> Any:
                    self.calls.append((_n, args[0] if args else None))
                    return _o(obj, *args, **kw)

                monkeypatch.setattr(owner, name, wrapper)


async def test_attempt_span_lasts_as_long_as_the_stream(pipes: Pipelines) -> None:
    """The CLIENT span of the serving attempt starts before the first chunk and ends after the
    last: its duration covers the whole stream, not the time to the first chunk; the run span
    ends after it; the time to first chunk, the chunk count and gen_ai.request.stream are on it;
    spans the loop body starts nest under it."""
    first_delay, gap = 0.05, 0.04
    t0 = time.time_ns()
    async with mf.stream_with_model_fallback(
        provider(first_delay=first_delay, gap=gap, chunks=4), CHAIN, observers=pipes.observers
    ) as stream:
        got = []
        async for chunk in stream:
            with pipes.tp.get_tracer("app").start_as_current_span("render chunk"):
                got.append(chunk)
            last_chunk_ns = time.time_ns()  # the last one's: the span must end after it
    assert got == [f"gpt-4o:{i}" for i in range(4)]
    (attempt,) = pipes.spans("chat gpt-4o")
    (run,) = pipes.spans(spec.SPAN_RUN)
    assert attempt.kind is SpanKind.CLIENT and attempt.parent.span_id == run.context.span_id
    assert attempt.start_time >= t0
    assert attempt.end_time >= last_chunk_ns  # ended with the stream, after its last chunk
    assert (attempt.end_time - attempt.start_time) / 1e9 >= first_delay + 3 * gap * 0.9
    assert run.end_time >= attempt.end_time
    # the attempt span is current in the caller's task while the stream lasts
    assert {s.parent.span_id for s in pipes.spans("render chunk")} == {attempt.context.span_id}
    attrs = attempt.attributes
    assert attrs[A.GEN_AI_REQUEST_STREAM] is True
    assert attrs[A.STREAM_CHUNKS] == 4
    ttft = attrs[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert first_delay * 0.9 <= ttft < (attempt.end_time - attempt.start_time) / 1e9
    assert attrs[A.ATTEMPT_OUTCOME] == "success" and attempt.status.status_code is StatusCode.UNSET
    assert run.attributes[A.RUN_OUTCOME] == "success" and run.status.status_code is StatusCode.UNSET
    assert trace.get_current_span() is trace.INVALID_SPAN  # every context detached


async def test_streaming_attributes_are_set_once_at_the_end_and_nothing_per_chunk(
    pipes: Pipelines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While 200 chunks flow, no call reaches the OTel SDK (span or instrument); the attempt span
    is open, current in the loop body, without streaming attributes; when the stream ends they
    are set in one set_attributes call."""
    calls = SDKCalls(monkeypatch)
    async with mf.stream_with_model_fallback(
        provider(chunks=200), CHAIN, observers=pipes.observers
    ) as stream:
        n = 0
        async for _ in stream:
            n += 1
            if n == 1:
                span = trace.get_current_span()
                assert span.is_recording() and span.name == "chat gpt-4o"  # type: ignore[attr-defined]
                assert not STREAM_KEYS & set(span.attributes)  # type: ignore[attr-defined]
                during = len(calls.calls)
            if n == 200:  # the stream ends in the next __anext__; until then, nothing
                assert len(calls.calls) == during, calls.calls[during:]
    assert n == 200
    stream_sets = [
        arg for name, arg in calls.calls if name == "set_attributes" and STREAM_KEYS & set(arg or {})
    ]
    assert len(stream_sets) == 1 and set(stream_sets[0]) >= STREAM_KEYS
    (attempt,) = pipes.spans("chat gpt-4o")
    assert attempt.attributes[A.STREAM_CHUNKS] == 200


async def test_interrupted_stream_is_an_error_span_and_counted(pipes: Pipelines) -> None:
    """A provider failure after two chunks: StreamInterruptedError; the attempt span is ERROR
    (error.type = the reason, the chunks delivered on it), the run span ERROR with outcome
    interrupted; both pipelines count one interruption by provider, model and reason."""
    with pytest.raises(mf.StreamInterruptedError) as info:
        async with mf.stream_with_model_fallback(
            provider(chunks=5, fail_after=2, error=http_error(503, "The model is overloaded")),
            CHAIN,
            observers=pipes.observers,
        ) as stream:
            async for _ in stream:
                pass
    assert info.value.chunks_delivered == 2 and info.value.reason is mf.FailoverReason.OVERLOADED
    (attempt,) = pipes.spans("chat gpt-4o")
    (run,) = pipes.spans(spec.SPAN_RUN)
    assert attempt.status.status_code is StatusCode.ERROR
    assert attempt.attributes[A.ERROR_TYPE] == "overloaded"
    assert attempt.attributes[A.ATTEMPT_OUTCOME] == "provider_failure"
    assert attempt.attributes[A.STREAM_CHUNKS] == 2
    assert attempt.attributes[A.GEN_AI_REQUEST_STREAM] is True
    assert "overloaded" in (attempt.status.description or "")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes[A.RUN_OUTCOME] == "interrupted"
    assert run.attributes[A.ERROR_TYPE] == "overloaded"
    assert "chat claude-sonnet-4" not in {s.name for s in pipes.exporter.get_finished_spans()}
    labels = {"provider": "openai", "model": "gpt-4o", "reason": "overloaded"}
    assert pipes.sample("model_fallback_stream_interruptions_total", labels) == 1
    assert pipes.sample("model_fallback_runs_total", {"outcome": "interrupted"}) == 1
    assert pipes.sample("model_fallback_attempts_total", {**labels, "outcome": "provider_failure"}) == 1
    (point,) = pipes.points(spec.STREAM_INTERRUPTIONS.otel)
    assert dict(point.attributes) == labels and point.value == 1
    (runs,) = [p for p in pipes.points(spec.RUNS.otel) if p.attributes["outcome"] == "interrupted"]
    assert runs.value == 1


async def test_idle_timeout_interruption_has_reason_timeout(pipes: Pipelines) -> None:
    """idle_timeout between chunks interrupts with reason timeout, in both pipelines."""
    with pytest.raises(mf.StreamInterruptedError):
        async with mf.stream_with_model_fallback(
            provider(chunks=3, gap=5.0), CHAIN, observers=pipes.observers, idle_timeout=0.05
        ) as stream:
            async for _ in stream:
                pass
    labels = {"provider": "openai", "model": "gpt-4o", "reason": "timeout"}
    assert pipes.sample("model_fallback_stream_interruptions_total", labels) == 1
    (point,) = pipes.points(spec.STREAM_INTERRUPTIONS.otel)
    assert dict(point.attributes) == labels
    (attempt,) = pipes.spans("chat gpt-4o")
    assert attempt.attributes[A.ERROR_TYPE] == "timeout" and attempt.attributes[A.STREAM_CHUNKS] == 1


async def test_ttft_in_both_pipelines_with_the_same_series_and_labels(pipes: Pipelines) -> None:
    """A stream whose primary fails on open (429) and whose fallback streams: one time-to-first-
    chunk observation, for the fallback only, in both pipelines, under the same labels; the
    OTel path also records the semconv gen_ai.client.operation.time_to_first_chunk."""
    async with mf.stream_with_model_fallback(
        provider(first_delay=0.03, open_error={"gpt-4o": http_error(429, "Too Many Requests")}),
        CHAIN,
        observers=pipes.observers,
    ) as stream:
        chunks = [c async for c in stream]
    assert chunks == ["claude-sonnet-4:0", "claude-sonnet-4:1", "claude-sonnet-4:2"]
    served = {"provider": "anthropic", "model": "claude-sonnet-4"}
    assert pipes.sample("model_fallback_time_to_first_chunk_seconds_count", served) == 1
    assert pipes.sample("model_fallback_time_to_first_chunk_seconds_count",
                        {"provider": "openai", "model": "gpt-4o"}) is None  # fmt: skip
    prom_sum = pipes.sample("model_fallback_time_to_first_chunk_seconds_sum", served)
    assert prom_sum is not None and 0.03 * 0.9 <= prom_sum < 10.0
    (point,) = pipes.points(spec.TIME_TO_FIRST_CHUNK.otel)
    assert dict(point.attributes) == served and point.count == 1
    assert tuple(point.explicit_bounds) == spec.GENAI_DURATION_BUCKETS
    assert 0.03 * 0.9 <= point.sum < 10.0
    (genai,) = pipes.points(spec.GENAI_TIME_TO_FIRST_CHUNK.otel)
    assert dict(genai.attributes) == {A.GEN_AI_OPERATION_NAME: "chat", A.GEN_AI_PROVIDER_NAME: "anthropic",
                                      A.GEN_AI_REQUEST_MODEL: "claude-sonnet-4"}  # fmt: skip
    assert genai.sum == point.sum
    (failed,) = pipes.spans("chat gpt-4o")  # failed before a first chunk: a plain failed attempt
    assert failed.status.status_code is StatusCode.ERROR and not STREAM_KEYS & set(failed.attributes)
    (served_span,) = pipes.spans("chat claude-sonnet-4")
    assert served_span.attributes[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(point.sum)


async def test_cancelled_and_abandoned_streams_are_not_interruptions(pipes: Pipelines) -> None:
    """A caller that breaks out of the loop, and one cancelled mid-stream: no interruption
    counted, no ERROR span; time to first chunk is still recorded (the chunk came)."""
    async with mf.stream_with_model_fallback(provider(chunks=10), CHAIN, observers=pipes.observers) as stream:
        async for _ in stream:
            break
    with anyio.move_on_after(0.05):
        async with mf.stream_with_model_fallback(
            provider(chunks=10, gap=1.0), CHAIN, observers=pipes.observers
        ) as stream:
            async for _ in stream:
                pass
    spans = pipes.spans("chat gpt-4o")
    assert [s.attributes[A.ATTEMPT_OUTCOME] for s in spans] == ["success", "cancelled"]
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)
    assert [s.attributes[A.STREAM_CHUNKS] for s in spans] == [1, 1]
    assert pipes.points(spec.STREAM_INTERRUPTIONS.otel) == []
    text = generate_openmetrics(pipes.registry).decode()
    assert "model_fallback_stream_interruptions_total{" not in text
    assert pipes.sample("model_fallback_time_to_first_chunk_seconds_count",
                        {"provider": "openai", "model": "gpt-4o"}) == 2  # fmt: skip
    assert pipes.sample("model_fallback_runs_total", {"outcome": "cancelled"}) == 1


async def test_stream_series_carry_the_attempt_trace_as_exemplar(pipes: Pipelines) -> None:
    """The Prometheus ttft bucket and interruption counter link to the attempt span's trace."""
    with pytest.raises(mf.StreamInterruptedError):
        async with mf.stream_with_model_fallback(
            provider(chunks=3, fail_after=1), CHAIN, observers=pipes.observers
        ) as stream:
            async for _ in stream:
                pass
    (attempt,) = pipes.spans("chat gpt-4o")
    ids = f'span_id="{format(attempt.context.span_id, "016x")}",trace_id="{format(attempt.context.trace_id, "032x")}"'
    text = generate_openmetrics(pipes.registry).decode()
    ex = [line for line in text.splitlines() if "# {" in line]
    assert any(
        line.startswith("model_fallback_time_to_first_chunk_seconds_bucket") and ids in line for line in ex
    )
    assert any(line.startswith("model_fallback_stream_interruptions_total") and ids in line for line in ex)


def test_otel_and_prometheus_give_the_same_streaming_families() -> None:
    """Through opentelemetry-exporter-prometheus the OTel path's streaming series have the
    native names, label keys and values (counts), family by family."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import REGISTRY

    otel_reg, native_reg = CollectorRegistry(), CollectorRegistry()
    reader = PrometheusMetricReader()
    REGISTRY.unregister(reader._collector)
    otel_reg.register(reader._collector)
    mp = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "t"}))
    observers = [OTelObserver(meter_provider=mp), PrometheusObserver(native_reg, candidates=CHAIN)]

    async def workload() -> None:
        for fail_after in (None, 2, 1):
            with pytest.raises(mf.StreamInterruptedError) if fail_after else contextlib.nullcontext():
                async with mf.stream_with_model_fallback(
                    provider(chunks=3, fail_after=fail_after, error=http_error(500, "boom")),
                    CHAIN,
                    observers=observers,
                ) as stream:
                    async for _ in stream:
                        pass

    try:
        anyio.run(workload)

        def streaming(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            out = {}
            for fam in reg.collect():
                for s in fam.samples:
                    if s.name.startswith(
                        ("model_fallback_time_to_first_chunk", "model_fallback_stream_")
                    ) and (s.name.endswith(("_total", "_count"))):
                        labels = {k: v for k, v in s.labels.items() if not k.startswith("otel_scope")}
                        out[(s.name, tuple(sorted(labels.items())))] = s.value
            return out

        native, via_otel = streaming(native_reg), streaming(otel_reg)
        assert native == via_otel
        assert native[("model_fallback_time_to_first_chunk_seconds_count",
                       (("model", "gpt-4o"), ("provider", "openai")))] == 3  # fmt: skip
        assert native[("model_fallback_stream_interruptions_total",
                       (("model", "gpt-4o"), ("provider", "openai"), ("reason", "server_error")))] == 2  # fmt: skip
    finally:
        otel_reg.unregister(reader._collector)
        REGISTRY.register(reader._collector)
        mp.shutdown()
