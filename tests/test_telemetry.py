"""OpenTelemetry and Prometheus observers: spans, metrics, exemplars, redaction, isolation."""

from __future__ import annotations

import gzip
import http.server
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import model_fallback as mf
from model_fallback import events as ev
from model_fallback import telemetry_spec as spec
from model_fallback._redact import redact
from model_fallback.otel import OTelObserver
from model_fallback.prometheus import PrometheusObserver
from model_fallback.session import SessionFile, run_embedded_turn

from .conftest import require_tool

pytestmark = pytest.mark.anyio
CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"]
KEY = "sk-proj-Zx81kQ2mN7vB4cT9rW3yH6jL0pF5sD1a"


def http_error(status: int, message: str) -> Exception:
    e = Exception(message)
    e.status_code = status  # type: ignore[attr-defined]
    return e


def script(behaviour: dict[str, Any]) -> Any:
    async def run(c: mf.Candidate) -> str:
        b = behaviour.get(c.model, "ok")
        if isinstance(b, BaseException):
            raise b
        if callable(b):
            return str(await b(c))
        return f"{b} {c}"

    return run


@pytest.fixture
def otel() -> Iterator[tuple[OTelObserver, InMemorySpanExporter, InMemoryMetricReader, TracerProvider]]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield OTelObserver(tracer_provider=tp, meter_provider=mp), exporter, reader, tp
    tp.shutdown()
    mp.shutdown()


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in exporter.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


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


# --- Prometheus ------------------------------------------------------------------------


async def test_prometheus_counts_coordination_apart() -> None:
    """One write-lock abort on a 3-candidate chain and one 429->success run, on an isolated registry."""
    reg = CollectorRegistry()
    obs = PrometheusObserver(reg, candidates=CHAIN)
    with pytest.raises(mf.SessionWriteLockTimeoutError):
        await mf.run_with_model_fallback(
            script({"gpt-4o": mf.SessionWriteLockTimeoutError(path="s")}), CHAIN, observers=[obs]
        )
    await mf.run_with_model_fallback(script({"gpt-4o": http_error(429, "slow")}), CHAIN, observers=[obs])
    v = reg.get_sample_value
    assert v("model_fallback_attempts_total", {"provider": "openai", "model": "gpt-4o",
             "outcome": "coordination_abort", "reason": "write_lock_timeout"}) == 1  # fmt: skip
    assert v("model_fallback_coordination_aborts_total", {"kind": "write_lock_timeout"}) == 1
    assert v("model_fallback_fallbacks_avoided_total", {"kind": "write_lock_timeout"}) == 2
    failures = [
        s for m in reg.collect() if m.name == "model_fallback_attempts" for s in m.samples
        if s.name.endswith("_total") and s.labels["model"] == "gpt-4o" and s.labels["outcome"] == "provider_failure"
        and s.value > 0
    ]  # fmt: skip
    assert [(s.labels["reason"], s.value) for s in failures] == [("rate_limit", 1.0)]
    assert v("model_fallback_runs_total", {"outcome": "coordination_abort"}) == 1
    assert v("model_fallback_runs_total", {"outcome": "success"}) == 1
    assert v("model_fallback_fallback_depth_count") == 1
    # pre-initialised label sets: zeros, not gaps
    assert v("model_fallback_attempts_total", {"provider": "google", "model": "gemini-2.5-pro",
             "outcome": "success", "reason": "none"}) == 0  # fmt: skip
    assert v("model_fallback_telemetry_errors_total", {"component": "otel"}) == 0


