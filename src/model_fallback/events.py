"""The observer protocol: what the driver and the session subsystem report, and how.

The core never knows which telemetry backends exist. It builds small immutable, slotted
event objects (named tuples: the driver builds several per run, and a tuple costs a quarter
of a frozen dataclass) and hands them to *observers*: any objects with some of the hook methods
of :class:`Observer` (all hooks are optional; :class:`Observer` itself is a convenient
no-op base class). ``model_fallback.otel`` and ``model_fallback.prometheus`` are the
two observers shipped with the library.

Hooks are called synchronously, in the task that runs the fallback (so an observer may
make a span current around an attempt). They must be cheap and must not block.

Isolation: an observer whose hook raises is disabled for the rest of the process, the
failure is logged once through :mod:`logging` (logger ``model_fallback.events``),
counted in :func:`telemetry_errors`, and reported to the other observers through
:meth:`Observer.observer_failed` (the Prometheus observer turns that into
``model_fallback_telemetry_errors_total{component}``). The run's result, exception and
timing are unchanged.
"""

from __future__ import annotations

import enum
import logging
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from model_fallback._model import Attempt, Candidate
from model_fallback._redact import redact

__all__ = [
    "AttemptEnded",
    "AttemptStarted",
    "CandidateSkipped",
    "CoordinationAborted",
    "FenceChecked",
    "Hooks",
    "LockAcquired",
    "LockTimedOut",
    "Observer",
    "ObserverFailed",
    "RunEnded",
    "RunOutcome",
    "RunStarted",
    "StaleLockReclaimed",
    "dispatch",
    "enable_observer",
    "fire",
    "hooks_for",
    "is_disabled",
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

    Attributes:
        run_id: the run.
        attempt: the record, with outcome, reason, coordination kind, error, duration.
    """

    run_id: int
    attempt: Attempt


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


# --- isolation -----------------------------------------------------------------------

_guard = threading.Lock()
# id -> a weak reference to the observer (whose callback forgets the id when the observer
# is freed, so observers made per request are not kept), or the observer itself when it
# cannot be weakly referenced (the strong reference keeps its id from being reused).
_disabled: dict[int, object] = {}
# Raised by a hook, these still stop the process: the remaining hooks run first.
_FATAL = (KeyboardInterrupt, SystemExit)
_errors: dict[str, int] = {}
_generation = 0  # bumped whenever an observer is disabled or re-enabled


def _component(observer: object) -> str:
    try:
        name = getattr(observer, "component", None)
        if isinstance(name, str) and name and name != "observer":
            return name
    except Exception:
        pass
    return type(observer).__name__


def is_disabled(observer: object) -> bool:
    """Whether *observer* has been disabled after raising."""
    return id(observer) in _disabled


def enable_observer(observer: object) -> None:
    """Re-enable an observer that was disabled (mainly for tests)."""
    global _generation
    with _guard:
        _disabled.pop(id(observer), None)
        _generation += 1


def telemetry_errors() -> dict[str, int]:
    """Observer failures so far in this process, per component."""
    with _guard:
        return dict(_errors)


def _forget(key: int) -> Callable[[object], None]:
    def forget(_: object) -> None:
        with _guard:
            _disabled.pop(key, None)

    return forget


def _fail(observer: object, hook: str, exc: BaseException, observers: Iterable[object]) -> None:
    global _generation
    component = _component(observer)
    with _guard:
        key = id(observer)
        first = key not in _disabled
        if first:
            try:
                _disabled[key] = weakref.ref(observer, _forget(key))
            except TypeError:  # no __weakref__ slot
                _disabled[key] = observer
        _generation += 1
        count = _errors[component] = _errors.get(component, 0) + 1
    if first and count == 1:
        # The traceback is rendered and redacted here rather than passed as exc_info: the
        # hook may have run while a provider error was being handled, and that error (often
        # quoting an API key) would be printed as this one's context.
        rendered = "".join(traceback.format_exception(exc))
        _log.error(
            "model_fallback observer %s raised in %s and is disabled for the rest of the process "
            "(later failures of %s observers are counted in telemetry_errors(), not logged)\n%s",
            component,
            hook,
            component,
            redact(rendered, limit=8000),
        )
    elif first:
        _log.debug("model_fallback observer %s raised in %s (failure %d)", component, hook, count)
    notice = ObserverFailed(component, hook, exc)
    for other in observers:
        if other is observer or id(other) in _disabled:
            continue
        fn = getattr(other, "observer_failed", None)
        if fn is None:
            continue
        try:
            fn(notice)
        except _FATAL:
            raise
        except BaseException as exc2:
            _fail(other, "observer_failed", exc2, ())


def dispatch(observers: Sequence[object], hook: str, event: Any) -> None:
    """Call ``hook(event)`` on every enabled observer that has it, isolating failures.

    Any exception a hook raises disables that observer, ``BaseException`` subclasses
    included; ``KeyboardInterrupt`` and ``SystemExit`` are re-raised once every other
    observer has seen the event (so no span is left open or current).
    """
    fatal: BaseException | None = None
    for obs in observers:
        if id(obs) in _disabled:
            continue
        try:
            fn = getattr(obs, hook, None)
            if fn is None:
                continue
            fn(event)
        except _FATAL as exc:
            fatal = fatal or exc
        except BaseException as exc:
            _fail(obs, hook, exc, observers)
    if fatal is not None:
        raise fatal


# --- resolved hooks (the driver's hot path) ------------------------------------------------

Pairs = tuple[tuple[object, Any], ...]


class Hooks(NamedTuple):
    """The bound hook methods of an observers tuple, resolved once and cached.

    Each field holds ``(observer, method)`` pairs of the observers that implement that hook
    (a hook inherited as a no-op from :class:`Observer` is left out, so the driver builds no
    event nobody reads). End hooks (``attempt_ended``, ``run_ended``) are in reverse order.
    """

    observers: tuple[object, ...]
    run_started: Pairs
    attempt_started: Pairs
    attempt_ended: Pairs
    candidate_skipped: Pairs
    coordination_aborted: Pairs
    run_ended: Pairs


_REVERSED = frozenset({"attempt_ended", "run_ended"})
_hooks_cache: dict[tuple[int, ...], tuple[int, Hooks]] = {}


def hooks_for(observers: tuple[object, ...]) -> Hooks:
    """The resolved driver hooks of *observers* (cached by observer identity)."""
    key = tuple(map(id, observers))
    found = _hooks_cache.get(key)
    if found is not None and found[0] == _generation:
        return found[1]
    generation = _generation
    fields: dict[str, Pairs] = {}
    for name in Hooks._fields[1:]:
        base = getattr(Observer, name)
        pairs = []
        for obs in observers:
            if id(obs) in _disabled:
                continue
            try:
                fn = getattr(obs, name, None)
            except Exception as exc:
                _fail(obs, name, exc, observers)
                continue
            if fn is None or getattr(fn, "__func__", None) is base:
                continue
            pairs.append((obs, fn))
        fields[name] = tuple(reversed(pairs)) if name in _REVERSED else tuple(pairs)
    hooks = Hooks(observers, **fields)
    if len(_hooks_cache) >= 256:
        _hooks_cache.clear()
    # The entry keeps the observers alive, so their ids cannot be reused while it exists.
    _hooks_cache[key] = (generation, hooks)
    return hooks


def fire(pairs: Pairs, hook: str, event: Any, observers: tuple[object, ...]) -> None:
    """Call the resolved *pairs* with *event*, isolating failures like :func:`dispatch`."""
    fatal: BaseException | None = None
    for obs, fn in pairs:
        if _disabled and id(obs) in _disabled:
            continue
        try:
            fn(event)
        except _FATAL as exc:
            fatal = fatal or exc
        except BaseException as exc:
            _fail(obs, hook, exc, observers)
    if fatal is not None:
        raise fatal
