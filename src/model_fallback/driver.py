"""The fallback driver: try candidates in order, classify every failure, stop on the
ones that are not the model's fault.

For each candidate, in order (duplicates dropped):

1. A candidate cooling down is skipped (``Outcome.skipped``), unless every remaining
   candidate is cooling down: then it is probed (one probe per run, and one probe per
   candidate per cooldown across every run sharing the tracker: the others skip it).
2. ``await run(candidate)``, within ``attempt_timeout`` if given (expiry is a provider
   ``timeout``).
3. Success returns a :class:`FallbackResult`.
4. A ``BaseException`` that is not an ``Exception`` (cancellation, ``KeyboardInterrupt``,
   ``SystemExit``) propagates at once: outcome ``cancelled``, nothing recorded against
   the candidate, no cooldown.
5. A coordination error propagates at once, unchanged: outcome ``coordination_abort``,
   no cooldown, no further candidate called; observers learn how many were left untried.
   A bug in the caller's own code (a Python programming error with no provider signal in
   its chain, see :func:`~model_fallback.classify.analyze`) does the same with outcome
   ``caller_error``, unless ``policy.stop_on_caller_error`` is False.
6. A reason in ``policy.stop_on`` (default ``{context_overflow}``) or a
   ``policy.should_fallback`` veto propagates the original error: outcome ``aborted``.
7. Otherwise the outcome is ``provider_failure`` with its reason (``unknown`` when
   unclassified); rate_limit, overloaded, billing, auth and auth_permanent start a
   cooldown (honouring ``Retry-After``).

When every candidate failed or was skipped, :class:`~model_fallback.AllCandidatesFailedError`
is raised. Arguments are validated before any call.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import CoroutineType
from typing import Any, Generic, NamedTuple, TypeVar

import anyio

from model_fallback._model import Attempt, Candidate, FailoverReason, Outcome
from model_fallback._redact import redact
from model_fallback.classify import analyze
from model_fallback.cooldown import COOLDOWN_REASONS, CooldownTracker
from model_fallback.errors import AllCandidatesFailedError, FailoverError, describe_error
from model_fallback.events import (
    AttemptEnded,
    AttemptStarted,
    CandidateSkipped,
    CoordinationAborted,
    Observer,
    ObserverSet,
    RunEnded,
    RunOutcome,
    RunStarted,
)

__all__ = [
    "Attempt",
    "Candidate",
    "FallbackPolicy",
    "FallbackResult",
    "Outcome",
    "normalize_candidates",
    "run_with_model_fallback",
    "validate_timeout",
]

T = TypeVar("T")

_run_ids = itertools.count(1)
_perf = time.perf_counter


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    """When to stop falling back.

    Attributes:
        stop_on: reasons that abort the run with the original error instead of trying
            the next candidate (default: ``context_overflow``, since a longer prompt will
            not fit a smaller model either; compact and retry instead).
        should_fallback: optional veto called with the failed :class:`Attempt`; returning
            False aborts the run with the original error (outcome ``aborted``).
        stop_on_caller_error: a bug in the caller's own code (``NameError``,
            ``TypeError``, ... raised outside any provider SDK, with no provider signal
            in its chain) stops the run with the original error, outcome
            ``caller_error``, charged to no model (default). False restores the old
            behaviour: it counts as a provider failure with reason ``unknown`` and the
            chain goes on.
    """

    stop_on: frozenset[FailoverReason] = field(
        default_factory=lambda: frozenset({FailoverReason.CONTEXT_OVERFLOW})
    )
    should_fallback: Callable[[Attempt], bool] | None = None
    stop_on_caller_error: bool = True

    def __post_init__(self) -> None:
        try:
            reasons = frozenset(FailoverReason(r) for r in self.stop_on)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"stop_on must hold FailoverReason values: {exc}") from None
        object.__setattr__(self, "stop_on", reasons)
        if self.should_fallback is not None and not callable(self.should_fallback):
            raise TypeError("should_fallback must be callable or None")
        if not isinstance(self.stop_on_caller_error, bool):
            raise TypeError("stop_on_caller_error must be a bool")


_DEFAULT_POLICY = FallbackPolicy()


class FallbackResult(NamedTuple, Generic[T]):
    """A successful run (immutable; a named tuple, built once per run on the hot path).

    Attributes:
        value: what ``run`` returned.
        candidate: the candidate that served.
        attempts: every attempt and skip, the successful one last.
    """

    value: T
    candidate: Candidate
    attempts: tuple[Attempt, ...]

    @property
    def fallback_depth(self) -> int:
        """Index of the serving candidate in the chain (0 = primary)."""
        return self.attempts[-1].index

    @property
    def fell_back(self) -> bool:
        """Whether a candidate other than the primary served."""
        return self.attempts[-1].index > 0


def normalize_candidates(candidates: Iterable[Candidate | str]) -> tuple[Candidate, ...]:
    """Parse and de-duplicate a chain, keeping order.

    Raises:
        TypeError: for a bare string/Candidate instead of a sequence, or a wrong item type.
        ValueError: for an empty chain or a malformed ``"provider/model"``.
    """
    if isinstance(candidates, (str, Candidate)):  # a tuple: no union object built per call
        raise TypeError("candidates must be a sequence of Candidate or 'provider/model' strings")
    try:
        items = tuple(candidates)
    except TypeError:
        raise TypeError("candidates must be a sequence of Candidate or 'provider/model' strings") from None
    try:
        return _parsed_chain(items)
    except TypeError as exc:  # an unhashable item: parse it uncached for the right message
        if "unhashable" not in str(exc):
            raise
        return _parse_chain(items)


# Applications pass the same chain run after run; parsing it costs a few microseconds. The
# items are strings and frozen Candidates (values, not identities), so equal chains parse
# to equal results and the cache needs no invalidation. Errors are not cached.
@functools.lru_cache(maxsize=256)
def _parsed_chain(items: tuple[Candidate | str, ...]) -> tuple[Candidate, ...]:
    return _parse_chain(items)


def _parse_chain(items: tuple[Candidate | str, ...]) -> tuple[Candidate, ...]:
    if not items:
        raise ValueError("candidates must not be empty")
    chain: dict[Candidate, None] = {}
    for item in items:
        if isinstance(item, Candidate):
            chain[item] = None
        elif isinstance(item, str):
            chain[Candidate.parse(item)] = None
        else:
            raise TypeError(f"candidate must be a Candidate or a string, got {type(item).__name__}")
    return tuple(chain)


class PendingRun(NamedTuple):
    """A run whose last attempt succeeded but has not been reported yet (a stream)."""

    observers: ObserverSet | None
    run_id: int
    attempt: Attempt
    attempts: tuple[Attempt, ...]
    started: float
    chain_length: int

    def finish(
        self,
        attempt: Attempt,
        outcome: RunOutcome,
        error: BaseException | None,
        *,
        time_to_first_chunk_s: float | None = None,
        chunks: int | None = None,
    ) -> tuple[Attempt, ...]:
        """Report the attempt (as it ended) and the run, as the driver reports a plain run;
        return the run's attempts."""
        attempts = (*self.attempts[:-1], attempt)
        obs = self.observers
        if obs is None:
            return attempts
        _report_attempt(obs, self.run_id, attempt, time_to_first_chunk_s, chunks)
        if outcome is RunOutcome.COORDINATION_ABORT:
            _report_abort(obs, self.run_id, attempt, self.chain_length - attempt.index - 1)
        served = attempt if outcome is RunOutcome.SUCCESS else None
        _report_run_end(obs, self.run_id, outcome, attempts, self.started, error, served)
        return attempts