def test_two_registries_never_collide_one_registry_is_shared() -> None:
    """Observers on two registries are independent; two on one registry share metrics."""
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    a, b, c = PrometheusObserver(r1), PrometheusObserver(r2), PrometheusObserver(r1)
    run_ended = ev.RunEnded(1, ev.RunOutcome.SUCCESS, (), None, None, 0.1, None)
    a.run_ended(run_ended)
    c.run_ended(run_ended)
    b.run_ended(run_ended)
    assert r1.get_sample_value("model_fallback_runs_total", {"outcome": "success"}) == 2
    assert r2.get_sample_value("model_fallback_runs_total", {"outcome": "success"}) == 1
    with pytest.raises(ValueError, match="namespace"):
        PrometheusObserver(r1, namespace="bad name")


def test_cardinality_is_capped() -> None:
    """10 000 distinct model names through one observer: series bounded by the cap."""
    reg = CollectorRegistry()
    obs = PrometheusObserver(reg, max_label_pairs=50)
    for i in range(10_000):
        a = mf.Attempt(mf.Candidate("p", f"model-{i}"), 0, mf.Outcome.PROVIDER_FAILURE, mf.FailoverReason.RATE_LIMIT,
                       duration_s=0.01)  # fmt: skip
        obs.attempt_ended(ev.AttemptEnded(i, a))
    models = {
        s.labels["model"] for m in reg.collect() if m.name == "model_fallback_attempts" for s in m.samples
    }
    assert len(models) <= 51 and spec.OTHER in models
    total = sum(
        s.value for m in reg.collect() if m.name == "model_fallback_attempts" for s in m.samples
        if s.name.endswith("_total")
    )  # fmt: skip
    assert total == 10_000


def _long_names(n: int, size: int) -> list[str]:
    """*n* provider/model names of ~*size* characters that differ only at their very end."""
    return [f"{'p' * size}/{'m' * size}-{i}" for i in range(n)]


