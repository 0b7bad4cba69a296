"""A loopback HTTP server that answers like a provider's API, for the SDK error corpus.

Every canned answer lives under its own path prefix, ``/c/<key>/``: a test registers an
answer (status, headers, body bytes) under a fresh key and points the SDK's base URL at
``http://127.0.0.1:<port>/c/<key>``. Whatever the SDK then asks below that prefix (any
method, any sub-path) gets that answer. Requests are recorded per key, so a test can check
that the SDK made exactly one attempt (its retries are off).

Other behaviours, for connection-level failures:

* :class:`SilentServer` accepts connections and never answers (read timeouts).
* :func:`closed_port` returns a port nothing listens on (connection refused).
* :class:`TLSServer` speaks TLS with a self-signed certificate generated at test time.

Streamed answers (:class:`Streamed`, registered like an :class:`Answer`) send server-sent
events step by step over a chunked body: bytes, pauses (which watch for the client going
away), or a cut of the connection in the middle of the body. How each stream ended
(``completed``, ``cut``, ``client_disconnected``) is recorded per key.

Only 127.0.0.1 is ever bound. Servers run in daemon threads and are shut down by the
fixtures in ``conftest.py``.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = [
    "CUT",
    "Answer",
    "ByModel",
    "ProviderServer",
    "RecordedRequest",
    "SilentServer",
    "Streamed",
    "TLSServer",
    "closed_port",
    "make_self_signed_cert",
]


@dataclass(frozen=True)
class Answer:
    """What the server sends back: an HTTP status, headers and the raw body."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = "application/json"


class _Cut:
    """The step that closes the connection in the middle of a streamed body."""

    def __repr__(self) -> str:
        return "CUT"


#: A :class:`Streamed` step: close the connection without ending the chunked body.
CUT = _Cut()


@dataclass(frozen=True)
class Streamed:
    """A streamed answer: the status line and headers, then each step in turn.

    A step is ``bytes`` (sent as one chunk of a chunked body, flushed at once), a ``float``
    (a pause of that many seconds, cut short when the client goes away) or :data:`CUT`
    (the connection is closed without the body's last chunk, as a dropped connection
    would). After the last step the body ends normally.
    """

    steps: tuple[bytes | float | _Cut, ...]
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "text/event-stream"


@dataclass(frozen=True)
class ByModel:
    """Answers chosen by the ``model`` field of the request's JSON body, so that one base URL
    serves a whole chain of models (as one provider's endpoint does)."""

    answers: dict[str, Answer | Streamed]


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Registry:
    answers: dict[str, Answer | Streamed | ByModel] = field(default_factory=dict)
    requests: dict[str, list[RecordedRequest]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stream_ends: dict[str, list[str]] = field(default_factory=dict)
    ended: threading.Condition = field(default_factory=threading.Condition)


class _Handler(BaseHTTPRequestHandler):
    server_version = "corpus/1"
    protocol_version = "HTTP/1.1"
    registry: _Registry  # set on the subclass made per server

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.split("/", 3)  # "", "c", key, rest
        key = parts[2].split("?", 1)[0] if len(parts) >= 3 and parts[1] == "c" else ""
        reg = self.registry
        with reg.lock:
            answer = reg.answers.get(key)
            reg.requests.setdefault(key, []).append(
                RecordedRequest(self.command, self.path, dict(self.headers.items()), body)
            )
        if isinstance(answer, ByModel):
            try:
                model = json.loads(body).get("model")
            except (ValueError, AttributeError):
                model = None
            answer = answer.answers.get(model) if isinstance(model, str) else None
        if answer is None:
            answer = Answer(404, body=b'{"error": "no canned answer registered for this path"}')
        if isinstance(answer, Streamed):
            self._stream(key, answer)
            return
        self.send_response(answer.status)
        sent = {name.lower() for name, _ in answer.headers}
        if answer.content_type and "content-type" not in sent:
            self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        self.wfile.flush()

    def _stream(self, key: str, answer: Streamed) -> None:
        ended = "completed"
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Cache-Control", "no-cache")
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for step in answer.steps:
                if isinstance(step, _Cut):
                    ended = "cut"
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    break
                if isinstance(step, float | int):
                    if self._client_left_within(float(step)):
                        ended = "client_disconnected"
                        self.close_connection = True
                        break
                    continue
                if step:  # an empty chunk would end the body
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(step), step))
                    self.wfile.flush()
            else:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except OSError:  # a write to a client that went away (broken pipe, reset)
            ended = "client_disconnected"
            self.close_connection = True
        reg = self.registry
        with reg.ended:
            reg.stream_ends.setdefault(key, []).append(ended)
            reg.ended.notify_all()

    def _client_left_within(self, seconds: float) -> bool:
        """Wait *seconds*; True as soon as the client closes its end of the connection."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], left)
            if not readable:
                continue
            try:
                if self.connection.recv(1, socket.MSG_PEEK) == b"":
                    return True
            except (OSError, ValueError):  # reset; ValueError: a TLS socket refuses MSG_PEEK
                return True
            time.sleep(min(0.01, left))  # unexpected bytes from the client: not a disconnect
        return False

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle  # noqa: N815 - http.server names


class ProviderServer:
    """The canned-answer server on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        self._registry = _Registry()
        handler = type("Handler", (_Handler,), {"registry": self._registry})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="corpus-http", daemon=True)
        self._counter = itertools.count()

    def start(self) -> ProviderServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def register(self, answer: Answer | Streamed | ByModel, hint: str = "case") -> str:
        """Register *answer* under a fresh key; return the base URL that serves it."""
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in hint)[:60]
        key = f"{safe}-{next(self._counter)}"
        with self._registry.lock:
            self._registry.answers[key] = answer
        return f"{self.origin}/c/{key}"

    def requests_for(self, base_url: str) -> list[RecordedRequest]:
        """The requests received under the key of *base_url*."""
        key = base_url.rstrip("/").rsplit("/c/", 1)[1].split("/", 1)[0]
        with self._registry.lock:
            return list(self._registry.requests.get(key, []))

    def stream_ends(self, base_url: str, count: int = 1, timeout: float = 5.0) -> list[str]:
        """How the streamed answers under the key of *base_url* ended (``completed``,
        ``cut``, ``client_disconnected``), waiting up to *timeout* seconds for *count*."""
        key = base_url.rstrip("/").rsplit("/c/", 1)[1].split("/", 1)[0]
        reg = self._registry
        with reg.ended:
            reg.ended.wait_for(lambda: len(reg.stream_ends.get(key, [])) >= count, timeout)
            return list(reg.stream_ends.get(key, []))


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (for read timeouts)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="corpus-silent", daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._held.append(conn)  # keep it open; read nothing, answer nothing

    def start(self) -> SilentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            try:
                conn.close()
            except OSError:
                pass
        self._sock.close()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed, never listened)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """Write a fresh self-signed certificate for 127.0.0.1/localhost; return (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "model-fallback corpus test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TLSServer(ProviderServer):
    """The canned-answer server behind TLS with a self-signed certificate (clients must reject it)."""

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"
