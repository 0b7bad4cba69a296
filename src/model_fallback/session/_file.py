"""JSONL session transcripts and the prompt-release fence."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import anyio

from model_fallback.errors import (
    CoordinationError,
    SessionIOError,
    SessionTakeoverError,
    SessionWriteLockTimeoutError,
)
from model_fallback.events import FenceChecked, Observer, ObserverSet
from model_fallback.session._lock import (
    SessionLockLostError,
    SessionLockPathError,
    SessionWriteLock,
    session_io,
    session_io_error,
)

__all__ = ["Fingerprint", "HeldSession", "SessionFile", "SessionLock", "Transcript", "fingerprint"]

_log = logging.getLogger("model_fallback.session")
T = TypeVar("T")


class SessionLock(Protocol):
    """What :class:`SessionFile` needs from its lock: the interface of
    :class:`SessionWriteLock`, which :class:`~model_fallback.redis.RedisSessionLock` also has.

    A lock that was lost while held (broken by a waiter, its lease taken over) must make
    :meth:`verify` and :meth:`fenced_write` raise :class:`SessionLockLostError`.
    """

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""

    async def acquire(self, *, reacquire: bool = False) -> None:
        """Wait for the lock; ``SessionWriteLockTimeoutError`` past the timeout."""

    def release(self) -> None:
        """Release the lock (no-op when not held)."""

    def verify(self) -> None:
        """Raise :class:`SessionLockLostError` if the lock was lost while held."""

    async def fenced_write(self, write: Callable[[], T]) -> T:
        """Run *write* while the lock provably holds (else :class:`SessionLockLostError`)."""

    async def __aenter__(self) -> Any:
        """Acquire."""

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        """Release."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What one ``stat`` says about a session file (O(1) in its size).

    Two fingerprints are equal when ``exists``, ``dev``, ``inode``, ``size`` and ``mtime_ns``
    are: the fields a change of *content* moves (a write moves mtime, an append also the size,
    a replacement the inode). ``ctime_ns`` is kept for diagnostics but not compared: chmod,
    chown, a new hard link or an atime-only ``utime`` move it without touching the content,
    and none of those is a takeover.

    Attributes:
        exists: whether the file exists.
        dev, inode, size, mtime_ns, ctime_ns: from ``os.stat`` (0 when missing).
    """

    exists: bool
    dev: int = 0
    inode: int = 0
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = field(default=0, compare=False)


def fingerprint(path: str | os.PathLike[str]) -> Fingerprint:
    """Fingerprint *path* with one ``lstat`` (a symlink is fingerprinted, not followed).

    Raises:
        SessionIOError: the ``lstat`` failed other than with ENOENT (a missing file is a
            fingerprint that says so).
    """
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return Fingerprint(False)
    except OSError as exc:
        raise session_io_error(exc, "fence", path) from exc
    return _fingerprint_of(st)


def _fingerprint_of(st: os.stat_result) -> Fingerprint:
    return Fingerprint(True, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Transcript(list[dict[str, Any]]):
    """The entries of a transcript, plus what could not be read.

    Attributes:
        torn_tail: the bytes of an incomplete last line (a writer died mid-write), if any.
        invalid_lines: 1-based numbers of complete lines that are not JSON objects.
    """

    torn_tail: str | None = None
    invalid_lines: tuple[int, ...] = ()

    @property
    def clean(self) -> bool:
        """True when every line was a complete JSON object."""
        return self.torn_tail is None and not self.invalid_lines


_CONTAINERS = (dict, list, tuple)


def _encode(entry: Mapping[str, Any]) -> bytes:
    """One transcript line for *entry*: standard JSON that reads back as the same value.

    Raises:
        TypeError: not a mapping, a value JSON cannot hold, or a key that is not a string.
        ValueError: NaN or an infinity, a circular reference, or nesting too deep to encode.
    """
    if not isinstance(entry, Mapping):
        raise TypeError(f"a transcript entry must be a mapping, got {type(entry).__name__}")
    try:
        text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except RecursionError:
        raise ValueError("a transcript entry is nested too deeply to encode") from None
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise ValueError(
                "a transcript entry must be standard JSON: NaN or Infinity is not allowed "
                "(other JSON readers reject it)"
            ) from None
        raise
    # json.dumps writes 1, 2.5, True and None keys as strings: {1: "a", "1": "b"} would lose a
    # value and {1: "a"} would read back as {"1": "a"}. dumps already refused cycles, so this
    # walk ends.
    stack: list[Any] = [entry]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"transcript entry keys must be strings, got {key!r} ({type(key).__name__}): "
                        "JSON would turn it into a string and it would not read back the same"
                    )
                if isinstance(value, _CONTAINERS):
                    stack.append(value)
        else:
            stack.extend(v for v in node if isinstance(v, _CONTAINERS))
    return (text + "\n").encode("utf-8")


def _append_line(path: Path, line: bytes, fsync: bool) -> Fingerprint:
    """Append one complete line; the caller holds the session lock.

    Raises:
        SessionIOError: the write (or the open) failed on a local OS error.
    """
    try:
        return _append_line_io(path, line, fsync)
    except CoordinationError:
        raise
    except OSError as exc:
        raise session_io_error(exc, "append", path) from exc


def _open_regular(path: Path, flags: int, operation: str) -> tuple[int, os.stat_result]:
    """Open *path* without following a symlink and without blocking (a FIFO or a device opens
    at once), and refuse anything but a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SessionLockPathError(
                f"refusing a session file that is a symlink: {path}",
                path=str(path),
                operation=operation,
                errno=errno.ELOOP,
            ) from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SessionLockPathError(
                f"refusing a session file that is not a regular file: {path}",
                path=str(path),
                operation=operation,
                errno=errno.EINVAL,
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _append_line_io(path: Path, line: bytes, fsync: bool) -> Fingerprint:
    fd, st = _open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, "append")
    try:
        size = st.st_size
        # A writer that died mid-line left a torn tail: start on a fresh line so that the
        # fragment stays a (reported) invalid line and our entry stays whole. (pread on the
        # same descriptor: no second open per append.)
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line)
        try:
            while view:  # a short write is retried: the retry says why it stopped (ENOSPC, EFBIG)
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        except BaseException as exc:
            # Nothing of a failed append may stay: a partial line would be read back as an
            # invalid line, and at a space or size limit it would keep every later append failing.
            try:
                os.ftruncate(fd, size)
            except OSError as undo:
                exc.add_note(f"the partial line could not be removed: {undo}")
            raise
        return _fingerprint_of(os.fstat(fd))
    finally:
        os.close(fd)


