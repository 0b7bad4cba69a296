"""The session write lock: exclusive across processes and across tasks of one process.

Mechanism. The lock is a kernel ``flock`` on ``<session>.lock``, opened with
``O_NOFOLLOW`` (a symlinked lock path is refused). Each acquirer opens its own file
description, so two tasks of one process exclude each other exactly like two processes.
Waiting polls ``LOCK_EX | LOCK_NB`` with capped exponential backoff on ``anyio.sleep``:
the event loop is never blocked.

Holders that die. The kernel drops a dead process's ``flock``, so a crashed holder never
blocks anyone. The holder writes its metadata (pid, process start time, host, boot id, pid
namespace, and the time it took the lock on ``CLOCK_BOOTTIME``) into the lock file and
clears it on release; an acquirer that finds metadata of a dead (or recycled) pid knows it
is taking over from a crashed holder and reports a stale-lock reclaim with that reason.

A child forked by the holder shares the locked file description, so the kernel would keep
the lock for as long as the child lives. Two defences: an at-fork hook closes, in every
``os.fork`` child, the descriptors of the locks its parent holds; and a waiter refused by a
lock whose recorded holder is provably dead (same host, boot and pid namespace; the pid gone
or reused) breaks it at once, which also covers forks that bypass Python's hooks.

``stale_after`` bounds a *live* holder that is stuck. Its age is measured on
``CLOCK_BOOTTIME``, which never steps with the wall clock and is shared by every process of
one boot (the boot id tells a reboot). Past it, a waiter breaks the lock by unlinking the lock
file (under an exclusive ``flock`` on ``<session>.lock.break``, after re-checking the holder),
so new acquirers lock a fresh inode while the stuck holder keeps a lock on a file nobody else
uses any more. Every acquirer takes and claims the lock under a *shared* ``flock`` on that
break file, so a breaker's check-then-unlink cannot interleave with a new holder's claim: the
breaker never unlinks a lock that someone took after its check. Every write under the lock
(:meth:`SessionWriteLock.fenced_write`) also runs under that shared ``flock`` after checking
that the lock file at the path is still the one locked, so a holder that was broken finds out
(:class:`SessionLockLostError`) before it writes anything, never after.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import socket
import stat
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import anyio

from model_fallback.errors import (
    CoordinationError,
    SessionIOError,
    SessionTakeoverError,
    SessionWriteLockTimeoutError,
)
from model_fallback.events import LockAcquired, LockTimedOut, Observer, ObserverSet, StaleLockReclaimed

__all__ = [
    "SessionLockLostError",
    "SessionLockPathError",
    "SessionWriteLock",
    "pid_alive",
    "process_start_time",
    "session_io",
    "session_io_error",
]

_log = logging.getLogger("model_fallback.session")
_HOST = socket.gethostname()
_POLL_FIRST = 0.002
_POLL_MAX = 0.05
T = TypeVar("T")


def _flock_nb(fd: int, op: int) -> bool:
    """``flock(op | LOCK_NB)``: True if taken, False if someone else holds a conflicting lock."""
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class SessionLockPathError(SessionIOError):
    """A lock or session path cannot be used safely (it is a symlink, or not a regular file).

    A :class:`~model_fallback.SessionIOError` (coordination kind ``session_io``, also an
    :class:`OSError`): whoever put it there, it is a local condition, never a model failure.
    """


class _SessionPermissionError(SessionIOError, PermissionError):
    """A :class:`~model_fallback.SessionIOError` that is also the :class:`PermissionError` this
    condition always raised (EACCES, EPERM, EROFS)."""


class _SessionFileNotFoundError(SessionIOError, FileNotFoundError):
    """A :class:`~model_fallback.SessionIOError` that is also the :class:`FileNotFoundError`
    this condition always raised (ENOENT: the session directory is missing)."""


def session_io_error(
    exc: OSError, operation: str, path: str | os.PathLike[str], message: str | None = None
) -> SessionIOError:
    """The :class:`~model_fallback.SessionIOError` for *exc*, an OS error of a session operation.

    EACCES/EPERM/EROFS give one that is also a :class:`PermissionError`, ENOENT one that is also
    a :class:`FileNotFoundError`, so code catching those keeps working. The caller raises it
    ``from exc``.
    """
    code = exc.errno
    cls: type[SessionIOError] = SessionIOError
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        cls = _SessionPermissionError
    elif code == errno.ENOENT:
        cls = _SessionFileNotFoundError
    if message is None:
        what = exc.strerror or str(exc) or type(exc).__name__
        message = f"session {operation} failed: {what}: {exc.filename or path}"
    return cls(message, path=str(path), operation=operation, errno=code)


@contextlib.contextmanager
def session_io(operation: str, path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an :class:`OSError` raised inside into a :class:`~model_fallback.SessionIOError`.

    Coordination errors (a lock timeout is also an OSError) and errors that already are
    session I/O errors pass unchanged.
    """
    try:
        yield
    except CoordinationError:
        raise
    except OSError as exc:
        raise session_io_error(exc, operation, path) from exc


