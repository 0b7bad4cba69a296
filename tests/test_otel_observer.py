"""The OpenTelemetry observer: spans, their status, context, metrics and bucket advice, exemplars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import model_fallback as mf
from model_fallback import telemetry_spec as spec
from model_fallback.otel import OTelObserver
from model_fallback.prometheus import PrometheusObserver
from model_fallback.session import SessionFile, run_embedded_turn

from .telemetry_support import (
    CHAIN,
    http_error,
    long_names,
    points,
    script,
    spans_by_name,
)

pytestmark = pytest.mark.anyio


# --- spans -----------------------------------------------------------------------------


async def test_429_then_success_spans(otel: Any) -> None:
    """One run span and two CLIENT attempt spans 'chat <model>', the first ERROR rate_limit."""
    obs, exporter, _, _ = otel
    await mf.run_with_model_fallback(
        script({"gpt-4o": http_error(429, "Too Many Requests")}), CHAIN, observers=[obs]
    )
    spans = spans_by_name(exporter)
    (run,) = spans[spec.SPAN_RUN]
    (a1,) = spans["chat gpt-4o"]
    (a2,) = spans["chat claude-sonnet-4"]
    assert run.kind is SpanKind.INTERNAL and a1.kind is SpanKind.CLIENT and a2.kind is SpanKind.CLIENT
    assert a1.parent.span_id == run.context.span_id and a2.parent.span_id == run.context.span_id
    assert a1.status.status_code is StatusCode.ERROR
    assert a1.attributes["error.type"] == "rate_limit"
    assert a1.attributes["model_fallback.failure.reason"] == "rate_limit"
    assert a1.attributes["model_fallback.attempt.outcome"] == "provider_failure"
    assert a1.attributes["gen_ai.operation.name"] == "chat"
    assert a1.attributes["gen_ai.provider.name"] == "openai"
    assert a1.attributes["gen_ai.request.model"] == "gpt-4o"
    assert a1.attributes["model_fallback.attempt.index"] == 0
    assert a2.status.status_code is StatusCode.UNSET and "error.type" not in a2.attributes
    assert a2.attributes["model_fallback.attempt.outcome"] == "success"
    assert run.status.status_code is StatusCode.UNSET
    assert run.attributes["model_fallback.outcome"] == "success"
    assert tuple(run.attributes["model_fallback.candidates"]) == tuple(CHAIN)
    assert run.attributes["model_fallback.attempt_count"] == 2
    assert run.attributes["model_fallback.fallback_depth"] == 1
    assert run.attributes["model_fallback.served.model"] == "claude-sonnet-4"
    scope = run.instrumentation_scope
    assert scope.name == "model_fallback" and scope.version == mf.__version__


async def test_takeover_spans(otel: Any) -> None:
    """A takeover: the attempt span is not ERROR (outcome coordination_abort, kind); the run span is ERROR."""
    obs, exporter, _, _ = otel
    with pytest.raises(mf.SessionTakeoverError):
        await mf.run_with_model_fallback(
            script({"gpt-4o": mf.SessionTakeoverError(path="s")}), CHAIN, observers=[obs]
        )
    spans = spans_by_name(exporter)
    (run,) = spans[spec.SPAN_RUN]
    (a1,) = spans["chat gpt-4o"]
    assert "chat claude-sonnet-4" not in spans
    assert a1.status.status_code is not StatusCode.ERROR
    assert a1.attributes["model_fallback.attempt.outcome"] == "coordination_abort"
    assert a1.attributes["model_fallback.coordination.kind"] == "session_takeover"
    assert "error.type" not in a1.attributes
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["model_fallback.outcome"] == "coordination_abort"
    assert run.attributes["model_fallback.coordination.untried"] == 2
    assert run.attributes["error.type"] == "session_takeover"


async def test_cancellation_ends_spans_without_error(otel: Any) -> None:
    """Cancellation: spans end, outcome cancelled, no ERROR."""
    obs, exporter, _, _ = otel

    async def hang(c: mf.Candidate) -> str:
        await anyio.sleep(30)
        return "never"

    with anyio.move_on_after(0.05):
        await mf.run_with_model_fallback(script({"gpt-4o": hang}), CHAIN, observers=[obs])
    spans = spans_by_name(exporter)
    (run,) = spans[spec.SPAN_RUN]
    (a1,) = spans["chat gpt-4o"]
    assert a1.attributes["model_fallback.attempt.outcome"] == "cancelled"
    assert a1.status.status_code is StatusCode.UNSET and run.status.status_code is StatusCode.UNSET
    assert run.attributes["model_fallback.outcome"] == "cancelled"
    assert trace.get_current_span() is trace.INVALID_SPAN  # context restored


async def test_exhausted_and_skipped(otel: Any) -> None:
    """Exhaustion marks the run span ERROR; a cooling candidate is an event on the run span."""
    obs, exporter, _, _ = otel
    cd = mf.CooldownTracker()
    cd.record_failure(mf.Candidate.parse(CHAIN[1]), mf.FailoverReason.RATE_LIMIT)
    with pytest.raises(mf.AllCandidatesFailedError):
        await mf.run_with_model_fallback(
            script({"gpt-4o": http_error(503, "overloaded"), "gemini-2.5-pro": http_error(500, "boom")}),
            CHAIN, observers=[obs], cooldowns=cd,
        )  # fmt: skip
    (run,) = spans_by_name(exporter)[spec.SPAN_RUN]
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["model_fallback.outcome"] == "exhausted"
    skipped = [e for e in run.events if e.name == spec.EVENT_SKIPPED]
    assert len(skipped) == 1 and skipped[0].attributes["gen_ai.request.model"] == "claude-sonnet-4"
    assert skipped[0].attributes["model_fallback.failure.reason"] == "rate_limit"


async def test_user_span_is_parent_and_context_survives_task_groups(otel: Any) -> None:
    """The caller's current span parents the run span; spans made in child tasks of run() nest
    under the attempt span."""
    obs, exporter, _, tp = otel
    tracer = tp.get_tracer("app")

    async def run(c: mf.Candidate) -> str:
        async def child() -> None:
            with tracer.start_as_current_span("http POST"):
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        return "ok"

    with tracer.start_as_current_span("handle request") as user_span:
        await mf.run_with_model_fallback(run, CHAIN, observers=[obs])
    spans = spans_by_name(exporter)
    (run_span,) = spans[spec.SPAN_RUN]
    (attempt,) = spans["chat gpt-4o"]
    (http,) = spans["http POST"]
    assert run_span.parent.span_id == user_span.get_span_context().span_id
    assert http.parent.span_id == attempt.context.span_id
    assert len({s.context.trace_id for s in exporter.get_finished_spans()}) == 1


async def test_session_spans(otel: Any, tmp_path: Path) -> None:
    """Lock acquisitions and fence checks are INTERNAL spans; a takeover is an ERROR there."""
    obs, exporter, reader, _ = otel
    sf = SessionFile(tmp_path / "s.jsonl", lock_timeout=5, observers=[obs])
    other = SessionFile(tmp_path / "s.jsonl", lock_timeout=5)

    async def run(c: mf.Candidate) -> str:
        await other.append({"by": "maintenance"})
        return "ok"

    with pytest.raises(mf.SessionTakeoverError):
        await run_embedded_turn(sf, {"role": "user"}, run, CHAIN, observers=[obs])
    spans = spans_by_name(exporter)
    acquires = spans[spec.SPAN_LOCK_ACQUIRE]
    assert all(s.kind is SpanKind.INTERNAL for s in acquires) and len(acquires) >= 2
    (fence,) = spans[spec.SPAN_FENCE_VERIFY]
    assert (
        fence.status.status_code is StatusCode.ERROR and fence.attributes["model_fallback.session.takeover"]
    )
    (attempt,) = spans["chat gpt-4o"]
    assert fence.parent.span_id == attempt.context.span_id
    assert attempt.status.status_code is not StatusCode.ERROR
    pts = points(reader)
    assert sum(p.value for p in pts[spec.SESSION_TAKEOVERS.otel]) == 1
    assert sum(p.count for p in pts[spec.SESSION_LOCK_WAIT.otel]) >= 2


async def test_otel_metrics_and_bucket_advice(otel: Any) -> None:
    """Metrics through the meter: the spec's instruments, GenAI buckets via the advisory parameter."""
    obs, _, reader, _ = otel
    await mf.run_with_model_fallback(script({"gpt-4o": http_error(429, "slow")}), CHAIN, observers=[obs])
    pts = points(reader)
    attempts = {tuple(sorted(p.attributes.items())): p.value for p in pts[spec.ATTEMPTS.otel]}
    assert (
        attempts[
            (
                ("model", "gpt-4o"),
                ("outcome", "provider_failure"),
                ("provider", "openai"),
                ("reason", "rate_limit"),
            )
        ]
        == 1
    )
    assert (
        attempts[
            (
                ("model", "claude-sonnet-4"),
                ("outcome", "success"),
                ("provider", "anthropic"),
                ("reason", "none"),
            )
        ]
        == 1
    )
    (dur,) = [p for p in pts[spec.ATTEMPT_DURATION.otel] if p.attributes["model"] == "gpt-4o"]
    assert tuple(dur.explicit_bounds) == spec.GENAI_DURATION_BUCKETS
    genai = pts["gen_ai.client.operation.duration"]
    failed = [p for p in genai if p.attributes.get("error.type") == "rate_limit"]
    assert len(failed) == 1 and failed[0].attributes["gen_ai.request.model"] == "gpt-4o"
    assert tuple(failed[0].explicit_bounds) == spec.GENAI_DURATION_BUCKETS
    assert [p.value for p in pts[spec.RUNS.otel]] == [1]


