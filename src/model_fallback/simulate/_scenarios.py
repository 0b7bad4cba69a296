"""Scenario presets for ``model-fallback simulate``."""

from __future__ import annotations

from dataclasses import dataclass, field

from model_fallback._model import Candidate
from model_fallback.simulate._faults import FaultProfile, Outage

__all__ = ["DEFAULT_CHAIN", "DEFAULT_STREAM_SHARE", "SCENARIOS", "Scenario"]

DEFAULT_CHAIN: tuple[Candidate, ...] = (
    Candidate("openai", "gpt-4o"),
    Candidate("anthropic", "claude-sonnet-4"),
    Candidate("google", "gemini-2.5-pro"),
)

# Latency per provider (median, p95), seconds: shortened so that a 30 s run sees
# thousands of turns, in proportion to what these APIs do for short prompts.
_LATENCY = {"openai": (0.06, 0.25), "anthropic": (0.08, 0.3), "google": (0.07, 0.35)}


#: The share of turns that stream, unless a scenario or ``--stream`` says otherwise.
DEFAULT_STREAM_SHARE = 1 / 3


@dataclass(frozen=True)
class Scenario:
    """A preset: provider fault rates, coordination fault rates, outage windows, and the
    streaming turns' share and mid-stream fault rates.

    Outage windows are given as fractions of the run's duration.
    """

    name: str
    description: str
    rates: dict[str, float] = field(default_factory=dict)
    primary_rates: dict[str, float] = field(default_factory=dict)
    takeover_rate: float = 0.0
    contention_rate: float = 0.0
    crash_rate: float = 0.0
    primary_outage: tuple[float, float] | None = None
    stream_share: float = DEFAULT_STREAM_SHARE
    interrupt_rate: float = 0.0
    stall_rate: float = 0.0

    def profiles(
        self,
        chain: tuple[Candidate, ...],
        overrides: dict[str, dict[str, float]],
        *,
        interrupt_rate: float | None = None,
        stall_rate: float | None = None,
    ) -> dict[str, FaultProfile]:
        """One fault profile per provider of *chain* (the primary's may differ); the
        mid-stream rates are the scenario's unless given."""
        out: dict[str, FaultProfile] = {}
        interrupt = self.interrupt_rate if interrupt_rate is None else interrupt_rate
        stall = self.stall_rate if stall_rate is None else stall_rate
        for i, c in enumerate(chain):
            if c.provider in out:
                continue
            rates = dict(self.rates)
            if i == 0:
                rates.update(self.primary_rates)
            rates.update(overrides.get("*", {}))
            rates.update(overrides.get(c.provider, {}))
            med, p95 = _LATENCY.get(c.provider, (0.07, 0.3))
            out[c.provider] = FaultProfile(
                rates, med, p95, retry_after_s=2.0, interrupt_rate=interrupt, stall_rate=stall
            )
        return out

    def outages(self, chain: tuple[Candidate, ...], duration_s: float) -> tuple[Outage, ...]:
        """The outage windows, in seconds."""
        if self.primary_outage is None:
            return ()
        a, b = self.primary_outage
        return (Outage(chain[0].provider, a * duration_s, b * duration_s),)


_PROVIDER_MIX = {
    "rate_limit": 0.05,
    "overloaded": 0.03,
    "overloaded_529": 0.01,
    "hang": 0.005,
    "auth": 0.002,
    "billing": 0.002,
    "context_overflow": 0.003,
    "server_error": 0.01,
    "connection": 0.01,
    "unknown": 0.003,
}

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "providers mostly fine, no session trouble: the baseline",
            rates={"rate_limit": 0.01, "overloaded": 0.005, "server_error": 0.002},
            interrupt_rate=0.005,
            stall_rate=0.002,
        ),
        Scenario(
            "provider-outage",
            "the primary provider goes down for the middle of the run, then comes back",
            rates={"rate_limit": 0.02, "overloaded": 0.01, "server_error": 0.005},
            primary_outage=(0.25, 0.6),
            interrupt_rate=0.01,
            stall_rate=0.005,
        ),
        Scenario(
            "lock-storm",
            "the seed's story: maintenance-heavy sessions, takeovers and lock timeouts",
            rates={"rate_limit": 0.02, "overloaded": 0.01},
            takeover_rate=0.12,
            contention_rate=0.08,
            crash_rate=0.01,
            interrupt_rate=0.01,
            stall_rate=0.005,
        ),
        Scenario(
            "mixed",
            "every provider fault, some takeovers and lock timeouts, a short primary outage, "
            "streams interrupted or stalled mid-way",
            rates=_PROVIDER_MIX,
            primary_rates={"rate_limit": 0.08},
            takeover_rate=0.04,
            contention_rate=0.03,
            crash_rate=0.004,
            primary_outage=(0.5, 0.6),
            interrupt_rate=0.03,
            stall_rate=0.01,
        ),
    )
}
