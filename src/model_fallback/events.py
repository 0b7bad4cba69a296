"""The observer protocol: what the driver and the session subsystem report, and how.

The core never knows which telemetry backends exist. It builds small immutable, slotted
event objects (named tuples: the driver builds several per run, and a tuple costs a quarter
of a frozen dataclass) and hands them to *observers*: any objects with some of the hook methods
of :class:`Observer` (all hooks are optional; :class:`Observer` itself is a convenient
no-op base class). ``model_fallback.otel`` and ``model_fallback.prometheus`` are the
two observers shipped with the library.

Hooks are called synchronously, in the task that runs the fallback (so an observer may
make a span current around an attempt). They must be cheap and must not block.

The driver, the session subsystem and the streaming path hold their observers in an
:class:`ObserverSet`: the hooks resolved once, and isolation (an observer whose hook
raises is disabled in its set, logged once, counted, and reported to the others; the
run's result, exception and timing are unchanged).
"""

from __future__ import annotations

import enum
import logging
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from model_fallback._model import Attempt, Candidate, Outcome
from model_fallback._redact import redact

__all__ = [
    "HOOKS",
    "AttemptEnded",
    "AttemptStarted",
    "CandidateSkipped",
    "CoordinationAborted",
    "FenceChecked",
    "LockAcquired",
    "LockTimedOut",
    "Observer",
    "ObserverFailed",
    "ObserverSet",
    "RunEnded",
    "RunOutcome",
    "RunStarted",
    "StaleLockReclaimed",
    "dispatch",
    "telemetry_errors",
]

_log = logging.getLogger("model_fallback.events")


class RunOutcome(enum.StrEnum):
    """How a whole run ended (the ``outcome`` label of ``model_fallback_runs_total``)."""

    SUCCESS = "success"
    EXHAUSTED = "exhausted"
    COORDINATION_ABORT = "coordination_abort"
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    CALLER_ERROR = "caller_error"
    INTERRUPTED = "interrupted"
    """A stream failed after its first chunk (:class:`~model_fallback.StreamInterruptedError`)."""


# --- driver events -------------------------------------------------------------------


class RunStarted(NamedTuple):
    """A fallback run began.

    Attributes:
        run_id: process-unique id shared by every event of this run.
        candidates: the de-duplicated chain, in order.
        started_ns: wall-clock start (``time.time_ns()``).
    """

    run_id: int
    candidates: tuple[Candidate, ...]
    started_ns: int


class AttemptStarted(NamedTuple):
    """A candidate is about to be called.

    Attributes:
        run_id: the run.
        candidate: the candidate.
        index: its position in the chain (0 = primary).
        probe: True when it is cooling down and called as the run's single probe.
    """

    run_id: int
    candidate: Candidate
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the field's name
    probe: bool


class AttemptEnded(NamedTuple):
    """A candidate call finished (any outcome but ``skipped``).

    For a stream that delivered its first chunk, this comes when the stream ends (the
    attempt lasts as long as the stream), with the stream's figures.

    Attributes:
        run_id: the run.
        attempt: the record, with outcome, reason, coordination kind, error, duration.
        time_to_first_chunk_s: a stream's time from the call to its first chunk; None for
            a plain call or a stream that failed before its first chunk.
        chunks: how many chunks a stream delivered; None for a plain call.
    """

    run_id: int
    attempt: Attempt
    time_to_first_chunk_s: float | None = None
    chunks: int | None = None

    @property
    def interrupted(self) -> bool:
        """Whether a stream failed after its first chunk."""
        return self.chunks is not None and self.attempt.outcome is Outcome.PROVIDER_FAILURE


class CandidateSkipped(NamedTuple):
    """A candidate was skipped because it is cooling down.

    Attributes:
        run_id: the run.
        attempt: the record (outcome ``skipped``, reason = the cooldown's reason).
        remaining_s: seconds left on its cooldown.
    """

    run_id: int
    attempt: Attempt
    remaining_s: float


