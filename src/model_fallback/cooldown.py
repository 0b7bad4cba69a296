"""Per-candidate cooldowns, shared across runs.

A candidate that failed with ``rate_limit``, ``overloaded``, ``billing``, ``auth`` or
``auth_permanent`` cools down: the driver skips it (or probes it once when every
remaining candidate is cooling down). The cooldown honours the wait the provider asked
for (:func:`retry_after_seconds`: ``Retry-After``, ``retry-after-ms``, the
``x-ratelimit-reset-*`` and ``anthropic-ratelimit-*-reset`` headers, Google's
``RetryInfo``), bounded by ``max_retry_after_s``; without one it grows exponentially per
consecutive failure, from ``base_s`` to ``max_s`` for the reason. A success clears it. Coordination errors and
cancellations never start a cooldown (the driver never calls :meth:`CooldownTracker.record_failure`
for them).

State lives in a :class:`CooldownStore`; the default is in memory,
:class:`model_fallback.redis.RedisCooldownStore` shares it between processes and hosts.
Entries carry their end as **wall-clock** time (epoch seconds, ``until_wall``): a monotonic
reading means nothing in another process, let alone on another host. The tracker reads the
time from ``time.time`` by default; inject a clock (``clock=``, e.g. a fake or simulated one)
and its wall time follows that clock instead (anchored once to the real wall clock), so tests
and simulations drive cooldowns entirely.

Shared stores report their own failures (Redis down, a write refused) with
:func:`count_store_error`, into the per-component counter of
:func:`model_fallback.events.telemetry_errors` (component ``cooldown_store``).
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from model_fallback import events as _events
from model_fallback._model import Candidate, FailoverReason

__all__ = [
    "COOLDOWN_REASONS",
    "STORE_COMPONENT",
    "CooldownEntry",
    "CooldownStore",
    "CooldownTracker",
    "InMemoryCooldownStore",
    "count_store_error",
    "retry_after_seconds",
]

#: The ``component`` label under which cooldown-store failures are counted.
STORE_COMPONENT = "cooldown_store"

COOLDOWN_REASONS: frozenset[FailoverReason] = frozenset(
    {
        FailoverReason.RATE_LIMIT,
        FailoverReason.OVERLOADED,
        FailoverReason.BILLING,
        FailoverReason.AUTH,
        FailoverReason.AUTH_PERMANENT,
    }
)

# (base, cap) seconds of the exponential default, per reason. Transient reasons back off
# quickly; billing and auth failures need a human, so they stay out longer.
_DEFAULTS: dict[FailoverReason, tuple[float, float]] = {
    FailoverReason.RATE_LIMIT: (1.0, 60.0),
    FailoverReason.OVERLOADED: (1.0, 60.0),
    FailoverReason.BILLING: (30.0, 600.0),
    FailoverReason.AUTH: (30.0, 600.0),
    FailoverReason.AUTH_PERMANENT: (60.0, 3600.0),
}


@dataclass(frozen=True, slots=True)
class CooldownEntry:
    """One candidate's cooldown.

    Attributes:
        until_wall: wall-clock time (epoch seconds, as ``time.time()``) at which it ends;
            wall-clock so that every process and host sharing a store reads it the same.
        reason: the failure that started it.
        streak: consecutive cooldown-worthy failures so far.
    """

    until_wall: float
    reason: FailoverReason
    streak: int


class CooldownStore(Protocol):
    """Where cooldown state lives; implement it to share cooldowns between processes.

    Keys are ``"provider/model"``. The tracker calls these methods synchronously on the
    driver's path, once or twice per candidate of every run: a shared store answers
    :meth:`get` from a local copy and writes through in the background, never making the
    run wait on the network. An entry may stay after its ``until_wall`` has passed (it keeps
    the failure streak; the tracker treats it as not cooling).

    A store may also share the one probe of a cooldown between processes by defining
    ``claim_probe(key, until_wall) -> bool`` (False: another process already probes this
    very cooldown) and ``release_probe(key) -> None``; the tracker uses them when present.
    """

    def get(self, key: str) -> CooldownEntry | None:
        """The entry for *key*, or None."""

    def set(self, key: str, entry: CooldownEntry) -> None:
        """Store *entry* under *key*."""

    def delete(self, key: str) -> None:
        """Forget *key* (no error when absent)."""


def count_store_error(n: int = 1) -> None:
    """Count *n* failures of a shared cooldown store (Redis unreachable, a write refused).

    They go into the process-wide per-component counter that
    :func:`model_fallback.events.telemetry_errors` reports, under
    :data:`STORE_COMPONENT`; a store never raises them into a run.
    """
    if n <= 0:
        return
    # The same counter and guard ObserverSet uses for observer failures: one per-component
    # tally of "telemetry that failed without failing a run".
    with _events._counts_guard:
        _events._errors[STORE_COMPONENT] = _events._errors.get(STORE_COMPONENT, 0) + n


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


def _seconds(value: float) -> float | None:
    if math.isnan(value) or math.isinf(value):
        return None
    return value if value > 0 else 0.0


def _parse_retry_after(value: Any, now_wall: float) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return _seconds(float(value))
        if isinstance(value, str | bytes):
            text = (value.decode() if isinstance(value, bytes) else value).strip()
            if not text or len(text) > 64:
                return None
            try:
                return _seconds(float(text))
            except ValueError:
                when = email.utils.parsedate_to_datetime(text)
                return _seconds(when.timestamp() - now_wall)
    except Exception:
        return None
    return None


_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?"
)


def _parse_duration(value: Any) -> float | None:
    """A Go-style duration as OpenAI and Groq send in ``x-ratelimit-reset-*`` ("6m0s",
    "1.5s", "20ms"), or plain seconds."""
    if not isinstance(value, str) or not value.strip() or len(value) > 32:
        return None
    text = value.strip()
    try:
        return _seconds(float(text))
    except ValueError:
        pass
    m = _DURATION.fullmatch(text)
    if m is None:
        return None
    h, mins, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return _seconds(h * 3600 + mins * 60 + s + ms / 1000)


def _parse_timestamp(value: Any, now_wall: float) -> float | None:
    """An RFC 3339 time (``anthropic-ratelimit-*-reset``), as seconds from now."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if when.tzinfo is None:
            return None
        return _seconds(when.timestamp() - now_wall)
    except Exception:
        return None


