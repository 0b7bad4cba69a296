"""CooldownTracker: reasons, Retry-After, exponential default, injectable clock."""

from __future__ import annotations

import email.utils

import pytest

from model_fallback import Candidate, CooldownTracker, FailoverReason
from model_fallback.cooldown import retry_after_seconds

C = Candidate("openai", "gpt-4o")


def make() -> tuple[CooldownTracker, list[float]]:
    clock = [100.0]
    return CooldownTracker(clock=lambda: clock[0]), clock


@pytest.mark.parametrize("reason", list(FailoverReason))
def test_only_cooldown_reasons_start_one(reason: FailoverReason) -> None:
    """rate_limit, overloaded, billing, auth, auth_permanent cool down; other reasons don't."""
    cd, _ = make()
    cd.record_failure(C, reason)
    expected = reason.value in {"rate_limit", "overloaded", "billing", "auth", "auth_permanent"}
    assert cd.is_cooling(C) is expected


def test_exponential_default_is_bounded_and_success_resets() -> None:
    """Consecutive failures double the cooldown up to the cap; a success resets the streak."""
    cd, clock = make()
    lengths = [cd.record_failure(C, FailoverReason.RATE_LIMIT) for _ in range(10)]
    assert lengths[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(lengths) == 60.0
    clock[0] += 30
    assert cd.remaining(C) == pytest.approx(30.0)
    clock[0] += 31
    assert not cd.is_cooling(C) and cd.entry(C) is None
    cd.record_success(C)
    assert cd.record_failure(C, FailoverReason.RATE_LIMIT) == 1.0


def test_retry_after_sources() -> None:
    """Retry-After: attribute, header on response, header on the error, HTTP date, cause."""

    class Resp:
        headers = {"retry-after": "12"}

    e1 = Exception()
    e1.retry_after = 3  # type: ignore[attr-defined]
    e2 = Exception()
    e2.response = Resp()  # type: ignore[attr-defined]
    e3 = Exception()
    e3.headers = {"Retry-After": email.utils.formatdate(1_000_030, usegmt=True)}  # type: ignore[attr-defined]
    e4 = RuntimeError("wrapper")
    e4.__cause__ = e1
    assert retry_after_seconds(e1) == 3
    assert retry_after_seconds(e2) == 12
    assert retry_after_seconds(e3, now_wall=1_000_000) == pytest.approx(30, abs=1)
    assert retry_after_seconds(e4) == 3
    assert retry_after_seconds(Exception("none")) is None
    bad = Exception()
    bad.retry_after = "soon"  # type: ignore[attr-defined]
    assert retry_after_seconds(bad) is None


def test_retry_after_is_capped() -> None:
    """A huge Retry-After is bounded by max_retry_after_s."""
    clock = [0.0]
    cd = CooldownTracker(clock=lambda: clock[0], max_retry_after_s=120)
    e = Exception()
    e.retry_after = 86400  # type: ignore[attr-defined]
    assert cd.record_failure(C, FailoverReason.RATE_LIMIT, e) == 120


def test_bad_configuration() -> None:
    """Invalid defaults fail clearly."""
    with pytest.raises(ValueError):
        CooldownTracker(max_retry_after_s=0)
    with pytest.raises(ValueError):
        CooldownTracker(defaults={FailoverReason.RATE_LIMIT: (10.0, 1.0)})