class Deferred:
    """What a streaming attempt returns to the driver: the stream it opened, whose success
    is reported when it ends rather than when the driver returns (the attempt lasts as
    long as the stream). Private to :mod:`model_fallback.streaming`."""

    __slots__ = ("payload", "pending")

    def __init__(self, payload: object) -> None:
        self.payload = payload
        self.pending: PendingRun | None = None


class _SyncRunError(TypeError):
    """``run`` returned something that cannot be awaited (a synchronous function)."""


def _not_awaitable(result: object) -> str:
    if inspect.isasyncgen(result):
        # Calling an async generator function runs none of its body: no provider was called.
        return (
            "run is an async generator function: it streams; use stream_with_model_fallback, "
            "or make run return the whole answer"
        )
    return (
        f"run must be an async callable (its result is awaited); it returned "
        f"{type(result).__name__}, not an awaitable: the answer is discarded"
    )


def validate_timeout(attempt_timeout: float | None, name: str = "attempt_timeout") -> float | None:
    """A timeout argument as seconds (``None`` and infinity: no timeout).

    Raises:
        TypeError: not a number.
        ValueError: zero, negative or NaN.
    """
    if attempt_timeout is None:
        return None
    if isinstance(attempt_timeout, bool) or not isinstance(attempt_timeout, int | float):
        raise TypeError(f"{name} must be a number of seconds or None")
    t = float(attempt_timeout)
    if math.isnan(t) or t <= 0:
        raise ValueError(f"{name} must be positive, got {attempt_timeout!r}")
    return None if math.isinf(t) else t


