"""Telemetry overhead: µs per request, as ratios, all measured in one process.

Scenario: 3 candidates — HTTP 429, HTTP 503 "overloaded", success — sequential, in-process.

Rows: a bare ``for``/``try`` loop; the driver without observers; with the Prometheus
observer; with the OpenTelemetry observer (SDK TracerProvider + BatchSpanProcessor with a
no-op exporter, MeterProvider with an in-memory reader that is never collected); with both.
And the *floor*: the same SDK calls alone (1 run span, 3 attempt spans, the same metric
recordings) around the bare loop — what any instrumentation of this scenario costs; and those
same calls made by a minimal observer fed by the driver (what any observer costs through the
driver's per-candidate events, before any logic of its own).

Targets: driver <= 5x bare; + Prometheus <= 12x bare; + OTel <= 1.15x the floor.

Run: ``.venv/bin/python benchmarks/bench_overhead.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry

import model_fallback as mf
from model_fallback import telemetry_spec as spec
from model_fallback.events import ObserverSet
from model_fallback.otel import OTelObserver
from model_fallback.prometheus import PrometheusObserver


class RateLimitedError(Exception):
    status_code = 429


class OverloadedError(Exception):
    status_code = 503


CHAIN = [
    mf.Candidate.parse(c) for c in ("openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro")
]


async def run(c: mf.Candidate) -> str:
    if c.provider == "openai":
        raise RateLimitedError("Too Many Requests")
    if c.provider == "anthropic":
        raise OverloadedError("The model is overloaded")
    return "ok"


class NoopExporter(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def sdk() -> tuple[TracerProvider, MeterProvider]:
    tp = TracerProvider()
    tp.add_span_processor(
        BatchSpanProcessor(NoopExporter(), max_queue_size=1 << 16, max_export_batch_size=4096)
    )
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tp, mp


async def bare() -> str:
    for c in CHAIN:
        try:
            return await run(c)
        except Exception:
            continue
    raise RuntimeError("all failed")


class FloorSDK:
    """The instruments and precomputed attribute tables of the floor (index = candidate).

    The same SDK work as the OTel observer does for this scenario: attempts 0 and 1 fail
    (rate_limit, overloaded), attempt 2 succeeds.
    """

    def __init__(self, tp: TracerProvider, mp: MeterProvider, scope: str) -> None:
        self.tracer = tp.get_tracer(scope)
        meter = mp.get_meter(scope)
        buckets = list(spec.GENAI_DURATION_BUCKETS)
        self.attempts = meter.create_counter(spec.ATTEMPTS.otel)
        self.attempt_h = meter.create_histogram(
            spec.ATTEMPT_DURATION.otel, explicit_bucket_boundaries_advisory=buckets
        )
        self.genai = meter.create_histogram(
            "gen_ai.client.operation.duration", explicit_bucket_boundaries_advisory=buckets
        )
        self.runs = meter.create_counter(spec.RUNS.otel)
        self.run_h = meter.create_histogram(
            spec.RUN_DURATION.otel, explicit_bucket_boundaries_advisory=buckets
        )
        self.depth = meter.create_histogram(
            spec.FALLBACK_DEPTH.otel, explicit_bucket_boundaries_advisory=list(spec.FALLBACK_DEPTH.buckets)
        )
        reasons = ("rate_limit", "overloaded", "none")
        self.names = [f"chat {c.model}" for c in CHAIN]
        self.span_attrs = [
            {"gen_ai.operation.name": "chat", "gen_ai.provider.name": c.provider,
             "gen_ai.request.model": c.model, "model_fallback.attempt.index": i}
            for i, c in enumerate(CHAIN)
        ]  # fmt: skip
        self.attempt_attrs = [
            {"provider": c.provider, "model": c.model, "outcome": "provider_failure" if r != "none" else "success",
             "reason": r}
            for c, r in zip(CHAIN, reasons, strict=True)
        ]  # fmt: skip
        self.dur_attrs = [{k: v for k, v in a.items() if k != "reason"} for a in self.attempt_attrs]
        # gen_ai.client.operation.duration carries the GenAI keys without the attempt index.
        self.genai_attrs = [
            {"gen_ai.operation.name": "chat", "gen_ai.provider.name": c.provider, "gen_ai.request.model": c.model,
             **({"error.type": r} if r != "none" else {})}
            for c, r in zip(CHAIN, reasons, strict=True)
        ]  # fmt: skip
        self.candidates = [str(c) for c in CHAIN]
        self.run_attrs = {"outcome": "success"}

    def failed(self, span: Any, i: int, status: int, error: BaseException, duration: float) -> None:
        """Attempt *i* failed: its span attributes, status and metric points."""
        reason = self.attempt_attrs[i]["reason"]
        span.set_attributes({"model_fallback.attempt.outcome": "provider_failure",
                             "model_fallback.failure.reason": reason, "error.type": reason,
                             "model_fallback.error.status": status})  # fmt: skip
        span.set_status(Status(StatusCode.ERROR, str(error)))
        self.points(i, duration)

    def points(self, i: int, duration: float) -> None:
        """The metric points of attempt *i*."""
        self.attempts.add(1, self.attempt_attrs[i])
        self.attempt_h.record(duration, self.dur_attrs[i])
        self.genai.record(duration, self.genai_attrs[i])

    def served(self, run_span: Any, i: int, duration: float) -> None:
        """The run's metric points and span attributes when candidate *i* served."""
        c = CHAIN[i]
        self.runs.add(1, self.run_attrs)
        self.run_h.record(duration, self.run_attrs)
        self.depth.record(i)
        run_span.set_attributes({"model_fallback.outcome": "success", "model_fallback.attempt_count": 3,
                                 "model_fallback.fallback_depth": i, "model_fallback.served.provider": c.provider,
                                 "model_fallback.served.model": c.model, "gen_ai.response.model": c.model})  # fmt: skip


