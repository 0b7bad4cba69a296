"""A bug in the caller's own code is not a model failure (issue #11 item 5).

Real exceptions raised by real code: a ``NameError`` from an undefined name, a
``TypeError`` from a wrong call, and a ``TypeError`` raised inside the stdlib's ``json``
while it parses a missing response body (what an SDK does with a malformed response).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

import model_fallback as mf
from model_fallback import Candidate, CooldownTracker, FailoverReason, FallbackPolicy, Outcome
from model_fallback.classify import analyze, analyze_uncached
from model_fallback.otel import OTelObserver
from model_fallback.prometheus import PrometheusObserver

pytestmark = pytest.mark.anyio

CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"]


class Calls:
    def __init__(self, fail: Any) -> None:
        self.fail = fail
        self.called: list[str] = []

    async def __call__(self, c: Candidate) -> str:
        self.called.append(str(c))
        self.fail(c)
        return "ok"


def _typo(c: Candidate) -> None:
    return clients[c.provider]  # type: ignore[name-defined]  # noqa: F821 - the user's typo


def _bad_call(c: Candidate) -> None:
    len(c, 3)  # type: ignore[call-arg]


def _parse_missing_body(c: Candidate) -> None:
    json.loads(None)  # type: ignore[arg-type]  # raises TypeError inside json


def _raise(exc: BaseException) -> None:
    raise exc


def test_the_classifier_names_the_programming_error() -> None:
    """A NameError with nothing else said is a caller error; its text is not read as a
    provider signal (a name containing "timeout" is still the caller's bug)."""
    for fn in (_typo, _bad_call):
        try:
            fn(Candidate("p", "m"))
        except Exception as exc:
            info = analyze(exc)
            assert info.reason is None and info.coordination_kind is None
            assert info.caller_error == type(exc).__name__
            assert analyze_uncached(exc) == info

    def _named_like_a_provider_error() -> None:
        return rate_limit_timeout_model_not_found  # type: ignore[name-defined]  # noqa: F821

    try:
        _named_like_a_provider_error()
    except NameError as exc:
        assert analyze(exc).caller_error == "NameError"


def test_a_programming_error_inside_response_parsing_is_format() -> None:
    """json (like pydantic and the SDKs' response modules) on the traceback: the provider
    sent something that does not parse, a ``format`` failure of the model."""
    try:
        _parse_missing_body(Candidate("p", "m"))
    except TypeError as exc:
        assert analyze(exc).reason is FailoverReason.FORMAT
        assert analyze(exc).caller_error is None


def test_a_provider_signal_in_the_chain_wins() -> None:
    """A TypeError raised while handling a 429 keeps the 429's meaning."""
    provider = Exception("Too Many Requests")
    provider.status = 429  # type: ignore[attr-defined]
    try:
        try:
            raise provider
        except Exception:
            _bad_call(Candidate("p", "m"))
    except TypeError as exc:
        assert analyze(exc).reason is FailoverReason.RATE_LIMIT
        assert analyze(exc).caller_error is None


async def test_a_typo_stops_the_run_and_charges_no_model() -> None:
    """The README's mistake: an undefined name in ``run``. One call, the NameError itself,
    outcome caller_error, no cooldown, and the telemetry says so."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    observers = [OTelObserver(tracer_provider=tp), PrometheusObserver(registry=registry)]
    cooldowns = CooldownTracker()
    calls = Calls(_typo)
    with pytest.raises(NameError):
        await mf.run_with_model_fallback(calls, CHAIN, cooldowns=cooldowns, observers=observers)
    assert calls.called == ["openai/gpt-4o"]
    assert not cooldowns.is_cooling(Candidate.parse("openai/gpt-4o"))

    text = generate_latest(registry).decode()
    assert 'model_fallback_runs_total{outcome="caller_error"} 1.0' in text
    assert (
        'model_fallback_attempts_total{model="gpt-4o",outcome="caller_error",provider="openai",reason="none"} 1.0'
        in text
    )
    assert (
        'outcome="provider_failure"'
        not in text.split("model_fallback_attempts_total", 2)[-1].split("\n# ")[0]
    )

    spans = {s.name: s for s in exporter.get_finished_spans()}
    attempt = spans["chat gpt-4o"]
    assert attempt.attributes is not None
    assert attempt.attributes["model_fallback.attempt.outcome"] == "caller_error"
    assert attempt.status.status_code.name == "UNSET"  # not the model's error
    assert attempt.attributes["error.type"] == "NameError"
    run = spans["model_fallback.run"]
    assert run.attributes is not None and run.attributes["model_fallback.outcome"] == "caller_error"
    assert run.attributes["error.type"] == "NameError"
    assert run.status.status_code.name == "ERROR"  # the run failed; no model is blamed


async def test_the_policy_switch_keeps_the_old_behaviour() -> None:
    """stop_on_caller_error=False: charged as unknown provider failures, chain walked."""
    calls = Calls(_typo)
    policy = FallbackPolicy(stop_on_caller_error=False)
    with pytest.raises(mf.AllCandidatesFailedError) as info:
        await mf.run_with_model_fallback(calls, CHAIN, policy=policy)
    assert len(calls.called) == 3
    assert [a.reason for a in info.value.attempts] == [FailoverReason.UNKNOWN] * 3
    assert [a.outcome for a in info.value.attempts] == [Outcome.PROVIDER_FAILURE] * 3
    with pytest.raises(TypeError):
        FallbackPolicy(stop_on_caller_error="no")  # type: ignore[arg-type]


async def test_a_malformed_response_still_falls_back() -> None:
    """A TypeError from parsing a missing body is the provider's format failure: next."""
    calls = Calls(lambda c: _parse_missing_body(c) if c.provider == "openai" else None)
    result = await mf.run_with_model_fallback(calls, CHAIN)
    assert result.candidate == Candidate.parse("anthropic/claude-sonnet-4")
    assert result.attempts[0].reason is FailoverReason.FORMAT


async def test_caller_error_after_a_provider_failure() -> None:
    """The first candidate's 503 is charged to it; the second's typo stops the run there."""
    err = Exception("Service Unavailable")
    err.status = 503  # type: ignore[attr-defined]
    calls = Calls(lambda c: _raise(err) if c.provider == "openai" else _typo(c))
    with pytest.raises(NameError):
        await mf.run_with_model_fallback(calls, CHAIN)
    assert calls.called == ["openai/gpt-4o", "anthropic/claude-sonnet-4"]


def test_no_name_error_escapes_into_anyio() -> None:
    """Sanity: the module's own helpers raise what they say (guards the fixtures above)."""
    with pytest.raises(NameError):
        anyio.run(Calls(_typo), Candidate("p", "m"))