class CoordinationAborted(NamedTuple):
    """A coordination error stopped the run; no further candidate was called.

    Sent after the :class:`AttemptEnded` of the attempt that raised it.

    Attributes:
        run_id: the run.
        attempt: the attempt that raised it (outcome ``coordination_abort``).
        kind: the coordination kind (``session_takeover``, ``write_lock_timeout``, ...).
        untried: how many candidates were left untried: the fallbacks avoided.
    """

    run_id: int
    attempt: Attempt
    kind: str
    untried: int


class RunEnded(NamedTuple):
    """A run finished.

    Attributes:
        run_id: the run.
        outcome: how it ended.
        attempts: every attempt and skip, in order.
        candidate: the candidate that served (success only).
        fallback_depth: index of the serving candidate (0 = primary), success only.
        duration_s: wall time of the whole run.
        error: the exception the run raised, if any.
    """

    run_id: int
    outcome: RunOutcome
    attempts: tuple[Attempt, ...]
    candidate: Candidate | None
    fallback_depth: int | None
    duration_s: float
    error: BaseException | None


# --- session events ------------------------------------------------------------------


class LockAcquired(NamedTuple):
    """A session write lock was acquired.

    Attributes:
        path: the session file the lock guards.
        waited_s: time spent waiting (0 when uncontended).
        started_ns: wall clock when the wait began (``time.time_ns()``).
        ended_ns: wall clock when the lock was held.
        reacquire: True when re-acquired after a prompt release.
    """

    path: str
    waited_s: float
    started_ns: int
    ended_ns: int
    reacquire: bool = False


class LockTimedOut(NamedTuple):
    """A session write lock acquisition timed out (a coordination error follows).

    Attributes:
        path: the session file.
        waited_s: time waited.
        owner_pid: the holder's pid, if known.
        owner_alive: whether the holder was alive, if known.
        started_ns: wall clock when the wait began.
        ended_ns: wall clock when it gave up.
        reacquire: True when re-acquiring after a prompt release.
    """

    path: str
    waited_s: float
    owner_pid: int | None
    owner_alive: bool | None
    started_ns: int
    ended_ns: int
    reacquire: bool = False


class StaleLockReclaimed(NamedTuple):
    """A lock left by a dead, recycled or stuck holder was reclaimed.

    Attributes:
        path: the session file.
        reason: ``dead_pid``, ``recycled_pid``, ``too_old``, ``kernel_released``, ...
        owner_pid: the former holder's pid, if known.
    """

    path: str
    reason: str
    owner_pid: int | None


class FenceChecked(NamedTuple):
    """The prompt-release fence was verified after re-acquiring the lock.

    Attributes:
        path: the session file.
        takeover: True when someone else changed the file (a takeover error follows).
        before: fingerprint at release.
        after: fingerprint at re-acquire.
        started_ns: wall clock when verification began.
        ended_ns: wall clock when it finished.
    """

    path: str
    takeover: bool
    before: object
    after: object
    started_ns: int
    ended_ns: int


class ObserverFailed(NamedTuple):
    """Another observer raised and has been disabled.

    Attributes:
        component: the failing observer's ``component`` attribute or class name.
        hook: the hook that raised.
        error: the exception it raised.
    """

    component: str
    hook: str
    error: BaseException


# --- the protocol --------------------------------------------------------------------