def floor_fn(tp: TracerProvider, mp: MeterProvider) -> Callable[[], Awaitable[str]]:
    """The same SDK work as the OTel observer does, hand-written around the bare loop."""
    f = FloorSDK(tp, mp, "floor")
    tracer = f.tracer

    async def fn() -> str:
        t0 = time.perf_counter()
        run_span = tracer.start_span("model_fallback.run", kind=SpanKind.INTERNAL)
        run_span.set_attribute("model_fallback.candidates", f.candidates)
        tok = otel_context.attach(trace.set_span_in_context(run_span))
        try:
            for i, c in enumerate(CHAIN):
                s = tracer.start_span(f.names[i], kind=SpanKind.CLIENT, attributes=f.span_attrs[i])
                t = otel_context.attach(trace.set_span_in_context(s))
                a0 = time.perf_counter()
                try:
                    value = await run(c)
                except Exception as exc:
                    f.failed(s, i, exc.status_code, exc, time.perf_counter() - a0)  # type: ignore[attr-defined]
                    otel_context.detach(t)
                    s.end()
                    continue
                d = time.perf_counter() - a0
                s.set_attribute("model_fallback.attempt.outcome", "success")
                f.points(i, d)
                otel_context.detach(t)
                s.end()
                f.served(run_span, i, time.perf_counter() - t0)
                return value
            raise RuntimeError("all failed")
        finally:
            otel_context.detach(tok)
            run_span.end()

    return fn


class FloorObserver(mf.Observer):
    """The floor's SDK calls, as observer hooks fed by the driver, everything precomputed.

    What any observer fed through the driver's per-candidate events costs at the least: the
    row between the floor and the OTel observer splits the OTel row's overhead into "through a
    driver at all" and "this observer's own logic".
    """

    component = "floor"

    def __init__(self, tp: TracerProvider, mp: MeterProvider) -> None:
        self.sdk = FloorSDK(tp, mp, "floor-observer")
        self.tracer = self.sdk.tracer
        self.state: list[Any] = [None, None, None, None]

    def run_started(self, event: Any) -> None:
        span = self.tracer.start_span("model_fallback.run", kind=SpanKind.INTERNAL)
        span.set_attribute("model_fallback.candidates", self.sdk.candidates)
        self.state[0], self.state[1] = span, otel_context.attach(trace.set_span_in_context(span))

    def attempt_started(self, event: Any) -> None:
        i = event.index
        span = self.tracer.start_span(
            self.sdk.names[i], kind=SpanKind.CLIENT, attributes=self.sdk.span_attrs[i]
        )
        self.state[2], self.state[3] = span, otel_context.attach(trace.set_span_in_context(span))

    def attempt_ended(self, event: Any) -> None:
        a = event.attempt
        span = self.state[2]
        if a.outcome is mf.Outcome.PROVIDER_FAILURE:
            self.sdk.failed(span, a.index, a.status, a.error, a.duration_s)
        else:
            span.set_attribute("model_fallback.attempt.outcome", "success")
            self.sdk.points(a.index, a.duration_s)
        otel_context.detach(self.state[3])
        span.end()

    def run_ended(self, event: Any) -> None:
        self.sdk.served(self.state[0], event.fallback_depth, event.duration_s)
        otel_context.detach(self.state[1])
        self.state[0].end()


