"""Property tests of the driver's invariants over random chains and random behaviours."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import model_fallback as mf
from model_fallback import (
    AllCandidatesFailedError,
    Candidate,
    CooldownTracker,
    run_with_model_fallback,
)
from model_fallback.cooldown import COOLDOWN_REASONS

BEHAVIOURS = [
    "ok",
    "429",
    "503",
    "401",
    "unknown",
    "overflow",
    "lock",
    "takeover",
    "wrapped-lock",
    "429-over-lock",
]


def _raise(kind: str) -> None:
    def http(status: int, msg: str) -> Exception:
        e = Exception(msg)
        e.status = status  # type: ignore[attr-defined]
        return e

    if kind == "429":
        raise http(429, "Too Many Requests")
    if kind == "503":
        raise http(503, "overloaded")
    if kind == "401":
        raise http(401, "invalid api key")
    if kind == "unknown":
        raise ValueError("weird")
    if kind == "overflow":
        raise http(400, "maximum context length exceeded")
    if kind == "lock":
        raise mf.SessionWriteLockTimeoutError(path="s")
    if kind == "takeover":
        raise mf.SessionTakeoverError(path="s")
    if kind == "wrapped-lock":
        e = RuntimeError("turn failed")
        e.__cause__ = mf.SessionWriteLockTimeoutError(path="s")
        raise e
    if kind == "429-over-lock":
        e2 = http(429, "rate limited")
        e2.__cause__ = mf.SessionWriteLockTimeoutError(path="s")
        raise e2


COORDINATION = {"lock", "takeover", "wrapped-lock"}
STOP = {"overflow"}


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    behaviours=st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=6),
    cooling=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_driver_invariants(behaviours: list[str], cooling: list[bool]) -> None:
    """run is called at most once per candidate; coordination and stop reasons end the run on
    the candidate that raised them; the outcome and the raised error are the right ones; no
    cooldown is ever started by a coordination error."""
    chain = [Candidate("p", f"m{i}") for i in range(len(behaviours))]
    clock = [1000.0]
    cd = CooldownTracker(clock=lambda: clock[0])
    for c, cool in zip(chain, cooling, strict=False):
        if cool:
            cd.record_failure(c, mf.FailoverReason.RATE_LIMIT)
    cooled_before = {c for c in chain if cd.is_cooling(c)}
    calls: list[Candidate] = []
    raised: dict[Candidate, BaseException] = {}

    async def run(c: Candidate) -> str:
        calls.append(c)
        kind = behaviours[chain.index(c)]
        if kind == "ok":
            return str(c)
        try:
            _raise(kind)
        except Exception as exc:
            raised[c] = exc
            raise
        raise AssertionError("unreachable")

    async def main() -> Any:
        try:
            return await run_with_model_fallback(run, chain, cooldowns=cd)
        except Exception as exc:
            return exc

    out = anyio.run(main)
    assert len(calls) == len(set(calls)), "a candidate was called twice"
    # Expected: walk the chain as the driver should.
    all_cooling = [c in cooled_before for c in chain]
    probed = False
    expected_calls = []
    for i, c in enumerate(chain):
        if all_cooling[i]:
            if all(all_cooling[i + 1 :]) and not probed:
                probed = True
            else:
                continue
        expected_calls.append(c)
        kind = behaviours[i]
        if kind == "ok" or kind in COORDINATION or kind in STOP:
            break
        # a failure can start a cooldown that makes later ones "all cooling" - recompute
        all_cooling = [x in cooled_before or (x in expected_calls and behaviours[chain.index(x)] in {
            "429", "503", "401", "429-over-lock"}) for x in chain]  # fmt: skip
    assert calls == expected_calls
    last = behaviours[chain.index(calls[-1])]
    if last == "ok":
        assert isinstance(out, mf.FallbackResult)
        assert out.candidate == calls[-1]
    elif last in COORDINATION or last in STOP:
        assert out is raised[calls[-1]]
    else:
        assert isinstance(out, AllCandidatesFailedError)
        assert len(out.attempts) == len(chain)
        assert [e.__cause__ for e in out.exceptions] == [raised[c] for c in calls]
    for c in calls:
        kind = behaviours[chain.index(c)]
        if kind in COORDINATION and c not in cooled_before:
            assert not cd.is_cooling(c), "a coordination error started a cooldown"


@pytest.mark.anyio
@settings(max_examples=40, deadline=None, derandomize=True)
@given(position=st.integers(0, 3), n=st.integers(1, 4))
async def test_cancellation_never_counts(position: int, n: int) -> None:
    """Cancelling at any candidate propagates, records 'cancelled' and starts no cooldown."""
    position = min(position, n - 1)
    chain = [Candidate("p", f"m{i}") for i in range(n)]
    cd = CooldownTracker()
    calls = []

    async def run(c: Candidate) -> str:
        calls.append(c)
        if chain.index(c) == position:
            await anyio.sleep(60)
        e = Exception("rate")
        e.status = 429  # type: ignore[attr-defined]
        raise e

    with anyio.move_on_after(0.05) as scope:
        await run_with_model_fallback(run, chain, cooldowns=cd)
    assert scope.cancelled_caught
    assert len(calls) == position + 1
    assert not cd.is_cooling(chain[position])
    assert all(cd.entry(c) is not None and cd.entry(c).reason in COOLDOWN_REASONS for c in chain[:position])
