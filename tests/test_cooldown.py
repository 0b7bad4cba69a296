"""CooldownTracker: reasons, Retry-After, exponential default, injectable clock, the store
protocol (wall-clock entries, shared probe claims, store errors)."""

from __future__ import annotations

import email.utils
import time

import pytest

from model_fallback import Candidate, CooldownTracker, FailoverReason
from model_fallback.cooldown import (
    STORE_COMPONENT,
    InMemoryCooldownStore,
    count_store_error,
    retry_after_seconds,
)
from model_fallback.events import telemetry_errors

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


class _Response:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


def _http_error(headers: dict[str, str], **attrs: object) -> Exception:
    e = Exception("Too Many Requests")
    e.status_code = 429  # type: ignore[attr-defined]
    e.response = _Response(headers)  # type: ignore[attr-defined]
    for k, v in attrs.items():
        setattr(e, k, v)
    return e


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),  # OpenAI, Azure OpenAI
        ({"Retry-After": "7", "retry-after-ms": "1500"}, 1.5),  # the finer one wins
        ({"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-remaining-requests": "0"}, 360.0),
        ({"x-ratelimit-reset-tokens": "1m30.5s", "x-ratelimit-remaining-tokens": "0",
          "x-ratelimit-reset-requests": "2s", "x-ratelimit-remaining-requests": "12"}, 90.5),
        ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "7.66s"}, 7.66),  # Groq, none at 0: the later
        ({"anthropic-ratelimit-requests-reset": "2026-12-02T10:00:30Z",
          "anthropic-ratelimit-requests-remaining": "0"}, 30.0),
    ],
)  # fmt: skip
def test_rate_limit_reset_headers(headers: dict[str, str], expected: float) -> None:
    """retry-after-ms, OpenAI/Groq x-ratelimit-reset-* durations and Anthropic's RFC 3339
    reset times reach the cooldown when there is no plain Retry-After (or a finer one)."""
    now = email.utils.parsedate_to_datetime("Wed, 02 Dec 2026 10:00:00 GMT").timestamp()
    assert retry_after_seconds(_http_error(headers), now_wall=now) == pytest.approx(expected)


def test_google_retry_info_in_the_error_details() -> None:
    """Gemini's 429 carries google.rpc.RetryInfo retryDelay in error.details[]."""
    e = Exception("Resource has been exhausted")
    e.code = 429  # type: ignore[attr-defined]
    e.details = {  # type: ignore[attr-defined]
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
            ],
        }
    }
    assert retry_after_seconds(e) == pytest.approx(37.0)
    cd, _ = make()
    assert cd.record_failure(C, FailoverReason.RATE_LIMIT, e) == pytest.approx(37.0)


def test_aws_headers_in_a_botocore_style_response() -> None:
    """botocore's ClientError.response['ResponseMetadata']['HTTPHeaders']."""
    e = Exception("ThrottlingException")
    e.response = {"ResponseMetadata": {"HTTPStatusCode": 429, "HTTPHeaders": {"retry-after": "4"}}}  # type: ignore[attr-defined]
    assert retry_after_seconds(e) == pytest.approx(4.0)


def test_malformed_reset_values_are_ignored() -> None:
    """Garbage in a reset header gives no cooldown length (the exponential default applies)."""
    for value in ("soon", "-5s", "1x", "", "nan", "9" * 400):
        assert retry_after_seconds(_http_error({"x-ratelimit-reset-requests": value})) is None


# --- the store protocol: wall-clock entries (shared stores cross processes) ----------------


def test_entries_carry_wall_clock_expiry() -> None:
    """The default tracker writes until_wall in epoch seconds (time.time), not monotonic time."""
    store = InMemoryCooldownStore()
    cd = CooldownTracker(store=store)
    e = Exception()
    e.retry_after = 30  # type: ignore[attr-defined]
    before = time.time()
    cd.record_failure(C, FailoverReason.RATE_LIMIT, e)
    entry = store.get("openai/gpt-4o")
    assert entry is not None
    assert before + 30 <= entry.until_wall <= time.time() + 30
    assert entry.reason is FailoverReason.RATE_LIMIT and entry.streak == 1
    assert cd.wall_clock is time.time


def test_two_trackers_with_unrelated_monotonic_clocks_agree_through_a_store() -> None:
    """Two 'processes' whose monotonic clocks differ by hours share one store: the wall-clock
    entry one writes means the same to the other (a monotonic `until` would not)."""
    wall = [1_700_000_000.0]
    store = InMemoryCooldownStore()
    a = CooldownTracker(store=store, clock=lambda: 5.0, wall_clock=lambda: wall[0])
    b = CooldownTracker(store=store, clock=lambda: 86_400.0, wall_clock=lambda: wall[0])
    assert a.record_failure(C, FailoverReason.OVERLOADED) == 1.0
    assert b.is_cooling(C) and b.remaining(C) == pytest.approx(1.0)
    assert b.record_failure(C, FailoverReason.OVERLOADED) == 2.0  # the streak is shared too
    wall[0] += 2.5
    assert not a.is_cooling(C) and b.entry(C) is None


def test_an_injected_clock_drives_the_wall_time() -> None:
    """A fake clock (tests, the simulator) moves the tracker's wall time with it."""
    cd, clock = make()
    start = cd.wall_clock()
    clock[0] += 10
    assert cd.wall_clock() - start == pytest.approx(10.0)
    assert abs(start - time.time()) < 5


class _SharingStore(InMemoryCooldownStore):
    """A store that shares probe claims, as a Redis store does between processes."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: dict[str, float] = {}
        self.released: list[str] = []

    def claim_probe(self, key: str, until_wall: float) -> bool:
        if self.claims.get(key) == until_wall:
            return False
        self.claims[key] = until_wall
        return True

    def release_probe(self, key: str) -> None:
        self.released.append(key)
        self.claims.pop(key, None)


def test_a_store_may_share_probe_claims() -> None:
    """claim_probe/release_probe of the store are used when it has them: two trackers on one
    store make one probe per cooldown between them, and a released probe can be claimed again."""
    store = _SharingStore()
    a, b = CooldownTracker(store=store), CooldownTracker(store=store)
    a.record_failure(C, FailoverReason.RATE_LIMIT)
    assert a.claim_probe(C) is True
    assert b.claim_probe(C) is False
    assert a.claim_probe(C) is False
    a.release_probe(C)
    assert store.released == ["openai/gpt-4o"]
    assert b.claim_probe(C) is True
    b.release_probe(C)
    b.release_probe(C)  # nothing claimed any more: the store is not told twice
    assert store.released == ["openai/gpt-4o", "openai/gpt-4o"]


def test_store_errors_are_counted_per_component() -> None:
    """count_store_error adds to telemetry_errors()['cooldown_store']."""
    before = telemetry_errors().get(STORE_COMPONENT, 0)
    count_store_error()
    count_store_error(2)
    count_store_error(0)
    assert telemetry_errors()[STORE_COMPONENT] == before + 3
    assert STORE_COMPONENT == "cooldown_store"