class SessionLockLostError(SessionTakeoverError):
    """This holder's lock was broken while it held it: someone else may have written since.

    A waiter broke it because the holder looked stuck (held longer than that waiter's
    ``stale_after``) or dead. The holder's next operation raises this instead of writing as a
    second holder. It is a takeover (coordination kind ``session_takeover``); ``before`` is
    the ``(dev, inode)`` of the lock file this holder locked, ``after`` the one now at the
    path (None when there is none).
    """


def _proc_stat(pid: int) -> tuple[bytes, int] | None:
    """The state letter and the start time (clock ticks since boot) of *pid*, from Linux
    ``/proc``, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def process_start_time(pid: int) -> int | None:
    """The start time of *pid* in clock ticks since boot (Linux ``/proc``), or None."""
    found = _proc_stat(pid)
    return found[1] if found is not None else None


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """Whether *pid* runs, and (when *start_time* is given) is the same process.

    A zombie (exited, not yet reaped by its parent) does not run: it answers ``kill(pid, 0)``
    but has closed every descriptor, so it is dead here.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    found = _proc_stat(pid)
    if found is not None:
        state, current = found
        if state in (b"Z", b"X"):
            return False
        if start_time is not None and current != start_time:
            return False
    return True


def _read_boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _ns_inode(kind: str) -> int | None:
    try:
        return os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:
        return None


_BOOT_ID = _read_boot_id()
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def _boottime() -> float:
    """Seconds on a clock that never steps and that every process of this boot shares.

    ``CLOCK_BOOTTIME`` (Linux): unlike ``time.time()`` it does not jump with NTP or a VM
    resume; unlike ``CLOCK_MONOTONIC`` it also counts suspend, so a holder stuck across a
    suspend ages. Elsewhere ``time.monotonic()``.
    """
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


class _Identity(NamedTuple):
    pid: int
    start_time: int | None
    pidns: int | None
    timens: int | None
    meta_prefix: str  # the lock metadata up to the two clock readings, encoded once


_identity: _Identity | None = None


def _self() -> _Identity:
    """This process's identity, recomputed in a forked child (its own pid and start time: a
    child writing its parent's start time would look like a recycled pid, i.e. dead)."""
    global _identity
    pid = os.getpid()
    ident = _identity
    if ident is None or ident.pid != pid:
        start, pidns, timens = process_start_time(pid), _ns_inode("pid"), _ns_inode("time")
        static = {
            "pid": pid,
            "start_time": start,
            "host": _HOST,
            "boot_id": _BOOT_ID,
            "pidns": pidns,
            "timens": timens,
        }
        ident = _identity = _Identity(pid, start, pidns, timens, json.dumps(static)[:-1])
    return ident


class _Holder(NamedTuple):
    """What a lock file's metadata says about its holder."""

    pid: int | None
    alive: bool | None  # None: cannot tell (another host, another pid namespace)
    provably_dead: bool  # dead beyond doubt: its lock may be broken at once
    age: float | None  # seconds since it took the lock, None when unknown
    reason: str  # the reclaim reason when its lock is taken over
    note: str  # for messages: "alive", "dead", "alive unknown: another pid namespace", ...