def _scrape(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as resp:
        body: bytes = resp.read()
    return body


def test_long_label_values_are_capped_in_a_real_scrape() -> None:
    """max_label_pairs bounds the number of series, and the label length bounds their size:
    150 candidates with 10 KB provider and model names, one failed attempt each, scraped over
    HTTP: every provider/model value is at most 128 characters, the 150 stay distinct (a short
    hash ends a capped value), and the scrape is ~2 MB (it was 109 MB before the cap)."""
    import socket

    from model_fallback import telemetry

    names = _long_names(150, 10_000)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handle = telemetry.configure(
        prometheus_port=port, registry=CollectorRegistry(), candidates=names, otel=False
    )
    try:
        with pytest.raises(mf.AllCandidatesFailedError):
            anyio.run(lambda: mf.run_with_model_fallback(
                script({n.split("/")[1]: http_error(429, "slow") for n in names}), names, observers=handle.observers,
            ))  # fmt: skip
        assert handle.prometheus_url is not None
        body = _scrape(handle.prometheus_url)
    finally:
        handle.shutdown()
    print(f"\nscrape with 150 candidates of 2 x 10 KB names: {len(body) / 1e3:.0f} KB")
    values = set(re.findall(r'model="([^"]*)"', body.decode()))
    providers = set(re.findall(r'provider="([^"]*)"', body.decode()))
    assert len(values) == 150 and max(map(len, values)) <= 128
    assert max(map(len, providers)) <= 128
    assert max(map(len, body.splitlines())) < 600
    assert len(body) < 3_000_000  # ~40 lines per candidate (two histograms) x ~340 bytes


async def test_long_label_values_are_capped_in_otel_metrics_and_spans(otel: Any) -> None:
    """The OTel observer caps provider/model attribute values the same way (the same capped
    value on metric points, the attempt span's name and attributes)."""
    obs, exporter, reader, _ = otel
    names = _long_names(20, 5_000)
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


def test_promtool_finds_no_problem_in_the_exposition(tmp_path: Path) -> None:
    """`promtool check metrics` accepts the native exposition."""
    promtool = require_tool("promtool")
    reg = CollectorRegistry()
    obs = PrometheusObserver(reg, candidates=CHAIN)

    async def go() -> None:
        await mf.run_with_model_fallback(script({"gpt-4o": http_error(429, "slow")}), CHAIN, observers=[obs])

    anyio.run(go)
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=generate_latest(reg), capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b""


def test_otel_path_translates_to_the_same_families_and_labels() -> None:
    """Through opentelemetry-exporter-prometheus, the OTel path yields the native names and label
    keys: every series of the spec, the streaming ones (DESIGN §9) included."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    otel_reg, native_reg = CollectorRegistry(), CollectorRegistry()
    reader = PrometheusMetricReader()
    # The reader registers on the global REGISTRY; move its collector to our registry.
    from prometheus_client import REGISTRY

    REGISTRY.unregister(reader._collector)
    otel_reg.register(reader._collector)
    mp = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "t"}))
    observers = [OTelObserver(meter_provider=mp), PrometheusObserver(native_reg, candidates=CHAIN)]

    async def workload() -> None:
        await mf.run_with_model_fallback(
            script({"gpt-4o": http_error(429, "slow")}), CHAIN, observers=observers
        )
        with pytest.raises(mf.SessionWriteLockTimeoutError):
            await mf.run_with_model_fallback(script({"gpt-4o": mf.SessionWriteLockTimeoutError()}), CHAIN,
                                             observers=observers)  # fmt: skip
        cd = mf.CooldownTracker()
        cd.record_failure(mf.Candidate.parse(CHAIN[0]), mf.FailoverReason.RATE_LIMIT)
        await mf.run_with_model_fallback(script({}), CHAIN, observers=observers, cooldowns=cd)

        async def interrupted_stream(c: mf.Candidate) -> Any:  # DESIGN §9: ttft + an interruption
            yield "first"
            raise http_error(500, "stream broke")

        with pytest.raises(mf.StreamInterruptedError):
            async with mf.stream_with_model_fallback(
                interrupted_stream, CHAIN, observers=observers
            ) as stream:
                async for _ in stream:
                    pass
        for o in observers:
            o.lock_acquired(ev.LockAcquired("s", 0.01, 0, 1))
            o.lock_timed_out(ev.LockTimedOut("s", 0.5, 1, True, 0, 1))
            o.fence_checked(ev.FenceChecked("s", True, None, None, 0, 1))
            o.stale_lock_reclaimed(ev.StaleLockReclaimed("s", "dead_pid", 1))
            o.observer_failed(ev.ObserverFailed("otel", "run_ended", RuntimeError()))

    anyio.run(workload)

    def families(reg: CollectorRegistry) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for fam in reg.collect():
            for s in fam.samples:
                if not s.name.startswith("model_fallback_") or s.name.endswith("_created"):
                    continue
                keys = set(s.labels) - {
                    "le",
                    "otel_scope_name",
                    "otel_scope_version",
                    "otel_scope_schema_url",
                }
                out.setdefault(s.name, set()).update(keys)
        return out

    native, via_otel = families(native_reg), families(otel_reg)
    expected = {m.prometheus for m in spec.METRICS if m.kind == "counter"} | {
        f"{m.prometheus}{suffix}"
        for m in spec.METRICS
        if m.kind == "histogram"
        for suffix in ("_bucket", "_sum", "_count")
    }
    assert set(native) == expected
    assert set(via_otel) == expected
    assert native == via_otel
    otel_reg.unregister(reader._collector)
    REGISTRY.register(reader._collector)
    mp.shutdown()


# --- redaction and isolation -------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        f"Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys.",
        "401 Unauthorized: invalid x-api-key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-abcdefg",
        "400 API key not valid. key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe for generativelanguage",
        "request failed: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
        'upstream body {"error": {"message": "bad key", "api_key": "abcd1234efgh5678"}}',
        "GET https://api.example.com/v1/chat?api_key=s3cr3t-v4lue-123&model=x returned 403",
        "token 0123456789abcdef0123456789abcdef01234567 rejected",
    ],
)
def test_redaction(message: str) -> None:
    """API keys and bearer tokens never survive redaction; text is capped."""
    out = redact(message)
    for secret in re.findall(
        r"sk-[\w-]{8,}|AIza[\w-]{20,}|eyJ[\w.-]{20,}|abcd1234efgh5678|s3cr3t-v4lue-123|[0-9a-f]{40}", message
    ):
        assert secret not in out
    assert "[REDACTED]" in out
    assert len(redact("x" * 10_000)) <= 512


async def test_secrets_never_reach_exported_spans(otel: Any) -> None:
    """A provider error quoting the API key: the span's status and attributes are redacted."""
    obs, exporter, _, _ = otel
    err = http_error(401, f"Incorrect API key provided: {KEY}. (Authorization: Bearer {KEY})")
    with pytest.raises(mf.AllCandidatesFailedError):
        await mf.run_with_model_fallback(
            script({m.split("/")[1]: err for m in CHAIN}), CHAIN, observers=[obs]
        )
    for s in exporter.get_finished_spans():
        blob = repr(s.to_json())
        assert KEY not in blob
    (a1,) = spans_by_name(exporter)["chat gpt-4o"]
    assert "[REDACTED]" in (a1.status.description or "")


class Exploding(ev.Observer):
    component = "exploding"

    def __getattribute__(self, name: str) -> Any:
        if name.startswith(("run_", "attempt_", "candidate_", "coordination_")):

            def boom(_e: Any) -> None:
                raise RuntimeError("exporter bug")

            return boom
        return object.__getattribute__(self, name)


async def test_raising_observer_is_counted_in_prometheus() -> None:
    """An observer raising on every hook is disabled in its observer set after the first
    failure, counted in model_fallback_telemetry_errors_total{component}, and the run's
    result is unchanged. A set shared by the runs counts it once; a list per run, once per run."""
    reg = CollectorRegistry()
    prom = PrometheusObserver(reg, candidates=CHAIN)
    bad = Exploding()
    shared = ev.ObserverSet([bad, prom])
    results = []
    for _ in range(3):
        r = await mf.run_with_model_fallback(
            script({"gpt-4o": http_error(429, "x")}), CHAIN, observers=shared
        )
        results.append((r.value, r.candidate))
    assert results == [("ok anthropic/claude-sonnet-4", mf.Candidate.parse(CHAIN[1]))] * 3
    assert reg.get_sample_value("model_fallback_telemetry_errors_total", {"component": "exploding"}) == 1
    assert reg.get_sample_value("model_fallback_runs_total", {"outcome": "success"}) == 3
    for _ in range(2):
        await mf.run_with_model_fallback(script({}), CHAIN, observers=[bad, prom])
    assert reg.get_sample_value("model_fallback_telemetry_errors_total", {"component": "exploding"}) == 3


# --- OTLP on the wire ------------------------------------------------------------------


class _Receiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.paths.append(self.path)
        if self.path == "/v1/traces":
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            self.server.requests.append(req)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_otlp_http_export_reaches_a_real_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real OTLP/HTTP exporter (via telemetry.configure) sends spans with the contract's attributes."""
    from model_fallback import telemetry

    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "wire-test")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        handle = telemetry.configure()
        assert len(handle.observers) == 1
        err = http_error(401, f"Incorrect API key provided: {KEY}")

        async def go() -> None:
            await mf.run_with_model_fallback(script({"gpt-4o": err}), CHAIN, observers=handle.observers)

        anyio.run(go)
        handle.shutdown()
        spans = [
            s
            for req in server.requests
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]
        names = sorted(s.name for s in spans)
        assert names == ["chat claude-sonnet-4", "chat gpt-4o", spec.SPAN_RUN]
        attempt = next(s for s in spans if s.name == "chat gpt-4o")
        attrs = {kv.key: kv.value for kv in attempt.attributes}
        assert attrs["error.type"].string_value == "auth"
        assert attrs["gen_ai.provider.name"].string_value == "openai"
        assert attrs["model_fallback.attempt.outcome"].string_value == "provider_failure"
        assert KEY not in attempt.status.message and "[REDACTED]" in attempt.status.message
        res = server.requests[0].resource_spans[0].resource
        assert any(kv.key == "service.name" and kv.value.string_value == "wire-test" for kv in res.attributes)
        assert KEY.encode() not in b"".join(r.SerializeToString() for r in server.requests)
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_otlp_endpoint_changes_nothing() -> None:
    """With the collector down, 1 000 runs complete with the same results; the added time is printed.

    It is the SDK's, not a wait: with its queue full, the batch processor evicts and frees the
    oldest span on the caller's thread (tens of µs per run here, where a run takes ~100 µs
    because the "provider" answers at once)."""

    async def measure(observers: tuple[object, ...]) -> tuple[float, list[str]]:
        out = []
        t0 = time.perf_counter()
        for _ in range(1000):
            r = await mf.run_with_model_fallback(
                script({"gpt-4o": http_error(429, "x")}), CHAIN, observers=observers
            )
            out.append(str(r.candidate))
        return time.perf_counter() - t0, out

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    def observer(endpoint: str) -> tuple[OTelObserver, TracerProvider]:
        tp = TracerProvider()
        tp.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=2), schedule_delay_millis=50)
        )
        return OTelObserver(tracer_provider=tp), tp

    with socket_closed_port() as dead:
        down, tp_down = observer(f"http://127.0.0.1:{dead}/v1/traces")
        reachable = _Receiver()
        t = threading.Thread(target=reachable.serve_forever, daemon=True)
        t.start()
        up, tp_up = observer(f"http://127.0.0.1:{reachable.server_address[1]}/v1/traces")
        try:
            # Rounds alternate, best of three each: a single pass measures warm-up and order
            # (the first pass is up to 50 % slower whichever exporter it uses).
            t_up = t_down = float("inf")
            for _ in range(3):
                t, r_up = anyio.run(measure, (up,))
                t_up = min(t_up, t)
                t, r_down = anyio.run(measure, (down,))
                t_down = min(t_down, t)
        finally:
            reachable.shutdown()
            reachable.server_close()
        assert r_down == r_up == [CHAIN[1]] * 1000
        print(f"\n1000 runs: collector up {t_up * 1000:.0f} ms, down {t_down * 1000:.0f} ms "
              f"({(t_down / t_up - 1) * 100:+.1f}%, {(t_down - t_up) * 1000:+.0f} µs per run)")  # fmt: skip
        assert t_down < t_up * 3 + 1.0  # loose: proves no per-run blocking on the dead exporter
        for tp in (tp_up, tp_down):
            tp.shutdown()