# (reset header, remaining header, parser) of the per-limit reset headers.
_RESETS: tuple[tuple[str, str, str], ...] = (
    ("x-ratelimit-reset-requests", "x-ratelimit-remaining-requests", "duration"),
    ("x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens", "duration"),
    ("anthropic-ratelimit-requests-reset", "anthropic-ratelimit-requests-remaining", "time"),
    ("anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-tokens-remaining", "time"),
    ("anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-input-tokens-remaining", "time"),
    ("anthropic-ratelimit-output-tokens-reset", "anthropic-ratelimit-output-tokens-remaining", "time"),
)


def _from_headers(headers: Any, now_wall: float) -> float | None:
    """The wait a response's headers ask for: ``retry-after-ms`` (the finer, as OpenAI's
    SDK reads it), ``Retry-After``, then the reset time of an exhausted limit (or, when no
    limit says it is at 0, the latest reset)."""
    ms = _header(headers, "retry-after-ms")
    if ms is not None:
        try:
            found = _seconds(float(ms) / 1000)
        except (TypeError, ValueError):
            found = None
        if found is not None:
            return found
    found = _parse_retry_after(_header(headers, "retry-after"), now_wall)
    if found is not None:
        return found
    exhausted: list[float] = []
    others: list[float] = []
    for reset_name, remaining_name, kind in _RESETS:
        raw = _header(headers, reset_name)
        if raw is None:
            continue
        value = _parse_duration(raw) if kind == "duration" else _parse_timestamp(raw, now_wall)
        if value is None:
            continue
        remaining = _header(headers, remaining_name)
        (exhausted if isinstance(remaining, str) and remaining.strip() == "0" else others).append(value)
    if exhausted:
        return max(exhausted)
    return max(others) if others else None


def _headers_of(node: Any) -> list[Any]:
    found: list[Any] = []
    try:
        response = getattr(node, "response", None)
        if isinstance(response, Mapping):  # botocore: response["ResponseMetadata"]["HTTPHeaders"]
            meta = response.get("ResponseMetadata")
            if isinstance(meta, Mapping) and meta.get("HTTPHeaders") is not None:
                found.append(meta["HTTPHeaders"])
        elif response is not None:
            headers = getattr(response, "headers", None)
            if headers is not None:
                found.append(headers)
        for name in ("headers", "litellm_response_headers"):  # LiteLLM keeps the real ones apart
            headers = getattr(node, name, None)
            if headers is not None:
                found.append(headers)
    except Exception:
        return found
    return found


