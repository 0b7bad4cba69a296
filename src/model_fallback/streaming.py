"""Streaming fallback: fall back before the first chunk, a typed interruption after it.

::

    async with stream_with_model_fallback(open_stream, candidates) as stream:
        async for chunk in stream:
            ...

``open_stream(candidate)`` is ``async (Candidate) -> AsyncIterable[T]`` (a provider SDK's
stream, or an async generator). Entering the block walks the chain with the very driver
of :func:`~model_fallback.run_with_model_fallback`, one attempt being "open the stream and
wait for its first chunk" (within ``first_chunk_timeout``): a failure before the first
chunk is classified, cools the candidate down and falls back exactly as in a plain run;
coordination errors, caller bugs and cancellation propagate unchanged; when every
candidate failed, :class:`~model_fallback.AllCandidatesFailedError`.

After the first chunk the chain never switches silently: a provider failure, or
``idle_timeout`` between two chunks (reason ``timeout``), raises
:class:`~model_fallback.StreamInterruptedError` (``candidate``, ``reason``,
``chunks_delivered``, ``__cause__`` the original error) and cools the candidate down as
any failure would; a coordination error or a caller bug raised by the stream propagates
unchanged. The caller decides whether to restart.

Leaving the block, however it is left (the stream's end, ``break``, an error in the loop
body, cancellation), closes the provider's iterator (``aclose()``, else an awaitable
``close()``), shielded from cancellation and bounded in time. Cancellation never starts a
cooldown.

Telemetry: the attempt that serves the stream lasts until the stream ends; its
:class:`~model_fallback.events.AttemptEnded` carries the time to the first chunk and the
number of chunks, and the run ends with outcome ``success``, ``interrupted``,
``coordination_abort``, ``caller_error`` or ``cancelled``. Nothing is reported per chunk.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from model_fallback._model import Attempt, Candidate, FailoverReason, Outcome
from model_fallback.classify import analyze
from model_fallback.cooldown import COOLDOWN_REASONS, CooldownTracker
from model_fallback.driver import (
    Deferred,
    FallbackPolicy,
    PendingRun,
    run_with_model_fallback,
    validate_timeout,
)
from model_fallback.errors import StreamInterruptedError, describe_error
from model_fallback.events import Observer, ObserverSet, RunOutcome

__all__ = ["FallbackStream", "StreamInterruptedError", "stream_with_model_fallback"]

T = TypeVar("T")

#: How long closing a provider's iterator may take when the block is left.
CLOSE_TIMEOUT_S = 5.0
_EMPTY: Any = object()  # a stream that ended before its first chunk
_perf = time.perf_counter


async def close_stream(iterator: object, source: object = None) -> None:
    """Close a provider's stream: its iterator, then the object that gave it when that is
    another one (an SDK's stream object around its iterator). Each is closed with
    ``aclose()``, else an awaitable ``close()``; shielded from cancellation (the block may be
    left *because* of it) and bounded in time. Used by every path that leaves a stream."""
    await _close(iterator)
    if source is not None and source is not iterator:
        await _close(source)


async def _close(iterator: object) -> None:
    closer = getattr(iterator, "aclose", None) or getattr(iterator, "close", None)
    if closer is None:
        return
    with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
        try:
            result = closer()
            if inspect.isawaitable(result):
                await result
        except Exception:  # closing a broken stream may fail too; the caller has its answer
            pass


class _Opened(Generic[T]):
    """A stream that delivered its first chunk (or ended before one)."""

    __slots__ = ("first", "iterator", "source", "ttft")

    def __init__(self, source: object, iterator: AsyncIterator[T], first: T, ttft: float) -> None:
        self.source = source
        self.iterator = iterator
        self.first = first
        self.ttft = ttft


class FallbackStream(Generic[T]):
    """The value of ``async with stream_with_model_fallback(...)``: iterate it for chunks.

    Attributes:
        candidate: the candidate serving the stream.
        attempts: every attempt and skip so far; after the stream ended, its final record.
        chunks: how many chunks were delivered so far.
    """

    def __init__(
        self,
        opened: _Opened[T],
        pending: PendingRun,
        cooldowns: CooldownTracker | None,
        idle_timeout: float | None,
    ) -> None:
        self._opened: _Opened[T] | None = opened
        self._pending = pending
        self._cooldowns = cooldowns
        self._idle_timeout = idle_timeout
        self._first_pending = opened.first is not _EMPTY
        self._ended = False
        self._served_at = _perf()
        self.candidate: Candidate = pending.attempt.candidate
        self.attempts: tuple[Attempt, ...] = pending.attempts
        self.chunks = 0

    def __aiter__(self) -> FallbackStream[T]:
        return self

    async def __anext__(self) -> T:
        opened = self._opened
        if opened is None or self._ended:
            raise StopAsyncIteration
        if self._first_pending:
            self._first_pending = False
            self.chunks += 1
            return opened.first
        if opened.first is _EMPTY:
            self._end(Outcome.SUCCESS, RunOutcome.SUCCESS, None)
            raise StopAsyncIteration
        try:
            if self._idle_timeout is None:
                chunk = await opened.iterator.__anext__()
            else:
                with anyio.fail_after(self._idle_timeout):
                    chunk = await opened.iterator.__anext__()
        except StopAsyncIteration:
            self._end(Outcome.SUCCESS, RunOutcome.SUCCESS, None)
            raise
        except Exception as exc:
            failure = self.record_failure(exc)
            if failure is exc:
                raise
            raise failure from exc
        except BaseException as exc:  # cancellation: nothing recorded against the model
            self._end(Outcome.CANCELLED, RunOutcome.CANCELLED, exc)
            raise
        self.chunks += 1
        return chunk

    def record_failure(self, exc: Exception) -> BaseException:
        """Record a failure after the first chunk and end the stream's attempt and run;
        return what to raise (the error itself, or a :class:`StreamInterruptedError`).

        The stream does this itself; a session turn (:func:`~model_fallback.session.
        stream_embedded_turn`) calls it for a coordination error it finds on leaving."""
        candidate = self.candidate
        info = analyze(exc, candidate.provider)
        if info.coordination_kind is not None:
            self._end(
                Outcome.COORDINATION_ABORT, RunOutcome.COORDINATION_ABORT, exc,
                kind=info.coordination_kind, status=info.status, code=info.code,
            )  # fmt: skip
            return exc
        if info.caller_error is not None:
            self._end(Outcome.CALLER_ERROR, RunOutcome.CALLER_ERROR, exc, status=info.status, code=info.code)
            return exc
        reason = info.reason if info.reason is not None else FailoverReason.UNKNOWN
        if self._cooldowns is not None and reason in COOLDOWN_REASONS:
            self._cooldowns.record_failure(candidate, reason, exc)
        interrupted = StreamInterruptedError(
            f"stream interrupted: {describe_error(exc)}",
            reason=reason,
            candidate=candidate,
            chunks_delivered=self.chunks,
            status=info.status,
            code=info.code,
        )
        self._end(
            Outcome.PROVIDER_FAILURE, RunOutcome.INTERRUPTED, interrupted,
            reason=reason, attempt_error=exc, status=info.status, code=info.code,
        )  # fmt: skip
        return interrupted

    def _end(
        self,
        outcome: Outcome,
        run_outcome: RunOutcome,
        error: BaseException | None,
        *,
        kind: str | None = None,
        reason: FailoverReason | None = None,
        attempt_error: BaseException | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        """Report the attempt as it ended and the run, once."""
        if self._ended:
            return
        self._ended = True
        served = self._pending.attempt
        # The attempt lasted from the call to the end of the stream.
        attempt = served._replace(
            outcome=outcome,
            reason=reason,
            coordination_kind=kind,
            error=None if outcome is Outcome.SUCCESS else (attempt_error or error),
            duration_s=served.duration_s + (_perf() - self._served_at),
            status=status,
            code=code,
        )
        opened = self._opened
        self.attempts = self._pending.finish(
            attempt,
            run_outcome,
            error,
            time_to_first_chunk_s=opened.ttft if opened is not None and opened.first is not _EMPTY else None,
            chunks=self.chunks,
        )

    async def _leave(self, exc: BaseException | None) -> None:
        """Close the provider's iterator and report how the block was left."""
        opened = self._opened
        if not self._ended:
            if exc is None or isinstance(exc, Exception):
                # the stream's end, a break, or the caller's own loop body raising: the
                # provider served what it was asked for
                self._end(Outcome.SUCCESS, RunOutcome.SUCCESS, None)
            else:
                self._end(Outcome.CANCELLED, RunOutcome.CANCELLED, exc)
        if opened is not None:
            await close_stream(opened.iterator, opened.source)


class _StreamContext(Generic[T]):
    """The async context manager returned by :func:`stream_with_model_fallback`."""

    def __init__(
        self,
        open_stream: Callable[[Candidate], Awaitable[AsyncIterable[T]] | AsyncIterable[T]],
        candidates: Sequence[Candidate | str],
        policy: FallbackPolicy | None,
        cooldowns: CooldownTracker | None,
        observers: ObserverSet | Sequence[Observer],
        first_chunk_timeout: float | None,
        idle_timeout: float | None,
    ) -> None:
        if not callable(open_stream):
            raise TypeError("open_stream must be a callable taking a Candidate")
        self._open_stream = open_stream
        self._candidates = candidates
        self._policy = policy
        self._cooldowns = cooldowns
        self._observers = ObserverSet.of(observers) if observers else observers
        self._first_chunk_timeout = validate_timeout(first_chunk_timeout, "first_chunk_timeout")
        self._idle_timeout = validate_timeout(idle_timeout, "idle_timeout")
        self._stream: FallbackStream[T] | None = None

    async def _open(self, candidate: Candidate) -> Deferred:
        """One attempt: open the candidate's stream and wait for its first chunk."""
        started = _perf()
        source: Any = self._open_stream(candidate)
        if inspect.isawaitable(source):
            source = await source
        if not isinstance(source, AsyncIterable):
            raise TypeError(
                f"open_stream must return an async iterable (a provider stream), got {type(source).__name__}"
            )
        iterator = source.__aiter__()
        try:
            try:
                first = await iterator.__anext__()
            except StopAsyncIteration:
                first = _EMPTY
        except BaseException:
            await close_stream(iterator, source)
            raise
        return Deferred(_Opened(source, iterator, first, _perf() - started))

    async def __aenter__(self) -> FallbackStream[T]:
        result = await run_with_model_fallback(
            self._open,
            self._candidates,
            policy=self._policy,
            cooldowns=self._cooldowns,
            observers=self._observers,
            attempt_timeout=self._first_chunk_timeout,
        )
        deferred = result.value
        assert deferred.pending is not None
        opened: _Opened[T] = deferred.payload  # type: ignore[assignment]
        stream = FallbackStream(opened, deferred.pending, self._cooldowns, self._idle_timeout)
        self._stream = stream
        return stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stream = self._stream
        self._stream = None
        if stream is not None:
            await stream._leave(exc)


def stream_with_model_fallback(
    open_stream: Callable[[Candidate], Awaitable[AsyncIterable[T]] | AsyncIterable[T]],
    candidates: Sequence[Candidate | str],
    *,
    policy: FallbackPolicy | None = None,
    cooldowns: CooldownTracker | None = None,
    observers: ObserverSet | Sequence[Observer] = (),
    first_chunk_timeout: float | None = None,
    idle_timeout: float | None = None,
) -> _StreamContext[T]:
    """Stream from the first candidate that delivers a first chunk.

    Args:
        open_stream: ``async (Candidate) -> AsyncIterable[T]`` (or a function returning an
            async iterable, such as an async generator function).
        candidates: the chain, as for :func:`~model_fallback.run_with_model_fallback`.
        policy: when to stop falling back before the first chunk.
        cooldowns: a tracker shared across runs; None disables cooldowns.
        observers: telemetry observers or an :class:`~model_fallback.events.ObserverSet`.
        first_chunk_timeout: seconds allowed to open a stream and receive its first chunk;
            expiry is a provider ``timeout`` and the chain goes on.
        idle_timeout: seconds allowed between two chunks after the first; expiry raises
            :class:`~model_fallback.StreamInterruptedError` with reason ``timeout``.

    Returns:
        An async context manager whose value is a :class:`FallbackStream`.

    Raises:
        TypeError, ValueError: invalid arguments, before any call (when the block is
            entered for the candidates and policy, at once for the callables and timeouts).
    """
    return _StreamContext(
        open_stream, candidates, policy, cooldowns, observers, first_chunk_timeout, idle_timeout
    )
