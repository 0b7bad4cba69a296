"""What the observer tests share: a scripted run, the in-memory OTel SDK, span and point lookups."""

from __future__ import annotations

import gzip
import http.server
import socket
import threading
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import model_fallback as mf

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


def long_names(n: int, size: int) -> list[str]:
    """*n* provider/model names of ~*size* characters that differ only at their very end."""
    return [f"{'p' * size}/{'m' * size}-{i}" for i in range(n)]


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

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


class socket_closed_port:  # noqa: N801 - used as a context manager
    """A 127.0.0.1 port with nothing listening (connections are refused)."""

    def __enter__(self) -> int:

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = int(s.getsockname()[1])
        s.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        pass


class HangingServer:
    """Accepts connections on 127.0.0.1, reads, never answers (a hung collector)."""

    def __init__(self) -> None:

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
