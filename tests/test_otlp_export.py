"""OTLP on the wire: a real receiver, an unreachable and a hanging endpoint, loopback binds."""

from __future__ import annotations

import threading
import time

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry

import model_fallback as mf
from model_fallback import telemetry_spec as spec
from model_fallback.otel import OTelObserver

from .telemetry_support import (
    CHAIN,
    KEY,
    HangingServer,
    Receiver,
    http_error,
    script,
    socket_closed_port,
)

pytestmark = pytest.mark.anyio


# --- OTLP on the wire ------------------------------------------------------------------


def test_otlp_http_export_reaches_a_real_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real OTLP/HTTP exporter (via telemetry.configure) sends spans with the contract's attributes."""
    from model_fallback import telemetry

    server = Receiver()
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
        reachable = Receiver()
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


def test_hanging_otlp_endpoint_changes_nothing() -> None:
    """A collector that accepts and never answers: 1 000 runs give the same results; the
    added time is printed (the exporter blocks only its own background thread)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    hung = HangingServer()
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
