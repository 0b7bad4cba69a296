"""Telemetry.shutdown() is bounded when the OTLP endpoint is down.

Real exporters (OTLP/HTTP and OTLP/gRPC) against a real closed port (connections refused) and
a real black-hole listener (accepts TCP, never answers), after real runs have queued spans:
shutdown returns within its budget (default 2 s; the parameter and
``MODEL_FALLBACK_TELEMETRY_SHUTDOWN_TIMEOUT`` change it), drops what it could not send, and
says so in one warning. With a working receiver nothing is dropped and nothing is said. The
command, with a black-hole endpoint, ends within its duration plus a few seconds (it took
44 s). Timed assertions are loose on purpose: the point is ~2 s against 15-44 s.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import model_fallback as mf

from .telemetry_support import CHAIN, HangingServer, Receiver, http_error, script, socket_closed_port

LOGGER = "model_fallback.telemetry"


@pytest.fixture
def dead_endpoints() -> Iterator[dict[str, str]]:
    """A refusing port and a black-hole listener, as endpoint URLs."""
    hung = HangingServer()
    with socket_closed_port() as closed:
        try:
            yield {"refused": f"http://127.0.0.1:{closed}", "black-hole": f"http://127.0.0.1:{hung.port}"}
        finally:
            hung.close()


def _configure(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, protocol: str, delay_ms: int = 100, **kwargs: Any
) -> Any:
    from model_fallback import telemetry

    for name in list(os.environ):
        if name.startswith("OTEL_") or name == "MODEL_FALLBACK_TELEMETRY_SHUTDOWN_TIMEOUT":
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", str(delay_ms))
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    return telemetry.configure("shutdown-test", **kwargs)


def _runs(handle: Any, n: int = 300) -> None:
    async def go() -> None:
        for _ in range(n):
            await mf.run_with_model_fallback(
                script({"gpt-4o": http_error(429, "slow")}), CHAIN, observers=handle.observers
            )

    anyio.run(go)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("kind", ["refused", "black-hole"])
def test_shutdown_is_bounded_when_the_endpoint_is_down(
    kind: str,
    protocol: str,
    dead_endpoints: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = _configure(monkeypatch, dead_endpoints[kind], protocol)
    _runs(handle)
    time.sleep(0.5)  # let an export start: shutdown must cut one in flight too
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        t0 = time.monotonic()
        handle.shutdown()
        elapsed = time.monotonic() - t0
    print(f"\n{protocol} {kind}: shutdown {elapsed:.2f} s")
    assert elapsed < 5.0  # default budget 2 s; it took 15-40 s
    (warning,) = _warnings(caplog)
    assert "did not finish within 2.0 s" in warning and "not delivered" in warning and " spans" in warning
    handle.shutdown()  # a second call is a no-op, and still quick
    assert len(_warnings(caplog)) == 1


def test_the_budget_comes_from_the_argument_or_the_environment(
    dead_endpoints: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for how in ("shutdown()", "configure()", "env"):
        kwargs = {"shutdown_timeout": 0.5} if how == "configure()" else {}
        handle = _configure(monkeypatch, dead_endpoints["black-hole"], "http/protobuf", **kwargs)
        if how == "env":
            monkeypatch.setenv("MODEL_FALLBACK_TELEMETRY_SHUTDOWN_TIMEOUT", "0.5")
        _runs(handle, 50)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            t0 = time.monotonic()
            handle.shutdown(timeout=0.5) if how == "shutdown()" else handle.shutdown()
            elapsed = time.monotonic() - t0
        assert elapsed < 2.0, how
        (warning,) = _warnings(caplog)
        assert "within 0.5 s" in warning, (how, warning)


def test_a_bad_environment_value_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from model_fallback import telemetry

    monkeypatch.setenv("MODEL_FALLBACK_TELEMETRY_SHUTDOWN_TIMEOUT", "soon")
    assert telemetry._shutdown_budget(None, None) == telemetry.DEFAULT_SHUTDOWN_TIMEOUT
    monkeypatch.setenv("MODEL_FALLBACK_TELEMETRY_SHUTDOWN_TIMEOUT", "-3")
    assert telemetry._shutdown_budget(None, None) == 0.0
    assert telemetry._shutdown_budget(1.5, 9.0) == 1.5
    assert telemetry._shutdown_budget(None, 9.0) == 9.0


def test_a_working_receiver_gets_everything_and_nothing_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # nothing exported before shutdown: the flush at shutdown sends it all
        handle = _configure(
            monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", "http/protobuf", delay_ms=60_000
        )
        _runs(handle, 40)
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            handle.shutdown()
        spans = sum(
            len(ss.spans) for req in server.requests for rs in req.resource_spans for ss in rs.scope_spans
        )
        assert spans == 40 * 3  # a run span and two attempt spans per run
        assert "/v1/metrics" in server.paths
        assert _warnings(caplog) == []
    finally:
        server.shutdown()
        server.server_close()


def test_simulate_with_a_black_hole_endpoint_ends_on_time() -> None:
    """The command: --duration 2 against a collector that never answers. It took 44 s."""
    hung = HangingServer()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{hung.port}"
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "model_fallback", "simulate", "--duration", "2", "--metrics-port", "0",
             "--json", "--no-progress"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
    finally:
        hung.close()
    print(f"\nsimulate --duration 2, black-hole OTLP endpoint: {elapsed:.1f} s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert hung.conns, "the exporter never tried"
    assert elapsed < 2 + 8
    assert proc.stderr.count("did not finish within") == 1, proc.stderr[-2000:]
