"""The embedded-turn helper: one agent turn over a session transcript."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio

from model_fallback._model import Candidate
from model_fallback.cooldown import CooldownTracker
from model_fallback.driver import FallbackPolicy, FallbackResult, run_with_model_fallback, validate_timeout
from model_fallback.events import Observer, ObserverSet
from model_fallback.session._file import SessionFile

__all__ = ["run_embedded_turn"]

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