class Observer:
    """No-op base class for observers; override the hooks you need.

    Any object works as an observer: hooks it lacks are simply not called. Set
    ``component`` to name it in ``model_fallback_telemetry_errors_total``.
    """

    component: str = "observer"

    def run_started(self, event: RunStarted) -> None:
        """A run began."""

    def attempt_started(self, event: AttemptStarted) -> None:
        """A candidate is about to be called."""

    def attempt_ended(self, event: AttemptEnded) -> None:
        """A candidate call finished."""

    def candidate_skipped(self, event: CandidateSkipped) -> None:
        """A cooling-down candidate was skipped."""

    def coordination_aborted(self, event: CoordinationAborted) -> None:
        """A coordination error stopped the run."""

    def run_ended(self, event: RunEnded) -> None:
        """A run finished."""

    def lock_acquired(self, event: LockAcquired) -> None:
        """A session write lock was acquired."""

    def lock_timed_out(self, event: LockTimedOut) -> None:
        """A session write lock acquisition timed out."""

    def stale_lock_reclaimed(self, event: StaleLockReclaimed) -> None:
        """A stale session lock was reclaimed."""

    def fence_checked(self, event: FenceChecked) -> None:
        """The prompt-release fence was checked."""

    def observer_failed(self, event: ObserverFailed) -> None:
        """Another observer raised and was disabled."""


# --- the observer set ----------------------------------------------------------------

#: Every hook an observer may implement, in the order the driver and the session call them.
HOOKS: tuple[str, ...] = (
    "run_started",
    "attempt_started",
    "attempt_ended",
    "candidate_skipped",
    "coordination_aborted",
    "run_ended",
    "lock_acquired",
    "lock_timed_out",
    "stale_lock_reclaimed",
    "fence_checked",
)
# End hooks run in reverse order, like nested context managers unwinding: an observer that
# made a span current in a start hook closes it after the observers listed after it have
# seen the end (so they can still take exemplars from that span).
_END_HOOKS = frozenset({"attempt_ended", "run_ended"})
# Raised by a hook, these still stop the process: the remaining hooks run first.
_FATAL = (KeyboardInterrupt, SystemExit)

Pairs = tuple[tuple[object, Callable[[Any], None]], ...]

_counts_guard = threading.Lock()
_errors: dict[str, int] = {}


def telemetry_errors() -> dict[str, int]:
    """Observer failures so far in this process, per component (every observer set)."""
    with _counts_guard:
        return dict(_errors)


def _component(observer: object) -> str:
    try:
        name = getattr(observer, "component", None)
        if isinstance(name, str) and name and name != "observer":
            return name
    except Exception:
        pass
    return type(observer).__name__