class socket_closed_port:  # noqa: N801 - used as a context manager
    """A 127.0.0.1 port with nothing listening (connections are refused)."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = int(s.getsockname()[1])
        s.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        pass


class _HangingServer:
    """Accepts connections on 127.0.0.1, reads, never answers (a hung collector)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[Any] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)  # keep it open, say nothing

    def close(self) -> None:
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


def test_hanging_otlp_endpoint_changes_nothing() -> None:
    """A collector that accepts and never answers: 1 000 runs give the same results; the
    added time is printed (the exporter blocks only its own background thread)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    hung = _HangingServer()
    try:
        tp = TracerProvider()
        tp.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://127.0.0.1:{hung.port}/v1/traces", timeout=2), schedule_delay_millis=50,
        ))  # fmt: skip
        observers = (OTelObserver(tracer_provider=tp),)

        async def measure(obs: tuple[object, ...]) -> tuple[float, list[str]]:
            out = []
            t0 = time.perf_counter()
            for _ in range(1000):
                r = await mf.run_with_model_fallback(script({"gpt-4o": http_error(503, "overloaded")}), CHAIN,
                                                     observers=obs)  # fmt: skip
                out.append(str(r.candidate))
            return time.perf_counter() - t0, out

        t_plain, r_plain = anyio.run(measure, ())
        t_hung, r_hung = anyio.run(measure, observers)
        assert r_hung == r_plain == [CHAIN[1]] * 1000
        assert hung.conns, "the exporter never even tried"
        print(
            f"\n1000 runs: no telemetry {t_plain * 1000:.0f} ms, OTel to a hung collector {t_hung * 1000:.0f} ms"
        )
        assert t_hung < 30  # 1000 runs, each far below the exporter's 2 s timeout: no per-run blocking
        t0 = time.perf_counter()
        tp.shutdown()
        print(f"shutdown with a hung collector: {time.perf_counter() - t0:.1f} s")
    finally:
        hung.close()


def test_metrics_endpoint_binds_loopback_by_default() -> None:
    """telemetry.configure serves /metrics on 127.0.0.1 unless told otherwise; a taken port is an OSError."""
    import socket

    from model_fallback import telemetry

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handle = telemetry.configure(prometheus_port=port, registry=CollectorRegistry(), otel=False)
    try:
        assert handle._server.server_address[0] == "127.0.0.1"
        assert handle.prometheus_url == f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(OSError):
            telemetry.configure(prometheus_port=port, registry=CollectorRegistry(), otel=False)
    finally:
        handle.shutdown()


async def test_api_keys_never_reach_metrics_or_logs(otel: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Keys in provider errors: absent from the exposition (both formats) and from log records,
    even when an observer fails while handling the error."""
    obs, _, _, _ = otel
    reg = CollectorRegistry()
    prom = PrometheusObserver(reg, candidates=CHAIN)

    class LeakyObserver(ev.Observer):
        component = "leaky"

        def attempt_ended(self, event: ev.AttemptEnded) -> None:
            raise RuntimeError("observer bug")

    err = http_error(401, f"Incorrect API key provided: {KEY} (Authorization: Bearer {KEY})")
    with caplog.at_level("DEBUG"):
        await mf.run_with_model_fallback(
            script({"gpt-4o": err}), CHAIN, observers=[obs, prom, LeakyObserver()]
        )
    assert KEY not in generate_latest(reg).decode()
    assert KEY not in generate_openmetrics(reg).decode()
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in (caplog.text or "")


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