def _retry_info(value: Any, depth: int = 0) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` anywhere in a Google error body."""
    if depth > 4:
        return None
    try:
        if isinstance(value, Mapping):
            kind = value.get("@type")
            if isinstance(kind, str) and kind.endswith("RetryInfo"):
                return _parse_duration(value.get("retryDelay"))
            for key in ("error", "details"):
                found = _retry_info(value.get(key), depth + 1)
                if found is not None:
                    return found
        elif isinstance(value, list | tuple):
            for item in value[:16]:
                found = _retry_info(item, depth + 1)
                if found is not None:
                    return found
    except Exception:
        return None
    return None


def retry_after_seconds(error: object, *, now_wall: float | None = None) -> float | None:
    """How long the provider asked to wait, in seconds, or None. Never raises.

    Looked up on the error, then on its ``__cause__`` (two levels): the attributes
    ``retry_after`` / ``retry_after_s``; the headers of ``error.response`` (httpx-style,
    or botocore's ``ResponseMetadata.HTTPHeaders``), ``error.headers`` or LiteLLM's
    ``error.litellm_response_headers``:
    ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP date),
    ``x-ratelimit-reset-requests``/``-tokens`` (OpenAI, Groq: "6m0s") and
    ``anthropic-ratelimit-*-reset`` (RFC 3339), preferring the limit that is exhausted;
    and Google's ``RetryInfo.retryDelay`` in ``error.details``.
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
        for headers in _headers_of(node):
            s = _from_headers(headers, wall)
            if s is not None:
                return s
        try:
            details = getattr(node, "details", None)
        except Exception:
            details = None
        s = _retry_info(details) if details is not None else None
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
        store: where state lives (default: in memory; a
            :class:`~model_fallback.redis.RedisCooldownStore` shares it between processes).
        clock: a clock in seconds. Left at ``time.monotonic`` the tracker reads wall time
            from ``time.time``; any other clock (a fake one in tests, a simulated one) drives
            the tracker's wall time instead: ``wall = offset + clock()``, the offset taken once
            at construction.
        wall_clock: the wall clock (epoch seconds) entries are written and compared with;
            overrides what ``clock`` implies. Every process sharing a store must agree on it.
        defaults: per-reason ``(base_s, max_s)`` of the exponential default.
        max_retry_after_s: upper bound applied to a provider's ``Retry-After``.
    """

    def __init__(
        self,
        *,
        store: CooldownStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] | None = None,
        defaults: Mapping[FailoverReason, tuple[float, float]] | None = None,
        max_retry_after_s: float = 3600.0,
    ) -> None:
        if max_retry_after_s <= 0 or math.isnan(max_retry_after_s):
            raise ValueError("max_retry_after_s must be positive")
        self._store: CooldownStore = store if store is not None else InMemoryCooldownStore()
        self._clock = clock
        if wall_clock is not None:
            self._wall: Callable[[], float] = wall_clock
        elif clock is time.monotonic:
            self._wall = time.time
        else:
            offset = time.time() - clock()

            def anchored() -> float:
                return offset + clock()

            self._wall = anchored
        self._defaults = dict(_DEFAULTS)
        if defaults:
            for reason, (base, cap) in defaults.items():
                if not (0 <= base <= cap):
                    raise ValueError(f"cooldown default for {reason}: need 0 <= base <= max")
                self._defaults[FailoverReason(reason)] = (float(base), float(cap))
        self._max_retry_after = float(max_retry_after_s)
        # key -> the `until_wall` of the cooldown whose one probe has been claimed
        self._probes: dict[str, float] = {}
        self._probe_lock = threading.Lock()
        # A shared store may share probe claims between processes too (optional protocol).
        self._shared_claim: Callable[[str, float], bool] | None = getattr(self._store, "claim_probe", None)
        self._shared_release: Callable[[str], None] | None = getattr(self._store, "release_probe", None)

    @property
    def wall_clock(self) -> Callable[[], float]:
        """The wall clock entries are written and compared with (epoch seconds)."""
        return self._wall

    @property
    def store(self) -> CooldownStore:
        """Where the state lives."""
        return self._store

    def remaining(self, candidate: Candidate) -> float:
        """Seconds left on *candidate*'s cooldown (0 when not cooling down)."""
        entry = self._store.get(_key(candidate))
        if entry is None:
            return 0.0
        left = entry.until_wall - self._wall()
        return left if left > 0 else 0.0

    def entry(self, candidate: Candidate) -> CooldownEntry | None:
        """The current entry, if *candidate* is cooling down now."""
        entry = self._store.get(_key(candidate))
        if entry is None or entry.until_wall <= self._wall():
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
        # An HTTP-date Retry-After is read against the real wall clock (it came from one).
        retry_after = retry_after_seconds(error) if error is not None else None
        if retry_after is not None:
            length = min(retry_after, self._max_retry_after)
        else:
            base, cap = self._defaults[reason]
            length = min(cap, base * (2 ** min(streak - 1, 32)))
        self._store.set(key, CooldownEntry(self._wall() + length, reason, streak))
        return length

    def claim_probe(self, candidate: Candidate) -> bool:
        """Claim the one probe of *candidate*'s current cooldown; False if it is taken.

        The driver probes a cooling candidate only when every remaining one cools down
        too; with many concurrent runs, only the run that claims the probe calls the
        provider (one probe per tracker per cooldown, not one per run; with a store that
        shares probe claims, such as the Redis one, one per cooldown across the processes
        that learned of the claim). A probe that ends
        with a verdict keeps its claim (a failure starts a new cooldown with a new probe;
        a success clears the cooldown); one that ends without a verdict (cancelled, a
        coordination abort, a caller error) gives it back with :meth:`release_probe`.
        """
        entry = self.entry(candidate)
        if entry is None:
            return True
        key = _key(candidate)
        with self._probe_lock:
            if self._probes.get(key) == entry.until_wall:
                return False
            shared = self._shared_claim
            if shared is not None and not shared(key, entry.until_wall):
                return False
            if len(self._probes) >= 4096:
                self._probes.clear()
            self._probes[key] = entry.until_wall
        return True

    def release_probe(self, candidate: Candidate) -> None:
        """Give back a claimed probe that ended without a verdict."""
        key = _key(candidate)
        with self._probe_lock:
            claimed = self._probes.pop(key, None)
        if claimed is not None and self._shared_release is not None:
            self._shared_release(key)

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
