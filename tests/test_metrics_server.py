"""The /metrics server of telemetry.configure() (and so of ``model-fallback simulate``).

Real sockets on 127.0.0.1: idle connections must not pile up threads (800 idle sockets made 804
threads with a thread-per-connection server), an idle or half-sent request is closed after a
timeout, connections are capped, and scrapes are served from an exposition rendered at most
every so often, so that many scrapers cannot starve the workload (the throughput figures are
in benchmarks/bench_scrape.py, not in a timed test).
"""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily

from model_fallback import telemetry

CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 10, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, dict(resp.headers), resp.read()


@pytest.fixture
def served() -> Iterator[Any]:
    handle = telemetry.configure(
        prometheus_port=_free_port(), registry=CollectorRegistry(), candidates=CHAIN, otel=False
    )
    try:
        yield handle
    finally:
        handle.shutdown()


def _idle(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def test_idle_connections_do_not_pile_up_threads(served: Any) -> None:
    """300 idle connections: the thread count stays where it was, and a real scrape answers."""
    port = int(served.prometheus_url.split(":")[2].split("/")[0])
    before = threading.active_count()
    socks = _idle(port, 300)
    try:
        time.sleep(0.5)
        during = threading.active_count()
        t0 = time.monotonic()
        status, _, body = _get(served.prometheus_url)
        took = time.monotonic() - t0
    finally:
        for s in socks:
            s.close()
    print(f"\nthreads: {before} before, {during} with 300 idle connections; scrape answered in {took:.3f} s")
    assert during - before <= 2
    assert status == 200 and b"model_fallback_runs_total" in body


class _Counting:
    """A collector that counts how often it is collected (how often the exposition is rendered)."""

    def __init__(self) -> None:
        self.calls = 0

    def collect(self) -> Iterator[Any]:
        self.calls += 1
        c = CounterMetricFamily("renders", "times this collector was collected")
        c.add_metric([], self.calls)
        yield c


def _server(**kwargs: Any) -> Any:
    reg = CollectorRegistry()
    counting = _Counting()
    reg.register(counting)
    server = telemetry._MetricsServer("127.0.0.1", 0, reg, **kwargs)
    server.start()
    return server, counting, f"http://127.0.0.1:{server.server_address[1]}/metrics"


def test_idle_and_half_sent_requests_are_closed_after_the_idle_timeout() -> None:
    server, _, url = _server(idle_timeout=0.5)
    try:
        idle = socket.create_connection(server.server_address, timeout=5)
        half = socket.create_connection(server.server_address, timeout=5)
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        time.sleep(1.5)
        assert idle.recv(10) == b""  # closed by the server
        assert half.recv(10) == b""
        assert _get(url)[0] == 200
        assert server.connections() <= 1
    finally:
        server.shutdown()
        server.server_close()


def test_connections_are_capped_by_evicting_the_oldest_idle_one() -> None:
    server, _, url = _server(max_connections=8)
    try:
        socks = _idle(server.server_address[1], 40)
        time.sleep(0.3)
        assert server.connections() <= 8
        assert _get(url)[0] == 200
        closed = 0
        for s in socks:
            s.settimeout(0.5)
            try:
                closed += s.recv(10) == b""
            except TimeoutError:
                pass
            s.close()
        assert closed >= 40 - 8
    finally:
        server.shutdown()
        server.server_close()


def test_scrapes_are_served_from_a_cached_rendering() -> None:
    """60 scrapes within the render interval render the exposition once; after it, anew."""
    server, counting, url = _server(min_interval=1.0)
    try:
        bodies = {_get(url)[2] for _ in range(60)}
        assert counting.calls == 1 and len(bodies) == 1
        time.sleep(1.1)
        assert b"renders_total 2.0" in _get(url)[2]
    finally:
        server.shutdown()
        server.server_close()


def test_http_details() -> None:
    """Keep-alive, gzip, OpenMetrics negotiation, HEAD, bad methods, oversized headers."""
    server, _, _url = _server(min_interval=0.0)
    try:
        conn = http.client.HTTPConnection(*server.server_address, timeout=5)
        for _ in range(3):  # one connection, three requests
            conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and resp.getheader("Content-Encoding") == "gzip"
            assert b"renders_total" in gzip.decompress(body)
            assert resp.getheader("Content-Type", "").startswith("text/plain")
        conn.request("GET", "/", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        resp = conn.getresponse()
        assert resp.getheader("Content-Type", "").startswith("application/openmetrics-text")
        assert resp.read().endswith(b"# EOF\n")
        conn.request("HEAD", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        conn.request("POST", "/metrics", body=b"x")
        resp = conn.getresponse()
        assert resp.status == 405
        resp.read()
        conn.close()
        with socket.create_connection(server.server_address, timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
            reply = s.recv(100)
            assert reply.startswith(b"HTTP/1.1 431"), reply
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_reader_does_not_block_other_scrapes() -> None:
    """A client that requests a large exposition and never reads it: others are still served."""
    reg = CollectorRegistry()

    class Big:
        def collect(self) -> Iterator[Any]:
            c = CounterMetricFamily("big", "a large family", labels=["i"])
            for i in range(40_000):
                c.add_metric([f"{i:040d}"], i)
            yield c

    reg.register(Big())
    server = telemetry._MetricsServer("127.0.0.1", 0, reg, idle_timeout=2.0)
    server.start()
    try:
        slow = socket.create_connection(server.server_address, timeout=5)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        t0 = time.monotonic()
        status, _, body = _get(f"http://127.0.0.1:{server.server_address[1]}/metrics")
        assert status == 200 and len(body) > 1_000_000
        assert time.monotonic() - t0 < 5
        slow.close()
    finally:
        server.shutdown()
        server.server_close()
