"""Set up OpenTelemetry and Prometheus for an application or the CLI (never the library).

:func:`configure` reads the standard ``OTEL_*`` environment variables, builds an SDK
``TracerProvider`` (with a ``BatchSpanProcessor``) and ``MeterProvider`` when an exporter
is configured, optionally serves ``/metrics`` on 127.0.0.1 (one bounded thread, see
:class:`_MetricsServer`), and returns a
:class:`Telemetry` handle whose :attr:`~Telemetry.observers` you pass to
:func:`~model_fallback.run_with_model_fallback`. It installs **no global providers**: the
providers are injected into the observers.

Environment (the OpenTelemetry SDK's names):

==================================  ==========================================================
``OTEL_SDK_DISABLED``               ``true``: no OTel observer at all
``OTEL_SERVICE_NAME``               ``service.name`` (default: the ``service_name`` argument)
``OTEL_RESOURCE_ATTRIBUTES``        extra resource attributes
``OTEL_EXPORTER_OTLP_ENDPOINT``     OTLP endpoint; when set, traces and metrics are exported
``OTEL_EXPORTER_OTLP_PROTOCOL``     ``http/protobuf`` (default here) or ``grpc``
``OTEL_TRACES_EXPORTER``            ``otlp`` (default when an endpoint is set), ``console``, ``none``
``OTEL_METRICS_EXPORTER``           ``otlp`` (default when an endpoint is set), ``console``, ``none``
``OTEL_METRIC_EXPORT_INTERVAL``     milliseconds between metric exports (SDK default 60000)
``MODEL_FALLBACK_TELEMETRY_``       seconds :meth:`Telemetry.shutdown` may take (default 2)
``SHUTDOWN_TIMEOUT``
==================================  ==========================================================

An unreachable OTLP endpoint changes nothing for the caller: spans are queued and exported
by a background thread, and dropped when the queue is full. Shutting down is bounded too:
the final flush gets the shutdown budget (2 s by default), after which the exporters are
stopped, what they could not send is dropped, and one warning (logger
``model_fallback.telemetry``) says how much.
"""

from __future__ import annotations

import atexit
import gzip
import logging
import math
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from model_fallback._model import Candidate

__all__ = ["DEFAULT_SHUTDOWN_TIMEOUT", "Telemetry", "configure"]

