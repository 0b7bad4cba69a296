"""Exceptions raised by model_fallback.

::

    Exception
    ├── FailoverError                     one candidate failed, with its reason
    │   └── StreamInterruptedError        a stream failed after its first chunk (never
    │                                     switched silently; the caller decides)
    ├── CoordinationError                 a *local* condition, not a model failure
    │   ├── SessionWriteLockTimeoutError  (also a TimeoutError) the session write lock
    │   │                                 could not be taken in time
    │   ├── SessionTakeoverError          the session file changed while the prompt lock
    │   │                                 was released
    │   └── SessionIOError                (also an OSError) the session layer's own file
    │                                     operation failed: disk full, directory gone,
    │                                     read-only filesystem, no descriptors left
    └── ExceptionGroup
        └── AllCandidatesFailedError      every candidate failed or was skipped; members
                                          are one FailoverError per attempted candidate

Coordination errors stop the fallback driver at once: walking the chain against the
same local condition only produces a misleading "All models failed" and blames the
models for lock contention.

All exceptions here take their structured fields as keywords, keep them through
``pickle`` and ``copy``, and say something useful in ``str()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

from model_fallback._model import Attempt, Candidate, FailoverReason

__all__ = [
    "AllCandidatesFailedError",
    "CoordinationError",
    "FailoverError",
    "SessionIOError",
    "SessionTakeoverError",
    "SessionWriteLockTimeoutError",
    "StreamInterruptedError",
]


def _rebuild(cls: Callable[..., BaseException], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return cls(*args, **kwargs)


class FailoverError(Exception):
    """One candidate failed for a provider reason.

    Args:
        message: human-readable text.
        reason: the :class:`~model_fallback.FailoverReason` (a string value is accepted).
        candidate: the candidate that failed, if known.
        status: HTTP-like status, if known.
        code: provider/errno code, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: FailoverReason | str,
        candidate: Candidate | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = FailoverReason(reason)
        self.candidate = candidate
        self.status = status
        self.code = code

    def __str__(self) -> str:
        where = f"{self.candidate}: " if self.candidate is not None else ""
        return f"{where}{self.message} ({self.reason.value})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, reason={self.reason.value!r}, "
            f"candidate={self.candidate!r}, status={self.status!r}, code={self.code!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "reason": self.reason,
            "candidate": self.candidate,
            "status": self.status,
            "code": self.code,
        }
        return (_rebuild, (type(self), (self.message,), kwargs), self._extra_state())

    def _extra_state(self) -> dict[str, Any]:
        skip = {"message", "reason", "candidate", "status", "code"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


class StreamInterruptedError(FailoverError):
    """A provider stream failed after it had delivered chunks.

    The chain never switches to another candidate in the middle of a stream (the chunks
    already delivered would be duplicated or contradicted): the caller decides whether to
    restart. ``__cause__`` is the provider's original error (or the ``TimeoutError`` of
    ``idle_timeout``).

    Args:
        message: human-readable text.
        reason: the provider failure reason of the interruption.
        candidate: the candidate that was streaming.
        chunks_delivered: how many chunks the caller had received.
        status: HTTP-like status, if known.
        code: provider code, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: FailoverReason | str,
        candidate: Candidate | None = None,
        chunks_delivered: int = 0,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason, candidate=candidate, status=status, code=code)
        self.chunks_delivered = chunks_delivered

    def __str__(self) -> str:
        return f"{super().__str__()} after {self.chunks_delivered} chunk(s)"

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "reason": self.reason,
            "candidate": self.candidate,
            "chunks_delivered": self.chunks_delivered,
            "status": self.status,
            "code": self.code,
        }
        return (_rebuild, (type(self), (self.message,), kwargs), self._extra_state())

    def _extra_state(self) -> dict[str, Any]:
        return {k: v for k, v in super()._extra_state().items() if k != "chunks_delivered"}


class CoordinationError(Exception):
    """A local coordination failure (session lock, session takeover), not a model failure.

    Subclasses set :attr:`kind`, the value reported as ``coordination_kind`` and as the
    ``kind`` label of ``model_fallback_coordination_aborts_total``.
    """

    kind: ClassVar[str] = "coordination"


class SessionWriteLockTimeoutError(CoordinationError, TimeoutError):
    """The session write lock could not be acquired within the timeout.

    Args:
        message: human-readable text; built from the fields when empty.
        path: the lock path.
        waited_s: how long the caller waited.
        owner_pid: pid recorded by the current holder, if known.
        owner_alive: whether that pid was alive when we gave up, if known.
    """

    kind: ClassVar[str] = "write_lock_timeout"

    def __init__(
        self,
        message: str = "",
        *,
        path: str | None = None,
        waited_s: float | None = None,
        owner_pid: int | None = None,
        owner_alive: bool | None = None,
    ) -> None:
        if not message:
            owner = f"pid={owner_pid}" if owner_pid is not None else "owner unknown"
            alive = "" if owner_alive is None else (" (alive)" if owner_alive else " (dead)")
            waited = f"{waited_s:.3f}s" if waited_s is not None else "?"
            message = f"session file locked (waited {waited}): {owner}{alive} {path or '?'}"
        super().__init__(message)
        self.message = message
        self.path = path
        self.waited_s = waited_s
        self.owner_pid = owner_pid
        self.owner_alive = owner_alive

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "path": self.path,
            "waited_s": self.waited_s,
            "owner_pid": self.owner_pid,
            "owner_alive": self.owner_alive,
        }
        return (_rebuild, (type(self), (self.message,), kwargs))


class SessionTakeoverError(CoordinationError):
    """The session file changed while this turn had released its lock for the prompt.

    Args:
        message: human-readable text; built from the fields when empty.
        path: the session file.
        before: the fingerprint taken when the lock was released.
        after: the fingerprint found after re-acquiring it.
    """

    kind: ClassVar[str] = "session_takeover"

    def __init__(
        self,
        message: str = "",
        *,
        path: str | None = None,
        before: object = None,
        after: object = None,
    ) -> None:
        if not message:
            message = f"session file changed while prompt lock was released: {path or '?'}"
        super().__init__(message)
        self.message = message
        self.path = path
        self.before = before
        self.after = after

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"path": self.path, "before": self.before, "after": self.after}
        return (_rebuild, (type(self), (self.message,), kwargs))


class SessionIOError(CoordinationError, OSError):
    """A file operation of the session layer failed on a local OS error.

    The disk filled, the session directory was deleted, the filesystem turned read-only,
    the process ran out of descriptors, a lock or session path turned out to be a symlink
    or not a regular file: nothing a model did, so it stops the fallback run like the
    other coordination errors instead of being charged to the next candidates. It is
    also an :class:`OSError` (``errno`` set), so ``except OSError`` keeps working.

    Args:
        message: human-readable text; built from the fields when empty.
        path: the file the operation was on.
        operation: what failed (``acquire``, ``reacquire``, ``append``, ``read``,
            ``fence``, ``verify``).
        errno: the original error's errno, if any.

    ``__cause__`` is the original :class:`OSError` when there was one.
    """

    kind: ClassVar[str] = "session_io"

    def __init__(
        self,
        message: str = "",
        *,
        path: str | None = None,
        operation: str | None = None,
        errno: int | None = None,
    ) -> None:
        if not message:
            message = f"session {operation or 'I/O'} failed: {path or '?'}"
        if errno is None:
            super().__init__(message)
        else:
            super().__init__(errno, message)
        self.message = message
        self.path = path
        self.operation = operation

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"path": self.path, "operation": self.operation, "errno": self.errno}
        return (_rebuild, (type(self), (self.message,), kwargs))


def describe_error(error: BaseException) -> str:
    """``str(error)``, or its type name when that is empty; never raises (an SDK error's
    ``__str__`` may read a response that is not there)."""
    try:
        text = str(error)
    except Exception:
        return f"{type(error).__name__} (its str() raised)"
    if type(text) is not str:
        return type(error).__name__
    return text or type(error).__name__


def _summary(attempts: Sequence[Attempt]) -> str:
    """The message of :class:`AllCandidatesFailedError`: what applications log, so each
    error text is redacted (API keys, tokens) *before* it is shortened — a cut made first can
    leave a piece of a key too short to be recognised."""
    from model_fallback._redact import redact

    parts = []
    for a in attempts:
        if a.error is not None:
            text = describe_error(a.error) if not isinstance(a.error, FailoverError) else a.error.message
        else:
            text = a.outcome.value
        text = " ".join(redact(text, limit=2000).split())
        if len(text) > 200:
            text = text[:199] + "…"
        reason = f" ({a.reason.value})" if a.reason is not None else ""
        parts.append(f"{a.candidate}: {text}{reason}")
    return f"All models failed ({len(attempts)}): " + " | ".join(parts)


class AllCandidatesFailedError(ExceptionGroup[FailoverError]):
    """Every candidate failed or was skipped.

    An :class:`ExceptionGroup` of one :class:`FailoverError` per *attempted* candidate
    (``candidate`` and ``reason`` set, ``__cause__`` the original error), so
    ``except* FailoverError`` works. :attr:`attempts` lists every candidate, skipped ones
    included; ``str()`` begins ``"All models failed (N): "`` with ``N == len(attempts)``.
    """

    attempts: tuple[Attempt, ...]

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[FailoverError],
        *,
        attempts: Sequence[Attempt] = (),
    ) -> Self:
        self = super().__new__(cls, message, exceptions)
        self.attempts = tuple(attempts)
        return self

    def __init__(
        self,
        message: str,
        exceptions: Sequence[FailoverError],
        *,
        attempts: Sequence[Attempt] = (),  # noqa: ARG002 - consumed by __new__
    ) -> None:
        super().__init__(message, exceptions)

    @classmethod
    def from_attempts(
        cls, attempts: Sequence[Attempt], exceptions: Sequence[FailoverError]
    ) -> AllCandidatesFailedError:
        """Build the error with the standard ``All models failed (N): ...`` message."""
        return cls(_summary(attempts), exceptions, attempts=attempts)

    def derive(self, excs: Sequence[FailoverError]) -> AllCandidatesFailedError:  # type: ignore[override]
        """Keep the type and the attempts when ``split``/``subgroup`` build a new group."""
        return type(self)(self.message, excs, attempts=self.attempts)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), (self.message, list(self.exceptions)), {"attempts": self.attempts}),
        )

    def __str__(self) -> str:
        return self.message

    @property
    def reasons(self) -> Mapping[Candidate, FailoverReason | None]:
        """Reason per candidate, skipped ones included, in chain order."""
        return {a.candidate: a.reason for a in self.attempts}
