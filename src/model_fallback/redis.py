"""Cooldowns and session locks shared through Redis (extra ``redis``: redis-py's asyncio client).

* :class:`RedisCooldownStore` — a :class:`~model_fallback.cooldown.CooldownStore` that shares
  cooldowns (and the one probe of each cooldown) between every process and host on one Redis.
  The driver reads a local mirror, so a run makes no Redis round trip; writes go to the
  mirror at once and to Redis from the store's own thread; other processes' writes arrive by
  pub/sub. Redis down, slow or restarted never fails or slows a run.
* :class:`RedisSessionLock` — the session write lock for transcripts shared between hosts:
  ``SET key token NX PX ttl``, renewed while held, released only by its holder.

Only this module imports redis; the core (driver, cooldown, session) never does. The store
talks to Redis from a thread of its own (its own asyncio loop), so it serves runs on any
event loop (asyncio or trio) and any thread. The lock uses the ``redis.asyncio`` client you
give it, so it runs on asyncio.

Redis layout of the store (``ns`` is the namespace, default ``model_fallback``):

* ``{ns}:cd:{provider}/{model}`` — a cooldown, JSON ``{"reason", "streak", "until_wall"}``
  (``until_wall``: epoch seconds), expiring ``keep_expired_s`` after its end (it keeps the
  failure streak that long, so the next failure backs off further);
* ``{ns}:probe:{provider}/{model}`` — who probes that cooldown, JSON ``{"origin",
  "until_wall"}``, expiring when the cooldown ends;
* channel ``{ns}:events`` — one JSON message per write: ``{"o": origin, "s": seq, "op":
  "set" | "del" | "probe" | "unprobe", "k": key, "v": value}``, published in the same
  ``MULTI``/``EXEC`` as the write, so every subscriber sees writes in Redis's own order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import anyio
import anyio.to_thread
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from model_fallback._model import FailoverReason
from model_fallback._redact import redact, redact_url
from model_fallback.cooldown import STORE_COMPONENT, CooldownEntry, count_store_error
from model_fallback.errors import SessionWriteLockTimeoutError
from model_fallback.events import LockAcquired, LockTimedOut, Observer, ObserverSet
from model_fallback.session._lock import SessionLockLostError, pid_alive

__all__ = ["RedisCooldownStore", "RedisSessionLock"]

_log = logging.getLogger("model_fallback.redis")
_HOST = socket.gethostname()
T = TypeVar("T")

# Tasks started from synchronous code (a lock released by HeldSession, a cancelled acquire's
# clean-up): kept here so that the event loop does not drop them half-way.
_BACKGROUND: set[asyncio.Task[Any]] = set()


def _spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        coro.close()
        return None
    task: asyncio.Task[Any] = loop.create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


async def _bounded(aw: Awaitable[T], seconds: float) -> T:
    """``await aw``, at most *seconds* (``TimeoutError`` past them).

    ``asyncio.timeout`` rather than ``wait_for``: no task of its own, so a command that fails
    just as its session is torn down leaves no "exception was never retrieved" behind.
    """
    async with asyncio.timeout(seconds):
        return await aw


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # the task group of a session: say what failed in it
    return redact(f"{type(exc).__name__}: {exc}", limit=300)


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


# The writer's lingering after a write: how long, and how often it looks for more.
_LINGER_S = 0.05
_POLL_S = 0.001


class _Op(NamedTuple):
    """A write not yet confirmed by Redis."""

    seq: int
    op: str  # set | del | probe | unprobe
    key: str  # the cooldown key ("provider/model")
    entry: CooldownEntry | None  # set
    until_wall: float  # probe / unprobe: the cooldown the claim is for


# (un)probe: delete the claim only if it is still ours, then tell everyone.
_UNPROBE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
# After Redis lost its data (a restart without persistence): put back what this process
# still knows, without overwriting what another process wrote since.
_RESTORE = """
if redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2], 'NX') then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return 1
end
return 0
"""


class RedisCooldownStore:
    """Cooldowns shared by every process on one Redis, read from a local mirror.

    ``async with RedisCooldownStore(url) as store:`` connects, loads the namespace into the
    mirror and keeps it fresh (pub/sub of the store's own channel: no server configuration);
    ``CooldownTracker(store=store)`` then honours a cooldown recorded by any process within
    the pub/sub delay (milliseconds on a LAN; the contract is 0.5 s).

    * **Reads** (every candidate of every run: :meth:`get`) are a dict lookup in the mirror;
      a healthy run makes no Redis command at all.
    * **Writes** (:meth:`set`, :meth:`delete`, probe claims) update the mirror at once and are
      queued, coalesced per key, for the store's thread, which writes them with their
      ``PUBLISH`` in one ``MULTI``/``EXEC``. The tracker's methods stay synchronous and never
      wait on Redis; the system calls of Redis I/O, reconnection attempts and reloads run on
      that thread, not on the loop of your runs.
    * **Redis down, slow or restarted**: runs go on with the mirror (this process's own writes
      included); every failed connection or write counts one error under
      ``model_fallback_telemetry_errors_total{component="cooldown_store"}`` (see
      :func:`~model_fallback.cooldown.count_store_error`; observers given here with a
      ``count_error(component)`` method, like the Prometheus one, are told too); the store
      reconnects with capped backoff, writes what it queued meanwhile, and reloads the whole
      namespace (``SCAN`` + ``MGET``). A Redis that restarted empty (a new ``run_id``) gets
      back the cooldowns this process still knows (``SET NX``: never over a newer write).

    Entries carry wall-clock expiry (``until_wall``); hosts must keep their clocks in sync
    (NTP), as every wall-clock lease does.

    Args:
        url: ``redis://[[user]:password@]host:port/db`` (``rediss://`` for TLS,
            ``unix://`` for a socket).
        namespace: key and channel prefix; stores with the same namespace share cooldowns.
        keep_expired_s: how long an ended cooldown stays (in Redis and in the mirror) to
            carry its failure streak to the next failure.
        resync_interval: seconds between full reloads while connected (anti-entropy; a
            reload after every reconnection happens regardless); None or 0 disables them.
        connect_timeout: seconds for one connection attempt (and for entering the store:
            past it, the store starts with an empty mirror and keeps trying).
        command_timeout: seconds before a Redis command counts as failed.
        max_backoff: the cap of the delay between reconnection attempts.
        max_pending: how many keys of unconfirmed writes are kept while Redis is away;
            beyond it the oldest are dropped (and counted as errors).
        observers: objects told of store errors through ``count_error("cooldown_store")``
            (e.g. a :class:`~model_fallback.prometheus.PrometheusObserver`).
        client_options: extra keyword arguments for ``redis.asyncio.Redis.from_url``.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "model_fallback",
        keep_expired_s: float = 600.0,
        resync_interval: float | None = 60.0,
        connect_timeout: float = 1.0,
        command_timeout: float = 1.0,
        max_backoff: float = 1.0,
        max_pending: int = 10_000,
        observers: Iterable[object] = (),
        client_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ValueError("url must be a redis:// URL")
        if not isinstance(namespace, str) or not namespace:
            raise ValueError("namespace must be a non-empty string")
        for name, value in (
            ("keep_expired_s", keep_expired_s),
            ("connect_timeout", connect_timeout),
            ("command_timeout", command_timeout),
            ("max_backoff", max_backoff),
        ):
            _check_seconds(name, value)
        if resync_interval is not None and (math.isnan(resync_interval) or resync_interval < 0):
            raise ValueError(f"resync_interval must be >= 0 or None, got {resync_interval!r}")
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.url = url
        self.namespace = namespace
        self.keep_expired_s = float(keep_expired_s)
        self.resync_interval = float(resync_interval) if resync_interval else None
        self.connect_timeout = float(connect_timeout)
        self.command_timeout = float(command_timeout)
        self.max_backoff = float(max_backoff)
        self.max_pending = int(max_pending)
        self._observers = tuple(observers)
        self._client_options = dict(client_options or {})
        self._channel = f"{namespace}:events"
        self._cd_prefix = f"{namespace}:cd:"
        self._probe_prefix = f"{namespace}:probe:"
        self._origin = f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"
        # The mirror. Reads need no lock (a dict lookup is atomic); every mutation of the
        # mirror and of the write bookkeeping happens under _guard, since the tracker may be
        # called from other threads than the event loop's.
        self._entries: dict[str, CooldownEntry] = {}
        self._claims: dict[str, tuple[str, float]] = {}  # key -> (origin, until_wall)
        self._guard = threading.Lock()
        self._seq = 0
        # Redis key -> unconfirmed write (insertion order = write order).
        self._pending: dict[str, _Op] = {}
        # Redis key -> seq of this process's last write to it, until its pub/sub echo comes
        # back: until then other processes' messages for that key are older than ours in
        # Redis's order (ours is not applied yet or its echo is still on its way) and are
        # ignored, so that the mirror ends on the value Redis ends on.
        self._inflight: dict[str, int] = {}
        # The store's own thread and event loop, where every Redis command runs.
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._wake_pending = False  # a wake-up is on its way to the writer (one syscall per batch)
        self._synced = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connected = False
        self._down_since: float | None = None
        self._run_id: str | None = None
        self._client: Any = None
        #: failed connections, commands and writes so far (each also counted process-wide)
        self.errors = 0
        #: full reloads of the namespace into the mirror
        self.resyncs = 0
        #: pub/sub messages applied (or ignored as older than a write of ours)
        self.messages = 0
        #: writes confirmed by Redis
        self.writes = 0
        #: writes dropped because more than max_pending keys were waiting
        self.dropped = 0
        #: when (``time.monotonic()``) the mirror was last loaded after a (re)connection
        self.synced_at: float | None = None

    # --- the CooldownStore protocol (synchronous, the driver's path) ------------------

    def get(self, key: str) -> CooldownEntry | None:
        """The mirrored entry for *key*, or None (no Redis command)."""
        return self._entries.get(key)

    def set(self, key: str, entry: CooldownEntry) -> None:
        """Store *entry* under *key*: in the mirror now, in Redis in the background."""
        with self._guard:
            self._entries[key] = entry
            wake = self._enqueue(self._cd_prefix + key, "set", key, entry, entry.until_wall)
        if wake:
            self._wake()

    def delete(self, key: str) -> None:
        """Forget *key*: in the mirror now, in Redis in the background."""
        with self._guard:
            self._entries.pop(key, None)
            wake = self._enqueue(self._cd_prefix + key, "del", key, None, 0.0)
        if wake:
            self._wake()

    def claim_probe(self, key: str, until_wall: float) -> bool:
        """Claim the one probe of the cooldown of *key* ending at *until_wall*.

        False when another process claimed that very cooldown's probe (as far as the mirror
        knows: two processes claiming within the pub/sub delay both probe).
        """
        with self._guard:
            held = self._claims.get(key)
            if held is not None and held[1] == until_wall and held[0] != self._origin:
                return False
            self._claims[key] = (self._origin, until_wall)
            wake = self._enqueue(self._probe_prefix + key, "probe", key, None, until_wall)
        if wake:
            self._wake()
        return True

    def release_probe(self, key: str) -> None:
        """Give back this process's probe claim on *key* (if it has one)."""
        with self._guard:
            held = self._claims.get(key)
            if held is None or held[0] != self._origin:
                return
            del self._claims[key]
            wake = self._enqueue(self._probe_prefix + key, "unprobe", key, None, held[1])
        if wake:
            self._wake()

    def probe_claim(self, key: str) -> tuple[str, float] | None:
        """Who claimed the probe of *key*'s cooldown, as the mirror knows it: ``(origin,
        until_wall)``, or None."""
        return self._claims.get(key)

    def __len__(self) -> int:
        return len(self._entries)

    # --- state ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the store is connected and its mirror synced with Redis."""
        return self._connected

    @property
    def origin(self) -> str:
        """This store's identity in its messages (host, pid, random)."""
        return self._origin

    def stats(self) -> dict[str, Any]:
        """Counters for tests, benchmarks and health checks."""
        return {
            "connected": self._connected,
            "errors": self.errors,
            "resyncs": self.resyncs,
            "messages": self.messages,
            "writes": self.writes,
            "pending": len(self._pending),
            "dropped": self.dropped,
            "entries": len(self._entries),
            "synced_at": self.synced_at,
        }

    def __repr__(self) -> str:
        return (
            f"RedisCooldownStore({redact_url(self.url)!r}, namespace={self.namespace!r}, "
            f"connected={self._connected})"
        )

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> RedisCooldownStore:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the store's thread, which connects and loads the mirror; wait at most
        ``connect_timeout + command_timeout`` for that (Redis unreachable at start is logged,
        counted and retried in the background, never raised).

        Every Redis command runs on that thread's own event loop: a write's system calls, a
        reconnection attempt or a reload never take a moment of the loop that runs your
        fallback runs (which may be asyncio or trio: this waits with anyio).
        """
        if self._thread is not None:
            raise RuntimeError("this RedisCooldownStore is already started")
        self._closing = False
        self._synced.clear()
        ready = threading.Event()
        _STARTED.add(self)
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name=f"RedisCooldownStore({self.namespace})", daemon=True
        )
        self._thread.start()
        await anyio.to_thread.run_sync(ready.wait)
        await anyio.to_thread.run_sync(self._synced.wait, self.connect_timeout + self.command_timeout)
        if not self._connected:
            _log.warning(
                "cooldown store %s: Redis not reachable at start; going on with local cooldowns",
                redact_url(self.url),
            )

    def _thread_main(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._wakeup = asyncio.Event()
            self._task = asyncio.current_task()
            ready.set()
            try:
                await self._supervise()
            finally:
                await self._disconnect()

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        finally:
            ready.set()
            self._loop = self._wakeup = self._task = None

    def _forget_thread(self) -> None:
        """In a forked child: the store's thread did not follow; make it startable again
        here, with an identity of its own (the parent's would confuse the echo bookkeeping)."""
        self._guard = threading.Lock()  # another thread may have held it at the fork
        self._thread = self._loop = self._wakeup = self._task = None
        self._client = None
        self._connected = False
        self._synced = threading.Event()
        self._wake_pending = False
        self._origin = f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"

    async def aclose(self, flush_timeout: float = 1.0) -> None:
        """Write what is queued (waiting at most *flush_timeout*), then disconnect and stop
        the store's thread. The mirror stays readable (as local state)."""
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + flush_timeout
        while self._pending and self._connected and time.monotonic() < deadline:
            self._wake()
            await anyio.sleep(0.005)
        self._closing = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(task.cancel)
        await anyio.to_thread.run_sync(thread.join, 5.0)
        self._thread = None

    async def wait_synced(self, within: float) -> bool:
        """Wait (at most *within* seconds) until the store is connected and its mirror
        loaded; False if it is not by then."""
        deadline = time.monotonic() + within
        while not self._connected:
            if time.monotonic() >= deadline:
                return False
            await anyio.sleep(0.005)
        return True

    # --- writes --------------------------------------------------------------------------

    def _enqueue(self, rkey: str, op: str, key: str, entry: CooldownEntry | None, until_wall: float) -> bool:
        """Queue a write (caller holds _guard); True when the writer needs a wake-up."""
        self._seq += 1
        if rkey in self._pending:
            del self._pending[rkey]  # coalesced: only the last write of a key is sent
        elif len(self._pending) >= self.max_pending:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            self._inflight.pop(oldest, None)
            self.dropped += 1
            self._count(None)
        self._pending[rkey] = _Op(self._seq, op, key, entry, until_wall)
        self._inflight[rkey] = self._seq
        wake = not self._wake_pending
        self._wake_pending = True
        return wake

    def _wake(self) -> None:
        """Wake the writer on the store's thread."""
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(wakeup.set)

    def _message(self, op: _Op) -> str:
        value: Any = None
        if op.op == "set" and op.entry is not None:
            value = _entry_json(op.entry)
        elif op.op in ("probe", "unprobe"):
            value = {"origin": self._origin, "until_wall": op.until_wall}
        return json.dumps({"o": self._origin, "s": op.seq, "op": op.op, "k": op.key, "v": value})

    async def _flush(self, client: Any) -> None:
        """Write every queued op (in batches), one MULTI/EXEC per batch."""
        while True:
            with self._guard:
                batch = list(self._pending.items())[:500]
            if not batch:
                return
            now_ms = int(time.time() * 1000)
            pipe = client.pipeline(transaction=True)
            for rkey, op in batch:
                message = self._message(op)
                if op.op == "set" and op.entry is not None:
                    pxat = max(int((op.entry.until_wall + self.keep_expired_s) * 1000), now_ms + 1000)
                    pipe.set(rkey, json.dumps(_entry_json(op.entry)), pxat=pxat)
                    pipe.publish(self._channel, message)
                elif op.op == "probe":
                    pxat = int(op.until_wall * 1000)
                    if pxat > now_ms:
                        pipe.set(rkey, _claim_json(self._origin, op.until_wall), pxat=pxat)
                    pipe.publish(self._channel, message)
                elif op.op == "unprobe":
                    pipe.eval(
                        _UNPROBE, 1, rkey, _claim_json(self._origin, op.until_wall), self._channel, message
                    )
                else:
                    pipe.delete(rkey)
                    pipe.publish(self._channel, message)
            await _bounded(pipe.execute(), self.command_timeout)
            with self._guard:
                for rkey, op in batch:
                    current = self._pending.get(rkey)
                    if current is not None and current.seq == op.seq:
                        del self._pending[rkey]
            self.writes += len(batch)

    async def _writer(self, client: Any) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            await wakeup.wait()
            wakeup.clear()
            # Waking this thread costs the writing thread a system call (~0.1 ms on a busy
            # VM). While writes keep coming, linger and look every millisecond instead, with
            # _wake_pending left set so that writers do not wake us.
            linger_until = time.monotonic() + _LINGER_S
            while True:
                await self._flush(client)
                if time.monotonic() >= linger_until:
                    with self._guard:
                        if not self._pending:
                            self._wake_pending = False
                            break
                    continue
                await asyncio.sleep(_POLL_S)
                if self._pending:
                    linger_until = time.monotonic() + _LINGER_S

    async def _restore_after_restart(self, client: Any) -> None:
        """Redis came back without our data: put back the live cooldowns we know (NX)."""
        now = time.time()
        with self._guard:
            live = [
                (k, e)
                for k, e in self._entries.items()
                if e.until_wall > now and (self._cd_prefix + k) not in self._pending
            ]
        if not live:
            return
        pipe = client.pipeline(transaction=False)
        for key, entry in live:
            with self._guard:
                self._seq += 1
                seq = self._seq
            message = json.dumps(
                {"o": self._origin, "s": seq, "op": "set", "k": key, "v": _entry_json(entry)}
            )
            pxat = int((entry.until_wall + self.keep_expired_s) * 1000)
            pipe.eval(
                _RESTORE,
                1,
                self._cd_prefix + key,
                json.dumps(_entry_json(entry)),
                pxat,
                self._channel,
                message,
            )
        await _bounded(pipe.execute(), self.command_timeout)
        _log.info("cooldown store: Redis restarted empty; restored %d live cooldown(s)", len(live))

    # --- reads from Redis ----------------------------------------------------------------

    async def _load(self, client: Any) -> None:
        """Reload the namespace into the mirror (keys with a write of ours on its way keep
        the mirror's value: ours lands later)."""
        keys: list[bytes] = []
        match = _glob_escape(self.namespace) + ":*"

        async def scan() -> None:
            keys.extend(
                [
                    k if isinstance(k, bytes) else str(k).encode()
                    async for k in client.scan_iter(match=match, count=1000)
                ]
            )

        await _bounded(scan(), self.command_timeout * 5)
        values: list[Any] = []
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            values.extend(await _bounded(client.mget(chunk), self.command_timeout))
        entries: dict[str, CooldownEntry] = {}
        claims: dict[str, tuple[str, float]] = {}
        bad = 0
        for raw_key, raw in zip(keys, values, strict=True):
            if raw is None:
                continue  # expired between SCAN and MGET
            rkey = raw_key.decode("utf-8", "replace")
            try:
                data = json.loads(raw)
                if rkey.startswith(self._cd_prefix):
                    entries[rkey[len(self._cd_prefix) :]] = _entry_from(data)
                elif rkey.startswith(self._probe_prefix):
                    claims[rkey[len(self._probe_prefix) :]] = (str(data["origin"]), float(data["until_wall"]))
            except (ValueError, TypeError, KeyError):
                bad += 1
        if bad:
            _log.warning("cooldown store: %d unreadable value(s) under %s:*", bad, self.namespace)
        horizon = time.time() - self.keep_expired_s
        with self._guard:
            entries.update(
                {k: e for k, e in self._entries.items() if (self._cd_prefix + k) in self._inflight}
            )
            for key in list(entries):
                if (self._cd_prefix + key) in self._inflight and key not in self._entries:
                    del entries[key]  # deleted here, the delete not yet applied there
            claims.update(
                {k: c for k, c in self._claims.items() if (self._probe_prefix + k) in self._inflight}
            )
            for key in list(claims):
                if (self._probe_prefix + key) in self._inflight and key not in self._claims:
                    del claims[key]
            self._entries = {k: e for k, e in entries.items() if e.until_wall > horizon}
            self._claims = claims
        self.resyncs += 1

    def _apply(self, data: Any) -> None:
        """Apply one pub/sub message to the mirror."""
        try:
            msg = json.loads(data)
            origin, seq, op, key, value = msg["o"], int(msg["s"]), msg["op"], str(msg["k"]), msg["v"]
            if op == "set":
                entry = _entry_from(value)
            elif op in ("probe", "unprobe"):
                claim = (str(value["origin"]), float(value["until_wall"]))
            elif op != "del":
                raise ValueError(f"unknown op {op!r}")
        except (ValueError, TypeError, KeyError) as exc:
            _log.debug("cooldown store: ignored a malformed message: %s", exc)
            return
        rkey = (self._cd_prefix if op in ("set", "del") else self._probe_prefix) + key
        self.messages += 1
        with self._guard:
            mine = self._inflight.get(rkey)
            if mine is not None:
                if origin != self._origin or seq < mine:
                    return
                del self._inflight[rkey]
            if op == "set":
                self._entries[key] = entry
            elif op == "del":
                self._entries.pop(key, None)
            elif op == "probe":
                self._claims[key] = claim
            else:
                held = self._claims.get(key)
                if held is not None and held[0] == claim[0]:
                    del self._claims[key]

    # --- the store's thread ---------------------------------------------------------------

    def _count(self, exc: BaseException | None) -> None:
        self.errors += 1
        count_store_error()
        for obs in self._observers:
            try:
                fn = getattr(obs, "count_error", None)
                if callable(fn):
                    fn(STORE_COMPONENT)
            except Exception:
                pass
        if exc is not None:
            _log.debug("cooldown store %s: %s", redact_url(self.url), _describe(exc))
        if exc is not None and self._down_since is None:
            self._down_since = time.monotonic()
            _log.warning(
                "cooldown store %s: Redis unavailable (%s); runs go on with local cooldowns, "
                "resync when it is back",
                redact_url(self.url),
                _describe(exc),
            )

    async def _supervise(self) -> None:
        delay = 0.05
        while not self._closing:
            began = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                # A connection, a command or a write failed (an ExceptionGroup from the task
                # group of a session, or a plain error while connecting).
                self._count(exc)
            finally:
                self._connected = False
                await self._drop_connections()
            if time.monotonic() - began > 5.0:
                delay = 0.05  # it was up for a while: this is a new outage
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def _make_client(self) -> Any:
        options: dict[str, Any] = {
            "socket_timeout": self.command_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": Retry(NoBackoff(), 0),  # the store retries itself (and resyncs)
            "health_check_interval": 0,
        }
        options.update(self._client_options)
        return aioredis.Redis.from_url(self.url, **options)

    async def _session(self) -> None:
        """One connection: subscribe, write back, reload, then follow the channel and write."""
        # One client for the store's life: building one costs about a millisecond of this
        # event loop's time, too much to pay at every reconnection attempt of an outage.
        if self._client is None:
            self._client = self._make_client()
        client = self._client
        info = await _bounded(client.info("server"), self.command_timeout + self.connect_timeout)
        run_id = str(info.get("run_id", "")) or None
        pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
        try:
            await _bounded(pubsub.subscribe(self._channel), self.command_timeout)
            with self._guard:
                # Echoes of writes sent on a connection that dropped may never come: only
                # what is still queued is on its way now.
                self._inflight = {rkey: op.seq for rkey, op in self._pending.items()}
                self._wake_pending = False  # what is queued now is flushed below; later writes wake
            restarted = self._run_id is not None and run_id is not None and run_id != self._run_id
            self._run_id = run_id
            if restarted:
                await self._restore_after_restart(client)
            await self._flush(client)
            await self._load(client)
            self.synced_at = time.monotonic()
            self._connected = True
            if self._down_since is not None:
                _log.warning(
                    "cooldown store %s: Redis back after %.1fs; mirror reloaded (%d cooldown(s))",
                    redact_url(self.url),
                    time.monotonic() - self._down_since,
                    len(self._entries),
                )
                self._down_since = None
            self._synced.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._writer(client))
                tg.create_task(self._listen(pubsub, client))
        finally:
            self._connected = False
            with contextlib.suppress(Exception):
                await _bounded(pubsub.aclose(), 1.0)

    async def _listen(self, pubsub: Any, client: Any) -> None:
        interval = self.resync_interval
        next_resync = time.monotonic() + interval if interval else math.inf
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                self._apply(message["data"])
            if interval and time.monotonic() >= next_resync:
                await self._load(client)
                next_resync = time.monotonic() + interval

    async def _drop_connections(self) -> None:
        """Close the pool's connections (the next session connects afresh)."""
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                await _bounded(client.connection_pool.disconnect(), 1.0)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await _bounded(client.aclose(), 1.0)


# Stores started in this process, so that a forked child can make them startable again.
_STARTED: weakref.WeakSet[RedisCooldownStore] = weakref.WeakSet()


def _forget_threads_after_fork() -> None:
    for store in list(_STARTED):
        store._forget_thread()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


def _entry_json(entry: CooldownEntry) -> dict[str, Any]:
    return {"reason": entry.reason.value, "streak": entry.streak, "until_wall": entry.until_wall}


def _entry_from(data: Any) -> CooldownEntry:
    if not isinstance(data, dict):
        raise TypeError("a cooldown entry is a JSON object")
    until = float(data["until_wall"])
    if math.isnan(until):
        raise ValueError("until_wall is NaN")
    return CooldownEntry(until, FailoverReason(data["reason"]), int(data["streak"]))


def _claim_json(origin: str, until_wall: float) -> str:
    return json.dumps({"origin": origin, "until_wall": until_wall})


# --- the session lock ------------------------------------------------------------------------

# Extend the lease only while the key still holds our token.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Release only our own lock: compare, then delete.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_POLL_FIRST = 0.002
_POLL_MAX = 0.05


class RedisSessionLock:
    """The session write lock on Redis, for transcripts shared between hosts.

    Acquiring sets ``key`` to a token unique to this acquisition
    (``SET key token NX PX ttl``; the token is ``host:pid:random``), polling with capped
    backoff until ``acquire_timeout``. While held, a background task extends the lease every
    ``ttl / 3`` (a Lua script that extends only while the key still holds our token). Release
    deletes the key only if it still holds our token (compare-and-delete, Lua). A holder that
    dies stops renewing, so its lock is free within ``ttl``.

    It has the interface :class:`~model_fallback.session.SessionFile` needs from a lock (the
    one of :class:`~model_fallback.session.SessionWriteLock`): ``async with``, ``acquire()``,
    ``release()``, ``held``, ``verify()`` and ``fenced_write()``. Use it with
    ``SessionFile(path, lock=RedisSessionLock.factory(client))``.

    A lock lost while held (a renewal found another token, or no renewal succeeded for a
    whole ``ttl`` — Redis away — so another holder may exist) makes the holder's next
    :meth:`verify` or :meth:`fenced_write` raise
    :class:`~model_fallback.session.SessionLockLostError` (a takeover), exactly like a file
    lock broken under its holder. :meth:`fenced_write` checks (and extends) the lease with a
    round trip before the write.

    Args:
        client: a ``redis.asyncio.Redis`` client.
        key: the Redis key of this lock.
        acquire_timeout: seconds to wait before raising
            :class:`~model_fallback.SessionWriteLockTimeoutError` (Redis unreachable all that
            time raises it too, saying so).
        ttl: seconds of the lease; a dead holder's lock is free at most this long after its
            last renewal.
        path: the session file it guards (for events and error messages).
        observers: telemetry observers (lock acquired, lock timed out).
    """

    def __init__(
        self,
        client: Any,
        key: str,
        *,
        acquire_timeout: float = 60.0,
        ttl: float = 30.0,
        path: str | os.PathLike[str] | None = None,
        observers: ObserverSet | Sequence[Observer] = (),
    ) -> None:
        for name, value in (("acquire_timeout", acquire_timeout), ("ttl", ttl)):
            _check_seconds(name, value)
        if ttl < 0.01 or math.isinf(ttl):
            raise ValueError(f"ttl must be a finite number of seconds >= 0.01, got {ttl!r}")
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")
        self.client = client
        self.key = key
        self.acquire_timeout = float(acquire_timeout)
        self.ttl = float(ttl)
        self.path = Path(path) if path is not None else None
        self.observers = ObserverSet.of(observers)
        self._ttl_ms = max(10, int(self.ttl * 1000))
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self._token: str | None = None
        self._lost = False
        self._lease_until = 0.0  # monotonic: the lease is ours until then at least
        self._renewer: asyncio.Task[None] | None = None
        self._releasing: asyncio.Task[Any] | None = None

    @classmethod
    def factory(
        cls,
        client: Any,
        *,
        prefix: str = "model_fallback:session:",
        key: Callable[[Path], str] | None = None,
        acquire_timeout: float = 60.0,
        ttl: float = 30.0,
        observers: ObserverSet | Sequence[Observer] = (),
    ) -> Callable[[Path], RedisSessionLock]:
        """A ``(path) -> lock`` factory for ``SessionFile(path, lock=...)``.

        The key is *prefix* + the path as the session file was given it, unless *key* maps a
        path to a key (hosts that mount the shared volume at different places must agree on
        it).
        """
        cls(client, prefix + "x", acquire_timeout=acquire_timeout, ttl=ttl)  # validate now
        shared = ObserverSet.of(observers)

        def make(path: Path) -> RedisSessionLock:
            name = key(path) if key is not None else prefix + str(path)
            return cls(client, name, acquire_timeout=acquire_timeout, ttl=ttl, path=path, observers=shared)

        return make

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows: see :meth:`verify`)."""
        return self._token is not None

    @property
    def token(self) -> str | None:
        """The token of the current acquisition, or None."""
        return self._token

    def _name(self) -> str:
        return str(self.path) if self.path is not None else self.key

    async def acquire(self, *, reacquire: bool = False) -> None:
        """Wait for the lock.

        Args:
            reacquire: a held session taking its lock back after a prompt (for observers).

        Raises:
            SessionWriteLockTimeoutError: not acquired within ``acquire_timeout`` (held by
                someone else, or Redis unreachable).
            RuntimeError: this object already holds the lock.
        """
        if self._token is not None:
            raise RuntimeError(f"this RedisSessionLock already holds {self.key}")
        releasing, self._releasing = self._releasing, None
        if releasing is not None and not releasing.done():
            with contextlib.suppress(Exception):
                await _bounded(asyncio.shield(releasing), self.acquire_timeout)
        token = f"{_HOST}:{os.getpid()}:{secrets.token_hex(12)}"
        start_ns = time.time_ns()
        t0 = time.monotonic()
        deadline = t0 + self.acquire_timeout
        delay = _POLL_FIRST
        error: BaseException | None = None
        while True:
            sent = time.monotonic()
            try:
                # Bounded by what is left of acquire_timeout: a client that retries a
                # black-holed host for seconds must not stretch the timeout.
                taken = await _bounded(
                    self.client.set(self.key, token, nx=True, px=self._ttl_ms), max(0.01, deadline - sent)
                )
                error = None
            except RedisError as exc:
                taken, error = False, exc
            except TimeoutError as exc:
                taken, error = False, exc
                _spawn(self._release_quietly(token))  # in case the SET landed
            except BaseException:
                # Cancelled mid-command: the SET may have landed; give it back (ours only).
                _spawn(self._release_quietly(token))
                raise
            if taken:
                self._token, self._lost, self._lease_until = token, False, sent + self.ttl
                self._renewer = asyncio.create_task(
                    _renew(weakref.ref(self), self._extend, self.key, token, self.ttl, self._ttl_ms),
                    name=f"RedisSessionLock renewal {self.key}",
                )
                if self.observers.lock_acquired:
                    self.observers.emit(
                        "lock_acquired",
                        LockAcquired(
                            self._name(), time.monotonic() - t0, start_ns, time.time_ns(), reacquire
                        ),
                    )
                return
            now = time.monotonic()
            if now >= deadline:
                raise await self._timeout(now - t0, start_ns, reacquire, error)
            await asyncio.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 1.5, _POLL_MAX)

    async def _timeout(
        self, waited: float, start_ns: int, reacquire: bool, error: BaseException | None
    ) -> SessionWriteLockTimeoutError:
        owner: Any = None
        if error is None:
            with contextlib.suppress(Exception):
                owner = await _bounded(self.client.get(self.key), 1.0)
        if isinstance(owner, bytes):
            owner = owner.decode("utf-8", "replace")
        pid: int | None = None
        alive: bool | None = None
        host = ""
        if isinstance(owner, str):
            host, _, rest = owner.partition(":")
            with contextlib.suppress(ValueError):
                pid = int(rest.partition(":")[0])
            if pid is not None and host == _HOST:
                alive = pid_alive(pid)
        if error is not None:
            detail = f"Redis unreachable: {_describe(error)}"
        elif pid is not None:
            detail = f"pid={pid} on {host}" + (
                f" ({'alive' if alive else 'dead'})" if alive is not None else ""
            )
        else:
            detail = "owner unknown"
        err = SessionWriteLockTimeoutError(
            f"session lock {self.key} not acquired "
            f"(waited {waited:.3f}s of {self.acquire_timeout:g}s): {detail}",
            path=self._name(),
            waited_s=waited,
            owner_pid=pid,
            owner_alive=alive,
        )
        if self.observers.lock_timed_out:
            self.observers.emit(
                "lock_timed_out",
                LockTimedOut(self._name(), waited, pid, alive, start_ns, time.time_ns(), reacquire),
            )
        return err

    def verify(self) -> None:
        """Check, from what the renewals learned, that the lock is still ours.

        Raises:
            SessionLockLostError: a renewal found another holder's token, or no renewal
                succeeded for a whole ``ttl`` (then another holder may exist); the lock is
                dropped.
            RuntimeError: the lock is not held.
        """
        token = self._token
        if token is None:
            raise RuntimeError(f"this RedisSessionLock does not hold {self.key}")
        margin = min(0.5, self.ttl / 10)
        if self._lost or time.monotonic() >= self._lease_until - margin:
            why = "another holder took it" if self._lost else f"no renewal succeeded for {self.ttl:g}s"
            self._drop()
            raise SessionLockLostError(
                f"session lock {self.key} was lost while held ({why}); someone else may have "
                f"written since: {self._name()}",
                path=self._name(),
                before=token,
                after=None,
            )

    async def fenced_write(self, write: Callable[[], T]) -> T:
        """Run *write* (synchronous, short) after a round trip proved the lock still ours
        and extended its lease to a full ``ttl``.

        With Redis unreachable, the lease the last renewal secured decides (:meth:`verify`).

        Raises:
            SessionLockLostError: the lock was lost (nothing is written).
            RuntimeError: the lock is not held.
        """
        token = self._token
        if token is None:
            raise RuntimeError(f"this RedisSessionLock does not hold {self.key}")
        sent = time.monotonic()
        try:
            extended = await _bounded(self._extend(keys=[self.key], args=[token, self._ttl_ms]), self.ttl / 3)
        except (RedisError, TimeoutError):
            extended = None
        if extended is not None and self._token == token:
            if int(extended) == 1:
                self._lease_until = max(self._lease_until, sent + self.ttl)
            else:
                self._lost = True
        self.verify()
        return write()

    def _drop(self) -> None:
        self._token = None
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()

    def release(self) -> None:
        """Release the lock (the compare-and-delete runs in the background). No-op when not held."""
        token = self._token
        if token is None:
            return
        lost = self._lost
        self._drop()
        if not lost:
            self._releasing = _spawn(self._release_quietly(token))

    async def _release_quietly(self, token: str) -> None:
        """Compare-and-delete *token*'s lock in the background: bounded, never raising (a lock
        not released expires within ttl)."""
        try:
            await _bounded(self._release(keys=[self.key], args=[token]), self.ttl)
        except Exception as exc:
            _log.debug("session lock %s: background release failed (%s)", self.key, _describe(exc))

    async def arelease(self) -> None:
        """Release the lock and wait for Redis to confirm (bounded by ``ttl``)."""
        token = self._token
        if token is None:
            return
        lost = self._lost
        self._drop()
        if lost:
            return
        try:
            await _bounded(self._release(keys=[self.key], args=[token]), self.ttl)
        except (RedisError, TimeoutError) as exc:
            _log.warning(
                "session lock %s: release failed (%s); it expires within ttl", self.key, _describe(exc)
            )

    async def __aenter__(self) -> RedisSessionLock:
        await self.acquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.arelease()

    def __repr__(self) -> str:
        return f"RedisSessionLock({self.key!r}, held={self.held})"


async def _renew(
    ref: weakref.ref[RedisSessionLock], extend: Any, key: str, token: str, ttl: float, ttl_ms: int
) -> None:
    """Extend the lease every ttl/3 while the lock object lives and holds *token*.

    It holds the lock weakly: a lock object dropped while held stops renewing, so its lease
    runs out instead of living as long as the process.
    """
    interval = ttl / 3
    while True:
        await asyncio.sleep(interval)
        lock = ref()
        if lock is None or lock._token != token:
            return
        del lock
        sent = time.monotonic()
        try:
            extended = await _bounded(extend(keys=[key], args=[token, ttl_ms]), interval)
        except Exception:  # Redis away or slow: retry; the lease tells verify() when it is gone
            interval = max(ttl / 10, 0.005)  # try again sooner; the lease runs out meanwhile
            continue
        interval = ttl / 3
        lock = ref()
        if lock is None or lock._token != token:
            return
        if int(extended) == 1:
            lock._lease_until = max(lock._lease_until, sent + ttl)
        else:
            lock._lost = True
            return