def _assess(meta: dict[str, Any]) -> _Holder:
    pid = meta.get("pid")
    created = meta.get("created_at")
    wall_age = time.time() - created if isinstance(created, int | float) else None
    if not isinstance(pid, int) or isinstance(pid, bool):
        return _Holder(None, None, False, wall_age, "invalid_metadata", "owner unknown")
    host = meta.get("host")
    if host not in (None, _HOST):
        # Another machine (a shared filesystem): its pids and clocks are not ours; the wall
        # clock is the only one two hosts share.
        return _Holder(pid, None, False, wall_age, "foreign_host", f"alive unknown: host {host}")
    me = _self()
    boot = meta.get("boot_id")
    if boot is not None and _BOOT_ID is not None and boot != _BOOT_ID:
        return _Holder(pid, False, True, None, "dead_pid", "dead: before a reboot")
    same_boot = boot is not None and boot == _BOOT_ID
    pidns = meta.get("pidns")
    timens = meta.get("timens")
    boottime = meta.get("boottime")
    age = wall_age
    comparable = same_boot and timens == me.timens  # a time namespace may offset CLOCK_BOOTTIME
    if comparable and isinstance(boottime, int | float) and not isinstance(boottime, bool):
        age = _boottime() - boottime
    if pidns is not None and pidns != me.pidns:
        # Its pid means another process here (pid 1 of a container is not our pid 1).
        return _Holder(pid, None, False, age, "kernel_released", "alive unknown: another pid namespace")
    start = meta.get("start_time")
    if not pid_alive(pid):
        alive, reason = False, "dead_pid"
    elif isinstance(start, int) and not pid_alive(pid, start):
        alive, reason = False, "recycled_pid"
    elif pid == me.pid:
        alive, reason = True, "orphan_self"
    else:
        alive, reason = True, "kernel_released"
    # Metadata of an older version (no boot id or pid namespace) is reported, never broken.
    provably_dead = not alive and same_boot and pidns is not None
    return _Holder(pid, alive, provably_dead, age, reason, "alive" if alive else "dead")