async def test_long_label_values_are_capped_in_otel_metrics_and_spans(otel: Any) -> None:
    """The OTel observer caps provider/model attribute values the same way (the same capped
    value on metric points, the attempt span's name and attributes)."""
    obs, exporter, reader, _ = otel
    names = long_names(20, 5_000)
    with pytest.raises(mf.AllCandidatesFailedError):
        await mf.run_with_model_fallback(
            script({n.split("/")[1]: http_error(503, "overloaded") for n in names}), names, observers=[obs]
        )
    pts = points(reader)
    models = {p.attributes["model"] for p in pts["model_fallback.attempts"]}
    assert len(models) == 20 and max(map(len, models)) <= 128
    assert max(len(p.attributes["provider"]) for p in pts["model_fallback.attempts"]) <= 128
    genai = {p.attributes["gen_ai.request.model"] for p in pts["gen_ai.client.operation.duration"]}
    assert genai == models
    attempt_spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(attempt_spans) == 20
    for s in attempt_spans:
        assert s.attributes["gen_ai.request.model"] in models and len(s.name) <= 200
        assert len(s.attributes["gen_ai.provider.name"]) <= 128
    (run,) = spans_by_name(exporter)[spec.SPAN_RUN]
    assert max(map(len, run.attributes["model_fallback.candidates"])) <= 2 * 128 + 1


