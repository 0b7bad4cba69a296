"""A real redis-server for the Redis tests (Debian's package, installed by scripts/ensure-redis).

Each test that needs one starts its own on a free 127.0.0.1 port, without persistence, in a
temporary directory, and can SIGKILL and restart it on the same port (the fault cases). In
CI a missing redis-server fails the tests instead of skipping them. The other Redis test
modules import :class:`RedisServer` and the ``redis_server`` fixture from here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_tool


def require_redis_py() -> None:
    """Skip the calling module when redis-py is missing (locally); in CI that is a failure."""
    try:
        import redis  # noqa: F401
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("redis-py is not installed (the redis extra)", allow_module_level=True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process bound to 127.0.0.1, that a test may kill and restart."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        self.starts += 1
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / f"redis-{self.starts}.log"),
            "--protected-mode", "yes",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.workdir / f"redis-{self.starts}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}): {log}")
            if self.ping():
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError("redis-server did not answer PING in time")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL (no shutdown, no goodbye to clients) and reap."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        if proc is not None:
            proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a slow Redis)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> object:
        """A synchronous redis-py client (for the tests' own look at the server)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test, stopped (SIGKILL) at its end whatever happens."""
    binary = require_tool("redis-server")
    require_redis_py()
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)  # a paused server would ignore nothing else
        server.kill()


def test_the_test_server_is_loopback_only_and_survives_a_restart(redis_server: RedisServer) -> None:
    """The helper's server listens on 127.0.0.1 only, forgets everything when killed (no
    persistence), and comes back on the same port."""
    client = redis_server.client()
    assert client.config_get("bind")["bind"] == "127.0.0.1"  # type: ignore[attr-defined]
    assert client.set("k", "v")  # type: ignore[attr-defined]
    run_id = client.info("server")["run_id"]  # type: ignore[attr-defined]
    redis_server.kill()
    assert not redis_server.ping()
    redis_server.start()
    client = redis_server.client()
    assert client.get("k") is None  # type: ignore[attr-defined]
    assert client.info("server")["run_id"] != run_id  # type: ignore[attr-defined]