DEFAULT_SHUTDOWN_TIMEOUT = 2.0
_SHUTDOWN_ENV = "MODEL_FALLBACK_TELEMETRY_SHUTDOWN_TIMEOUT"
_log = logging.getLogger("model_fallback.telemetry")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _shutdown_budget(argument: float | None, configured: float | None) -> float:
    """Seconds shutdown may take: the argument, else configure()'s, else the environment, else 2."""
    for value in (argument, configured):
        if value is not None:
            return max(0.0, float(value))
    raw = os.environ.get(_SHUTDOWN_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if math.isnan(value) or math.isinf(value):
            _log.warning(
                "%s=%r is not a number of seconds; using %g", _SHUTDOWN_ENV, raw, DEFAULT_SHUTDOWN_TIMEOUT
            )
        else:
            return max(0.0, value)
    return DEFAULT_SHUTDOWN_TIMEOUT


class _ExportGuard:
    """Wraps an OTLP exporter: counts what it delivered, and can be *aborted* — the inner
    exporter is shut down (which cuts a gRPC call in flight and stops the HTTP exporter's
    retries) and further batches are refused at once instead of waiting on a dead endpoint.

    Duck-typed for both signals: the batch span processor calls ``export(spans)``, the
    periodic metric reader ``export(metrics_data, timeout_millis=...)`` and reads the
    preferred temporality and aggregation, which are the inner exporter's.
    """

    def __init__(self, inner: Any, failure: Any, signal: str) -> None:
        self.inner = inner
        self.signal = signal
        self._failure = failure
        self._lock = threading.Lock()
        self._closed = False
        self.aborted = False
        self.delivered = 0  # spans, or metric exports
        self.undelivered = 0
        self.in_flight = 0
        self._preferred_temporality = getattr(inner, "_preferred_temporality", None)
        self._preferred_aggregation = getattr(inner, "_preferred_aggregation", None)

    def _count(self, data: Any) -> int:
        return len(data) if self.signal == "spans" else 1

    def export(self, data: Any, **kwargs: Any) -> Any:
        """Export through the inner exporter, unless aborted; count the outcome."""
        n = self._count(data)
        if self.aborted:
            self.undelivered += n
            return self._failure
        self.in_flight = n
        try:
            result = self.inner.export(data, **kwargs)
        except Exception:
            self.undelivered += n
            raise
        finally:
            self.in_flight = 0
        if result == self._failure or self.aborted:
            self.undelivered += n
        else:
            self.delivered += n
        return result

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        """Nothing is buffered here; the inner exporter's flush."""
        return bool(self.inner.force_flush(timeout_millis=timeout_millis))

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.inner.shutdown()
        except Exception:
            pass

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:  # noqa: ARG002
        """The processor/reader is done with the exporter."""
        self._close()

    def abort(self) -> None:
        """Give up: refuse further batches and stop the inner exporter (cuts a call in flight)."""
        self.aborted = True
        self._close()


def _span_processor_class() -> Any:
    """A BatchSpanProcessor that counts the spans it is given (to say how many were dropped)."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    class CountingBatchSpanProcessor(BatchSpanProcessor):
        ended = 0

        def on_end(self, span: Any) -> None:
            self.ended += 1
            super().on_end(span)

    return CountingBatchSpanProcessor


@dataclass
class Telemetry:
    """What :func:`configure` set up.

    Attributes:
        observers: pass these to the driver (and to session objects).
        prometheus_url: where ``/metrics`` is served, if it is.
        tracer_provider, meter_provider: the SDK providers, if OTel is on.
        prometheus: the PrometheusObserver, if any.
        shutdown_timeout: default budget of :meth:`shutdown` in seconds (``None``: the
            ``MODEL_FALLBACK_TELEMETRY_SHUTDOWN_TIMEOUT`` environment variable, else 2).
    """

    observers: tuple[object, ...] = ()
    prometheus_url: str | None = None
    tracer_provider: Any = None
    meter_provider: Any = None
    prometheus: Any = None
    shutdown_timeout: float | None = None
    _server: Any = field(default=None, repr=False)
    _guards: list[_ExportGuard] = field(default_factory=list, repr=False)
    _span_processors: list[Any] = field(default_factory=list, repr=False)
    _endpoint: str | None = field(default=None, repr=False)
    _done: bool = field(default=False, repr=False)

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush and stop exporters and the HTTP server, within *timeout* seconds; never raises.

        *timeout* defaults to :attr:`shutdown_timeout`, else the environment variable
        ``MODEL_FALLBACK_TELEMETRY_SHUTDOWN_TIMEOUT``, else 2 s. The final export gets that
        long; what has not been delivered by then is dropped (the exporters are stopped, a
        call in flight is abandoned to its daemon thread) and one warning says how much.
        A second call does nothing.
        """
        if self._done:
            return
        self._done = True
        try:
            atexit.unregister(self._at_exit)
        except Exception:
            pass
        budget = _shutdown_budget(timeout, self.shutdown_timeout)
        deadline = time.monotonic() + budget
        self._stop_server()
        threads = []
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is None:
                continue
            # Each provider in its own thread: a dead endpoint for spans must not eat the
            # metrics' share of the budget, and the caller waits for neither past the deadline.
            t = threading.Thread(
                target=_quietly,
                args=(provider.shutdown,),
                name="model-fallback-telemetry-shutdown",
                daemon=True,
            )
            t.start()
            threads.append(t)
        # Keep a little of the budget to stop the exporters and let the threads see it.
        abort_at = deadline - min(0.25, budget / 4)
        for t in threads:
            t.join(max(0.0, abort_at - time.monotonic()))
        if not any(t.is_alive() for t in threads):
            return
        for guard in self._guards:
            guard.abort()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._report_drop(budget)

    def _report_drop(self, budget: float) -> None:
        parts = []
        for guard in self._guards:
            if guard.signal == "spans":
                # Spans the processor was given minus spans delivered: those refused, failed,
                # abandoned in flight, still queued, or evicted from a full queue.
                ended = sum(getattr(p, "ended", 0) for p in self._span_processors)
                lost = max(ended - guard.delivered, guard.undelivered + guard.in_flight)
                parts.append(f"{lost} of {guard.delivered + lost} spans")
            else:
                lost = guard.undelivered + (guard.in_flight > 0)
                parts.append(f"{lost} of {guard.delivered + lost} metric exports")
        _log.warning(
            "telemetry shutdown did not finish within %.1f s (OTLP endpoint %s not answering): "
            "dropped what was not delivered, %s",
            budget,
            self._endpoint or "?",
            " and ".join(parts) or "of unknown size",
        )

    def _stop_server(self) -> None:
        if self._server is not None:
            try:
                self._server.shutdown()
                self._server.server_close()
            except Exception:
                pass
            self._server = None

    def _at_exit(self) -> None:
        self.shutdown()


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:
        pass


_MAX_REQUEST = 16 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class _Conn:
    __slots__ = ("buf", "keep_alive", "last", "out", "sock")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.buf = b""
        self.out: memoryview | None = None
        self.keep_alive = True
        self.last = now


class _MetricsServer:
    """``/metrics`` on one thread, whatever the number of clients.

    A thread-per-connection server (``prometheus_client.start_http_server``) holds a thread per
    idle socket — 800 idle sockets made 804 threads — and every scrape renders the exposition
    on its own thread, so 20 scrapers took most of the interpreter from the workload (121 → 45
    runs/s). Here one thread multiplexes every connection with a selector:

    * a connection idle (or sending half a request) for *idle_timeout* seconds is closed;
    * at most *max_connections* are open: a new one beyond that closes the longest-idle one;
    * the exposition is rendered at most every *min_interval* seconds per format, and scrapes
      in between get the cached bytes;
    * the thread's CPU time is capped to *cpu_share* of the wall clock (with a small burst):
      past it, the thread sleeps and the clients wait, not the workload.

    HTTP/1.1 with keep-alive, ``GET``/``HEAD`` on any path (as ``prometheus_client`` does),
    content negotiation (OpenMetrics with exemplars, or the text format) and gzip.
    """

    def __init__(
        self,
        addr: str,
        port: int,
        registry: Any,
        *,
        idle_timeout: float = 10.0,
        max_connections: int = 64,
        min_interval: float = 1.0,
        cpu_share: float = 0.1,
    ) -> None:
        if not 0 < cpu_share <= 1 or idle_timeout <= 0 or max_connections < 1 or min_interval < 0:
            raise ValueError("cpu_share in (0, 1], idle_timeout > 0, max_connections >= 1, min_interval >= 0")
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self._sock = socket.create_server((addr, port), family=family, backlog=128)
        self._sock.setblocking(False)
        self.server_address: tuple[str, int] = self._sock.getsockname()[:2]
        self.registry = registry
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.min_interval = min_interval
        self.cpu_share = cpu_share
        self._conns: dict[socket.socket, _Conn] = {}
        self._cache: dict[tuple[str, bool], tuple[float, bytes]] = {}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._sock, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._serve, name="model-fallback-metrics", daemon=True)

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def connections(self) -> int:
        """Open client connections (for tests and curiosity)."""
        return len(self._conns)

    def shutdown(self) -> None:
        """Stop serving (waits for the thread at most a second)."""
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(1.0)

    def server_close(self) -> None:
        """Close the listening socket and every connection."""
        for conn in list(self._conns.values()):
            self._close(conn)
        for s in (self._sock, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass
        try:
            self._sel.close()
        except Exception:
            pass

    # --- the loop ----------------------------------------------------------------------

    def _serve(self) -> None:
        budget = burst = 0.2  # CPU seconds the thread may spend before it is throttled
        cpu = time.thread_time()
        wall = time.monotonic()
        while not self._stop.is_set():
            try:
                events = self._sel.select(self._next_timeout())
            except OSError:
                if self._stop.is_set():
                    return
                raise
            for key, mask in events:
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    return
                else:
                    conn: _Conn = key.data
                    try:
                        if mask & selectors.EVENT_READ:
                            self._read(conn)
                        elif mask & selectors.EVENT_WRITE:
                            self._write(conn)
                    except Exception:  # one bad connection must not stop /metrics
                        self._close(conn)
            self._expire()
            now_cpu, now = time.thread_time(), time.monotonic()
            budget = min(burst, budget - (now_cpu - cpu) + (now - wall) * self.cpu_share)
            cpu, wall = now_cpu, now
            if budget < 0:
                # Over its share: sleep (releasing the interpreter to the workload) until the
                # share is paid back. Clients wait in the kernel's queues meanwhile.
                self._stop.wait(-budget / self.cpu_share)
                cpu, wall = time.thread_time(), time.monotonic()
                budget = 0.0

    def _next_timeout(self) -> float:
        if not self._conns:
            return 1.0
        oldest = min(c.last for c in self._conns.values())
        return max(0.01, min(1.0, oldest + self.idle_timeout - time.monotonic()))

    def _expire(self) -> None:
        limit = time.monotonic() - self.idle_timeout
        for conn in [c for c in self._conns.values() if c.last < limit]:
            self._close(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: try again on the next event
                return
            if len(self._conns) >= self.max_connections:
                waiting = [c for c in self._conns.values() if c.out is None]
                if waiting:
                    self._close(min(waiting, key=lambda c: c.last))
                else:
                    sock.close()
                    continue
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic())
            self._conns[sock] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.sock, None) is None:
            return
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            conn.sock.close()
        except OSError:
            pass

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.last = time.monotonic()
        conn.buf += data
        self._respond(conn)

    def _respond(self, conn: _Conn) -> None:
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > _MAX_REQUEST:
                conn.keep_alive = False
                self._send(conn, 431, [], b"")
            return
        head, conn.buf = conn.buf[:end].decode("latin-1"), conn.buf[end + 4 :]
        lines = head.split("\r\n")
        parts = lines[0].split()
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            conn.keep_alive = False
            self._send(conn, 400, [], b"")
            return
        method, version = parts[0], parts[2]
        connection = headers.get("connection", "").lower()
        conn.keep_alive = "close" not in connection if version != "HTTP/1.0" else "keep-alive" in connection
        if headers.get("content-length", "0").strip() not in ("", "0") or "transfer-encoding" in headers:
            conn.keep_alive = False  # a body we do not read: do not parse it as the next request
        if method not in ("GET", "HEAD"):
            self._send(conn, 405, [("Allow", "GET, HEAD")], b"")
            return
        try:
            content_type, body, gzipped = self._exposition(
                headers.get("accept", ""), headers.get("accept-encoding", "")
            )
        except Exception:
            conn.keep_alive = False
            self._send(conn, 503, [], b"")
            return
        extra = [("Content-Type", content_type)]
        if gzipped:
            extra.append(("Content-Encoding", "gzip"))
        self._send(conn, 200, extra, body, head_only=method == "HEAD")

    def _exposition(self, accept: str, accept_encoding: str) -> tuple[str, bytes, bool]:
        from prometheus_client.exposition import choose_encoder, gzip_accepted

        encoder, content_type = choose_encoder(accept)
        gzipped = gzip_accepted(accept_encoding)
        key = (content_type, gzipped)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.min_interval:
            return content_type, cached[1], gzipped
        body = encoder(self.registry)
        if gzipped:
            body = gzip.compress(body, compresslevel=6)
        self._cache[key] = (now, body)
        return content_type, body, gzipped

    def _send(
        self, conn: _Conn, status: int, headers: list[tuple[str, str]], body: bytes, head_only: bool = False
    ) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if not conn.keep_alive:
            lines.append("Connection: close")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)
        conn.out = memoryview(raw)
        self._sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        out = conn.out
        if out is None:
            return
        try:
            n = conn.sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.last = time.monotonic()
        if n < len(out):
            conn.out = out[n:]
            return
        conn.out = None
        if not conn.keep_alive:
            self._close(conn)
            return
        self._sel.modify(conn.sock, selectors.EVENT_READ, conn)
        if conn.buf:  # a pipelined request already read
            self._respond(conn)


