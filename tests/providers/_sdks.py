"""One call through each real provider SDK, retries off, against a base URL we choose.

``call(sdk, base_url, timeout=...)`` makes the smallest request the SDK offers (a one-message
chat) and lets whatever the SDK raises propagate. The SDKs are imported lazily, through
:func:`require`, so that a missing SDK skips its cases locally and fails them in CI.

Each entry in :data:`CALLERS` knows how to switch that SDK's retries off:

================  =========================================================================
openai, groq,     ``max_retries=0`` on the client (Stainless SDKs)
anthropic
google-genai      ``HttpOptions(retry_options=HttpRetryOptions(attempts=1))``
mistralai         ``retries=None`` on the call (no ``RetryConfig``: one attempt)
cohere            ``max_retries=0`` on the client
bedrock (boto3)   ``Config(retries={"total_max_attempts": 1, "mode": "standard"})``
litellm           ``num_retries=0, max_retries=0`` on ``litellm.completion``
================  =========================================================================
"""

from __future__ import annotations

import importlib
import os
import ssl
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

FAKE_KEY = "sk-test-000"
MESSAGES = [{"role": "user", "content": "hi"}]


def require(module: str) -> ModuleType:
    """Import *module*: skip the test when it is missing, except in CI where that fails."""
    if IN_CI:
        return importlib.import_module(module)
    return pytest.importorskip(module)


def _openai(base_url: str, timeout: float, verify: ssl.SSLContext | None = None) -> Any:
    openai = require("openai")
    kwargs: dict[str, Any] = {}
    if verify is not None:
        import httpx2

        kwargs["http_client"] = httpx2.Client(verify=verify, timeout=timeout)
    client = openai.OpenAI(api_key=FAKE_KEY, base_url=base_url, max_retries=0, timeout=timeout, **kwargs)
    with client:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def _anthropic(base_url: str, timeout: float) -> Any:
    anthropic = require("anthropic")
    with anthropic.Anthropic(api_key=FAKE_KEY, base_url=base_url, max_retries=0, timeout=timeout) as client:
        return client.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MESSAGES)


def _groq(base_url: str, timeout: float) -> Any:
    groq = require("groq")
    with groq.Groq(api_key=FAKE_KEY, base_url=base_url, max_retries=0, timeout=timeout) as client:
        return client.chat.completions.create(model="llama-3.3-70b-versatile", messages=MESSAGES)


def _genai(base_url: str, timeout: float) -> Any:
    require("google.genai")
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=FAKE_KEY,
        http_options=types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )
    with client:
        return client.models.generate_content(model="gemini-2.5-flash", contents="hi")


def _mistral(base_url: str, timeout: float) -> Any:
    mistral_client = require("mistralai.client")
    client = mistral_client.Mistral(api_key=FAKE_KEY, server_url=base_url, timeout_ms=int(timeout * 1000))
    with client:
        return client.chat.complete(model="mistral-small-latest", messages=MESSAGES, retries=None)


def _cohere(base_url: str, timeout: float) -> Any:
    cohere = require("cohere")
    client = cohere.ClientV2(api_key=FAKE_KEY, base_url=base_url, timeout=timeout, max_retries=0)
    return client.chat(model="command-a-03-2025", messages=MESSAGES)


def _bedrock(base_url: str, timeout: float) -> Any:
    boto3 = require("boto3")
    from botocore.config import Config

    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=base_url,
        aws_access_key_id="AKIDTEST000",
        aws_secret_access_key="test-secret-000",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout,
        ),
    )
    return client.converse(
        modelId="anthropic.claude-3-haiku-20240307-v1:0",
        messages=[{"role": "user", "content": [{"text": "hi"}]}],
    )


def _litellm(model: str) -> Callable[[str, float], Any]:
    def call(base_url: str, timeout: float) -> Any:
        with warnings.catch_warnings():
            # litellm's pydantic models warn once, on import, about ReadOnly TypedDict items.
            warnings.filterwarnings(
                "ignore", r"Items? .* (is|are) using the `ReadOnly` qualifier", UserWarning
            )
            litellm = require("litellm")
        litellm.suppress_debug_info = True
        return litellm.completion(
            model=model,
            messages=MESSAGES,
            api_base=base_url,
            api_key=FAKE_KEY,
            timeout=timeout,
            num_retries=0,
            max_retries=0,
        )

    return call


CALLERS: dict[str, Callable[[str, float], Any]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "groq": _groq,
    "google-genai": _genai,
    "mistralai": _mistral,
    "cohere": _cohere,
    "boto3": _bedrock,
    "litellm:openai": _litellm("openai/gpt-4o-mini"),
    "litellm:anthropic": _litellm("anthropic/claude-sonnet-4-5"),
}


def call(sdk: str, base_url: str, *, timeout: float = 5.0) -> Any:
    """Make one request through *sdk* against *base_url*; return what it returns."""
    return CALLERS[sdk](base_url, timeout)


def call_openai_with_ssl_context(base_url: str, context: ssl.SSLContext, *, timeout: float = 5.0) -> Any:
    """An OpenAI call whose HTTP client verifies TLS with *context* (used for the TLS case)."""
    return _openai(base_url, timeout, verify=context)