def _read_meta(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
    except OSError:
        return None
    if not raw.strip():
        return None
    try:
        meta = json.loads(raw.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


# Locks held by this process, so that a forked child can drop its copies of their descriptors.
_HELD: weakref.WeakSet[SessionWriteLock] = weakref.WeakSet()


def _forget_inherited_locks() -> None:
    """In a forked child: close the inherited descriptors of the parent's locks.

    The child shares their locked file descriptions; if it kept them, the kernel would keep
    the lock after the parent died, for as long as the child lives. Closing (never unlocking:
    that would release the parent's lock) is enough. The child's copies of the lock objects
    then hold nothing.
    """
    for lock in list(_HELD):
        lock._drop_descriptors()
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_locks)


class SessionWriteLock:
    """An async, inter-process write lock for one session file.

    Args:
        path: the session file (the lock file is ``<path>.lock`` beside it, and
            ``<path>.lock.break`` fences lock breaking: see the module docstring).
        acquire_timeout: seconds to wait before raising
            :class:`~model_fallback.SessionWriteLockTimeoutError`.
        stale_after: seconds after which a *live* holder is considered stuck and its lock
            broken (measured on ``CLOCK_BOOTTIME``, so a wall-clock step changes nothing);
            0 or ``inf`` never breaks a live holder. Dead holders are reclaimed at once
            whatever this says.
        observers: telemetry observers (lock waits, timeouts, stale reclaims).

    Use it as ``async with SessionWriteLock(path): ...``. It is not reentrant: acquiring
    it again from the task that holds it waits for itself and times out. A holder that may
    run longer than other processes' ``stale_after`` should write through
    :meth:`fenced_write` (as :class:`~model_fallback.session.SessionFile` does), which
    refuses to write once the lock was broken.

    Raises:
        SessionLockPathError: the lock path is a symlink or not a regular file.
        SessionIOError: any other local OS error while acquiring; for a directory that cannot
            be written (raised at once, not a timeout) it is also a ``PermissionError``, for a
            missing directory also a ``FileNotFoundError``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        acquire_timeout: float = 60.0,
        stale_after: float = 1800.0,
        *,
        observers: ObserverSet | Sequence[Observer] = (),
    ) -> None:
        for name, value in (("acquire_timeout", acquire_timeout), ("stale_after", stale_after)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number of seconds")
            if math.isnan(value) or value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self.path = Path(path)
        self.lock_path = Path(f"{self.path}.lock")
        self.acquire_timeout = float(acquire_timeout)
        self.stale_after = float(stale_after)
        self.observers = ObserverSet.of(observers)
        self._fd: int | None = None
        self._bfd: int | None = None  # the break file, open while held (fenced_write)
        self._ident: tuple[int, int] = (0, 0)  # (dev, inode) of the lock file we locked
        self.reclaims = 0

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def _open(self, operation: str) -> tuple[int, os.stat_result]:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.lock_path, flags, 0o644)
        except OSError as exc:
            message = None
            if exc.errno == errno.ELOOP:
                raise SessionLockPathError(
                    f"refusing a session lock path that is a symlink: {self.lock_path}",
                    path=str(self.path),
                    operation=operation,
                    errno=errno.ELOOP,
                ) from exc
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                message = (
                    f"cannot create the session lock {self.lock_path}: directory "
                    f"{self.lock_path.parent} is not writable ({exc.strerror})"
                )
            elif exc.errno == errno.ENOENT:
                message = f"cannot create the session lock: directory {self.lock_path.parent} does not exist"
            raise session_io_error(exc, operation, self.path, message) from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SessionLockPathError(
                f"session lock path is not a regular file: {self.lock_path}",
                path=str(self.path),
                operation=operation,
                errno=errno.EINVAL,
            )
        return fd, st

    def _open_break(self) -> int | None:
        """The break file's descriptor, or None when it cannot be opened.

        Without it this acquirer cannot fence breakers out; but a breaker needs the same
        file to break anything, and it lives in the lock's own directory. (Whatever node is
        there, O_NONBLOCK opens it at once and ``flock`` works on it: no type check needed.)
        """
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            return os.open(f"{self.lock_path}.break", flags, 0o644)
        except OSError:
            return None

    def _lock_and_claim(self, fd: int, mine: os.stat_result, bfd: int | None) -> bool:
        """One attempt: lock and claim under a shared lock on the break file (see module doc)."""
        if bfd is not None and not _flock_nb(bfd, fcntl.LOCK_SH):
            return False  # a breaker is between its check and its unlink: next round
        try:
            if not self._try_lock(fd, mine):
                return False
            self._claim(fd)
            return True
        finally:
            if bfd is not None:
                fcntl.flock(bfd, fcntl.LOCK_UN)

    def _try_lock(self, fd: int, mine: os.stat_result) -> bool:
        if not _flock_nb(fd, fcntl.LOCK_EX):
            return False
        # The lock file may have been broken (unlinked) while we waited: then we hold a
        # lock on an orphan inode, which excludes nobody. Check it is still the one.
        try:
            current = os.stat(self.lock_path, follow_symlinks=False)
        except FileNotFoundError:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True

    def _claim(self, fd: int) -> None:
        """We hold the kernel lock: report a crashed previous holder, write our metadata."""
        meta = _read_meta(fd)
        if meta is not None:
            holder = _assess(meta)
            self._reclaimed(holder.reason, holder.pid)
        # created_at is for people reading the file; ages use boottime.
        payload = (
            f'{_self().meta_prefix}, "boottime": {_boottime()!r}, "created_at": {time.time()!r}}}'.encode()
        )
        try:
            os.ftruncate(fd, 0)
            written = 0
            while written < len(payload):  # a short write is retried: the retry says why (ENOSPC)
                written += os.pwrite(fd, payload[written:], written)
        except OSError:
            # A holder nobody can identify (or break when stuck) must not exist: give it back.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise

    def _reclaimed(self, reason: str, owner_pid: int | None) -> None:
        self.reclaims += 1
        _log.warning(
            "reclaimed stale session lock %s (%s, previous owner pid=%s)", self.lock_path, reason, owner_pid
        )
        if self.observers.stale_lock_reclaimed:
            self.observers.emit("stale_lock_reclaimed", StaleLockReclaimed(str(self.path), reason, owner_pid))

    def _owner(self) -> tuple[dict[str, Any] | None, _Holder | None]:
        """The lock file's metadata as it is now, and what it says about the holder."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None, None
        try:
            meta = _read_meta(fd)
        finally:
            os.close(fd)
        return (meta, _assess(meta)) if meta else (None, None)

    def _breakable(self, holder: _Holder | None) -> str | None:
        """The reclaim reason if *holder*'s lock may be broken now, else None."""
        if holder is None:
            return None
        if holder.provably_dead:
            return holder.reason
        if self.stale_after <= 0 or math.isinf(self.stale_after) or holder.age is None:
            return None
        return "too_old" if holder.age >= self.stale_after else None

    def _break_if_dead_or_stuck(self, bfd: int | None) -> bool:
        """Break the lock of a provably dead holder (whose lock a forked child kept), or of a
        live one older than stale_after. True if broken."""
        if bfd is None:
            return False
        meta, holder = self._owner()
        if self._breakable(holder) is None:
            return False
        if not _flock_nb(bfd, fcntl.LOCK_EX):
            return False
        try:
            # Re-check under the break lock. No acquirer can lock and claim while we hold it
            # (they claim under a shared lock on the same file), so the holder we see here is
            # the one whose lock we unlink, or nobody.
            meta2, holder2 = self._owner()
            reason = self._breakable(holder2)
            if meta2 != meta or reason is None or holder2 is None:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path)
            self._reclaimed(reason, holder2.pid)
            return True
        finally:
            fcntl.flock(bfd, fcntl.LOCK_UN)

    async def acquire(self, *, reacquire: bool = False) -> None:
        """Wait for the lock (never blocking the event loop).

        Args:
            reacquire: this is a held session taking its lock back after a prompt (reported
                to observers, and as the ``operation`` of a :class:`SessionIOError`).

        Raises:
            SessionWriteLockTimeoutError: not acquired within ``acquire_timeout``.
            SessionIOError: a local OS error (directory gone or not writable, disk full,
                no descriptors left, a symlink or non-regular file at the lock path).
            RuntimeError: this object already holds the lock.
        """
        if self._fd is not None:
            raise RuntimeError(f"this SessionWriteLock already holds {self.lock_path}")
        operation = "reacquire" if reacquire else "acquire"
        start_ns = time.time_ns()
        t0 = time.monotonic()
        deadline = t0 + self.acquire_timeout
        try:
            fd, opened = self._open(operation)  # first: a bad lock path is refused before anything else
            bfd = self._open_break()
            try:
                await self._acquire_loop(fd, opened, bfd, start_ns, t0, deadline, reacquire)
            except BaseException:
                if bfd is not None:
                    os.close(bfd)
                raise
        except CoordinationError:
            raise
        except OSError as exc:
            raise session_io_error(exc, operation, self.path) from exc
        self._bfd = bfd

    async def _acquire_loop(
        self,
        fd: int,
        opened: os.stat_result,
        bfd: int | None,
        start_ns: int,
        t0: float,
        deadline: float,
        reacquire: bool,
    ) -> None:
        operation = "reacquire" if reacquire else "acquire"
        delay = _POLL_FIRST
        last_stuck_check: float | None = None
        while True:
            try:
                locked = self._lock_and_claim(fd, opened, bfd)
            except BaseException:
                os.close(fd)
                raise
            if locked:
                self._fd = fd
                self._ident = (opened.st_dev, opened.st_ino)
                _HELD.add(self)
                waited = time.monotonic() - t0
                if self.observers.lock_acquired:
                    self.observers.emit(
                        "lock_acquired",
                        LockAcquired(str(self.path), waited, start_ns, time.time_ns(), reacquire),
                    )
                return
            os.close(fd)
            now = time.monotonic()
            # Look for a dead or stuck holder at the first refusal (a short acquire_timeout
            # must still break a lock past stale_after), then once a second.
            if last_stuck_check is None or now - last_stuck_check >= 1.0:
                last_stuck_check = now
                if self._break_if_dead_or_stuck(bfd):
                    fd, opened = self._open(operation)
                    continue
            if now >= deadline:
                _meta, holder = self._owner()
                pid = holder.pid if holder else None
                alive = holder.alive if holder else None
                waited = now - t0
                err = SessionWriteLockTimeoutError(
                    f"session file locked (waited {waited:.3f}s of {self.acquire_timeout:g}s): "
                    f"{'pid=' + str(pid) if pid is not None else 'owner unknown'}"
                    f"{f' ({holder.note})' if holder and pid is not None else ''} {self.lock_path}",
                    path=str(self.path),
                    waited_s=waited,
                    owner_pid=pid,
                    owner_alive=alive,
                )
                if self.observers.lock_timed_out:
                    self.observers.emit(
                        "lock_timed_out",
                        LockTimedOut(str(self.path), waited, pid, alive, start_ns, time.time_ns(), reacquire),
                    )
                raise err
            await anyio.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 1.5, _POLL_MAX)
            fd, opened = self._open(operation)

    def verify(self) -> None:
        """Check that this lock was not broken while held.

        Raises:
            SessionLockLostError: a waiter broke it (the lock file at the path is no longer
                the one this object locked); the lock is dropped.
            SessionIOError: the lock file could not be checked.
            RuntimeError: the lock is not held.
        """
        if self._fd is None:
            raise RuntimeError(f"this SessionWriteLock does not hold {self.lock_path}")
        try:
            st = os.stat(self.lock_path, follow_symlinks=False)
            found: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            found = None
        except OSError as exc:
            raise session_io_error(exc, "verify", self.path) from exc
        if found != self._ident:
            mine = self._ident
            self.release()
            raise SessionLockLostError(
                f"session lock was broken while held (a waiter found it stuck or its holder dead); "
                f"someone else may have written since: {self.path}",
                path=str(self.path),
                before=mine,
                after=found,
            )

    async def fenced_write(self, write: Callable[[], T]) -> T:
        """Run *write* (synchronous, short) while no waiter can break this lock, after
        :meth:`verify` found it still held.

        A breaker unlinks the lock only under an exclusive ``flock`` on the break file; this
        takes a shared one around the check and the write, so the lock cannot be broken
        between them: a holder broken before finds out, a holder broken after had written
        while it still held the lock. Waiting for a breaker to finish is bounded by
        ``acquire_timeout``.

        Raises:
            SessionLockLostError: the lock was broken (nothing is written).
            SessionWriteLockTimeoutError: a breaker kept the break file longer than
                ``acquire_timeout``.
        """
        bfd = self._bfd
        if bfd is not None and not _flock_nb(bfd, fcntl.LOCK_SH):
            await self._wait_for_breaker(bfd)
        try:
            self.verify()
            return write()
        finally:
            if bfd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(bfd, fcntl.LOCK_UN)

    async def _wait_for_breaker(self, bfd: int) -> None:
        t0 = time.monotonic()
        delay = _POLL_FIRST
        while not _flock_nb(bfd, fcntl.LOCK_SH):
            waited = time.monotonic() - t0
            if waited >= self.acquire_timeout:
                raise SessionWriteLockTimeoutError(
                    f"session lock break file held by a breaker (waited {waited:.3f}s): "
                    f"{self.lock_path}.break",
                    path=str(self.path),
                    waited_s=waited,
                )
            await anyio.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX)

    def release(self) -> None:
        """Release the lock (clearing our metadata first). A no-op when not held."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        _HELD.discard(self)
        bfd, self._bfd = self._bfd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            if bfd is not None:
                os.close(bfd)

    def _drop_descriptors(self) -> None:
        """Close our descriptors without unlocking (a forked child's copies; see
        :func:`_forget_inherited_locks`)."""
        fd, bfd = self._fd, self._bfd
        self._fd = self._bfd = None
        for d in (fd, bfd):
            if d is not None:
                with contextlib.suppress(OSError):
                    os.close(d)

    def __del__(self) -> None:
        # A lock object dropped while held must not keep the kernel lock for the life of
        # the process.
        for name in ("_fd", "_bfd"):
            fd = getattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def __aenter__(self) -> SessionWriteLock:
        await self.acquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"SessionWriteLock({str(self.path)!r}, held={self.held})"