async def main_async(number: int) -> None:
    tp1, mp1 = sdk()
    tp2, mp2 = sdk()
    tp3, mp3 = sdk()
    tp4, mp4 = sdk()
    floor_obs = FloorObserver(tp4, mp4)
    prom = PrometheusObserver(CollectorRegistry(), candidates=CHAIN)
    prom2 = PrometheusObserver(CollectorRegistry(), candidates=CHAIN)
    otel = OTelObserver(tracer_provider=tp1, meter_provider=mp1)
    otel2 = OTelObserver(tracer_provider=tp2, meter_provider=mp2)
    floor = floor_fn(tp3, mp3)
    # The recommended use: one ObserverSet built once and passed to every run.
    prom_set, floor_set = ObserverSet([prom]), ObserverSet([floor_obs])
    otel_set, both_set = ObserverSet([otel]), ObserverSet([otel2, prom2])
    rows: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("bare for/try loop", bare),
        ("driver, no observers", lambda: mf.run_with_model_fallback(run, CHAIN)),
        ("driver + Prometheus", lambda: mf.run_with_model_fallback(run, CHAIN, observers=prom_set)),
        (
            "driver + Prometheus (a tuple per run)",
            lambda: mf.run_with_model_fallback(run, CHAIN, observers=(prom,)),
        ),
        ("SDK floor (same spans + metrics, no driver)", floor),
        (
            "driver + the floor's calls as an observer",
            lambda: mf.run_with_model_fallback(run, CHAIN, observers=floor_set),
        ),
        (
            "driver + OTel (SDK, batch, no-op exporter)",
            lambda: mf.run_with_model_fallback(run, CHAIN, observers=otel_set),
        ),
        (
            "driver + OTel + Prometheus",
            lambda: mf.run_with_model_fallback(run, CHAIN, observers=both_set),
        ),
    ]
    # Interleave the rows (best of 7 rounds each) so that background work — the batch span
    # processor's export thread, the garbage collector — weighs on every row alike.
    results = {name: float("inf") for name, _ in rows}
    for _name, fn in rows:
        for _ in range(min(number, 500)):
            await fn()
    for _ in range(7):
        for name, fn in rows:
            t0 = time.perf_counter()
            for _ in range(number):
                await fn()
            results[name] = min(results[name], (time.perf_counter() - t0) / number * 1e6)
    base = results["bare for/try loop"]
    fl = results["SDK floor (same spans + metrics, no driver)"]
    print(f"{'scenario: 429, 503, success':<46} {'µs/req':>8} {'× bare':>7} {'× floor':>8}")
    for name, us in results.items():
        print(f"  {name:<44} {us:8.2f} {us / base:7.1f} {us / fl:8.2f}")
    print()
    checks = [
        ("driver <= 5x bare", results["driver, no observers"] / base, 5.0),
        ("+ Prometheus <= 12x bare", results["driver + Prometheus"] / base, 12.0),
        ("+ OTel <= 1.15x floor", results["driver + OTel (SDK, batch, no-op exporter)"] / fl, 1.15),
    ]
    through = results["driver + the floor's calls as an observer"]
    print(
        f"  (OTel observer / the floor's calls through the driver: "
        f"{results['driver + OTel (SDK, batch, no-op exporter)'] / through:.2f}; the driver path alone: "
        f"{through / fl:.2f}x floor)"
    )
    for label, value, target in checks:
        print(f"  {label:<28} {value:6.2f}  {'met' if value <= target else 'MISSED'}")
    for tp, mp in ((tp1, mp1), (tp2, mp2), (tp3, mp3), (tp4, mp4)):
        tp.shutdown()
        mp.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, model-fallback {mf.__version__}")
    asyncio.run(main_async(500 if args.quick else 3000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
