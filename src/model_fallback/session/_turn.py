"""The embedded-turn helpers: one agent turn over a session transcript, plain or streamed."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from model_fallback._model import Candidate
from model_fallback.classify import analyze
from model_fallback.cooldown import CooldownTracker
from model_fallback.driver import FallbackPolicy, FallbackResult, run_with_model_fallback, validate_timeout
from model_fallback.events import Observer, ObserverSet
from model_fallback.session._file import HeldSession, SessionFile
from model_fallback.streaming import FallbackStream, close_stream, stream_with_model_fallback

__all__ = ["run_embedded_turn", "stream_embedded_turn"]

T = TypeVar("T")


def _default_reply(result: FallbackResult[Any]) -> dict[str, Any]:
    value = result.value
    content = value if isinstance(value, str | int | float | bool | type(None) | list | dict) else repr(value)
    return {
        "role": "assistant",
        "content": content,
        "model": str(result.candidate),
        "fallback_depth": result.fallback_depth,
    }


async def run_embedded_turn(
    session: SessionFile,
    user_entry: Mapping[str, Any],
    run: Callable[[Candidate], Awaitable[T]],
    candidates: Sequence[Candidate | str],
    *,
    policy: FallbackPolicy | None = None,
    cooldowns: CooldownTracker | None = None,
    observers: ObserverSet | Sequence[Observer] = (),
    attempt_timeout: float | None = None,
    reply_entry: Callable[[FallbackResult[T]], Mapping[str, Any]] | None = None,
) -> FallbackResult[T]:
    """Run one turn: lock, append the user entry, call the models, append the reply.

    The session's write lock is held for the transcript writes and released around each
    model call (``released_for_prompt``): on the way back it is re-acquired and the file's
    fingerprint verified. The release wraps *each attempt*, as in the runtimes this library
    serves, so a takeover or a lock timeout is raised inside the attempt and the fallback
    driver stops at once, re-raising that very coordination error — never
    "All models failed" for a local condition. A takeover also poisons the held session:
    any later attempt or write in this turn raises it again.

    ``attempt_timeout`` bounds the model call only, inside the release: a hung call is cut
    with ``TimeoutError`` (a provider ``timeout``, the chain continues), and the lock is
    still re-acquired and the fence verified before the next candidate — a takeover during
    the hung call surfaces as the takeover. Waiting for the lock is bounded by the
    session's ``lock_timeout``, never counted as a model timeout.

    Args:
        session: the transcript.
        user_entry: appended (as one JSON line) before the first model call.
        run: one provider call, ``async (Candidate) -> T``.
        candidates: the fallback chain.
        policy, cooldowns, observers, attempt_timeout: as for
            :func:`~model_fallback.run_with_model_fallback`.
        reply_entry: builds the reply entry from the result (default: role, content,
            model, fallback_depth).

    Returns:
        The :class:`~model_fallback.FallbackResult` of the serving candidate.
    """
    if not isinstance(session, SessionFile):
        raise TypeError("session must be a SessionFile")
    timeout = validate_timeout(attempt_timeout)
    async with session.locked() as held:
        await held.append(user_entry)

        # The timeout goes around the model call, not around the whole attempt: the driver's
        # own attempt_timeout would also cut the lock re-acquire, turning lock contention into
        # "model timeouts" and leaving the fence unverified.
        async def attempt(candidate: Candidate) -> T:
            cut: TimeoutError | None = None
            async with held.released_for_prompt():
                if timeout is None:
                    return await run(candidate)
                try:
                    with anyio.fail_after(timeout):
                        return await run(candidate)
                except TimeoutError as exc:
                    # Held back until the fence is verified: a takeover (or a lost lock)
                    # during the hung call is raised as itself, not as a model timeout.
                    cut = exc
            assert cut is not None
            raise cut

        result = await run_with_model_fallback(
            attempt,
            candidates,
            policy=policy,
            cooldowns=cooldowns,
            observers=observers,
        )
        await held.append((reply_entry or _default_reply)(result))
        return result


# --- the streaming form ----------------------------------------------------------------

_NOTHING: Any = object()  # no first chunk held (already handed over, or the stream was empty)


class _ReleasedStream(Generic[T]):
    """One candidate's stream, opened inside a prompt release of the turn's held session.

    It holds the stream's first chunk (read inside the release, so that a failure before it
    goes through the fence like a plain call), then passes the provider's chunks through,
    keeping those it handed over for the reply entry. The release stays open while the
    stream is read and is closed exactly once: when the provider's stream ends or fails
    (then the lock is re-acquired and the fence verified before the end or the failure is
    reported), or, when the block is left first, by :class:`_StreamingTurn`. Cancellation
    leaves it open (as :meth:`~model_fallback.session.HeldSession.released_for_prompt` does);
    the turn's exit then closes it without waiting for the lock.
    """

    __slots__ = ("_first", "_idle_timeout", "_iterator", "_release", "_source", "delivered")

    def __init__(
        self,
        source: object,
        iterator: AsyncIterator[T],
        first: Any,
        release: contextlib.AbstractAsyncContextManager[None] | None,
        idle_timeout: float | None,
    ) -> None:
        self._source = source
        self._iterator = iterator
        self._first = first
        self._release = release
        self._idle_timeout = idle_timeout
        self.delivered: list[T] = []

    @property
    def released(self) -> bool:
        """Whether the prompt release is still open (the fence not verified yet)."""
        return self._release is not None

    def __aiter__(self) -> _ReleasedStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._first is not _NOTHING:
            first, self._first = self._first, _NOTHING
            self.delivered.append(first)
            return first  # type: ignore[no-any-return]
        if self._release is None:  # ended before its first chunk (or already finished)
            raise StopAsyncIteration
        idle = self._idle_timeout
        try:
            if idle is None:
                chunk = await self._iterator.__anext__()
            else:
                # The idle timeout covers the provider only, never the lock re-acquire that
                # follows it (lock contention is not a stalled model).
                with anyio.move_on_after(idle) as stall:
                    chunk = await self._iterator.__anext__()
                if stall.cancelled_caught:
                    stalled = TimeoutError(f"no chunk within idle_timeout={idle:g}s")
                    # Verified first: a takeover during the stall is raised as itself.
                    problem = await self.finish(None)
                    raise problem if problem is not None else stalled
        except StopAsyncIteration:
            problem = await self.finish(None)
            if problem is not None:
                raise problem from None
            raise
        except Exception as exc:
            if self._release is not None:
                # The release puts a takeover found now at the end of exc's chain (as for a
                # plain call): explicit provider metadata above it still takes precedence.
                await self.finish(exc)
            raise
        self.delivered.append(chunk)
        return chunk

    async def finish(self, exc: BaseException | None) -> BaseException | None:
        """Close the prompt release (once): re-acquire the lock and verify the fence, except
        after a cancellation. Return the coordination error found when *exc* is None."""
        release, self._release = self._release, None
        if release is None:
            return None
        try:
            await release.__aexit__(type(exc) if exc is not None else None, exc,
                                    exc.__traceback__ if exc is not None else None)  # fmt: skip
        except BaseException as problem:
            if problem is exc:
                return None
            return problem
        return None

    async def aclose(self) -> None:
        """Close the provider's stream (shielded and bounded); the release is left as is."""
        await close_stream(self._iterator, self._source)