async def run_with_model_fallback(
    run: Callable[[Candidate], Awaitable[T]],
    candidates: Sequence[Candidate | str],
    *,
    policy: FallbackPolicy | None = None,
    cooldowns: CooldownTracker | None = None,
    observers: ObserverSet | Sequence[Observer] = (),
    attempt_timeout: float | None = None,
) -> FallbackResult[T]:
    """Call ``run(candidate)`` for each candidate in order until one succeeds.

    Args:
        run: ``async (Candidate) -> T``: one provider call.
        candidates: the chain, as :class:`Candidate` objects or ``"provider/model"``
            strings; duplicates are dropped, order is kept.
        policy: when to stop falling back (default: stop on ``context_overflow``).
        cooldowns: a tracker shared across runs; None disables cooldowns.
        observers: telemetry observers, or an :class:`~model_fallback.events.ObserverSet`
            built once and shared by every run (see :mod:`model_fallback.events`).
        attempt_timeout: seconds allowed per attempt; expiry counts as a provider
            ``timeout`` and the chain continues.

    Returns:
        The :class:`FallbackResult` of the first candidate that succeeded.

    Raises:
        AllCandidatesFailedError: every candidate failed or was skipped.
        CoordinationError: (or any error classified as one) unchanged, on the candidate
            that hit it; no further candidate is called.
        Exception: a bug in the caller's own code (``NameError``, ``TypeError``, ...)
            unchanged, on the candidate that hit it (unless the policy says otherwise);
            the original error when the policy stops the run.
        BaseException: cancellation and other non-``Exception`` errors, unchanged.
        TypeError, ValueError: invalid arguments, before any call.
    """
    if not callable(run):
        raise TypeError("run must be an async callable taking a Candidate")
    chain = normalize_candidates(candidates)
    timeout = None if attempt_timeout is None else validate_timeout(attempt_timeout)
    if policy is None:
        policy = _DEFAULT_POLICY
    elif not isinstance(policy, FallbackPolicy):
        raise TypeError("policy must be a FallbackPolicy or None")
    if cooldowns is not None and not isinstance(cooldowns, CooldownTracker):
        raise TypeError("cooldowns must be a CooldownTracker or None")
    obs = ObserverSet.of(observers) if observers else None
    run_id = 0
    started = 0.0
    if obs is not None:
        run_id = next(_run_ids)
        started = _perf()
        if obs.run_started:
            obs.emit("run_started", RunStarted(run_id, chain, time.time_ns()))

    attempts: list[Attempt] = []
    probed = False
    for index, candidate in enumerate(chain):
        probe = False
        if cooldowns is not None:
            entry = cooldowns.entry(candidate)
            if entry is not None:
                rest_cooling = all(cooldowns.is_cooling(c) for c in chain[index + 1 :])
                if rest_cooling and not probed and cooldowns.claim_probe(candidate):
                    probed = probe = True
                else:
                    skip = Attempt(candidate, index, Outcome.SKIPPED, entry.reason)
                    attempts.append(skip)
                    if obs is not None and obs.candidate_skipped:
                        remaining = cooldowns.remaining(candidate)
                        obs.emit("candidate_skipped", CandidateSkipped(run_id, skip, remaining))
                    continue

        if obs is not None and obs.attempt_started:
            obs.emit("attempt_started", AttemptStarted(run_id, candidate, index, probe))
        t0 = _perf()
        try:
            pending = run(candidate)
            if type(pending) is not CoroutineType and not inspect.isawaitable(pending):
                raise _SyncRunError(_not_awaitable(pending))
            if timeout is None:
                value = await pending
            else:
                with anyio.fail_after(timeout):
                    value = await pending
        except Exception as exc:
            elapsed = _perf() - t0
            if type(exc) is _SyncRunError:  # the caller's mistake whatever the policy says
                if probe and cooldowns is not None:
                    cooldowns.release_probe(candidate)
                attempts.append(Attempt(candidate, index, Outcome.CALLER_ERROR, None, None, exc, elapsed))
                _report_stop(obs, run_id, RunOutcome.CALLER_ERROR, attempts, started, exc, 0)
                raise
            info = analyze(exc, candidate.provider)
            kind = info.coordination_kind
            caller_bug = info.caller_error is not None and policy.stop_on_caller_error
            if probe and cooldowns is not None and (kind is not None or caller_bug):
                cooldowns.release_probe(candidate)  # no verdict on the provider: probe again later
            if caller_bug:
                attempts.append(
                    Attempt(
                        candidate, index, Outcome.CALLER_ERROR, None, None, exc, elapsed,
                        info.status, info.code,
                    )
                )  # fmt: skip
                _report_stop(obs, run_id, RunOutcome.CALLER_ERROR, attempts, started, exc, 0)
                raise
            if kind is not None:
                attempts.append(
                    Attempt(
                        candidate, index, Outcome.COORDINATION_ABORT, None, kind, exc, elapsed,
                        info.status, info.code,
                    )
                )  # fmt: skip
                untried = len(chain) - index - 1
                _report_stop(obs, run_id, RunOutcome.COORDINATION_ABORT, attempts, started, exc, untried)
                raise
            reason = info.reason if info.reason is not None else FailoverReason.UNKNOWN
            failed = Attempt(
                candidate, index, Outcome.PROVIDER_FAILURE, reason, None, exc, elapsed, info.status, info.code
            )
            stop = reason in policy.stop_on
            policy_error: Exception | None = None
            if not stop and policy.should_fallback is not None:
                try:
                    stop = not policy.should_fallback(failed)
                except Exception as veto_error:  # a broken policy stops the run, loudly
                    stop, policy_error = True, veto_error
            if stop:
                attempts.append(failed._replace(outcome=Outcome.ABORTED))
                del failed
                _report_stop(obs, run_id, RunOutcome.ABORTED, attempts, started, exc, 0)
                if policy_error is not None:
                    raise policy_error from exc
                raise
            attempts.append(failed)
            if cooldowns is not None and reason in COOLDOWN_REASONS:
                cooldowns.record_failure(candidate, reason, exc)
            if obs is not None:
                _report_attempt(obs, run_id, failed)
            del failed  # holds the error: see the return below
            continue
        except BaseException as exc:
            if probe and cooldowns is not None:
                cooldowns.release_probe(candidate)
            attempts.append(Attempt(candidate, index, Outcome.CANCELLED, None, None, exc, _perf() - t0))
            _report_stop(obs, run_id, RunOutcome.CANCELLED, attempts, started, exc, 0)
            raise

        succeeded = Attempt(candidate, index, Outcome.SUCCESS, None, None, None, _perf() - t0)
        attempts.append(succeeded)
        if cooldowns is not None:
            cooldowns.record_success(candidate)
        if type(value) is Deferred:  # a stream: reported when it ends (model_fallback.streaming)
            box = [value]
            del value  # the frame must not keep the attempts' errors (see below)
            return _defer(
                box, PendingRun(obs, run_id, succeeded, tuple(attempts), started, len(chain)), attempts
            )
        # Each caught error's traceback references this frame, which outlives the run: were a
        # local of this frame to hold those errors (the list, the result), every fallback would
        # leave a reference cycle for the garbage collector. The helpers build what is returned
        # or raised and empty the list.
        return _report_success(obs, run_id, value, succeeded, attempts, started)

    raise _report_exhausted(obs, run_id, attempts, started)


