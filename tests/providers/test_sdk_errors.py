"""The provider error corpus, run through the real provider SDKs.

For every row of :data:`tests.providers.cases.CASES` the loopback server answers as the
provider documents, the real SDK (retries off) raises, and the test checks:

* the SDK made exactly one request (its own retries are off, so the failure is the first);
* ``classify_failure(exc, provider=...)`` gives the documented reason;
* for rows with a retry delay, ``CooldownTracker.record_failure`` starts a cooldown of that
  length (read back through ``remaining``, on a frozen clock).

Then connection-level failures through every SDK (refused, read timeout, TLS rejection),
SDK exceptions raised while parsing a malformed 200 response, and caller bugs (which are
not provider failures: ``None``).
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any

import pytest

from model_fallback import Candidate, CooldownTracker, FailoverReason, classify_failure
from tests.providers import _sdks
from tests.providers._server import Answer, ProviderServer, SilentServer, TLSServer, closed_port
from tests.providers.cases import CALLER_BUGS, CASES, LENIENT, MALFORMED, Case

pytestmark = [
    # litellm's pydantic models warn on import (also suppressed where _sdks imports it).
    pytest.mark.filterwarnings("ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"),
]

_HTTP_DATE = re.compile(r"\{http_date:\+(\d+)\}")


def _expand(value: str) -> str:
    def repl(m: re.Match[str]) -> str:
        return email.utils.formatdate(time.time() + int(m.group(1)), usegmt=True)

    return _HTTP_DATE.sub(repl, value)


def _answer(case: Case) -> Answer:
    headers = tuple((name, _expand(value)) for name, value in case.headers)
    return Answer(case.status, headers, case.body.encode("utf-8"), case.content_type)


def describe(exc: BaseException) -> str:
    """What the classifier had to work with: type, MRO, the usual attributes, the text."""
    parts = [f"{type(exc).__module__}.{type(exc).__qualname__}"]
    parts.append("MRO: " + " > ".join(c.__name__ for c in type(exc).__mro__))
    for attr in ("status_code", "status", "code", "type", "message", "body", "response", "error_code"):
        try:
            value = getattr(exc, attr, None)
        except Exception as err:  # a hostile attribute is information too
            value = f"<raises {err!r}>"
        if value is not None:
            parts.append(f"{attr}={value!r:.300}")
    parts.append(f"str={str(exc)!r:.400}")
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        parts.append(f"cause={type(cause).__name__}: {str(cause)!r:.200}")
    return "\n  ".join(parts)


def _raise_through_sdk(case: Case, server: ProviderServer) -> BaseException:
    url = server.register(_answer(case), case.id)
    try:
        result = _sdks.call(case.sdk, url)
    except Exception as exc:
        requests = server.requests_for(url)
        assert len(requests) == 1, f"{case.sdk} made {len(requests)} requests: retries are not off"
        return exc
    pytest.fail(f"{case.sdk} returned {result!r:.200} instead of raising for HTTP {case.status}")


def _expected(value: str | None) -> FailoverReason | None:
    return None if value is None else FailoverReason(value)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_provider_error_is_classified(case: Case, provider_server: ProviderServer) -> None:
    exc = _raise_through_sdk(case, provider_server)
    reason = classify_failure(exc, provider=case.provider)
    assert reason == _expected(case.expected), (
        f"{case.id}: got {reason!r}, expected {case.expected!r} ({case.doc})\n  {describe(exc)}"
    )


COOLDOWN_CASES = [c for c in CASES if c.cooldown_s is not None]


@pytest.mark.parametrize("case", COOLDOWN_CASES, ids=[c.id for c in COOLDOWN_CASES])
def test_retry_delay_sets_the_cooldown(case: Case, provider_server: ProviderServer) -> None:
    assert case.expected is not None and case.cooldown_s is not None
    exc = _raise_through_sdk(case, provider_server)
    tracker = CooldownTracker(clock=lambda: 1000.0)
    candidate = Candidate(case.provider, "corpus-model")
    tracker.record_failure(candidate, FailoverReason(case.expected), exc)
    tolerance = 2.0 if any("{http_date" in v for _, v in case.headers) else 1e-6
    assert tracker.remaining(candidate) == pytest.approx(case.cooldown_s, abs=tolerance), (
        f"{case.id}: headers {dict(case.headers)} ({case.doc})\n  {describe(exc)}"
    )


# --- connection-level failures ------------------------------------------------------------

SDK_PROVIDER = {
    "openai": "openai",
    "anthropic": "anthropic",
    "groq": "groq",
    "google-genai": "google",
    "mistralai": "mistral",
    "cohere": "cohere",
    "boto3": "bedrock",
    "litellm:openai": "openai",
    "litellm:anthropic": "anthropic",
}


@pytest.mark.parametrize("sdk", list(SDK_PROVIDER))
def test_connection_refused_is_timeout(sdk: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}/c/refused"
    with pytest.raises(Exception) as info:
        _sdks.call(sdk, url, timeout=2.0)
    assert classify_failure(info.value, provider=SDK_PROVIDER[sdk]) is FailoverReason.TIMEOUT, describe(
        info.value
    )


@pytest.mark.parametrize("sdk", list(SDK_PROVIDER))
def test_read_timeout_is_timeout(sdk: str, silent_server: SilentServer) -> None:
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        _sdks.call(sdk, f"{silent_server.origin}/c/silent", timeout=0.5)
    assert time.monotonic() - started < 10, "the SDK did not honour its 0.5 s timeout"
    assert classify_failure(info.value, provider=SDK_PROVIDER[sdk]) is FailoverReason.TIMEOUT, describe(
        info.value
    )


@pytest.mark.parametrize("sdk", list(SDK_PROVIDER))
def test_self_signed_tls_is_rejected_as_timeout(sdk: str, tls_server: TLSServer) -> None:
    url = tls_server.register(Answer(200, body=b"{}"), f"tls-{sdk}")
    with pytest.raises(Exception) as info:
        _sdks.call(sdk, url, timeout=2.0)
    assert tls_server.requests_for(url) == [], "the SDK accepted a self-signed certificate"
    assert classify_failure(info.value, provider=SDK_PROVIDER[sdk]) is FailoverReason.TIMEOUT, describe(
        info.value
    )


# --- malformed responses, lenient SDKs, caller bugs ---------------------------------------


@pytest.mark.parametrize("case", MALFORMED, ids=[c.id for c in MALFORMED])
def test_malformed_response_is_format(case: Case, provider_server: ProviderServer) -> None:
    exc = _raise_through_sdk(case, provider_server)
    reason = classify_failure(exc, provider=case.provider)
    assert reason == _expected(case.expected), f"{case.id}: got {reason!r}\n  {describe(exc)}"


@pytest.mark.parametrize("case", LENIENT, ids=[c.id for c in LENIENT])
def test_lenient_sdk_returns_an_empty_object(case: Case, provider_server: ProviderServer) -> None:
    """Some SDKs build a response object from a 200 body missing every required field and
    raise nothing: the failure only shows later, in the caller's code. Recorded so that a
    change in an SDK is noticed."""
    url = provider_server.register(_answer(case), case.id)
    result = _sdks.call(case.sdk, url)
    assert result is not None


def _bug_name_error() -> Any:
    return undefined_in_caller  # type: ignore[name-defined]  # noqa: F821


def _bug_openai_unexpected_kwarg(server: ProviderServer) -> Any:
    openai = _sdks.require("openai")
    url = server.register(Answer(200, body=b"{}"), "bug-openai-kwarg")
    with openai.OpenAI(api_key=_sdks.FAKE_KEY, base_url=url, max_retries=0) as client:
        return client.chat.completions.create(model="gpt-4o-mini", messages=_sdks.MESSAGES, temprature=0.2)  # type: ignore[call-overload]


def _bug_anthropic_missing_argument(server: ProviderServer) -> Any:
    anthropic = _sdks.require("anthropic")
    url = server.register(Answer(200, body=b"{}"), "bug-anthropic-missing")
    with anthropic.Anthropic(api_key=_sdks.FAKE_KEY, base_url=url, max_retries=0) as client:
        return client.messages.create(model="claude-sonnet-4-5", messages=_sdks.MESSAGES)  # type: ignore[call-overload]


def _bug_attribute_typo(server: ProviderServer) -> Any:
    openai = _sdks.require("openai")
    body = (
        b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}'
    )
    url = server.register(Answer(200, body=body), "bug-attribute")
    with openai.OpenAI(api_key=_sdks.FAKE_KEY, base_url=url, max_retries=0) as client:
        response = client.chat.completions.create(model="gpt-4o-mini", messages=_sdks.MESSAGES)
    return response.choices[0].mesage.content  # type: ignore[attr-defined]


_BUG_RUNNERS = {
    "caller-name-error": lambda server: _bug_name_error(),
    "caller-openai-unexpected-kwarg": _bug_openai_unexpected_kwarg,
    "caller-anthropic-missing-argument": _bug_anthropic_missing_argument,
    "caller-attribute-typo-on-response": _bug_attribute_typo,
}


@pytest.mark.parametrize("case", CALLER_BUGS, ids=[c.id for c in CALLER_BUGS])
def test_caller_bug_is_not_a_provider_failure(case: Case, provider_server: ProviderServer) -> None:
    with pytest.raises((NameError, TypeError, AttributeError)) as info:
        _BUG_RUNNERS[case.id](provider_server)
    reason = classify_failure(info.value, provider=case.provider)
    assert reason == _expected(case.expected), f"{case.id}: got {reason!r}\n  {describe(info.value)}"
