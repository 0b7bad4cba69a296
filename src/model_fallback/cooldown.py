"""Per-candidate cooldowns, shared across runs.

A candidate that failed with ``rate_limit``, ``overloaded``, ``billing``, ``auth`` or
``auth_permanent`` cools down: the driver skips it (or probes it once when every
remaining candidate is cooling down). The cooldown honours a ``Retry-After`` found on
the error (an attribute ``retry_after``/``retry_after_s``, or a ``Retry-After`` header
on ``error.response.headers`` or ``error.headers``; seconds or an HTTP date), bounded by
``max_retry_after_s``; without one it grows exponentially per consecutive failure, from
``base_s`` to ``max_s`` for the reason. A success clears it. Coordination errors and
cancellations never start a cooldown (the driver never calls :meth:`CooldownTracker.record_failure`
for them).

State lives in a :class:`CooldownStore`; the default is in memory. Time comes from an
injectable monotonic clock.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from model_fallback._model import Candidate, FailoverReason

__all__ = [
    "COOLDOWN_REASONS",
    "CooldownEntry",
    "CooldownStore",
    "CooldownTracker",
    "InMemoryCooldownStore",
    "retry_after_seconds",
]

R = FailoverReason

COOLDOWN_REASONS: frozenset[FailoverReason] = frozenset(
    {R.RATE_LIMIT, R.OVERLOADED, R.BILLING, R.AUTH, R.AUTH_PERMANENT}
)

# (base, cap) seconds of the exponential default, per reason. Transient reasons back off
# quickly; billing and auth failures need a human, so they stay out longer.
_DEFAULTS: dict[FailoverReason, tuple[float, float]] = {
    R.RATE_LIMIT: (1.0, 60.0),
    R.OVERLOADED: (1.0, 60.0),
    R.BILLING: (30.0, 600.0),
    R.AUTH: (30.0, 600.0),
    R.AUTH_PERMANENT: (60.0, 3600.0),
}


@dataclass(frozen=True, slots=True)
class CooldownEntry:
    """One candidate's cooldown.

    Attributes:
        until: monotonic time at which it ends.
        reason: the failure that started it.
        streak: consecutive cooldown-worthy failures so far.
    """

    until: float
    reason: FailoverReason
    streak: int


class CooldownStore(Protocol):
    """Where cooldown state lives; implement it to share cooldowns between processes."""

    def get(self, key: str) -> CooldownEntry | None:
        """The entry for *key*, or None."""

    def set(self, key: str, entry: CooldownEntry) -> None:
        """Store *entry* under *key*."""

    def delete(self, key: str) -> None:
        """Forget *key* (no error when absent)."""


class InMemoryCooldownStore:
    """The default store: a dict guarded by a lock (safe across threads)."""

    def __init__(self) -> None:
        self._data: dict[str, CooldownEntry] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> CooldownEntry | None:
        """The entry for *key*, or None."""
        return self._data.get(key)

    def set(self, key: str, entry: CooldownEntry) -> None:
        """Store *entry* under *key*."""
        with self._lock:
            self._data[key] = entry

    def delete(self, key: str) -> None:
        """Forget *key*."""
        with self._lock:
            self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


def _header(headers: Any, name: str) -> Any:
    try:
        if isinstance(headers, Mapping):
            for k, v in headers.items():
                if isinstance(k, str) and k.lower() == name:
                    return v
            return None
        get = getattr(headers, "get", None)
        if callable(get):
            return get(name) or get(name.title())
    except Exception:
        return None
    return None


def _parse_retry_after(value: Any, now_wall: float) -> float | None:
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str | bytes):
            text = value.decode() if isinstance(value, bytes) else value
            text = text.strip()
            try:
                seconds = float(text)
            except ValueError:
                when = email.utils.parsedate_to_datetime(text)
                seconds = when.timestamp() - now_wall
        else:
            return None
    except Exception:
        return None
    if math.isnan(seconds) or seconds < 0:
        return None if math.isnan(seconds) else 0.0
    return seconds


def retry_after_seconds(error: object, *, now_wall: float | None = None) -> float | None:
    """The ``Retry-After`` carried by *error*, in seconds, or None. Never raises.

    Looked up on ``retry_after`` / ``retry_after_s`` attributes, then the ``Retry-After``
    header of ``error.response.headers`` or ``error.headers``, then once more on
    ``__cause__``.
    """
    wall = time.time() if now_wall is None else now_wall
    seen = 0
    node: Any = error
    while node is not None and seen < 3:
        seen += 1
        for attr in ("retry_after", "retry_after_s"):
            try:
                v = getattr(node, attr, None)
            except Exception:
                v = None
            s = _parse_retry_after(v, wall) if v is not None else None
            if s is not None:
                return s
        for holder in ("response", None):
            try:
                obj = getattr(node, holder, None) if holder else node
                headers = getattr(obj, "headers", None) if obj is not None else None
            except Exception:
                headers = None
            if headers is not None:
                s = _parse_retry_after(_header(headers, "retry-after"), wall)
                if s is not None:
                    return s
        try:
            node = getattr(node, "__cause__", None)
        except Exception:
            node = None
    return None


def _key(candidate: Candidate) -> str:
    return f"{candidate.provider}/{candidate.model}"


class CooldownTracker:
    """Cooldowns per candidate, shared by every run that is given this tracker.

    Args:
        store: where state lives (default: in memory).
        clock: monotonic clock in seconds (inject a fake one in tests).
        defaults: per-reason ``(base_s, max_s)`` of the exponential default.
        max_retry_after_s: upper bound applied to a provider's ``Retry-After``.
    """

    def __init__(
        self,
        *,
        store: CooldownStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        defaults: Mapping[FailoverReason, tuple[float, float]] | None = None,
        max_retry_after_s: float = 3600.0,
    ) -> None:
        if max_retry_after_s <= 0 or math.isnan(max_retry_after_s):
            raise ValueError("max_retry_after_s must be positive")
        self._store: CooldownStore = store if store is not None else InMemoryCooldownStore()
        self._clock = clock
        self._defaults = dict(_DEFAULTS)
        if defaults:
            for reason, (base, cap) in defaults.items():
                if not (0 <= base <= cap):
                    raise ValueError(f"cooldown default for {reason}: need 0 <= base <= max")
                self._defaults[FailoverReason(reason)] = (float(base), float(cap))
        self._max_retry_after = float(max_retry_after_s)

    @property
    def clock(self) -> Callable[[], float]:
        """The clock in use."""
        return self._clock

    def remaining(self, candidate: Candidate) -> float:
        """Seconds left on *candidate*'s cooldown (0 when not cooling down)."""
        entry = self._store.get(_key(candidate))
        if entry is None:
            return 0.0
        left = entry.until - self._clock()
        return left if left > 0 else 0.0

    def entry(self, candidate: Candidate) -> CooldownEntry | None:
        """The current entry, if *candidate* is cooling down now."""
        entry = self._store.get(_key(candidate))
        if entry is None or entry.until <= self._clock():
            return None
        return entry

    def is_cooling(self, candidate: Candidate) -> bool:
        """Whether *candidate* is cooling down now."""
        return self.remaining(candidate) > 0

    def record_failure(self, candidate: Candidate, reason: FailoverReason, error: object = None) -> float:
        """Start (or extend) a cooldown after a provider failure; return its length.

        Reasons outside :data:`COOLDOWN_REASONS` start nothing and return 0.
        """
        if reason not in COOLDOWN_REASONS:
            return 0.0
        key = _key(candidate)
        previous = self._store.get(key)
        streak = (previous.streak + 1) if previous is not None else 1
        retry_after = retry_after_seconds(error) if error is not None else None
        if retry_after is not None:
            length = min(retry_after, self._max_retry_after)
        else:
            base, cap = self._defaults[reason]
            length = min(cap, base * (2 ** min(streak - 1, 32)))
        self._store.set(key, CooldownEntry(self._clock() + length, reason, streak))
        return length

    def record_success(self, candidate: Candidate) -> None:
        """A success clears the cooldown and the failure streak."""
        key = _key(candidate)
        if self._store.get(key) is not None:
            self._store.delete(key)

    def clear(self, candidate: Candidate | None = None) -> None:
        """Forget one candidate's cooldown (in-memory store: or all, when None)."""
        if candidate is not None:
            self._store.delete(_key(candidate))
        elif isinstance(self._store, InMemoryCooldownStore):
            with self._store._lock:
                self._store._data.clear()