def _defer(box: list[Any], pending: PendingRun, attempts: list[Attempt]) -> FallbackResult[T]:
    deferred: Deferred = box.pop()
    deferred.pending = pending
    attempts.clear()
    return FallbackResult(deferred, pending.attempt.candidate, pending.attempts)  # type: ignore[arg-type]


def _report_success(
    obs: ObserverSet | None,
    run_id: int,
    value: T,
    succeeded: Attempt,
    attempts: list[Attempt],
    started: float,
) -> FallbackResult[T]:
    """Build the result of a run that succeeded, report it, empty the driver's list."""
    result = FallbackResult(value, succeeded.candidate, tuple(attempts))
    attempts.clear()  # see the caller: the driver's frame must not keep the errors
    if obs is not None:
        _report_attempt(obs, run_id, succeeded)
        _report_run_end(obs, run_id, RunOutcome.SUCCESS, result.attempts, started, None, succeeded)
    return result


def _report_stop(
    obs: ObserverSet | None,
    run_id: int,
    outcome: RunOutcome,
    attempts: list[Attempt],
    started: float,
    exc: BaseException,
    untried: int,
) -> None:
    """Report a run that stops on an error raised as is; empty the driver's list."""
    if obs is not None:
        last = attempts[-1]
        _report_attempt(obs, run_id, last)
        if outcome is RunOutcome.COORDINATION_ABORT:
            _report_abort(obs, run_id, last, untried)
        _report_run_end(obs, run_id, outcome, tuple(attempts), started, exc)
    attempts.clear()


