"""Simulated providers: fault profiles, latency, outage windows, realistic errors.

Faults are decided by a random generator seeded from ``(seed, session, turn, candidate)``,
so a given seed produces the same provider outcomes whatever the scheduling; latency and
hangs are real ``anyio.sleep`` calls, hangs cut by the turn's ``attempt_timeout``.

A streaming call (:meth:`SimulatedProvider.stream`) fails before its first chunk exactly as
a plain call would (the same draw decides); once started, a second draw, seeded from the
same key, decides its mid-stream fate: the number of chunks, and whether it is interrupted
after a few chunks (an ``overloaded`` error in the stream, or the connection dropped) or
stalls past the turn's ``idle_timeout``.

The errors look like what provider SDKs raise (an HTTP status error with a ``response``
carrying headers, an SDK-style ``APIConnectionError``, ...), and some of them carry an API
key in their text, as real ones do, so that redaction is exercised end to end.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import anyio

from model_fallback._model import Candidate

__all__ = [
    "FAULT_KINDS",
    "FaultProfile",
    "Outage",
    "ProviderHTTPError",
    "SimClock",
    "SimulatedAPIConnectionError",
    "SimulatedProvider",
    "StreamPlan",
    "rng_for",
]

# The fault kinds a profile can inject, with the error each one raises.
FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",  # 429 with Retry-After
    "overloaded",  # 503 "overloaded"
    "overloaded_529",  # 529
    "hang",  # never answers: cut by the turn's attempt_timeout (a provider timeout)
    "auth",  # 401 invalid key (the key appears in the message: redaction)
    "billing",  # 402 insufficient credits
    "context_overflow",  # 400 maximum context length
    "server_error",  # 500
    "connection",  # connection refused, SDK-style
    "unknown",  # an error nobody classifies
)


class _Response:
    """What an HTTP client attaches to its status errors."""

    def __init__(self, status_code: int, headers: Mapping[str, str], text: str) -> None:
        self.status_code = status_code
        self.headers = dict(headers)
        self.text = text


class ProviderHTTPError(Exception):
    """An HTTP status error as provider SDKs raise it (status, response, body)."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None,
                 body: object = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status_code = status
        self.response = _Response(status, headers or {}, message)
        self.body = body


class SimulatedAPIConnectionError(Exception):
    """A transport failure as an SDK reports it (classified by class name)."""


class _UnclassifiedProviderError(Exception):
    """Something no rule recognises; the driver records it as ``unknown``."""


class RemoteProtocolError(Exception):
    """What an HTTP client raises when the server drops a streamed body half-way."""


@dataclass(frozen=True, slots=True)
class Outage:
    """A window, in seconds since the run started, during which a provider is down."""

    provider: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """Per-call fault probabilities and latency of one simulated provider.

    Attributes:
        rates: probability of each fault kind per call (see :data:`FAULT_KINDS`).
        latency_median_s: median latency of a successful call (for a stream: to its first
            chunk).
        latency_p95_s: 95th percentile latency (log-normal).
        retry_after_s: the Retry-After a 429 carries.
        interrupt_rate: probability that a stream which started fails after a few chunks.
        stall_rate: probability that a stream which started stalls past the idle timeout.
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    latency_median_s: float = 0.08
    latency_p95_s: float = 0.4
    retry_after_s: float = 2.0
    interrupt_rate: float = 0.0
    stall_rate: float = 0.0

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
            if not (0.0 <= rate <= 1.0) or math.isnan(rate):
                raise ValueError(f"fault rate {kind}={rate!r} must be between 0 and 1")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates of one provider add up to more than 1")
        if not (0 < self.latency_median_s <= self.latency_p95_s):
            raise ValueError("latency: need 0 < median <= p95")
        for name, rate in (("interrupt_rate", self.interrupt_rate), ("stall_rate", self.stall_rate)):
            if not (0.0 <= rate <= 1.0) or math.isnan(rate):
                raise ValueError(f"{name}={rate!r} must be between 0 and 1")
        if self.interrupt_rate + self.stall_rate > 1.0 + 1e-9:
            raise ValueError("interrupt and stall rates add up to more than 1")

    def with_rates(self, **updates: float) -> FaultProfile:
        """A copy with some rates replaced."""
        rates = dict(self.rates)
        rates.update(updates)
        return FaultProfile(
            rates, self.latency_median_s, self.latency_p95_s, self.retry_after_s,
            self.interrupt_rate, self.stall_rate,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What a stream that started does, decided per ``(seed, session, turn, candidate)``.

    Attributes:
        chunks: how many chunks the whole answer has.
        gap_s: the pause between two chunks.
        fault: None, ``"interrupt"`` or ``"stall"``.
        after: the number of chunks delivered before the fault (at least 1).
        interruption: ``"overloaded"`` (an error event in the stream) or ``"connection"``
            (the connection dropped).
    """

    chunks: int
    gap_s: float
    fault: str | None
    after: int
    interruption: str