def _default_stream_reply(chunks: list[Any], stream: FallbackStream[Any]) -> dict[str, Any]:
    strange = next((c for c in chunks if not isinstance(c, str)), None)
    if strange is not None:
        raise TypeError(
            f"stream_embedded_turn: the default reply entry joins string chunks, got a "
            f"{type(strange).__name__}: pass reply_entry to build the entry from the chunks"
        )
    return {
        "role": "assistant",
        "content": "".join(chunks),
        "model": str(stream.candidate),
        "fallback_depth": stream.attempts[-1].index if stream.attempts else 0,
    }


class _StreamingTurn(Generic[T]):
    """The async context manager returned by :func:`stream_embedded_turn`."""

    def __init__(
        self,
        session: SessionFile,
        user_entry: Mapping[str, Any],
        open_stream: Callable[[Candidate], Awaitable[AsyncIterable[T]] | AsyncIterable[T]],
        candidates: Sequence[Candidate | str],
        policy: FallbackPolicy | None,
        cooldowns: CooldownTracker | None,
        observers: ObserverSet | Sequence[Observer],
        first_chunk_timeout: float | None,
        idle_timeout: float | None,
        reply_entry: Callable[[list[T]], Mapping[str, Any]] | None,
    ) -> None:
        if not isinstance(session, SessionFile):
            raise TypeError("session must be a SessionFile")
        if not callable(open_stream):
            raise TypeError("open_stream must be a callable taking a Candidate")
        self._session = session
        self._user_entry = user_entry
        self._open_stream = open_stream
        self._first_chunk_timeout = validate_timeout(first_chunk_timeout, "first_chunk_timeout")
        self._idle_timeout = validate_timeout(idle_timeout, "idle_timeout")
        self._reply_entry = reply_entry
        # Neither timeout is given to the stream itself: both are applied inside the release,
        # around the provider only, so that waiting for the lock is never a model timeout.
        self._context = stream_with_model_fallback(
            self._attempt, candidates, policy=policy, cooldowns=cooldowns, observers=observers
        )
        self._locked: contextlib.AbstractAsyncContextManager[HeldSession] | None = None
        self._held: HeldSession | None = None
        self._serving: _ReleasedStream[T] | None = None
        self._stream: FallbackStream[T] | None = None

    async def _attempt(self, candidate: Candidate) -> _ReleasedStream[T]:
        """One attempt: open the candidate's stream and wait for its first chunk, inside a
        prompt release that stays open when it succeeds."""
        held = self._held
        assert held is not None
        release = held.released_for_prompt()
        await release.__aenter__()
        timeout = self._first_chunk_timeout
        source: Any = None
        iterator: Any = None
        first: Any = _NOTHING
        try:
            with anyio.move_on_after(timeout) if timeout is not None else contextlib.nullcontext() as cut:
                source = self._open_stream(candidate)
                if inspect.isawaitable(source):
                    source = await source
                if not isinstance(source, AsyncIterable):
                    raise TypeError(
                        "open_stream must return an async iterable (a provider stream), "
                        f"got {type(source).__name__}"
                    )
                iterator = source.__aiter__()
                try:
                    first = await iterator.__anext__()
                except StopAsyncIteration:
                    first = _NOTHING
        except BaseException as exc:
            await close_stream(iterator, source)
            if isinstance(exc, Exception):
                await release.__aexit__(type(exc), exc, exc.__traceback__)  # re-raises exc
            # Cancellation: propagates at once, the fence pending for the next operation.
            raise
        if cut is not None and cut.cancelled_caught:
            await close_stream(iterator, source)
            # Held back until the fence is verified: a takeover during the wait is raised as
            # itself, not as a model timeout.
            await release.__aexit__(None, None, None)
            raise TimeoutError(f"no first chunk within first_chunk_timeout={timeout:g}s")
        if first is _NOTHING:  # the stream ended before any chunk: the prompt is over
            await close_stream(iterator, source)
            await release.__aexit__(None, None, None)
            self._serving = _ReleasedStream(source, iterator, _NOTHING, None, None)
        else:
            self._serving = _ReleasedStream(source, iterator, first, release, self._idle_timeout)
        return self._serving

    async def __aenter__(self) -> FallbackStream[T]:
        self._locked = self._session.locked()
        self._held = await self._locked.__aenter__()
        try:
            await self._held.append(self._user_entry)
            self._stream = await self._context.__aenter__()
        except BaseException as exc:
            await self._locked.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stream, serving, locked, held = self._stream, self._serving, self._locked, self._held
        self._stream = self._serving = self._locked = self._held = None
        assert stream is not None
        assert serving is not None
        assert locked is not None
        assert held is not None
        try:
            problem: BaseException | None = None
            try:
                if serving.released:
                    # The block was left before the stream ended: the prompt is over now.
                    await serving.aclose()
                    problem = await serving.finish(exc)
                    found = problem if problem is not None else exc
                    if isinstance(found, Exception) and analyze(found).coordination_kind is not None:
                        # Reported as the coordination abort it is, not as a served stream.
                        stream.record_failure(found)
            finally:
                await self._context.__aexit__(exc_type, exc, tb)
            if problem is not None:
                raise problem
            if exc is None:
                delivered = serving.delivered[: stream.chunks]
                entry = (
                    self._reply_entry(delivered)
                    if self._reply_entry is not None
                    else _default_stream_reply(delivered, stream)
                )
                await held.append(entry)
        finally:
            await locked.__aexit__(exc_type, exc, tb)