class ObserverSet:
    """The observers of a run (or of a session file), their hooks resolved once.

    Built from a sequence of observers; for each hook it keeps the bound methods of the
    observers that implement it (a hook inherited as a no-op from :class:`Observer` is left
    out, so nobody builds an event nobody reads). Each hook is a tuple attribute of the
    set, empty when no observer listens: ``if observers.attempt_ended: observers.emit(...)``.

    Isolation, after trio's ``Instruments``: an observer whose hook raises (any exception,
    ``BaseException`` subclasses included) is disabled *in this set*, logged once per
    component and process (logger ``model_fallback.events``), counted
    (:attr:`failures`, :func:`telemetry_errors`), and reported to the other observers
    through :meth:`Observer.observer_failed` (the Prometheus observer turns that into
    ``model_fallback_telemetry_errors_total{component}``). ``KeyboardInterrupt`` and
    ``SystemExit`` are re-raised, once every other observer has seen the event. The run's
    result, exception and timing are unchanged.

    Pass the same set to every run (``observers=ObserverSet([...])``) to resolve the hooks
    once and keep a broken observer disabled across runs; a plain list gets a set of its
    own per run (a microsecond or two).
    """

    __slots__ = (
        "_disabled",
        "attempt_ended",
        "attempt_started",
        "candidate_skipped",
        "coordination_aborted",
        "failures",
        "fence_checked",
        "lock_acquired",
        "lock_timed_out",
        "observers",
        "run_ended",
        "run_started",
        "stale_lock_reclaimed",
    )
    run_started: Pairs
    attempt_started: Pairs
    attempt_ended: Pairs
    candidate_skipped: Pairs
    coordination_aborted: Pairs
    run_ended: Pairs
    lock_acquired: Pairs
    lock_timed_out: Pairs
    stale_lock_reclaimed: Pairs
    fence_checked: Pairs

    def __init__(self, observers: Iterable[object] = ()) -> None:
        if isinstance(observers, str | bytes):
            raise TypeError("observers must be a sequence of observers, not a string")
        if isinstance(observers, ObserverSet):
            observers = observers.observers
        try:
            self.observers: tuple[object, ...] = tuple(observers)
        except TypeError:
            raise TypeError(
                f"observers must be a sequence of observers, got {type(observers).__name__} "
                "(pass observers=[observer])"
            ) from None
        #: failures per component in this set
        self.failures: dict[str, int] = {}
        self._disabled: list[object] = []
        self._resolve()

    @classmethod
    def of(cls, observers: ObserverSet | Iterable[object]) -> ObserverSet:
        """*observers* itself when it is already a set, else a new set of them."""
        return observers if isinstance(observers, ObserverSet) else cls(observers)

    def _resolve(self) -> None:
        for hook in HOOKS:
            base = getattr(Observer, hook)
            pairs = []
            for obs in self.observers:
                if any(obs is d for d in self._disabled):
                    continue
                try:
                    fn = getattr(obs, hook, None)
                except Exception as exc:
                    self._disable(obs, hook, exc)
                    continue
                if fn is None or getattr(fn, "__func__", None) is base:
                    continue
                pairs.append((obs, fn))
            setattr(self, hook, tuple(reversed(pairs)) if hook in _END_HOOKS else tuple(pairs))

    def __bool__(self) -> bool:
        return bool(self.observers)

    def __len__(self) -> int:
        return len(self.observers)

    def __repr__(self) -> str:
        return f"ObserverSet({[_component(o) for o in self.observers]!r})"

    def emit(self, hook: str, event: Any) -> None:
        """Call every enabled observer's *hook* with *event*, isolating failures."""
        pairs: Pairs = getattr(self, hook)
        fatal: BaseException | None = None
        for obs, fn in pairs:
            try:
                fn(event)
            except _FATAL as exc:
                fatal = fatal or exc
            except BaseException as exc:
                self._disable(obs, hook, exc)
        if fatal is not None:
            raise fatal

    def is_disabled(self, observer: object) -> bool:
        """Whether *observer* raised and is disabled in this set."""
        return any(observer is d for d in self._disabled)

    def enable(self, observer: object) -> None:
        """Re-enable a disabled observer of this set."""
        self._disabled = [d for d in self._disabled if d is not observer]
        self._resolve()

    def _disable(self, observer: object, hook: str, exc: BaseException) -> None:
        first_here = not self.is_disabled(observer)
        component = _component(observer)
        if first_here:
            self._disabled.append(observer)
            self._resolve()
        self.failures[component] = self.failures.get(component, 0) + 1
        with _counts_guard:
            count = _errors[component] = _errors.get(component, 0) + 1
        if count == 1:
            # The traceback is rendered and redacted here rather than passed as exc_info:
            # the hook may have run while a provider error was being handled, and that
            # error (often quoting an API key) would be printed as this one's context.
            rendered = "".join(traceback.format_exception(exc))
            _log.error(
                "model_fallback observer %s raised in %s and is disabled in its observer set "
                "(later failures of %s observers are counted in telemetry_errors(), not logged)\n%s",
                component,
                hook,
                component,
                redact(rendered, limit=8000),
            )
        else:
            _log.debug("model_fallback observer %s raised in %s (failure %d)", component, hook, count)
        if not first_here:
            return
        notice = ObserverFailed(component, hook, exc)
        for other in self.observers:
            if other is observer or self.is_disabled(other):
                continue
            try:
                fn = getattr(other, "observer_failed", None)
                if fn is not None:
                    fn(notice)
            except _FATAL:
                raise
            except BaseException as exc2:
                self._disable(other, "observer_failed", exc2)


def dispatch(observers: ObserverSet | Sequence[object], hook: str, event: Any) -> None:
    """Call ``hook(event)`` on *observers* (a set, or a sequence made into one)."""
    ObserverSet.of(observers).emit(hook, event)
