"""model-fallback against peer libraries, on the same scenario, in one process.

Scenario (the same for everyone): 3 candidates — the first raises HTTP 429, the second
HTTP 503 "overloaded", the third succeeds — in-process, sequential, no network.

Rows: a bare ``for``/``try`` loop (the baseline); model-fallback without observers and
with the OpenTelemetry observer (SDK, batch processor, no-op exporter); and, when the
``bench`` extra is installed (``pip install -e '.[bench]'``), pydantic-ai's
``FallbackModel`` without and with its instrumentation (same SDK setup) and LangChain's
``Runnable.with_fallbacks``.

Run: ``.venv/bin/python benchmarks/bench_peers.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import model_fallback as mf

Row = tuple[str, Callable[[], Awaitable[Any]]]


class RateLimitedError(Exception):
    status_code = 429


class OverloadedError(Exception):
    status_code = 503


async def _bench(fn: Callable[[], Awaitable[Any]], number: int) -> float:
    for _ in range(min(200, number)):
        await fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(number):
            await fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def _sdk() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NoopExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(NoopExporter(), max_queue_size=65536))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tp, mp


def ours() -> list[Row]:
    chain = [
        mf.Candidate.parse(x) for x in ("openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro")
    ]

    async def run(c: mf.Candidate) -> str:
        if c.provider == "openai":
            raise RateLimitedError("Too Many Requests")
        if c.provider == "anthropic":
            raise OverloadedError("The model is overloaded")
        return "ok"

    async def bare() -> str:
        for c in chain:
            try:
                return await run(c)
            except Exception:
                continue
        raise RuntimeError("all failed")

    rows: list[Row] = [
        ("bare for/try loop (baseline)", bare),
        ("model-fallback, no observers", lambda: mf.run_with_model_fallback(run, chain)),
    ]
    try:
        from model_fallback.otel import OTelObserver
    except ImportError:
        print("  (model_fallback.otel not available: instrumented row skipped)")
        return rows
    tp, mp = _sdk()
    otel = (OTelObserver(tracer_provider=tp, meter_provider=mp),)
    rows.append(
        ("model-fallback + OTel observer", lambda: mf.run_with_model_fallback(run, chain, observers=otel))
    )
    return rows


def pydantic_ai_rows() -> list[Row]:
    try:
        from pydantic_ai.exceptions import ModelHTTPError
        from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart
        from pydantic_ai.models import ModelRequestParameters
        from pydantic_ai.models.fallback import FallbackModel
        from pydantic_ai.models.function import AgentInfo, FunctionModel
        from pydantic_ai.models.instrumented import InstrumentationSettings, InstrumentedModel
    except ImportError:
        print("  (pydantic-ai not installed: pip install -e '.[bench]')")
        return []

    def fail(status: int, name: str) -> Any:
        def fn(messages: list[Any], info: AgentInfo) -> ModelResponse:
            raise ModelHTTPError(status_code=status, model_name=name, body={"error": "x"})

        return fn

    def ok(messages: list[Any], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("ok")])

    def models() -> list[Any]:
        return [
            FunctionModel(fail(429, "gpt-4o"), model_name="gpt-4o"),
            FunctionModel(fail(503, "claude-sonnet-4"), model_name="claude-sonnet-4"),
            FunctionModel(ok, model_name="gemini-2.5-pro"),
        ]

    plain = FallbackModel(*models())
    tp, mp = _sdk()
    instrumented = InstrumentedModel(
        FallbackModel(*models()), InstrumentationSettings(tracer_provider=tp, meter_provider=mp)
    )
    messages = [ModelRequest(parts=[UserPromptPart("hi")])]
    params = ModelRequestParameters()
    return [
        ("pydantic-ai FallbackModel", lambda: plain.request(messages, None, params)),
        ("pydantic-ai FallbackModel + instrumentation", lambda: instrumented.request(messages, None, params)),
    ]


def langchain_rows() -> list[Row]:
    try:
        from langchain_core.runnables import RunnableLambda
    except ImportError:
        print("  (langchain-core not installed: pip install -e '.[bench]')")
        return []

    async def first(x: str) -> str:
        raise RateLimitedError("Too Many Requests")

    async def second(x: str) -> str:
        raise OverloadedError("The model is overloaded")

    async def third(x: str) -> str:
        return "ok"

    chain = RunnableLambda(first).with_fallbacks([RunnableLambda(second), RunnableLambda(third)])
    return [("LangChain with_fallbacks", lambda: chain.ainvoke("hi"))]


async def main_async(number: int) -> None:
    rows = ours() + pydantic_ai_rows() + langchain_rows()
    results = []
    for name, fn in rows:
        us = await _bench(fn, number)
        results.append((name, us))
    base = results[0][1]
    print(f"\n{'scenario: 429, 503, success':<46} {'µs/request':>11} {'× bare':>8}")
    for name, us in results:
        print(f"  {name:<44} {us:11.2f} {us / base:8.1f}")
    by = dict(results)
    ours_plain = by.get("model-fallback, no observers")
    ours_otel = by.get("model-fallback + OTel observer")
    peers_plain = [v for k, v in by.items() if k in ("pydantic-ai FallbackModel", "LangChain with_fallbacks")]
    peers_instr = [v for k, v in by.items() if k == "pydantic-ai FallbackModel + instrumentation"]
    if ours_plain and peers_plain:
        print(
            f"\nuninstrumented: fastest peer / model-fallback = {min(peers_plain) / ours_plain:.1f}x (target >= 40x)"
        )
    if ours_otel and peers_instr:
        print(
            f"instrumented:   fastest peer / model-fallback = {min(peers_instr) / ours_otel:.1f}x (target >= 5x)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, model-fallback {mf.__version__}")
    asyncio.run(main_async(500 if args.quick else 5000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