def _report_exhausted(
    obs: ObserverSet | None, run_id: int, attempts: list[Attempt], started: float
) -> AllCandidatesFailedError:
    """The error of a run where every candidate failed or was skipped (reported)."""
    done = tuple(attempts)
    error = AllCandidatesFailedError.from_attempts(done, _failures(attempts))
    if obs is not None:
        _report_run_end(obs, run_id, RunOutcome.EXHAUSTED, done, started, error)
    attempts.clear()
    return error


def _failures(attempts: list[Attempt]) -> list[FailoverError]:
    """One FailoverError per attempted candidate (built only on exhaustion: off the hot path)."""
    failures = []
    for a in attempts:
        if a.outcome is Outcome.PROVIDER_FAILURE and a.error is not None:
            # What applications log: redacted like every text that leaves the library (the
            # original stays attached, unchanged, as __cause__).
            f = FailoverError(
                redact(describe_error(a.error), limit=2000), reason=a.reason or FailoverReason.UNKNOWN,
                candidate=a.candidate, status=a.status, code=a.code,
            )  # fmt: skip
            f.__cause__ = a.error
            failures.append(f)
    if not failures:  # only reachable with a store that changes under us; never an empty group
        failures = [
            FailoverError("cooling down", reason=a.reason or FailoverReason.UNKNOWN, candidate=a.candidate)
            for a in attempts
        ]
    return failures


def _report_attempt(
    obs: ObserverSet,
    run_id: int,
    attempt: Attempt,
    time_to_first_chunk_s: float | None = None,
    chunks: int | None = None,
) -> None:
    if obs.attempt_ended:
        obs.emit("attempt_ended", AttemptEnded(run_id, attempt, time_to_first_chunk_s, chunks))


def _report_abort(obs: ObserverSet, run_id: int, attempt: Attempt, untried: int) -> None:
    if obs.coordination_aborted:
        kind = attempt.coordination_kind or ""
        obs.emit("coordination_aborted", CoordinationAborted(run_id, attempt, kind, untried))


def _report_run_end(
    obs: ObserverSet,
    run_id: int,
    outcome: RunOutcome,
    attempts: tuple[Attempt, ...],
    started: float,
    error: BaseException | None,
    served: Attempt | None = None,
) -> None:
    """``run_ended``; *served* is the attempt that served a successful run."""
    if obs.run_ended:
        candidate, depth = (served.candidate, served.index) if served is not None else (None, None)
        obs.emit("run_ended", RunEnded(run_id, outcome, attempts, candidate, depth, _perf() - started, error))