async def test_exemplars_carry_the_trace_id(otel: Any) -> None:
    """With OTel and Prometheus together, the OpenMetrics exposition has exemplars of the run's trace."""
    obs, exporter, _, _ = otel
    reg = CollectorRegistry()
    prom = PrometheusObserver(reg, candidates=CHAIN)
    await mf.run_with_model_fallback(
        script({"gpt-4o": http_error(429, "slow")}), CHAIN, observers=[obs, prom]
    )
    (run,) = spans_by_name(exporter)[spec.SPAN_RUN]
    trace_id = format(run.context.trace_id, "032x")
    text = generate_openmetrics(reg).decode()
    exemplar_lines = [line for line in text.splitlines() if "# {" in line]
    assert exemplar_lines, "no exemplar in the OpenMetrics exposition"
    assert any(f'trace_id="{trace_id}"' in line for line in exemplar_lines)
    assert any(line.startswith("model_fallback_attempt_duration_seconds_bucket") for line in exemplar_lines)
    assert any(line.startswith("model_fallback_runs_total") for line in exemplar_lines)
    assert "# {" not in generate_latest(reg).decode()  # the classic text format has none


async def test_lock_wait_has_exemplars(otel: Any, tmp_path: Path) -> None:
    """Session lock waits observed inside a traced turn carry the turn's trace id as exemplars."""
    obs, exporter, _, _ = otel
    reg = CollectorRegistry()
    prom = PrometheusObserver(reg, candidates=CHAIN)
    sf = SessionFile(tmp_path / "s.jsonl", lock_timeout=5, observers=[obs, prom])
    await run_embedded_turn(sf, {"role": "user"}, script({}), CHAIN, observers=[obs, prom])
    (run,) = spans_by_name(exporter)[spec.SPAN_RUN]
    text = generate_openmetrics(reg).decode()
    lines = [
        line
        for line in text.splitlines()
        if line.startswith("model_fallback_session_lock_wait_seconds_bucket") and "# {" in line
    ]
    assert any(format(run.context.trace_id, "032x") in line for line in lines)


async def test_observed_runs_leave_no_reference_cycles(
    otel: tuple[OTelObserver, InMemorySpanExporter, InMemoryMetricReader, TracerProvider],
) -> None:
    """With both observers (spans exported in memory), errors are freed by refcounting alone."""
    from .test_driver import assert_errors_freed_without_gc

    prom = PrometheusObserver(CollectorRegistry(), candidates=CHAIN)
    await assert_errors_freed_without_gc((otel[0], prom))
    assert otel[1].get_finished_spans()  # the spans were really recorded


def test_count_error_feeds_the_telemetry_errors_counter(otel: Any) -> None:
    """Like the Prometheus observer, the OTel observer counts failures reported to it by
    component (the Redis cooldown store reports ``cooldown_store`` this way), so both
    pipelines carry model_fallback_telemetry_errors_total{component="cooldown_store"}."""
    obs, _, reader, _ = otel
    obs.count_error("cooldown_store")
    obs.count_error("cooldown_store")
    pts = points(reader)[spec.TELEMETRY_ERRORS.otel]
    assert [(p.attributes["component"], p.value) for p in pts] == [("cooldown_store", 2)]
