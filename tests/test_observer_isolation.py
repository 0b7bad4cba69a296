"""Redaction of exported text and isolation of observers that raise."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import model_fallback as mf
from model_fallback import events as ev
from model_fallback._redact import redact
from model_fallback.prometheus import PrometheusObserver

from .telemetry_support import (
    CHAIN,
    KEY,
    http_error,
    script,
    spans_by_name,
)

pytestmark = pytest.mark.anyio


# --- redaction and isolation -------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        f"Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys.",
        "401 Unauthorized: invalid x-api-key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-abcdefg",
        "400 API key not valid. key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe for generativelanguage",
        "request failed: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
        'upstream body {"error": {"message": "bad key", "api_key": "abcd1234efgh5678"}}',
        "GET https://api.example.com/v1/chat?api_key=s3cr3t-v4lue-123&model=x returned 403",
        "token 0123456789abcdef0123456789abcdef01234567 rejected",
    ],
)
def test_redaction(message: str) -> None:
    """API keys and bearer tokens never survive redaction; text is capped."""
    out = redact(message)
    for secret in re.findall(
        r"sk-[\w-]{8,}|AIza[\w-]{20,}|eyJ[\w.-]{20,}|abcd1234efgh5678|s3cr3t-v4lue-123|[0-9a-f]{40}", message
    ):
        assert secret not in out
    assert "[REDACTED]" in out
    assert len(redact("x" * 10_000)) <= 512


async def test_secrets_never_reach_exported_spans(otel: Any) -> None:
    """A provider error quoting the API key: the span's status and attributes are redacted."""
    obs, exporter, _, _ = otel
    err = http_error(401, f"Incorrect API key provided: {KEY}. (Authorization: Bearer {KEY})")
    with pytest.raises(mf.AllCandidatesFailedError):
        await mf.run_with_model_fallback(
            script({m.split("/")[1]: err for m in CHAIN}), CHAIN, observers=[obs]
        )
    for s in exporter.get_finished_spans():
        blob = repr(s.to_json())
        assert KEY not in blob
    (a1,) = spans_by_name(exporter)["chat gpt-4o"]
    assert "[REDACTED]" in (a1.status.description or "")


class Exploding(ev.Observer):
    component = "exploding"

    def __getattribute__(self, name: str) -> Any:
        if name.startswith(("run_", "attempt_", "candidate_", "coordination_")):

            def boom(_e: Any) -> None:
                raise RuntimeError("exporter bug")

            return boom
        return object.__getattribute__(self, name)


async def test_raising_observer_is_counted_in_prometheus() -> None:
    """An observer raising on every hook is disabled in its observer set after the first
    failure, counted in model_fallback_telemetry_errors_total{component}, and the run's
    result is unchanged. A set shared by the runs counts it once; a list per run, once per run."""
    reg = CollectorRegistry()
    prom = PrometheusObserver(reg, candidates=CHAIN)
    bad = Exploding()
    shared = ev.ObserverSet([bad, prom])
    results = []
    for _ in range(3):
        r = await mf.run_with_model_fallback(
            script({"gpt-4o": http_error(429, "x")}), CHAIN, observers=shared
        )
        results.append((r.value, r.candidate))
    assert results == [("ok anthropic/claude-sonnet-4", mf.Candidate.parse(CHAIN[1]))] * 3
    assert reg.get_sample_value("model_fallback_telemetry_errors_total", {"component": "exploding"}) == 1
    assert reg.get_sample_value("model_fallback_runs_total", {"outcome": "success"}) == 3
    for _ in range(2):
        await mf.run_with_model_fallback(script({}), CHAIN, observers=[bad, prom])
    assert reg.get_sample_value("model_fallback_telemetry_errors_total", {"component": "exploding"}) == 3


async def test_api_keys_never_reach_metrics_or_logs(otel: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Keys in provider errors: absent from the exposition (both formats) and from log records,
    even when an observer fails while handling the error."""
    obs, _, _, _ = otel
    reg = CollectorRegistry()
    prom = PrometheusObserver(reg, candidates=CHAIN)

    class LeakyObserver(ev.Observer):
        component = "leaky"

        def attempt_ended(self, event: ev.AttemptEnded) -> None:
            raise RuntimeError("observer bug")

    err = http_error(401, f"Incorrect API key provided: {KEY} (Authorization: Bearer {KEY})")
    with caplog.at_level("DEBUG"):
        await mf.run_with_model_fallback(
            script({"gpt-4o": err}), CHAIN, observers=[obs, prom, LeakyObserver()]
        )
    assert KEY not in generate_latest(reg).decode()
    assert KEY not in generate_openmetrics(reg).decode()
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in (caplog.text or "")
