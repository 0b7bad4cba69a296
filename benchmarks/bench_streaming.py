"""Streaming overhead: what the wrapper adds per chunk over a bare ``async for``.

The same async generator (N small string chunks, no I/O) is read, in one process:

* bare: ``async for chunk in gen()``;
* ``stream_with_model_fallback`` without observers;
* with ``idle_timeout`` (a cancel scope per chunk);
* with an ObserverSet holding the OpenTelemetry observer (SDK TracerProvider with a
  BatchSpanProcessor and a no-op exporter, MeterProvider with an in-memory reader);
* ``stream_embedded_turn`` on a real session file (lock, user entry, prompt release, fence,
  reply entry), without observers.

Each row reports µs per chunk on long streams (the per-stream cost spread over the chunks)
and its ratio to the bare loop; the per-chunk overhead proper (the slope between streams of
one chunk and of N chunks, minus the bare loop's slope); and the fixed cost per stream
(streams of one chunk: walking the chain, reporting, closing). Rounds alternate between the
rows and the best round is kept.

Goal: <= 1 µs per chunk without observers, and nothing per chunk sent to the OTel SDK: the
script counts the spans started and ended and the metric points recorded per stream, which
must not grow with the number of chunks.

Run: ``.venv/bin/python benchmarks/bench_streaming.py [--quick] [--chunks N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import model_fallback as mf
from model_fallback.events import ObserverSet
from model_fallback.otel import OTelObserver
from model_fallback.session import SessionFile, stream_embedded_turn

CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4"]
CHUNK = "tok "


async def gen(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield CHUNK


class NoopExporter(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Counting(SpanProcessor):
    """Counts the spans the SDK sees start and end (no per-chunk span work may appear)."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started += 1

    def on_end(self, span: Any) -> None:
        self.ended += 1


def otel_set() -> tuple[ObserverSet, Counting, InMemoryMetricReader]:
    tp = TracerProvider()
    tp.add_span_processor(
        BatchSpanProcessor(NoopExporter(), max_queue_size=1 << 16, max_export_batch_size=4096)
    )
    counting = Counting()
    tp.add_span_processor(counting)
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    return ObserverSet([OTelObserver(tracer_provider=tp, meter_provider=mp)]), counting, reader


def metric_points(reader: InMemoryMetricReader) -> int:
    """The sum of every counter and histogram count recorded so far."""
    total = 0
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    total += int(getattr(p, "count", None) or getattr(p, "value", 0) or 0)
    return total


Reader = Callable[[int], Awaitable[int]]


def readers(directory: Path) -> dict[str, Reader]:
    otel, _, _ = otel_set()
    session = SessionFile(directory / "bench.jsonl")
    counter = [0]

    async def bare(n: int) -> int:
        got = 0
        async for _ in gen(n):
            got += 1
        return got

    async def wrapper(n: int) -> int:
        got = 0
        async with mf.stream_with_model_fallback(lambda c: gen(n), CHAIN) as stream:
            async for _ in stream:
                got += 1
        return got

    async def idle(n: int) -> int:
        got = 0
        async with mf.stream_with_model_fallback(lambda c: gen(n), CHAIN, idle_timeout=30) as stream:
            async for _ in stream:
                got += 1
        return got

    async def observed(n: int) -> int:
        got = 0
        async with mf.stream_with_model_fallback(lambda c: gen(n), CHAIN, observers=otel) as stream:
            async for _ in stream:
                got += 1
        return got

    async def turn(n: int) -> int:
        got = 0
        counter[0] += 1
        user = {"role": "user", "content": f"q{counter[0]}"}
        reply = lambda chunks: {"role": "assistant", "n": len(chunks)}  # noqa: E731
        async with stream_embedded_turn(session, user, lambda c: gen(n), CHAIN, reply_entry=reply) as stream:
            async for _ in stream:
                got += 1
        return got

    return {
        "bare async for": bare,
        "stream_with_model_fallback": wrapper,
        "  + idle_timeout": idle,
        "  + ObserverSet(OTelObserver)": observed,
        "stream_embedded_turn (session file)": turn,
    }


async def measure(fns: dict[str, Reader], chunks: int, streams: int, rounds: int) -> dict[str, float]:
    """Best seconds per stream of each row, rounds interleaved."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(streams):
                got = await fn(chunks)
            elapsed = (time.perf_counter() - t0) / streams
            assert got == chunks, (name, got)
            best[name] = min(best[name], elapsed)
    return best


async def otel_calls_per_stream(chunks: int) -> tuple[float, float, float]:
    """Spans started, spans ended and metric points per stream, for streams of *chunks*."""
    otel, counting, reader = otel_set()
    before = metric_points(reader)
    n = 50
    for _ in range(n):
        async with mf.stream_with_model_fallback(lambda c: gen(chunks), CHAIN, observers=otel) as stream:
            async for _ in stream:
                pass
    return counting.started / n, counting.ended / n, (metric_points(reader) - before) / n


async def main(args: argparse.Namespace) -> int:
    chunks, rounds = args.chunks, (3 if args.quick else 7)
    long_streams = 20 if args.quick else 50
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        fns = readers(Path(tmp))
        long = await measure(fns, chunks, long_streams, rounds)
        short = await measure(fns, 1, 200 if args.quick else 1000, rounds)
    base = long["bare async for"]

    def slope(name: str) -> float:
        """µs per additional chunk: the per-stream cost taken out."""
        return (long[name] - short[name]) / (chunks - 1) * 1e6

    print(f"python {sys.version.split()[0]}; {chunks} chunks per stream, best of {rounds} rounds\n")
    print(
        f"{'row':<38} {'µs/chunk':>9} {'ratio':>7} {'per-chunk overhead µs':>22} {'µs/stream (1 chunk)':>20}"
    )
    for name, seconds in long.items():
        print(
            f"{name:<38} {seconds / chunks * 1e6:>9.3f} {seconds / base:>6.2f}x "
            f"{slope(name) - slope('bare async for'):>22.3f} {short[name] * 1e6:>20.1f}"
        )
    print("\n(per-chunk overhead: the slope between streams of 1 and of N chunks, minus the bare loop's)")
    for n in (1, chunks):
        started, ended, points = await otel_calls_per_stream(n)
        print(
            f"\nOTel SDK per stream of {n} chunk(s): {started:g} spans started, {ended:g} ended, "
            f"{points:g} metric points"
        )
    overhead = slope("stream_with_model_fallback") - slope("bare async for")
    goal = overhead <= 1.0
    print(f"\ngoal: <= 1 µs per chunk without observers: {overhead:.3f} µs -> {'met' if goal else 'NOT met'}")
    return 0 if goal else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and streams")
    parser.add_argument("--chunks", type=int, default=1000, help="chunks per stream (default 1000)")
    sys.exit(asyncio.run(main(parser.parse_args())))
