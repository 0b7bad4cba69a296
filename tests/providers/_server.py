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

Only 127.0.0.1 is ever bound. Servers run in daemon threads and are shut down by the
fixtures in ``conftest.py``.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = [
    "Answer",
    "ProviderServer",
    "RecordedRequest",
    "SilentServer",
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


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Registry:
    answers: dict[str, Answer] = field(default_factory=dict)
    requests: dict[str, list[RecordedRequest]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


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
        if answer is None:
            answer = Answer(404, body=b'{"error": "no canned answer registered for this path"}')
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

    def register(self, answer: Answer, hint: str = "case") -> str:
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