def rng_for(seed: int, *parts: object) -> random.Random:
    """A generator seeded from *seed* and *parts*: the same inputs, the same draws."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


_FAKE_KEY = "sk-proj-" + "Zx81kQ2mN7vB4cT9rW3yH6jL0pF5sD1a"


class SimClock:
    """A simulated clock (seconds) that advances by the planned duration of each call.

    Attributes:
        now: seconds since the run started, on this clock.
        hang_s: what a hang costs (the attempt timeout that cuts it).
    """

    __slots__ = ("hang_s", "now")

    def __init__(self, hang_s: float) -> None:
        self.now = 0.0
        self.hang_s = hang_s

    def __call__(self) -> float:
        return self.now


class SimulatedProvider:
    """Answers ``complete(candidate, session, turn)`` with a reply, a delay or an error.

    Args:
        profiles: fault profile per provider name (``"*"`` is the default).
        outages: windows during which a provider answers 503 / connection refused.
        seed: the run's seed.
        started: the run's start on ``time.monotonic()``, from which outage windows are
            counted for calls made without a :class:`SimClock` (default: now).
    """

    def __init__(
        self,
        profiles: Mapping[str, FaultProfile],
        *,
        outages: tuple[Outage, ...] = (),
        seed: int = 0,
        started: float | None = None,
    ) -> None:
        self._profiles = dict(profiles)
        self._default = self._profiles.get("*", FaultProfile())
        self._outages = outages
        self._seed = seed
        self._t0 = time.monotonic() if started is None else started
        self.calls = 0

    def profile(self, provider: str) -> FaultProfile:
        """The profile in force for *provider*."""
        return self._profiles.get(provider, self._default)

    def in_outage(self, provider: str, at_s: float | None = None) -> bool:
        """Whether *provider* is inside one of its outage windows at *at_s* seconds into the
        run (default: now)."""
        t = time.monotonic() - self._t0 if at_s is None else at_s
        return any(o.provider == provider and o.start_s <= t < o.end_s for o in self._outages)

    def decide(self, candidate: Candidate, session: int, turn: int) -> tuple[str | None, float]:
        """The fault kind (None: success) and latency for this call; deterministic per seed."""
        rng = rng_for(self._seed, "provider", session, turn, str(candidate))
        prof = self.profile(candidate.provider)
        roll = rng.random()
        kind: str | None = None
        acc = 0.0
        for k in FAULT_KINDS:
            acc += prof.rates.get(k, 0.0)
            if roll < acc:
                kind = k
                break
        sigma = max(1e-6, math.log(prof.latency_p95_s / prof.latency_median_s) / 1.645)
        latency = prof.latency_median_s * math.exp(sigma * rng.gauss(0.0, 1.0))
        return kind, min(latency, prof.latency_p95_s * 4)

    async def complete(
        self, candidate: Candidate, session: int, turn: int, prompt: str, clock: SimClock | None = None
    ) -> str:
        """One simulated provider call.

        With a :class:`SimClock`, outage windows are judged on that clock and the call's
        planned duration is added to it (``hang_s`` for a hang), so that what happens
        depends on the seed only, not on scheduling.
        """
        self.calls += 1
        kind, latency = self.decide(candidate, session, turn)
        at = clock.now if clock is not None else None
        if clock is not None:
            clock.now += clock.hang_s if kind == "hang" else (latency if kind is None else latency / 4)
        if self.in_outage(candidate.provider, at):
            await anyio.sleep(min(latency, 0.02))
            raise ProviderHTTPError(503, "503 Service Unavailable: upstream connect error (outage)")
        if kind == "hang":
            await anyio.sleep(3600)
        # Errors come back faster than answers, as they do in real life.
        await anyio.sleep(latency if kind is None else latency / 4)
        if kind is None:
            return f"reply from {candidate} to {prompt[:24]!r}"
        raise _error(kind, candidate, self.profile(candidate.provider))

    def plan_stream(self, candidate: Candidate, session: int, turn: int, idle_timeout: float) -> StreamPlan:
        """The mid-stream fate of a stream that started; deterministic per seed.

        The pause between chunks stays under a fifth of *idle_timeout*, so that only a
        planned stall trips it, whatever the machine's load.
        """
        rng = rng_for(self._seed, "stream", session, turn, str(candidate))
        prof = self.profile(candidate.provider)
        chunks = rng.randint(4, 12)
        gap = min(idle_timeout / 5, prof.latency_median_s / 4) * (0.5 + rng.random())
        roll = rng.random()
        fault = (
            "interrupt" if roll < prof.interrupt_rate
            else "stall" if roll < prof.interrupt_rate + prof.stall_rate
            else None
        )  # fmt: skip
        after = rng.randint(1, chunks - 1)
        interruption = "overloaded" if rng.random() < 0.5 else "connection"
        return StreamPlan(chunks, gap, fault, after, interruption)

    async def stream(
        self,
        candidate: Candidate,
        session: int,
        turn: int,
        prompt: str,
        *,
        idle_timeout: float,
        clock: SimClock | None = None,
    ) -> AsyncIterator[str]:
        """One simulated streaming call: an async generator of text chunks.

        Before its first chunk it fails (or hangs, or answers after its latency) exactly as
        :meth:`complete` would for the same call; then it follows :meth:`plan_stream`.
        """
        self.calls += 1
        kind, latency = self.decide(candidate, session, turn)
        plan = self.plan_stream(candidate, session, turn, idle_timeout)
        at = clock.now if clock is not None else None
        if clock is not None:
            if kind == "hang":
                clock.now += clock.hang_s
            elif kind is not None:
                clock.now += latency / 4
            else:
                shown = plan.after if plan.fault is not None else plan.chunks
                stalled = idle_timeout if plan.fault == "stall" else 0.0
                clock.now += latency + plan.gap_s * (shown - 1) + stalled
        if self.in_outage(candidate.provider, at):
            await anyio.sleep(min(latency, 0.02))
            raise ProviderHTTPError(503, "503 Service Unavailable: upstream connect error (outage)")
        if kind == "hang":
            await anyio.sleep(3600)
        await anyio.sleep(latency if kind is None else latency / 4)
        if kind is not None:
            raise _error(kind, candidate, self.profile(candidate.provider))
        text = f"reply from {candidate} to {prompt[:24]!r}"
        cuts = [round(k * len(text) / plan.chunks) for k in range(plan.chunks + 1)]
        pieces = [text[a:b] for a, b in itertools.pairwise(cuts)]
        for i, piece in enumerate(pieces):
            if i:
                await anyio.sleep(plan.gap_s)
            if i == plan.after and plan.fault == "stall":
                await anyio.sleep(3600)  # cut by the turn's idle_timeout
            if i == plan.after and plan.fault == "interrupt":
                raise _interruption(plan.interruption, candidate)
            yield piece


def _interruption(kind: str, candidate: Candidate) -> Exception:
    """A failure in the middle of a stream, as the SDKs raise it."""
    if kind == "overloaded":
        if candidate.provider == "anthropic":
            # Anthropic reports it as an error event inside a 200 response.
            body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return ProviderHTTPError(200, str(body), body=body)
        return ProviderHTTPError(503, "The model is overloaded. Please try again later.")
    err = SimulatedAPIConnectionError("Connection error.")
    err.__cause__ = RemoteProtocolError(
        "peer closed connection without sending complete message body (incomplete chunked read)"
    )
    return err


def _error(kind: str, candidate: Candidate, prof: FaultProfile) -> Exception:
    if kind == "rate_limit":
        return ProviderHTTPError(
            429,
            f"Rate limit reached for {candidate.model} on requests per min (RPM): Limit 500. "
            f"Please try again in {prof.retry_after_s:g}s.",
            headers={"retry-after": f"{prof.retry_after_s:g}"},
        )
    if kind == "overloaded":
        return ProviderHTTPError(503, "The model is overloaded. Please try again later.")
    if kind == "overloaded_529":
        return ProviderHTTPError(
            529, '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
        )
    if kind == "auth":
        return ProviderHTTPError(
            401,
            f"Incorrect API key provided: {_FAKE_KEY}. You can find your API key at "
            "https://platform.example/account/api-keys. (Authorization: Bearer "
            f"{_FAKE_KEY})",
        )
    if kind == "billing":
        return ProviderHTTPError(402, "Payment Required: insufficient credits - please top up your account")
    if kind == "context_overflow":
        return ProviderHTTPError(
            400, f"This model's maximum context length is 8192 tokens ({candidate.model})."
        )
    if kind == "server_error":
        return ProviderHTTPError(500, "Internal server error")
    if kind == "connection":
        err = SimulatedAPIConnectionError("Connection error.")
        err.__cause__ = ConnectionRefusedError(111, "Connection refused")
        return err
    return _UnclassifiedProviderError("the provider returned something unexpected")