def test_prometheus_without_opentelemetry() -> None:
    """With OpenTelemetry absent, the Prometheus observer works (no exemplars) and so does the core."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if not installed\n"
        "import anyio, model_fallback as mf\n"
        "from prometheus_client import CollectorRegistry\n"
        "from prometheus_client.openmetrics.exposition import generate_latest\n"
        "from model_fallback.prometheus import PrometheusObserver\n"
        "reg = CollectorRegistry(); obs = PrometheusObserver(reg)\n"
        "async def run(c):\n"
        "    if c.model == 'a':\n"
        "        e = Exception('slow'); e.status = 429; raise e\n"
        "    return 'ok'\n"
        "r = anyio.run(lambda: mf.run_with_model_fallback(run, ['p/a', 'p/b'], observers=[obs]))\n"
        "assert r.value == 'ok'\n"
        "assert reg.get_sample_value('model_fallback_runs_total', {'outcome': 'success'}) == 1\n"
        "assert '# {' not in generate_latest(reg).decode()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


async def test_observed_runs_leave_no_reference_cycles(
    otel: tuple[OTelObserver, InMemorySpanExporter, InMemoryMetricReader, TracerProvider],
) -> None:
    """With both observers (spans exported in memory), errors are freed by refcounting alone."""
    from .test_driver import assert_errors_freed_without_gc

    prom = PrometheusObserver(CollectorRegistry(), candidates=CHAIN)
    await assert_errors_freed_without_gc((otel[0], prom))
    assert otel[1].get_finished_spans()  # the spans were really recorded