def _read(path: Path) -> Transcript:
    out = Transcript()
    with session_io("read", path):
        try:
            fd, _ = _open_regular(path, os.O_RDONLY, "read")
        except FileNotFoundError:
            return out
        with open(fd, "rb", closefd=True) as f:
            data = f.read()
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty unless the last line is torn
    invalid = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: a line nested too deep to decode
            invalid.append(i)
            continue
        if isinstance(entry, dict):
            out.append(entry)
        else:
            invalid.append(i)
    if tail.strip():
        out.torn_tail = tail.decode("utf-8", "replace")
        _log.warning("session transcript %s ends with a torn line (%d bytes)", path, len(tail))
    if invalid:
        out.invalid_lines = tuple(invalid)
        _log.warning("session transcript %s has %d invalid line(s)", path, len(invalid))
    return out


class SessionFile:
    """A JSONL session transcript guarded by a :class:`SessionWriteLock` (or another lock).

    Args:
        path: the transcript file.
        lock_timeout: seconds to wait for the write lock.
        stale_after: passed to the lock (bounds a stuck live holder).
        fsync: fsync after every append (durability over speed).
        observers: telemetry observers (lock and fence events).
        lock: a factory ``(path) -> lock`` giving a new lock object (a :class:`SessionLock`)
            for each operation, instead of the default file lock; e.g.
            ``RedisSessionLock.factory(client)`` for transcripts shared between hosts. The
            lock's own settings (timeout, ttl, observers) are then the factory's: this
            object's ``lock_timeout`` and ``stale_after`` do not apply to it. The prompt-release
            fence and the takeover checks are the same whatever the lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        lock_timeout: float = 60.0,
        *,
        stale_after: float = 1800.0,
        fsync: bool = False,
        observers: ObserverSet | Sequence[Observer] = (),
        lock: Callable[[Path], SessionLock] | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.stale_after = stale_after
        self.fsync = fsync
        self.observers = ObserverSet.of(observers)
        if lock is not None and not callable(lock):
            raise TypeError("lock must be a factory (path) -> lock, e.g. RedisSessionLock.factory(client)")
        self._lock_factory = lock
        # Validate the numbers now (bad input fails before any work).
        SessionWriteLock(self.path, lock_timeout, stale_after)

    def lock(self) -> SessionLock:
        """A new lock object for this transcript."""
        if self._lock_factory is not None:
            return self._lock_factory(self.path)
        return SessionWriteLock(self.path, self.lock_timeout, self.stale_after, observers=self.observers)

    async def append(self, entry: Mapping[str, Any]) -> None:
        """Take the lock and append *entry* as one complete JSON line.

        Raises:
            TypeError, ValueError: *entry* cannot be written as standard JSON that reads back
                the same (nothing is written, the lock is not taken).
            SessionWriteLockTimeoutError: the lock was not acquired in time.
            SessionIOError: a local OS error; a partial line is rolled back.
        """
        line = _encode(entry)
        async with self.lock() as lock:
            await lock.fenced_write(lambda: _append_line(self.path, line, self.fsync))

    async def read(self) -> Transcript:
        """Read every entry under the lock; a torn last line is reported, not hidden."""
        async with self.lock():
            return await anyio.to_thread.run_sync(_read, self.path)

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[HeldSession]:
        """Hold the lock across several operations (``append``, ``read``, prompt release)."""
        held = HeldSession(self)
        await held._lock.acquire()
        try:
            yield held
        finally:
            held._lock.release()

    def __repr__(self) -> str:
        return f"SessionFile({str(self.path)!r})"


class HeldSession:
    """A transcript whose lock this turn holds; see :meth:`SessionFile.locked`."""

    def __init__(self, session: SessionFile) -> None:
        self.session = session
        self.path = session.path
        self._lock = session.lock()
        self._fence: Fingerprint | None = None
        # A takeover, a lost lock or a failed re-acquire/verify: raised by every later operation.
        self._poisoned: CoordinationError | None = None

    @property
    def holding(self) -> bool:
        """Whether the lock is held right now (False while released for a prompt)."""
        return self._lock.held

    def _check_poisoned(self) -> None:
        # After a takeover, after losing the lock while released, or after failing to take it
        # back at all, nothing more may be done in this turn: every later operation raises the
        # same coordination error.
        if self._poisoned is not None:
            raise self._poisoned

    async def append(self, entry: Mapping[str, Any]) -> None:
        """Append one entry as this holder (also allowed while released for a prompt).

        Raises:
            TypeError, ValueError: *entry* cannot be written as standard JSON that reads back
                the same (nothing is written).
            SessionTakeoverError: the session was taken over (now or earlier in this turn),
                or this holder's lock was broken (:class:`SessionLockLostError`).
            SessionWriteLockTimeoutError: the lock was lost earlier in this turn.
            SessionIOError: a local OS error; a partial line is rolled back.
        """
        self._check_poisoned()
        line = _encode(entry)
        if self._lock.held:
            fp = await self._fenced(self._lock, lambda: _append_line(self.path, line, self.session.fsync))
        else:
            # Released for the prompt: take the lock briefly; our own write moves the fence.
            def write() -> Fingerprint:
                before = fingerprint(self.path)
                if self._fence is not None and before != self._fence:
                    raise self._poison(self._fence, before)
                try:
                    return _append_line(self.path, line, self.session.fsync)
                except SessionIOError:
                    # Our failed write was rolled back, but the rollback moved mtime: our doing.
                    if self._fence is not None:
                        self._fence = fingerprint(self.path)
                    raise

            async with self.session.lock() as brief:
                fp = await self._fenced(brief, write)
        if self._fence is not None:
            self._fence = fp

    async def _fenced(self, lock: SessionLock, write: Callable[[], T]) -> T:
        """*write* under *lock* (which must not have been broken); a broken lock poisons."""
        try:
            return await lock.fenced_write(write)
        except SessionLockLostError as lost:
            self._lost(lost)
            raise

    def _verify_held(self) -> None:
        try:
            self._lock.verify()
        except SessionLockLostError as lost:
            self._lost(lost)
            raise

    def _lost(self, lost: SessionLockLostError) -> None:
        self._poisoned = lost
        self._fence = None
        if self.session.observers.fence_checked:
            now = time.time_ns()
            self.session.observers.emit(
                "fence_checked",
                FenceChecked(str(self.path), True, lost.before, lost.after, now, now),
            )

    async def read(self) -> Transcript:
        """Read the transcript (no extra locking while held).

        While released (during a prompt, or after a cancelled one) it takes the lock briefly
        and, like :meth:`append`, first compares the pending fence.

        Raises:
            SessionTakeoverError: the session was taken over (now or earlier in this turn).
            SessionWriteLockTimeoutError: the lock was lost earlier in this turn.
            SessionIOError: a local OS error (also one that poisoned this turn earlier).
        """
        self._check_poisoned()
        if self._lock.held:
            self._verify_held()
            return await anyio.to_thread.run_sync(_read, self.path)
        async with self.session.lock():
            current = fingerprint(self.path)
            if self._fence is not None and current != self._fence:
                raise self._poison(self._fence, current)
            return await anyio.to_thread.run_sync(_read, self.path)

    def _poison(self, before: Fingerprint, after: Fingerprint) -> SessionTakeoverError:
        takeover = SessionTakeoverError(
            f"session file changed while prompt lock was released: {self.path}",
            path=str(self.path),
            before=before,
            after=after,
        )
        self._poisoned = takeover
        return takeover

    async def _restore(self) -> CoordinationError | None:
        """Re-acquire the lock and compare the file with the fence; the coordination error
        found (and now poisoning this session), or None."""
        try:
            await self._lock.acquire(reacquire=True)
        except (SessionWriteLockTimeoutError, SessionIOError) as lost:
            self._fence = None
            self._poisoned = lost
            return lost
        started = time.time_ns()
        before = self._fence
        self._fence = None
        try:
            after = fingerprint(self.path)
        except SessionIOError as failed:
            self._poisoned = failed
            return failed
        takeover = before is not None and after != before
        if self.session.observers.fence_checked:
            self.session.observers.emit(
                "fence_checked",
                FenceChecked(str(self.path), takeover, before, after, started, time.time_ns()),
            )
        if takeover:
            assert before is not None
            return self._poison(before, after)
        return None

    @contextlib.asynccontextmanager
    async def released_for_prompt(self) -> AsyncIterator[None]:
        """Release the lock for the model call; on exit re-acquire it and verify the fence.

        Raises:
            SessionTakeoverError: the file changed, other than through this holder, while
                released (or had changed earlier in this turn), or this holder's lock had
                been broken before the release (:class:`SessionLockLostError`).
            SessionWriteLockTimeoutError: the lock could not be re-acquired in time.
            SessionIOError: re-acquiring or verifying failed on a local OS error (the session
                directory deleted, the disk full, no descriptors left, ...).

        If the body raised, that error propagates, with the takeover or lock timeout
        attached at the end of its ``__context__`` chain so that the classifier sees it.

        If the body was cancelled (task cancellation, or the driver's ``attempt_timeout``
        cutting a hung model call), the cancellation propagates at once without waiting for
        the lock; the fence stays pending and the next operation on this held session
        verifies it first (the next attempt's ``released_for_prompt()`` re-acquires the lock
        and compares; ``append`` compares under the lock before writing), so a timed-out
        attempt neither breaks the fallback chain nor hides a takeover.
        """
        self._check_poisoned()
        if not self._lock.held:
            if self._fence is None:
                raise RuntimeError("released_for_prompt() needs the lock: use it inside SessionFile.locked()")
            # An earlier prompt was cancelled before it could re-acquire: verify it now.
            pending = await self._restore()
            if pending is not None:
                raise pending
        # Taken while no breaker can act, after checking the lock was not broken: a fence over a
        # file someone else already wrote while our lock was broken would hide that write.
        self._fence = await self._fenced(self._lock, lambda: fingerprint(self.path))
        self._lock.release()
        body_error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            body_error = exc
        if body_error is not None and not isinstance(body_error, Exception):
            # Cancellation: don't wait for the lock now; the fence stays pending (see above).
            raise body_error
        problem = await self._restore()
        if problem is not None:
            if body_error is not None:
                _attach(body_error, problem)
                raise body_error
            raise problem
        if body_error is not None:
            raise body_error


def _attach(error: BaseException, coordination: BaseException) -> None:
    """Put *coordination* at the end of *error*'s cause/context chain (bounded), where the
    classifier will find it."""
    node = error
    chain = {id(error)}
    for _ in range(32):
        if node.__cause__ is not None:
            nxt: BaseException | None = node.__cause__
        elif node.__context__ is not None and not node.__suppress_context__:
            nxt = node.__context__
        else:
            break
        if nxt is coordination:
            return
        assert nxt is not None
        node = nxt
        chain.add(id(node))
    if node is coordination:
        return
    # The coordination error was raised while the body's error was being handled, so its own
    # implicit context leads back into the chain: cut that link, or the chain would be a loop
    # (printed as "During handling..." twice, and a reference cycle).
    back = coordination
    for _ in range(32):
        ctx = back.__context__
        if ctx is None:
            break
        if id(ctx) in chain:
            back.__context__ = None
            break
        back = ctx
    node.__context__ = coordination
    node.__suppress_context__ = False