def stream_embedded_turn(
    session: SessionFile,
    user_entry: Mapping[str, Any],
    open_stream: Callable[[Candidate], Awaitable[AsyncIterable[T]] | AsyncIterable[T]],
    candidates: Sequence[Candidate | str],
    *,
    policy: FallbackPolicy | None = None,
    cooldowns: CooldownTracker | None = None,
    observers: ObserverSet | Sequence[Observer] = (),
    first_chunk_timeout: float | None = None,
    idle_timeout: float | None = None,
    reply_entry: Callable[[list[T]], Mapping[str, Any]] | None = None,
) -> contextlib.AbstractAsyncContextManager[FallbackStream[T]]:
    """Stream one turn: lock, append the user entry, stream from the models, append the reply.

    ::

        async with stream_embedded_turn(session, {"role": "user", "content": q},
                                        open_stream, chain) as stream:
            async for chunk in stream:
                ...

    The streaming form of :func:`run_embedded_turn`, under the same prompt-release fence.
    Entering the block takes the session's write lock, appends *user_entry*, then walks the
    chain as :func:`~model_fallback.stream_with_model_fallback` does, each attempt opening
    its stream and waiting for its first chunk inside ``released_for_prompt()``: a failed
    attempt leaves the release (the lock re-acquired, the fence verified) before the next
    candidate, and a takeover or a lock timeout stops the chain at once as that very
    coordination error. For the serving candidate the release stays open while the caller
    reads the stream.

    When the stream ends, the lock is re-acquired and the fence verified *before* the end
    is reported: a takeover found then is raised by the ``async for`` as
    :class:`~model_fallback.SessionTakeoverError`, after the chunks already delivered, and
    nothing is appended. Otherwise, when the block is left normally (the stream's end or a
    ``break``), the reply entry is appended, built by ``reply_entry(chunks)`` from the
    chunks the caller received (default: string chunks joined into ``{"role":
    "assistant", "content": ..., "model": ..., "fallback_depth": ...}``). When the block is
    left before the stream ended, the provider's stream is closed and the fence verified
    then; a takeover found then is raised on leaving the block (a ``break``), or put at the
    end of the block's own error's chain (as for a plain call); after a cancellation the
    lock is not waited for.

    A provider failure or a stall after the first chunk raises
    :class:`~model_fallback.StreamInterruptedError` (the fence verified first: a takeover
    during a stall is raised as itself); nothing is appended and the caller decides whether
    to start a new turn.

    Args:
        session: the transcript.
        user_entry: appended (as one JSON line) before the first model call.
        open_stream: ``async (Candidate) -> AsyncIterable[T]`` (a provider SDK's stream).
        candidates: the fallback chain.
        policy, cooldowns, observers: as for :func:`~model_fallback.stream_with_model_fallback`.
        first_chunk_timeout: seconds allowed to open a stream and receive its first chunk
            (a provider ``timeout``, the chain goes on); the lock re-acquire is not counted.
        idle_timeout: seconds allowed between two chunks after the first (a
            :class:`~model_fallback.StreamInterruptedError` with reason ``timeout``).
        reply_entry: builds the reply entry from the list of chunks delivered.

    Returns:
        An async context manager whose value is the :class:`~model_fallback.FallbackStream`.

    Raises:
        TypeError, ValueError: invalid arguments, at once (the chain when the block is entered).
    """
    return _StreamingTurn(
        session, user_entry, open_stream, candidates, policy, cooldowns, observers,
        first_chunk_timeout, idle_timeout, reply_entry,
    )  # fmt: skip