def configure(
    service_name: str = "model-fallback",
    *,
    prometheus_port: int | None = None,
    prometheus_addr: str = "127.0.0.1",
    candidates: Iterable[Candidate | str] = (),
    registry: Any = None,
    otel: bool | None = None,
    shutdown_timeout: float | None = None,
) -> Telemetry:
    """Set up telemetry from the environment and arguments.

    Args:
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` is set.
        prometheus_port: serve ``/metrics`` on this port (``None``/0: don't serve, but still
            record into *registry* if a Prometheus observer is wanted — see *registry*).
        prometheus_addr: bind address of ``/metrics`` (loopback by default, on purpose). The
            server is one thread whatever the number of clients: idle connections are closed
            after 10 s and capped at 64, the exposition is rendered at most once a second, and
            the thread takes at most ~10 % of the interpreter's time.
        candidates: candidates whose metric label sets are created up front.
        registry: a ``prometheus_client`` registry (default: the global one).
        otel: force the OTel observer on/off (default: on when an OTLP endpoint or a
            traces/metrics exporter is configured and ``OTEL_SDK_DISABLED`` is not true).
        shutdown_timeout: seconds :meth:`Telemetry.shutdown` may take (default: the
            ``MODEL_FALLBACK_TELEMETRY_SHUTDOWN_TIMEOUT`` environment variable, else 2).

    Raises:
        OSError: the Prometheus port cannot be bound (e.g. already in use).
    """
    handle = Telemetry(shutdown_timeout=shutdown_timeout)
    observers: list[object] = []
    chain = [c if isinstance(c, Candidate) else Candidate.parse(c) for c in candidates]

    if prometheus_port:
        from prometheus_client import REGISTRY

        from model_fallback.prometheus import PrometheusObserver

        reg = REGISTRY if registry is None else registry
        server = _MetricsServer(prometheus_addr, prometheus_port, reg)
        server.start()
        handle._server = server
        handle.prometheus_url = f"http://{prometheus_addr}:{prometheus_port}/metrics"
        handle.prometheus = PrometheusObserver(reg, candidates=chain)
        observers.append(handle.prometheus)

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    traces_exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp" if endpoint else "none").strip().lower()
    metrics_exporter = os.environ.get("OTEL_METRICS_EXPORTER", "otlp" if endpoint else "none").strip().lower()
    if otel is None:
        otel = not _env_flag("OTEL_SDK_DISABLED") and (
            traces_exporter != "none" or metrics_exporter != "none"
        )
    if otel:
        try:
            tp, mp = _sdk(service_name, traces_exporter, metrics_exporter, handle)
        except ImportError as exc:
            raise RuntimeError(f"OpenTelemetry export needs 'model-fallback[otel]': {exc}") from exc
        from model_fallback.otel import OTelObserver

        handle.tracer_provider, handle.meter_provider = tp, mp
        handle._endpoint = endpoint
        # Instead of the SDK's own exit hooks (30 s each against a dead endpoint): the bounded one.
        atexit.register(handle._at_exit)
        # OTel first: its attempt span is current when the Prometheus observer takes exemplars.
        observers.insert(0, OTelObserver(tracer_provider=tp, meter_provider=mp))
    handle.observers = tuple(observers)
    return handle


def _protocol() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip().lower()


def _sdk(
    service_name: str, traces_exporter: str, metrics_exporter: str, handle: Telemetry
) -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExportResult

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    tp = TracerProvider(resource=resource, shutdown_on_exit=False)
    protocol = _protocol()
    if protocol not in ("http/protobuf", "grpc"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported (http/protobuf or grpc)")
    if traces_exporter == "otlp":
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpan

            span_exporter: Any = GrpcSpan()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpan

            span_exporter = HttpSpan()
        guard = _ExportGuard(span_exporter, SpanExportResult.FAILURE, "spans")
        processor = _span_processor_class()(guard)
        handle._guards.append(guard)
        handle._span_processors.append(processor)
        tp.add_span_processor(processor)
    elif traces_exporter == "console":
        tp.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    readers = []
    if metrics_exporter == "otlp":
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetric,
            )

            metric_exporter: Any = GrpcMetric()
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetric,
            )

            metric_exporter = HttpMetric()
        metric_guard: Any = _ExportGuard(metric_exporter, MetricExportResult.FAILURE, "metrics")
        handle._guards.append(metric_guard)
        readers.append(PeriodicExportingMetricReader(metric_guard))
    elif metrics_exporter == "console":
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    mp = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    return tp, mp
