"""The provider error corpus: one row per documented error answer.

Each :class:`Case` is what a provider's API sends back (status, headers, exact body text),
which real SDK is pointed at it (``sdk``, a key of ``_sdks.CALLERS``), the provider hint
given to ``classify_failure(exc, provider=...)``, the documentation page the answer follows,
and the reason the exception must classify to. Rate-limit and overload rows that carry a
retry delay also give the cooldown, in seconds, that ``CooldownTracker`` must start.

Header values may contain ``{http_date:+N}``: the test replaces it with the HTTP-date
(RFC 9110 IMF-fixdate) N seconds from now, so that a ``Retry-After`` date is always in
the future.

Cooldown semantics asserted (the documented meaning of each header):

* ``Retry-After``: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
* ``retry-after-ms``: milliseconds (Azure OpenAI; the OpenAI SDKs prefer it to
  ``Retry-After`` when both are sent). Rows that send both keep them consistent except
  where the precedence itself is the point.
* ``x-ratelimit-reset-requests`` / ``x-ratelimit-reset-tokens`` (OpenAI, Groq): a Go-style
  duration ("6m0s", "1s", "20ms", "2m59.56s") until that limit resets; used when no
  ``Retry-After`` is sent. The rows are built so that "the limit that is exhausted" and
  "the longest reset" give the same answer.
* ``google.rpc.RetryInfo.retryDelay`` in a Gemini error body ("34s").
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

__all__ = ["CALLER_BUGS", "CASES", "LENIENT", "MALFORMED", "Case"]


class Case(NamedTuple):
    id: str
    provider: str
    sdk: str
    description: str
    doc: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str
    expected: str | None
    cooldown_s: float | None = None
    content_type: str = "application/json"


def j(obj: Any) -> str:
    """The exact JSON text of a body (non-ASCII kept as is, as Chinese providers send it)."""
    return json.dumps(obj, ensure_ascii=False)


def oai_err(message: str, type_: str | None, code: str | int | None = None, param: str | None = None) -> str:
    return j({"error": {"message": message, "type": type_, "param": param, "code": code}})


# --- documentation pages -----------------------------------------------------------------

OPENAI_ERRORS = "https://platform.openai.com/docs/guides/error-codes (Error codes: API errors)"
OPENAI_RATE = "https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers"
ANTHROPIC_ERRORS = "https://docs.anthropic.com/en/api/errors (Claude API errors: HTTP errors, error shapes)"
ANTHROPIC_RATE = "https://docs.anthropic.com/en/api/rate-limits (Response headers: retry-after)"
GEMINI_ERRORS = (
    "https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes (Gemini API backend error codes)"
)
GEMINI_RATE = (
    "https://ai.google.dev/gemini-api/docs/rate-limits; google.rpc.RetryInfo (googleapis error_details.proto)"
)
MISTRAL_ERRORS = "https://docs.mistral.ai/resources/error-glossary (Error glossary: error response format)"
COHERE_ERRORS = "https://docs.cohere.com/reference/errors (Errors: HTTP status codes and example messages)"
GROQ_ERRORS = "https://console.groq.com/docs/errors (API Error Codes and Responses)"
GROQ_RATE = "https://console.groq.com/docs/rate-limits (Rate limit headers: retry-after, x-ratelimit-reset-*)"
GROQ_FLEX = "https://console.groq.com/docs/flex-processing (498 capacity_exceeded)"
BEDROCK_ERRORS = (
    "https://docs.aws.amazon.com/bedrock/latest/userguide/troubleshooting-api-error-codes.html; "
    "https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_Errors"
)
AZURE_QUOTA = (
    "https://learn.microsoft.com/en-us/azure/ai-foundry/openai/how-to/quota (429 responses, retry-after)"
)
AZURE_FILTER = (
    "https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-filter (error response)"
)
AZURE_REST = "https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference (Error response)"
OPENROUTER_ERRORS = (
    "https://openrouter.ai/docs/api/reference/errors-and-debugging (Error codes, Retry-After header)"
)
RFC9110_RETRY_AFTER = "RFC 9110 §10.2.3 Retry-After (HTTP-date form)"
VLLM_DOC = "vLLM OpenAI-compatible server: vllm/entrypoints/openai/protocol.py ErrorResponse"
LLAMACPP_DOC = "llama.cpp tools/server (server.cpp format_error_response: error.code/message/type)"
TGI_DOC = "text-generation-inference router: ErrorResponse {error, error_type}; InferError status mapping"
OLLAMA_DOC = "https://github.com/ollama/ollama/blob/main/openai/openai.go (NewError; docs/openai.md)"
LITELLM_PROXY_DOC = "LiteLLM proxy: litellm/proxy/_types.py ProxyException.to_dict; docs/exception_mapping.md"
ZHIPU_CODES = "https://docs.bigmodel.cn/cn/faq/api-code (错误码)"
ZHIPU_RATE = "https://docs.bigmodel.cn/cn/api/rate-limit (速率限制: 错误码 1302 / 1305)"
DASHSCOPE_CODES = "https://help.aliyun.com/zh/model-studio/error-code (阿里云百炼 错误码)"
DASHSCOPE_RATE = "https://help.aliyun.com/zh/model-studio/rate-limit (限流: Throttling.RateQuota)"
MOONSHOT_ERRORS = "https://platform.moonshot.cn/docs/api/errors (错误说明)"
MINIMAX_CODES = "https://platform.minimax.io/docs/api-reference/errorcode (Error Codes: 1002, 1008, 2013)"
DEEPSEEK_ERRORS = "https://api-docs.deepseek.com/quick_start/error_codes (Error Codes)"
QIANFAN_CODES = "https://cloud.baidu.com/doc/qianfan-api/s/Om9b4yj3w (千帆 ModelBuilder v2 错误码)"
QIANFAN_RATE = (
    "https://cloud.baidu.com/doc/WENXINWORKSHOP/s/hlzic283e (错误缓解方案: rpm/tpm_rate_limit_exceeded)"
)
APPBUILDER_CODES = "https://ai.baidu.com/ai-doc/AppBuilder/4m8sgh88y (错误码: BILLING_INSUFFICIENT_BALANCE)"

OAI_REQ = (("x-request-id", "req_test000"),)

# --- the corpus ---------------------------------------------------------------------------

CASES: list[Case] = [
    # ===================================================================== OpenAI (openai SDK)
    Case(
        "openai-401-invalid-api-key",
        "openai",
        "openai",
        "401 Incorrect API key provided",
        OPENAI_ERRORS,
        401,
        OAI_REQ,
        oai_err(
            "Incorrect API key provided: sk-test-***000. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        "auth",
    ),
    Case(
        "openai-401-no-organization",
        "openai",
        "openai",
        "401 You must be a member of an organization to use the API",
        OPENAI_ERRORS,
        401,
        OAI_REQ,
        oai_err(
            "You must be a member of an organization to use the API.",
            "invalid_request_error",
            "no_organization",
        ),
        "auth",
    ),
    Case(
        "openai-403-unsupported-country",
        "openai",
        "openai",
        "403 Country, region, or territory not supported",
        OPENAI_ERRORS,
        403,
        OAI_REQ,
        oai_err(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        ),
        "auth",
    ),
    Case(
        "openai-404-model-not-found",
        "openai",
        "openai",
        "404 model does not exist",
        OPENAI_ERRORS,
        404,
        OAI_REQ,
        oai_err(
            "The model `gpt-9-ultra` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        "model_not_found",
    ),
    Case(
        "openai-400-context-length",
        "openai",
        "openai",
        "400 context_length_exceeded",
        OPENAI_ERRORS,
        400,
        OAI_REQ,
        oai_err(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            "130532 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
        "context_overflow",
    ),
    Case(
        "openai-400-invalid-service-tier",
        "openai",
        "openai",
        "400 invalid_request_error: Invalid service_tier argument",
        OPENAI_ERRORS,
        400,
        OAI_REQ,
        oai_err(
            "Invalid service_tier argument: The requested service tier is not allowed for this project.",
            "invalid_request_error",
            None,
            "service_tier",
        ),
        "format",
    ),
    Case(
        "openai-429-tpm-reset-tokens",
        "openai",
        "openai",
        "429 rate_limit_exceeded on TPM; no Retry-After, x-ratelimit-reset-tokens 1.5s (tokens exhausted)",
        f"{OPENAI_ERRORS}; {OPENAI_RATE}",
        429,
        (
            *OAI_REQ,
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", "499"),
            ("x-ratelimit-reset-requests", "120ms"),
            ("x-ratelimit-limit-tokens", "30000"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "1.5s"),
        ),
        oai_err(
            "Rate limit reached for gpt-4o-mini in organization org-test000 on tokens per min (TPM): "
            "Limit 30000, Used 29800, Requested 500. Please try again in 1.5s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "tokens",
            "rate_limit_exceeded",
        ),
        "rate_limit",
        1.5,
    ),
    Case(
        "openai-429-rpd-reset-requests",
        "openai",
        "openai",
        "429 rate_limit_exceeded on requests per day; x-ratelimit-reset-requests 6m0s (requests exhausted)",
        f"{OPENAI_ERRORS}; {OPENAI_RATE}",
        429,
        (
            *OAI_REQ,
            ("x-ratelimit-limit-requests", "10000"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-limit-tokens", "150000"),
            ("x-ratelimit-remaining-tokens", "150000"),
            ("x-ratelimit-reset-tokens", "0s"),
        ),
        oai_err(
            "Rate limit reached for gpt-4o-mini in organization org-test000 on requests per day (RPD): "
            "Limit 10000, Used 10000, Requested 1. Please try again in 6m0s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "requests",
            "rate_limit_exceeded",
        ),
        "rate_limit",
        360.0,
    ),
    Case(
        "openai-429-rpm-reset-20ms",
        "openai",
        "openai",
        "429 rate_limit_exceeded on RPM; x-ratelimit-reset-requests 20ms",
        f"{OPENAI_ERRORS}; {OPENAI_RATE}",
        429,
        (*OAI_REQ, ("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "20ms")),
        oai_err(
            "Rate limit reached for gpt-4o-mini in organization org-test000 on requests per min (RPM): "
            "Limit 3, Used 3, Requested 1. Please try again in 20ms. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "requests",
            "rate_limit_exceeded",
        ),
        "rate_limit",
        0.02,
    ),
    Case(
        "openai-429-retry-after-seconds",
        "openai",
        "openai",
        "429 rate_limit_exceeded with Retry-After: 7 (wins over x-ratelimit-reset-requests 1s)",
        f"{OPENAI_ERRORS}; {OPENAI_RATE}",
        429,
        (
            *OAI_REQ,
            ("retry-after", "7"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
        ),
        oai_err(
            "Rate limit reached for gpt-4o-mini in organization org-test000 on requests per min (RPM): "
            "Limit 500, Used 500, Requested 1. Please try again in 7s.",
            "requests",
            "rate_limit_exceeded",
        ),
        "rate_limit",
        7.0,
    ),
    Case(
        "openai-429-slow-down",
        "openai",
        "openai",
        "429 slow_down (traffic ramped too quickly), Retry-After: 10",
        OPENAI_ERRORS,
        429,
        (*OAI_REQ, ("retry-after", "10"), ("x-should-retry", "true")),
        oai_err(
            "Please reduce your request rate: your traffic increased too quickly. Slow down and ramp up gradually.",
            "rate_limit_error",
            "slow_down",
        ),
        "rate_limit",
        10.0,
    ),
    Case(
        "openai-429-insufficient-quota",
        "openai",
        "openai",
        "429 insufficient_quota (out of credits / monthly spend)",
        OPENAI_ERRORS,
        429,
        (*OAI_REQ, ("x-should-retry", "false")),
        oai_err(
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        "billing",
    ),
    Case(
        "openai-429-credit-balance-exhausted",
        "openai",
        "openai",
        "429 insufficient_quota with error.code credit_balance_exhausted",
        OPENAI_ERRORS,
        429,
        (*OAI_REQ, ("x-should-retry", "false")),
        oai_err(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "credit_balance_exhausted",
        ),
        "billing",
    ),
    Case(
        "openai-500-server-error",
        "openai",
        "openai",
        "500 The server had an error while processing your request",
        OPENAI_ERRORS,
        500,
        OAI_REQ,
        oai_err(
            "The server had an error while processing your request. Sorry about that!", "server_error", None
        ),
        "server_error",
    ),
    Case(
        "openai-503-overloaded-retry-after",
        "openai",
        "openai",
        "503 server_is_overloaded with Retry-After: 5",
        OPENAI_ERRORS,
        503,
        (*OAI_REQ, ("retry-after", "5"), ("x-should-retry", "true")),
        oai_err(
            "The engine is currently overloaded, please try again later",
            "service_unavailable_error",
            "server_is_overloaded",
        ),
        "overloaded",
        5.0,
    ),
    # ================================================================ Anthropic (anthropic SDK)
    Case(
        "anthropic-400-invalid-request",
        "anthropic",
        "anthropic",
        "400 invalid_request_error (roles must alternate)",
        ANTHROPIC_ERRORS,
        400,
        (("request-id", "req_test000"),),
        j(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": 'messages: roles must alternate between "user" and "assistant", '
                    'but found multiple "user" roles in a row',
                },
                "request_id": "req_test000",
            }
        ),
        "format",
    ),
    Case(
        "anthropic-400-prompt-too-long",
        "anthropic",
        "anthropic",
        "400 invalid_request_error: prompt is too long",
        ANTHROPIC_ERRORS,
        400,
        (),
        j(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 215000 tokens > 200000 maximum",
                },
                "request_id": "req_test000",
            }
        ),
        "context_overflow",
    ),
    Case(
        "anthropic-400-credit-balance",
        "anthropic",
        "anthropic",
        "400 invalid_request_error: credit balance too low",
        ANTHROPIC_ERRORS,
        400,
        (),
        j(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "Your credit balance is too low to access the Anthropic API. "
                    "Please go to Plans & Billing to upgrade or purchase credits.",
                },
                "request_id": "req_test000",
            }
        ),
        "billing",
    ),
    Case(
        "anthropic-401-authentication",
        "anthropic",
        "anthropic",
        "401 authentication_error",
        ANTHROPIC_ERRORS,
        401,
        (),
        j(
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                "request_id": "req_test000",
            }
        ),
        "auth",
    ),
    Case(
        "anthropic-402-billing",
        "anthropic",
        "anthropic",
        "402 billing_error",
        ANTHROPIC_ERRORS,
        402,
        (),
        j(
            {
                "type": "error",
                "error": {
                    "type": "billing_error",
                    "message": "There is an issue with your billing or payment information. "
                    "Check your payment details in the Claude Console.",
                },
                "request_id": "req_test000",
            }
        ),
        "billing",
    ),
    Case(
        "anthropic-403-permission",
        "anthropic",
        "anthropic",
        "403 permission_error",
        ANTHROPIC_ERRORS,
        403,
        (),
        j(
            {
                "type": "error",
                "error": {
                    "type": "permission_error",
                    "message": "Your API key does not have permission to use the specified resource.",
                },
                "request_id": "req_test000",
            }
        ),
        "auth",
    ),
    Case(
        "anthropic-404-not-found",
        "anthropic",
        "anthropic",
        "404 not_found_error for a model",
        ANTHROPIC_ERRORS,
        404,
        (),
        j(
            {
                "type": "error",
                "error": {"type": "not_found_error", "message": "model: claude-9-opus"},
                "request_id": "req_test000",
            }
        ),
        "model_not_found",
    ),
    Case(
        "anthropic-413-request-too-large",
        "anthropic",
        "anthropic",
        "413 request_too_large",
        ANTHROPIC_ERRORS,
        413,
        (),
        j(
            {
                "type": "error",
                "error": {
                    "type": "request_too_large",
                    "message": "Request exceeds the maximum allowed number of bytes.",
                },
                "request_id": "req_test000",
            }
        ),
        "context_overflow",
    ),
    Case(
        "anthropic-429-rate-limit-retry-after",
        "anthropic",
        "anthropic",
        "429 rate_limit_error with retry-after: 30 and anthropic-ratelimit-* headers",
        f"{ANTHROPIC_ERRORS}; {ANTHROPIC_RATE}",
        429,
        (
            ("retry-after", "30"),
            ("x-should-retry", "true"),
            ("anthropic-ratelimit-input-tokens-limit", "50000"),
            ("anthropic-ratelimit-input-tokens-remaining", "0"),
            ("anthropic-ratelimit-input-tokens-reset", "2030-01-01T00:00:30Z"),
        ),
        j(
            {
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "message": "This request would exceed the rate limit for your organization "
                    "(org-test000) of 50,000 input tokens per minute. For details, refer "
                    "to: https://docs.claude.com/en/api/rate-limits.",
                },
                "request_id": "req_test000",
            }
        ),
        "rate_limit",
        30.0,
    ),
    Case(
        "anthropic-429-enforced-spend-limit",
        "anthropic",
        "anthropic",
        "429 rate_limit_error with error.details.error_code enforced_spend_limit_reached, no retry-after "
        "(monthly spend cap of the usage tier: do not retry)",
        f"{ANTHROPIC_ERRORS}; {ANTHROPIC_RATE} (Spend limits)",
        429,
        (("x-should-retry", "false"),),
        j(
            {
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "message": "Your organization has reached the monthly spend limit for its "
                    "usage tier. Usage resumes on the first day of next month.",
                    "details": {"error_code": "enforced_spend_limit_reached"},
                },
                "request_id": "req_test000",
            }
        ),
        "billing",
    ),
    Case(
        "anthropic-500-api-error",
        "anthropic",
        "anthropic",
        "500 api_error",
        ANTHROPIC_ERRORS,
        500,
        (),
        j(
            {
                "type": "error",
                "error": {"type": "api_error", "message": "Internal server error"},
                "request_id": "req_test000",
            }
        ),
        "server_error",
    ),
    Case(
        "anthropic-529-overloaded",
        "anthropic",
        "anthropic",
        "529 overloaded_error",
        ANTHROPIC_ERRORS,
        529,
        (("x-should-retry", "true"),),
        j(
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
                "request_id": "req_test000",
            }
        ),
        "overloaded",
    ),
    # ============================================================ Google Gemini (google-genai)
    Case(
        "gemini-429-resource-exhausted-retryinfo",
        "google",
        "google-genai",
        "429 RESOURCE_EXHAUSTED (free-tier per-minute quota) with google.rpc.RetryInfo retryDelay 34s",
        f"{GEMINI_ERRORS}; {GEMINI_RATE}",
        429,
        (),
        j(
            {
                "error": {
                    "code": 429,
                    "message": "You exceeded your current quota, please check your plan and billing details. For "
                    "more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
                    "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n* Quota "
                    "exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, "
                    "limit: 10, model: gemini-2.5-flash\nPlease retry in 34.2s.",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [
                                {
                                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                                }
                            ],
                        },
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34s"},
                    ],
                }
            }
        ),
        "rate_limit",
        34.0,
    ),
    Case(
        "gemini-429-resource-exhausted-plain",
        "google",
        "google-genai",
        "429 RESOURCE_EXHAUSTED: Resource has been exhausted (e.g. check quota).",
        GEMINI_ERRORS,
        429,
        (),
        j(
            {
                "error": {
                    "code": 429,
                    "message": "Resource has been exhausted (e.g. check quota).",
                    "status": "RESOURCE_EXHAUSTED",
                }
            }
        ),
        "rate_limit",
    ),
    Case(
        "gemini-503-unavailable-overloaded",
        "google",
        "google-genai",
        "503 UNAVAILABLE: The model is overloaded",
        GEMINI_ERRORS,
        503,
        (),
        j(
            {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded. Please try again later.",
                    "status": "UNAVAILABLE",
                }
            }
        ),
        "overloaded",
    ),
    Case(
        "gemini-500-internal",
        "google",
        "google-genai",
        "500 INTERNAL",
        GEMINI_ERRORS,
        500,
        (),
        j(
            {
                "error": {
                    "code": 500,
                    "message": "An internal error has occurred. Please retry or report in "
                    "https://developers.generativeai.google/guide/troubleshooting",
                    "status": "INTERNAL",
                }
            }
        ),
        "server_error",
    ),
    Case(
        "gemini-504-deadline-exceeded",
        "google",
        "google-genai",
        "504 DEADLINE_EXCEEDED",
        GEMINI_ERRORS,
        504,
        (),
        j(
            {
                "error": {
                    "code": 504,
                    "message": "Deadline expired before operation could complete.",
                    "status": "DEADLINE_EXCEEDED",
                }
            }
        ),
        "timeout",
    ),
    Case(
        "gemini-400-api-key-invalid",
        "google",
        "google-genai",
        "400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID",
        GEMINI_ERRORS,
        400,
        (),
        j(
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        }
                    ],
                }
            }
        ),
        "auth",
    ),
    Case(
        "gemini-403-permission-denied",
        "google",
        "google-genai",
        "403 PERMISSION_DENIED",
        GEMINI_ERRORS,
        403,
        (),
        j(
            {
                "error": {
                    "code": 403,
                    "message": "The caller does not have permission",
                    "status": "PERMISSION_DENIED",
                }
            }
        ),
        "auth",
    ),
    Case(
        "gemini-404-model-not-found",
        "google",
        "google-genai",
        "404 NOT_FOUND for a model",
        GEMINI_ERRORS,
        404,
        (),
        j(
            {
                "error": {
                    "code": 404,
                    "message": "models/gemini-9.9-pro is not found for API version v1beta, or is not supported for "
                    "generateContent. Call ListModels to see the list of available models and their "
                    "supported methods.",
                    "status": "NOT_FOUND",
                }
            }
        ),
        "model_not_found",
    ),
    Case(
        "gemini-400-input-token-count",
        "google",
        "google-genai",
        "400 INVALID_ARGUMENT: input token count exceeds the maximum",
        GEMINI_ERRORS,
        400,
        (),
        j(
            {
                "error": {
                    "code": 400,
                    "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                    "status": "INVALID_ARGUMENT",
                }
            }
        ),
        "context_overflow",
    ),
    Case(
        "gemini-400-failed-precondition-billing",
        "google",
        "google-genai",
        "400 FAILED_PRECONDITION: free tier not available in your country, enable billing",
        GEMINI_ERRORS,
        400,
        (),
        j(
            {
                "error": {
                    "code": 400,
                    "message": "Gemini API free tier is not available in your country. Please enable billing on "
                    "your project in Google AI Studio.",
                    "status": "FAILED_PRECONDITION",
                }
            }
        ),
        "billing",
    ),
    # ==================================================================== Mistral (mistralai)
    Case(
        "mistral-401-unauthorized",
        "mistral",
        "mistralai",
        "401 authentication_error",
        MISTRAL_ERRORS,
        401,
        (),
        j(
            {
                "object": "error",
                "message": "Unauthorized",
                "type": "authentication_error",
                "param": None,
                "code": None,
            }
        ),
        "auth",
    ),
    Case(
        "mistral-402-payment-required",
        "mistral",
        "mistralai",
        "402 Payment required",
        MISTRAL_ERRORS,
        402,
        (),
        j(
            {
                "object": "error",
                "message": "Payment required: your workspace has no active billing plan.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        ),
        "billing",
    ),
    Case(
        "mistral-429-rate-limit",
        "mistral",
        "mistralai",
        "429 rate_limit_error: Requests rate limit exceeded",
        MISTRAL_ERRORS,
        429,
        (),
        j(
            {
                "object": "error",
                "message": "Requests rate limit exceeded",
                "type": "rate_limit_error",
                "param": None,
                "code": None,
            }
        ),
        "rate_limit",
    ),
    Case(
        "mistral-400-unknown-model",
        "mistral",
        "mistralai",
        "400 invalid_request_error param model, code unknown_model (the glossary's own example)",
        MISTRAL_ERRORS,
        400,
        (),
        j(
            {
                "object": "error",
                "message": "Invalid model: mistral-huge-9",
                "type": "invalid_request_error",
                "param": "model",
                "code": "unknown_model",
            }
        ),
        "model_not_found",
    ),
    Case(
        "mistral-400-context-length",
        "mistral",
        "mistralai",
        "400 prompt too large for the model's maximum context length",
        MISTRAL_ERRORS,
        400,
        (),
        j(
            {
                "object": "error",
                "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        ),
        "context_overflow",
    ),
    Case(
        "mistral-422-validation",
        "mistral",
        "mistralai",
        "422 HTTPValidationError (request body validation)",
        MISTRAL_ERRORS,
        422,
        (),
        j(
            {
                "detail": [
                    {"type": "missing", "loc": ["body", "messages"], "msg": "Field required", "input": None}
                ]
            }
        ),
        "format",
    ),
    Case(
        "mistral-500-server-error",
        "mistral",
        "mistralai",
        "500 server_error",
        MISTRAL_ERRORS,
        500,
        (),
        j(
            {
                "object": "error",
                "message": "Internal server error",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        ),
        "server_error",
    ),
    # ========================================================================= Cohere (cohere)
    Case(
        "cohere-400-too-many-tokens",
        "cohere",
        "cohere",
        "400 too many tokens",
        COHERE_ERRORS,
        400,
        (),
        j(
            {
                "id": "test-000",
                "message": "too many tokens: total number of tokens in the prompt cannot exceed 4081 - "
                "received 4292. Try using a shorter prompt, or enabling prompt truncating. See "
                "https://docs.cohere.com/reference/generate for more details.",
            }
        ),
        "context_overflow",
    ),
    Case(
        "cohere-400-invalid-request",
        "cohere",
        "cohere",
        "400 invalid request",
        COHERE_ERRORS,
        400,
        (),
        j({"id": "test-000", "message": "invalid request: list of documents must not be empty"}),
        "format",
    ),
    Case(
        "cohere-401-invalid-api-token",
        "cohere",
        "cohere",
        "401 invalid api token",
        COHERE_ERRORS,
        401,
        (),
        j({"id": "test-000", "message": "invalid api token"}),
        "auth",
    ),
    Case(
        "cohere-402-payment",
        "cohere",
        "cohere",
        "402 Payment Required",
        COHERE_ERRORS,
        402,
        (),
        j(
            {
                "id": "test-000",
                "message": "Please add or update your payment method at "
                "https://dashboard.cohere.com/billing?tab=payment to continue",
            }
        ),
        "billing",
    ),
    Case(
        "cohere-404-model",
        "cohere",
        "cohere",
        "404 model not found",
        COHERE_ERRORS,
        404,
        (),
        j(
            {
                "id": "test-000",
                "message": "model 'command-zz' not found, make sure the correct model ID was used and "
                "that you have access to the model.",
            }
        ),
        "model_not_found",
    ),
    Case(
        "cohere-429-per-minute",
        "cohere",
        "cohere",
        "429 past the per minute request limit",
        COHERE_ERRORS,
        429,
        (),
        j(
            {
                "id": "test-000",
                "message": "You are past the per minute request limit, please wait and try again later.",
            }
        ),
        "rate_limit",
    ),
    Case(
        "cohere-498-invalid-token",
        "cohere",
        "cohere",
        "498 Invalid Token (the SDK raises InvalidTokenError; API spec status 498)",
        f"{COHERE_ERRORS}; Cohere API spec (cohere.errors.InvalidTokenError)",
        498,
        (),
        j({"id": "test-000", "message": "invalid api token"}),
        "auth",
    ),
    Case(
        "cohere-499-request-cancelled",
        "cohere",
        "cohere",
        "499 request cancelled",
        COHERE_ERRORS,
        499,
        (),
        j({"id": "test-000", "message": "request cancelled"}),
        "timeout",
    ),
    Case(
        "cohere-500-internal",
        "cohere",
        "cohere",
        "500 internal server error",
        COHERE_ERRORS,
        500,
        (),
        j({"id": "test-000", "message": "internal server error, this has been reported to our developers"}),
        "server_error",
    ),
    # ============================================================================ Groq (groq)
    Case(
        "groq-429-tpm-retry-after",
        "groq",
        "groq",
        "429 rate_limit_exceeded (TPM) with retry-after: 2 and x-ratelimit-reset-*",
        f"{GROQ_ERRORS}; {GROQ_RATE}",
        429,
        (
            ("retry-after", "2"),
            ("x-ratelimit-limit-requests", "14400"),
            ("x-ratelimit-remaining-requests", "14370"),
            ("x-ratelimit-reset-requests", "2m59.56s"),
            ("x-ratelimit-limit-tokens", "6000"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "7.66s"),
        ),
        oai_err(
            "Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_test000` service tier "
            "`on_demand` on tokens per minute (TPM): Limit 6000, Used 5800, Requested 400. Please try again in 2s. "
            "Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
            "tokens",
            "rate_limit_exceeded",
        ),
        "rate_limit",
        2.0,
    ),
    Case(
        "groq-498-flex-capacity",
        "groq",
        "groq",
        "498 capacity_exceeded (flex tier at capacity)",
        GROQ_FLEX,
        498,
        (),
        oai_err(
            "Flex tier capacity exceeded. This model is currently at capacity for flex processing; try again later.",
            "capacity_exceeded",
            "capacity_exceeded",
        ),
        "overloaded",
    ),
    Case(
        "groq-401-invalid-api-key",
        "groq",
        "groq",
        "401 Invalid API Key",
        GROQ_ERRORS,
        401,
        (),
        oai_err("Invalid API Key", "invalid_request_error", "invalid_api_key"),
        "auth",
    ),
    Case(
        "groq-404-model",
        "groq",
        "groq",
        "404 model does not exist",
        GROQ_ERRORS,
        404,
        (),
        oai_err(
            "The model `llama-9-900b` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        "model_not_found",
    ),
    Case(
        "groq-413-entity-too-large",
        "groq",
        "groq",
        "413 Request Entity Too Large",
        GROQ_ERRORS,
        413,
        (),
        oai_err(
            "Request Entity Too Large: the request body is too large. Please reduce the size of the request body.",
            "invalid_request_error",
        ),
        "context_overflow",
    ),
    Case(
        "groq-422-unprocessable",
        "groq",
        "groq",
        "422 Unprocessable Entity (semantic errors)",
        GROQ_ERRORS,
        422,
        (),
        oai_err(
            "The request was well-formed but could not be followed due to semantic errors.",
            "invalid_request_error",
        ),
        "format",
    ),
    Case(
        "groq-500-internal",
        "groq",
        "groq",
        "500 Internal Server Error",
        GROQ_ERRORS,
        500,
        (),
        oai_err("Internal Server Error", "internal_server_error"),
        "server_error",
    ),
    # ================================================================== Amazon Bedrock (boto3)
    Case(
        "bedrock-429-throttling-requests",
        "bedrock",
        "boto3",
        "429 ThrottlingException: Too many requests",
        BEDROCK_ERRORS,
        429,
        (
            ("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            ("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000"),
        ),
        j({"message": "Too many requests, please wait before trying again."}),
        "rate_limit",
    ),
    Case(
        "bedrock-429-throttling-tokens",
        "bedrock",
        "boto3",
        "429 ThrottlingException: Too many tokens",
        BEDROCK_ERRORS,
        429,
        (("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),),
        j({"message": "Too many tokens, please wait before trying again."}),
        "rate_limit",
    ),
    Case(
        "bedrock-429-model-not-ready",
        "bedrock",
        "boto3",
        "429 ModelNotReadyException (the model is not ready to serve: capacity, not the caller's quota)",
        BEDROCK_ERRORS,
        429,
        (
            (
                "x-amzn-ErrorType",
                "ModelNotReadyException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            ),
        ),
        j(
            {
                "message": "Model is not ready to serve inference requests. The AWS SDK will automatically retry the "
                "operation up to 5 times. For information about configuring automatic retries, see Retry "
                "behavior in the AWS SDKs and Tools reference guide."
            }
        ),
        "overloaded",
    ),
    Case(
        "bedrock-400-service-quota-exceeded",
        "bedrock",
        "boto3",
        "400 ServiceQuotaExceededException (resubmit later)",
        BEDROCK_ERRORS,
        400,
        (
            (
                "x-amzn-ErrorType",
                "ServiceQuotaExceededException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            ),
        ),
        j(
            {
                "message": "Your request exceeds the service quota for your account. You can resubmit your request later."
            }
        ),
        "rate_limit",
    ),
    Case(
        "bedrock-400-input-too-long",
        "bedrock",
        "boto3",
        "400 ValidationException: Input is too long for requested model",
        BEDROCK_ERRORS,
        400,
        (("x-amzn-ErrorType", "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),),
        j({"message": "Input is too long for requested model."}),
        "context_overflow",
    ),
    Case(
        "bedrock-400-invalid-model-id",
        "bedrock",
        "boto3",
        "400 ValidationException: The provided model identifier is invalid",
        BEDROCK_ERRORS,
        400,
        (("x-amzn-ErrorType", "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),),
        j({"message": "The provided model identifier is invalid."}),
        "model_not_found",
    ),
    Case(
        "bedrock-403-access-denied",
        "bedrock",
        "boto3",
        "403 AccessDeniedException",
        BEDROCK_ERRORS,
        403,
        (("x-amzn-ErrorType", "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.bedrock/"),),
        j({"message": "You don't have access to the model with the specified model ID."}),
        "auth",
    ),
    Case(
        "bedrock-404-resource-not-found",
        "bedrock",
        "boto3",
        "404 ResourceNotFoundException",
        BEDROCK_ERRORS,
        404,
        (
            (
                "x-amzn-ErrorType",
                "ResourceNotFoundException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            ),
        ),
        j({"message": "Could not resolve the foundation model from the provided model identifier."}),
        "model_not_found",
    ),
    Case(
        "bedrock-408-model-timeout",
        "bedrock",
        "boto3",
        "408 ModelTimeoutException",
        BEDROCK_ERRORS,
        408,
        (("x-amzn-ErrorType", "ModelTimeoutException:http://internal.amazon.com/coral/com.amazon.bedrock/"),),
        j({"message": "Model has timed out in processing the request. Try your request again."}),
        "timeout",
    ),
    Case(
        "bedrock-424-model-error",
        "bedrock",
        "boto3",
        "424 ModelErrorException (the model failed while processing)",
        BEDROCK_ERRORS,
        424,
        (("x-amzn-ErrorType", "ModelErrorException:http://internal.amazon.com/coral/com.amazon.bedrock/"),),
        j(
            {
                "message": "The system encountered an unexpected error during processing. Try your request again."
            }
        ),
        "server_error",
    ),
    Case(
        "bedrock-500-internal-server",
        "bedrock",
        "boto3",
        "500 InternalServerException",
        BEDROCK_ERRORS,
        500,
        (
            (
                "x-amzn-ErrorType",
                "InternalServerException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            ),
        ),
        j({"message": "The server encountered an internal error while processing the request."}),
        "server_error",
    ),
    Case(
        "bedrock-503-service-unavailable",
        "bedrock",
        "boto3",
        "503 ServiceUnavailableException (temporarily unable to serve: capacity; retry with backoff)",
        BEDROCK_ERRORS,
        503,
        (
            (
                "x-amzn-ErrorType",
                "ServiceUnavailableException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            ),
        ),
        j({"message": "Bedrock is unable to process your request."}),
        "overloaded",
    ),
    # ============================================================= Azure OpenAI (openai SDK)
    Case(
        "azure-429-token-rate-retry-after",
        "azure",
        "openai",
        "429 exceeded token rate limit, retry-after: 6 and retry-after-ms: 6000",
        AZURE_QUOTA,
        429,
        (("retry-after", "6"), ("retry-after-ms", "6000"), ("x-ms-region", "East US")),
        j(
            {
                "error": {
                    "code": "429",
                    "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                    "2024-10-21 have exceeded token rate limit of your current AIServices S0 pricing tier. "
                    "Please retry after 6 seconds. Please go here: https://aka.ms/oai/quotaincrease if you "
                    "would like to further increase the default rate limit.",
                }
            }
        ),
        "rate_limit",
        6.0,
    ),
    Case(
        "azure-429-retry-after-ms-precise",
        "azure",
        "openai",
        "429 with retry-after-ms: 1500 and a rounded retry-after: 2 (milliseconds win)",
        AZURE_QUOTA,
        429,
        (("retry-after", "2"), ("retry-after-ms", "1500")),
        j(
            {
                "error": {
                    "code": "429",
                    "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                    "2024-10-21 have exceeded call rate limit of your current AIServices S0 pricing tier. "
                    "Please retry after 2 seconds.",
                }
            }
        ),
        "rate_limit",
        1.5,
    ),
    Case(
        "azure-400-content-filter",
        "azure",
        "openai",
        "400 content_filter (ResponsibleAIPolicyViolation)",
        AZURE_FILTER,
        400,
        (),
        j(
            {
                "error": {
                    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                    "management policy. Please modify your prompt and retry. To learn more about our content "
                    "filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
                    "type": None,
                    "param": "prompt",
                    "code": "content_filter",
                    "status": 400,
                    "innererror": {
                        "code": "ResponsibleAIPolicyViolation",
                        "content_filter_result": {"hate": {"filtered": True, "severity": "high"}},
                    },
                }
            }
        ),
        "refusal",
    ),
    Case(
        "azure-404-deployment-not-found",
        "azure",
        "openai",
        "404 DeploymentNotFound",
        AZURE_REST,
        404,
        (),
        j(
            {
                "error": {
                    "code": "DeploymentNotFound",
                    "message": "The API deployment for this resource does not exist. If you created the deployment "
                    "within the last 5 minutes, please wait a moment and try again.",
                }
            }
        ),
        "model_not_found",
    ),
    Case(
        "azure-401-access-denied",
        "azure",
        "openai",
        "401 invalid subscription key or wrong API endpoint",
        AZURE_REST,
        401,
        (),
        j(
            {
                "error": {
                    "code": "401",
                    "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                    "provide a valid key for an active subscription and use a correct regional API "
                    "endpoint for your resource.",
                }
            }
        ),
        "auth",
    ),
    Case(
        "azure-400-context-length",
        "azure",
        "openai",
        "400 context_length_exceeded",
        AZURE_REST,
        400,
        (),
        oai_err(
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. "
            "Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
        "context_overflow",
    ),
    # ============================================================== OpenRouter (openai SDK)
    Case(
        "openrouter-402-insufficient-credits",
        "openrouter",
        "openai",
        "402 insufficient credits",
        OPENROUTER_ERRORS,
        402,
        (),
        j(
            {
                "error": {
                    "code": 402,
                    "message": "Insufficient credits. This account never purchased credits. Make sure "
                    "your key is on the correct account or org, and if so, purchase more at "
                    "https://openrouter.ai/settings/credits",
                }
            }
        ),
        "billing",
    ),
    Case(
        "openrouter-429-retry-after-seconds",
        "openrouter",
        "openai",
        "429 rate limited with Retry-After: 3",
        OPENROUTER_ERRORS,
        429,
        (("Retry-After", "3"),),
        j(
            {
                "error": {
                    "code": 429,
                    "message": "Rate limit exceeded: free-models-per-min. ",
                    "metadata": {"headers": {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0"}},
                }
            }
        ),
        "rate_limit",
        3.0,
    ),
    Case(
        "openrouter-429-retry-after-http-date",
        "openrouter",
        "openai",
        "429 rate limited with Retry-After as an HTTP-date 90 s ahead",
        f"{OPENROUTER_ERRORS}; {RFC9110_RETRY_AFTER}",
        429,
        (("Retry-After", "{http_date:+90}"),),
        j({"error": {"code": 429, "message": "Rate limit exceeded: upstream provider is rate limited."}}),
        "rate_limit",
        90.0,
    ),
    Case(
        "openrouter-408-timeout",
        "openrouter",
        "openai",
        "408 your request timed out",
        OPENROUTER_ERRORS,
        408,
        (),
        j({"error": {"code": 408, "message": "Request timed out"}}),
        "timeout",
    ),
    Case(
        "openrouter-502-provider-error",
        "openrouter",
        "openai",
        "502 chosen model is down or returned an invalid response",
        OPENROUTER_ERRORS,
        502,
        (),
        j(
            {
                "error": {
                    "code": 502,
                    "message": "Provider returned error",
                    "metadata": {"provider_name": "Example", "raw": "upstream connect error"},
                }
            }
        ),
        "server_error",
    ),
    Case(
        "openrouter-403-moderation-flagged",
        "openrouter",
        "openai",
        "403 model requires moderation and the input was flagged",
        OPENROUTER_ERRORS,
        403,
        (),
        j(
            {
                "error": {
                    "code": 403,
                    "message": "openai/gpt-4o-mini requires moderation on OpenAI. Your input was flagged for "
                    '"harassment". No credits were charged.',
                    "metadata": {
                        "reasons": ["harassment"],
                        "flagged_input": "...",
                        "provider_name": "OpenAI",
                        "model_slug": "openai/gpt-4o-mini",
                    },
                }
            }
        ),
        "refusal",
    ),
    Case(
        "openrouter-401-no-auth",
        "openrouter",
        "openai",
        "401 invalid credentials",
        OPENROUTER_ERRORS,
        401,
        (),
        j({"error": {"code": 401, "message": "No auth credentials found"}}),
        "auth",
    ),
    Case(
        "openrouter-400-context-length",
        "openrouter",
        "openai",
        "400 maximum context length (middle-out hint)",
        OPENROUTER_ERRORS,
        400,
        (),
        j(
            {
                "error": {
                    "code": 400,
                    "message": "This endpoint's maximum context length is 128000 tokens. However, you requested about "
                    "200000 tokens (199000 of text input, 1000 in the output). Please reduce the length of "
                    'either one, or use the "middle-out" transform to compress your prompt automatically.',
                }
            }
        ),
        "context_overflow",
    ),
    # ================================================== self-hosted OpenAI-compatible servers
    Case(
        "vllm-400-context-length",
        "vllm",
        "openai",
        "400 BadRequestError: maximum context length",
        VLLM_DOC,
        400,
        (),
        j(
            {
                "error": {
                    "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
                    "(4000 in the messages, 1000 in the completion). Please reduce the length of the "
                    "messages or completion.",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            }
        ),
        "context_overflow",
    ),
    Case(
        "vllm-404-model",
        "vllm",
        "openai",
        "404 NotFoundError: model does not exist",
        VLLM_DOC,
        404,
        (),
        j(
            {
                "error": {
                    "message": "The model `llama-9` does not exist.",
                    "type": "NotFoundError",
                    "param": None,
                    "code": 404,
                }
            }
        ),
        "model_not_found",
    ),
    Case(
        "vllm-401-unauthorized",
        "vllm",
        "openai",
        "401 from --api-key middleware",
        f"{VLLM_DOC}; vllm/entrypoints/openai/api_server.py (api key check)",
        401,
        (),
        j({"error": "Unauthorized"}),
        "auth",
    ),
    Case(
        "llamacpp-400-exceed-context",
        "llama.cpp",
        "openai",
        "400 exceed_context_size_error",
        LLAMACPP_DOC,
        400,
        (),
        j(
            {
                "error": {
                    "code": 400,
                    "message": "request (4476 tokens) exceeds the available context size (4096 tokens)",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 4476,
                    "n_ctx": 4096,
                }
            }
        ),
        "context_overflow",
    ),
    Case(
        "llamacpp-503-loading-model",
        "llama.cpp",
        "openai",
        "503 unavailable_error while the model loads (transiently unavailable)",
        LLAMACPP_DOC,
        503,
        (),
        j({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}),
        "overloaded",
    ),
    Case(
        "llamacpp-401-invalid-key",
        "llama.cpp",
        "openai",
        "401 authentication_error",
        LLAMACPP_DOC,
        401,
        (),
        j({"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}),
        "auth",
    ),
    Case(
        "tgi-422-validation-context",
        "tgi",
        "openai",
        "422 validation: inputs tokens + max_new_tokens over the limit",
        TGI_DOC,
        422,
        (),
        j(
            {
                "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` "
                "tokens and 1000 `max_new_tokens`",
                "error_type": "validation",
            }
        ),
        "context_overflow",
    ),
    Case(
        "tgi-429-overloaded",
        "tgi",
        "openai",
        "429 overloaded: Model is overloaded (the server's queue is full)",
        TGI_DOC,
        429,
        (),
        j({"error": "Model is overloaded", "error_type": "overloaded"}),
        "overloaded",
    ),
    Case(
        "tgi-424-generation",
        "tgi",
        "openai",
        "424 generation error",
        TGI_DOC,
        424,
        (),
        j(
            {
                "error": "Request failed during generation: Server error: CUDA out of memory.",
                "error_type": "generation",
            }
        ),
        "server_error",
    ),
    Case(
        "ollama-404-model-not-found",
        "ollama",
        "openai",
        "404 not_found_error: model not found, try pulling it first",
        OLLAMA_DOC,
        404,
        (),
        j(
            {
                "error": {
                    "message": 'model "llama9" not found, try pulling it first',
                    "type": "not_found_error",
                    "param": None,
                    "code": None,
                }
            }
        ),
        "model_not_found",
    ),
    Case(
        "ollama-503-server-busy",
        "ollama",
        "openai",
        "503 server busy: maximum pending requests exceeded (OLLAMA_MAX_QUEUE)",
        OLLAMA_DOC,
        503,
        (),
        j(
            {
                "error": {
                    "message": "server busy, please try again.  maximum pending requests exceeded",
                    "type": "api_error",
                    "param": None,
                    "code": None,
                }
            }
        ),
        "overloaded",
    ),
    Case(
        "ollama-400-invalid-message",
        "ollama",
        "openai",
        "400 invalid_request_error",
        OLLAMA_DOC,
        400,
        (),
        j(
            {
                "error": {
                    "message": "invalid message format",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
        ),
        "format",
    ),
    Case(
        "litellm-proxy-429-rate-limit",
        "litellm-proxy",
        "openai",
        "429 throttling_error relayed from the upstream provider",
        LITELLM_PROXY_DOC,
        429,
        (),
        j(
            {
                "error": {
                    "message": "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for "
                    "gpt-4o-mini in organization org-test000 on requests per min (RPM): Limit 3, Used 3, "
                    "Requested 1.",
                    "type": "throttling_error",
                    "param": None,
                    "code": "429",
                }
            }
        ),
        "rate_limit",
    ),
    Case(
        "litellm-proxy-429-no-deployments",
        "litellm-proxy",
        "openai",
        "429 no deployments available (router cooldown)",
        LITELLM_PROXY_DOC,
        429,
        (),
        j(
            {
                "error": {
                    "message": "No deployments available for selected model, Try again in 60 seconds. Passed "
                    "model=gpt-4o-mini. pre-call-checks=False, cooldown_list=[]",
                    "type": "None",
                    "param": "None",
                    "code": "429",
                }
            }
        ),
        "rate_limit",
    ),
    Case(
        "litellm-proxy-400-context-window",
        "litellm-proxy",
        "openai",
        "400 ContextWindowExceededError",
        LITELLM_PROXY_DOC,
        400,
        (),
        j(
            {
                "error": {
                    "message": "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: "
                    "OpenAIException - This model's maximum context length is 128000 tokens. However, your "
                    "messages resulted in 130532 tokens.",
                    "type": None,
                    "param": None,
                    "code": "400",
                }
            }
        ),
        "context_overflow",
    ),
    Case(
        "litellm-proxy-401-invalid-token",
        "litellm-proxy",
        "openai",
        "401 auth_error: invalid proxy server token",
        LITELLM_PROXY_DOC,
        401,
        (),
        j(
            {
                "error": {
                    "message": "Authentication Error, Invalid proxy server token passed. Received API Key = sk-...000, "
                    "Key Hash (Token) =test000. Unable to find token in cache or `LiteLLM_VerificationTokenTable`",
                    "type": "auth_error",
                    "param": "None",
                    "code": "401",
                }
            }
        ),
        "auth",
    ),
    Case(
        "litellm-proxy-400-budget-exceeded",
        "litellm-proxy",
        "openai",
        "400 budget_exceeded for a virtual key",
        f"{LITELLM_PROXY_DOC}; litellm BudgetExceededError",
        400,
        (),
        j(
            {
                "error": {
                    "message": "Budget has been exceeded! Key=key Current cost: 10.52, Max budget: 10.0",
                    "type": "budget_exceeded",
                    "param": None,
                    "code": "400",
                }
            }
        ),
        "billing",
    ),
    # ===================================================== Chinese-market providers (openai SDK)
    Case(
        "zhipu-429-1302-rate-limit",
        "zhipu",
        "openai",
        "429 业务码 1302: 账户已达到速率限制",
        f"{ZHIPU_CODES}; {ZHIPU_RATE}",
        429,
        (),
        j({"error": {"code": "1302", "message": "您的账户已达到速率限制，请您控制请求频率"}}),
        "rate_limit",
    ),
    Case(
        "zhipu-429-1113-arrears",
        "zhipu",
        "openai",
        "429 业务码 1113: 账户已欠费",
        ZHIPU_CODES,
        429,
        (),
        j({"error": {"code": "1113", "message": "您的账户已欠费，请充值后重试"}}),
        "billing",
    ),
    Case(
        "zhipu-429-1305-overloaded",
        "zhipu",
        "openai",
        "429 业务码 1305: 该模型当前访问量过大 (platform overload)",
        ZHIPU_RATE,
        429,
        (),
        j({"error": {"code": "1305", "message": "该模型当前访问量过大，请您稍后再试"}}),
        "overloaded",
    ),
    Case(
        "zhipu-400-1261-prompt-too-long",
        "zhipu",
        "openai",
        "400 业务码 1261: Prompt 超长",
        ZHIPU_CODES,
        400,
        (),
        j({"error": {"code": "1261", "message": "Prompt 超长"}}),
        "context_overflow",
    ),
    Case(
        "zhipu-400-1211-model-not-found",
        "zhipu",
        "openai",
        "400 业务码 1211: 模型不存在",
        ZHIPU_CODES,
        400,
        (),
        j({"error": {"code": "1211", "message": "模型不存在，请检查模型代码"}}),
        "model_not_found",
    ),
    Case(
        "zhipu-401-1002-invalid-token",
        "zhipu",
        "openai",
        "401 业务码 1002: Authentication Token 非法",
        ZHIPU_CODES,
        401,
        (),
        j(
            {
                "error": {
                    "code": "1002",
                    "message": "Authentication Token 非法，请确认 Authentication Token 正确传递",
                }
            }
        ),
        "auth",
    ),
    Case(
        "dashscope-400-arrearage",
        "dashscope",
        "openai",
        "400 Arrearage: account not in good standing (欠费)",
        DASHSCOPE_CODES,
        400,
        (),
        j(
            {
                "error": {
                    "code": "Arrearage",
                    "param": None,
                    "message": "Access denied, please make sure your account is in good standing.",
                    "type": "Arrearage",
                },
                "id": "chatcmpl-test000",
                "request_id": "00000000-0000-0000-0000-000000000000",
            }
        ),
        "billing",
    ),
    Case(
        "dashscope-429-rate-quota",
        "dashscope",
        "openai",
        "429 Throttling.RateQuota (RPM)",
        f"{DASHSCOPE_CODES}; {DASHSCOPE_RATE}",
        429,
        (),
        j(
            {
                "error": {
                    "code": "Throttling.RateQuota",
                    "param": None,
                    "message": "Requests rate limit exceeded, please try again later.",
                    "type": "Throttling.RateQuota",
                },
                "request_id": "00000000-0000-0000-0000-000000000000",
            }
        ),
        "rate_limit",
    ),
    Case(
        "dashscope-429-allocation-quota",
        "dashscope",
        "openai",
        "429 Throttling.AllocationQuota (TPM)",
        f"{DASHSCOPE_CODES}; {DASHSCOPE_RATE}",
        429,
        (),
        j(
            {
                "error": {
                    "code": "Throttling.AllocationQuota",
                    "param": None,
                    "message": "Allocated quota exceeded, please increase your quota limit.",
                    "type": "Throttling.AllocationQuota",
                },
                "request_id": "00000000-0000-0000-0000-000000000000",
            }
        ),
        "rate_limit",
    ),
    Case(
        "dashscope-400-input-length",
        "dashscope",
        "openai",
        "400 InvalidParameter: Range of input length should be [1, 30720] (input over the model limit)",
        DASHSCOPE_CODES,
        400,
        (),
        j(
            {
                "error": {
                    "code": "invalid_parameter_error",
                    "param": None,
                    "message": "<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 30720]",
                    "type": "invalid_request_error",
                },
                "request_id": "00000000-0000-0000-0000-000000000000",
            }
        ),
        "context_overflow",
    ),
    Case(
        "dashscope-400-data-inspection",
        "dashscope",
        "openai",
        "400 DataInspectionFailed: inappropriate content",
        DASHSCOPE_CODES,
        400,
        (),
        j(
            {
                "error": {
                    "code": "data_inspection_failed",
                    "param": None,
                    "message": "Input data may contain inappropriate content.",
                    "type": "data_inspection_failed",
                },
                "request_id": "00000000-0000-0000-0000-000000000000",
            }
        ),
        "refusal",
    ),
    Case(
        "dashscope-401-invalid-api-key",
        "dashscope",
        "openai",
        "401 InvalidApiKey",
        DASHSCOPE_CODES,
        401,
        (),
        j(
            {
                "error": {
                    "code": "invalid_api_key",
                    "param": None,
                    "message": "Incorrect API key provided. ",
                    "type": "invalid_request_error",
                },
                "request_id": "00000000-0000-0000-0000-000000000000",
            }
        ),
        "auth",
    ),
    Case(
        "moonshot-400-token-limit",
        "moonshot",
        "openai",
        "400 invalid_request_error: exceeded model token limit",
        MOONSHOT_ERRORS,
        400,
        (),
        j(
            {
                "error": {
                    "message": "Invalid request: Your request exceeded model token limit: 262144 (requested: 269030)",
                    "type": "invalid_request_error",
                }
            }
        ),
        "context_overflow",
    ),
    Case(
        "moonshot-400-content-filter",
        "moonshot",
        "openai",
        "400 content_filter: request considered high risk",
        MOONSHOT_ERRORS,
        400,
        (),
        j(
            {
                "error": {
                    "message": "The request was rejected because it was considered high risk",
                    "type": "content_filter",
                }
            }
        ),
        "refusal",
    ),
    Case(
        "moonshot-429-engine-overloaded",
        "moonshot",
        "openai",
        "429 engine_overloaded_error",
        MOONSHOT_ERRORS,
        429,
        (),
        j(
            {
                "error": {
                    "message": "The engine is currently overloaded, please try again later",
                    "type": "engine_overloaded_error",
                }
            }
        ),
        "overloaded",
    ),
    Case(
        "moonshot-429-quota-suspended",
        "moonshot",
        "openai",
        "429 exceeded_current_quota_error: account suspended, check plan and billing",
        MOONSHOT_ERRORS,
        429,
        (),
        j(
            {
                "error": {
                    "message": "Your account org-test000<ak-test000> is suspended, please check your plan and billing details",
                    "type": "exceeded_current_quota_error",
                }
            }
        ),
        "billing",
    ),
    Case(
        "moonshot-429-rate-limit-reached",
        "moonshot",
        "openai",
        "429 rate_limit_reached_error: max RPM",
        MOONSHOT_ERRORS,
        429,
        (),
        j(
            {
                "error": {
                    "message": "Your account org-test000<ak-test000> request reached organization max RPM: 3, please "
                    "try again after 1 seconds",
                    "type": "rate_limit_reached_error",
                }
            }
        ),
        "rate_limit",
    ),
    Case(
        "moonshot-401-invalid-authentication",
        "moonshot",
        "openai",
        "401 invalid_authentication_error",
        MOONSHOT_ERRORS,
        401,
        (),
        j({"error": {"message": "Invalid Authentication", "type": "invalid_authentication_error"}}),
        "auth",
    ),
    Case(
        "minimax-402-insufficient-balance",
        "minimax",
        "openai",
        "402 insufficient_balance_error (1008)",
        MINIMAX_CODES,
        402,
        (),
        j(
            {
                "error": {
                    "message": "insufficient balance (1008)",
                    "type": "insufficient_balance_error",
                    "param": "",
                    "code": None,
                }
            }
        ),
        "billing",
    ),
    Case(
        "minimax-429-rate-limit",
        "minimax",
        "openai",
        "429 rate limit (1002)",
        MINIMAX_CODES,
        429,
        (),
        j(
            {
                "error": {
                    "message": "rate limit exceeded (1002)",
                    "type": "rate_limit_error",
                    "param": "",
                    "code": None,
                }
            }
        ),
        "rate_limit",
    ),
    Case(
        "minimax-400-invalid-params",
        "minimax",
        "openai",
        "400 bad_request_error invalid params (2013)",
        MINIMAX_CODES,
        400,
        (),
        j(
            {
                "error": {
                    "message": "invalid params, chat content has invalid message role: system (2013)",
                    "type": "bad_request_error",
                    "param": "",
                    "code": None,
                }
            }
        ),
        "format",
    ),
    Case(
        "minimax-anthropic-500-insufficient-balance",
        "minimax",
        "anthropic",
        "Anthropic-compatible endpoint answers 500 api_error 'insufficient balance (1008)'",
        MINIMAX_CODES,
        500,
        (),
        j(
            {
                "type": "error",
                "error": {"type": "api_error", "message": "insufficient balance (1008)"},
                "request_id": "05997465cd2ee4bd50b24b216c911b75",
            }
        ),
        "billing",
    ),
    Case(
        "deepseek-402-insufficient-balance",
        "deepseek",
        "openai",
        "402 Insufficient Balance (余额不足)",
        DEEPSEEK_ERRORS,
        402,
        (),
        j(
            {
                "error": {
                    "message": "Insufficient Balance",
                    "type": "unknown_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            }
        ),
        "billing",
    ),
    Case(
        "deepseek-429-rate-limit",
        "deepseek",
        "openai",
        "429 Rate Limit Reached (请求速率达到上限)",
        DEEPSEEK_ERRORS,
        429,
        (),
        j(
            {
                "error": {
                    "message": "Rate Limit Reached",
                    "type": "rate_limit_error",
                    "param": None,
                    "code": None,
                }
            }
        ),
        "rate_limit",
    ),
    Case(
        "deepseek-503-server-overloaded",
        "deepseek",
        "openai",
        "503 Server Overloaded (服务器繁忙)",
        DEEPSEEK_ERRORS,
        503,
        (),
        j(
            {
                "error": {
                    "message": "The server is overloaded due to high traffic. Please retry your request after a brief wait.",
                    "type": "service_unavailable_error",
                    "param": None,
                    "code": None,
                }
            }
        ),
        "overloaded",
    ),
    Case(
        "deepseek-400-context-length",
        "deepseek",
        "openai",
        "400 maximum context length",
        DEEPSEEK_ERRORS,
        400,
        (),
        oai_err(
            "This model's maximum context length is 65536 tokens. However, you requested 70000 tokens (69000 in "
            "the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
            "invalid_request_error",
            "invalid_request_error",
        ),
        "context_overflow",
    ),
    Case(
        "deepseek-401-authentication",
        "deepseek",
        "openai",
        "401 Authentication Fails",
        DEEPSEEK_ERRORS,
        401,
        (),
        oai_err(
            "Authentication Fails, Your api key: ****0000 is invalid",
            "authentication_error",
            "invalid_request_error",
        ),
        "auth",
    ),
    Case(
        "qianfan-400-tokens-too-long",
        "qianfan",
        "openai",
        "400 tokens_too_long: Prompt tokens too long",
        QIANFAN_CODES,
        400,
        (),
        j(
            {
                "error": {
                    "code": "tokens_too_long",
                    "message": "Prompt tokens too long",
                    "type": "invalid_request_error",
                },
                "id": "as-test000",
            }
        ),
        "context_overflow",
    ),
    Case(
        "qianfan-400-characters-too-long",
        "qianfan",
        "openai",
        "400 characters_too_long: the max input characters is 20000",
        QIANFAN_CODES,
        400,
        (),
        j(
            {
                "error": {
                    "code": "characters_too_long",
                    "message": "the max input characters is 20000",
                    "type": "invalid_request_error",
                },
                "id": "as-test000",
            }
        ),
        "context_overflow",
    ),
    Case(
        "qianfan-429-rpm",
        "qianfan",
        "openai",
        "429 rpm_rate_limit_exceeded: Rate limit reached for RPM",
        f"{QIANFAN_CODES}; {QIANFAN_RATE}",
        429,
        (),
        j(
            {
                "error": {
                    "code": "rpm_rate_limit_exceeded",
                    "message": "Rate limit reached for RPM",
                    "type": "rate_limit_exceeded",
                },
                "id": "as-test000",
            }
        ),
        "rate_limit",
    ),
    Case(
        "qianfan-429-tpm",
        "qianfan",
        "openai",
        "429 tpm_rate_limit_exceeded: Rate limit reached for TPM",
        f"{QIANFAN_CODES}; {QIANFAN_RATE}",
        429,
        (),
        j(
            {
                "error": {
                    "code": "tpm_rate_limit_exceeded",
                    "message": "Rate limit reached for TPM",
                    "type": "rate_limit_exceeded",
                },
                "id": "as-test000",
            }
        ),
        "rate_limit",
    ),
    Case(
        "qianfan-429-insufficient-balance",
        "qianfan",
        "openai",
        "429 BILLING_INSUFFICIENT_BALANCE (账户已欠费)",
        APPBUILDER_CODES,
        429,
        (),
        j(
            {
                "error": {
                    "code": "BILLING_INSUFFICIENT_BALANCE",
                    "message": "Your account has insufficient balance",
                    "type": "billing_error",
                },
                "id": "as-test000",
            }
        ),
        "billing",
    ),
    Case(
        "qianfan-401-iam",
        "qianfan",
        "openai",
        "401 invalid_iam_token: IAM Certification failed",
        QIANFAN_CODES,
        401,
        (),
        j(
            {
                "error": {
                    "code": "invalid_iam_token",
                    "message": "IAM Certification failed",
                    "type": "invalid_request_error",
                },
                "id": "as-test000",
            }
        ),
        "auth",
    ),
    # ========================================================== through litellm.completion
    Case(
        "litellm-openai-429-retry-after",
        "openai",
        "litellm:openai",
        "OpenAI 429 with retry-after: 4, raised by litellm as litellm.RateLimitError",
        f"{OPENAI_ERRORS}; LiteLLM docs/exception_mapping.md",
        429,
        (("retry-after", "4"),),
        oai_err(
            "Rate limit reached for gpt-4o-mini in organization org-test000 on requests per min (RPM): Limit 3, "
            "Used 3, Requested 1. Please try again in 4s.",
            "requests",
            "rate_limit_exceeded",
        ),
        "rate_limit",
        4.0,
    ),
    Case(
        "litellm-openai-400-context",
        "openai",
        "litellm:openai",
        "OpenAI 400 context_length_exceeded, raised by litellm as ContextWindowExceededError",
        f"{OPENAI_ERRORS}; LiteLLM docs/exception_mapping.md",
        400,
        (),
        oai_err(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130532 "
            "tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
        "context_overflow",
    ),
    Case(
        "litellm-openai-401",
        "openai",
        "litellm:openai",
        "OpenAI 401 invalid_api_key, raised by litellm as AuthenticationError",
        f"{OPENAI_ERRORS}; LiteLLM docs/exception_mapping.md",
        401,
        (),
        oai_err("Incorrect API key provided: sk-test-***000.", "invalid_request_error", "invalid_api_key"),
        "auth",
    ),
    Case(
        "litellm-openai-429-insufficient-quota",
        "openai",
        "litellm:openai",
        "OpenAI 429 insufficient_quota, raised by litellm",
        f"{OPENAI_ERRORS}; LiteLLM docs/exception_mapping.md",
        429,
        (),
        oai_err(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        "billing",
    ),
    Case(
        "litellm-anthropic-529",
        "anthropic",
        "litellm:anthropic",
        "Anthropic 529 overloaded_error, raised by litellm",
        f"{ANTHROPIC_ERRORS}; LiteLLM docs/exception_mapping.md",
        529,
        (),
        j({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        "overloaded",
    ),
    Case(
        "litellm-anthropic-429-retry-after",
        "anthropic",
        "litellm:anthropic",
        "Anthropic 429 rate_limit_error with retry-after: 12, raised by litellm",
        f"{ANTHROPIC_ERRORS}; {ANTHROPIC_RATE}; LiteLLM docs/exception_mapping.md",
        429,
        (("retry-after", "12"),),
        j(
            {
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "message": "This request would exceed the rate limit for your organization of "
                    "50,000 input tokens per minute.",
                },
            }
        ),
        "rate_limit",
        12.0,
    ),
    Case(
        "litellm-anthropic-400-prompt-too-long",
        "anthropic",
        "litellm:anthropic",
        "Anthropic 400 prompt is too long, raised by litellm",
        f"{ANTHROPIC_ERRORS}; LiteLLM docs/exception_mapping.md",
        400,
        (),
        j(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 215000 tokens > 200000 maximum",
                },
            }
        ),
        "context_overflow",
    ),
]


# --- malformed 200 responses: the SDK raises while parsing -------------------------------
# A provider (or a proxy in front of it) answered 200 with a body the SDK cannot read. The
# exception comes from inside the SDK, not from the caller's code: ``format``.

TRUNCATED = '{"id": "chatcmpl-test000", "object": "chat.completion", "choices": ['
PARSE_DOC = "SDK behaviour on an unreadable 200 body (HTTP 200 with truncated JSON / required fields missing)"

MALFORMED: list[Case] = [
    Case(
        "malformed-openai-truncated-json",
        "openai",
        "openai",
        "200 with truncated JSON: openai raises json.JSONDecodeError",
        PARSE_DOC,
        200,
        (),
        TRUNCATED,
        "format",
    ),
    Case(
        "malformed-anthropic-truncated-json",
        "anthropic",
        "anthropic",
        "200 with truncated JSON: anthropic raises json.JSONDecodeError",
        PARSE_DOC,
        200,
        (),
        TRUNCATED,
        "format",
    ),
    Case(
        "malformed-groq-truncated-json",
        "groq",
        "groq",
        "200 with truncated JSON: groq raises json.JSONDecodeError",
        PARSE_DOC,
        200,
        (),
        TRUNCATED,
        "format",
    ),
    Case(
        "malformed-gemini-truncated-json",
        "google",
        "google-genai",
        "200 with truncated JSON: google-genai raises json.JSONDecodeError",
        PARSE_DOC,
        200,
        (),
        TRUNCATED,
        "format",
    ),
    Case(
        "malformed-mistral-truncated-json",
        "mistral",
        "mistralai",
        "200 with truncated JSON: mistralai raises ResponseValidationError",
        PARSE_DOC,
        200,
        (),
        TRUNCATED,
        "format",
    ),
    Case(
        "malformed-mistral-missing-fields",
        "mistral",
        "mistralai",
        "200 {}: mistralai raises ResponseValidationError (pydantic: Field required)",
        PARSE_DOC,
        200,
        (),
        "{}",
        "format",
    ),
    Case(
        "malformed-cohere-truncated-json",
        "cohere",
        "cohere",
        "200 with truncated JSON: cohere raises ApiError(status_code=200) from a JSONDecodeError",
        PARSE_DOC,
        200,
        (),
        TRUNCATED,
        "format",
    ),
    Case(
        "malformed-litellm-openai-truncated-json",
        "openai",
        "litellm:openai",
        "200 with truncated JSON: litellm raises InternalServerError",
        PARSE_DOC,
        200,
        (),
        TRUNCATED,
        "format",
    ),
    Case(
        "malformed-litellm-openai-no-choices",
        "openai",
        "litellm:openai",
        "200 {}: litellm raises InternalServerError 'provider returned a response with no choices'",
        PARSE_DOC,
        200,
        (),
        "{}",
        "format",
    ),
    Case(
        "malformed-litellm-anthropic-truncated-json",
        "anthropic",
        "litellm:anthropic",
        "200 with truncated JSON: litellm raises APIConnectionError 'Unable to get json response'",
        PARSE_DOC,
        200,
        (),
        TRUNCATED,
        "format",
    ),
    Case(
        "malformed-litellm-anthropic-missing-content",
        "anthropic",
        "litellm:anthropic",
        "200 {}: litellm raises APIConnectionError caused by KeyError('content') inside litellm",
        PARSE_DOC,
        200,
        (),
        "{}",
        "format",
    ),
    Case(
        "malformed-cohere-html-502",
        "cohere",
        "cohere",
        "502 with an HTML body from a gateway: cohere raises ApiError(status_code=502)",
        "HTTP 502 Bad Gateway (RFC 9110 §15.6.3) from a reverse proxy",
        502,
        (),
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        "server_error",
        content_type="text/html",
    ),
    Case(
        "malformed-openai-html-502",
        "openai",
        "openai",
        "502 with an HTML body from a gateway: openai raises InternalServerError",
        "HTTP 502 Bad Gateway (RFC 9110 §15.6.3) from a reverse proxy",
        502,
        (),
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        "server_error",
        content_type="text/html",
    ),
]

# --- lenient SDKs: a 200 body without any required field raises nothing ------------------
LENIENT: list[Case] = [
    Case(
        f"lenient-{sdk}-empty-object",
        provider,
        sdk,
        "200 {}: the SDK returns an object of Nones",
        PARSE_DOC,
        200,
        (),
        "{}",
        None,
    )
    for sdk, provider in (
        ("openai", "openai"),
        ("anthropic", "anthropic"),
        ("groq", "groq"),
        ("google-genai", "google"),
        ("cohere", "cohere"),
        ("boto3", "bedrock"),
    )
] + [
    Case(
        "lenient-boto3-truncated-json",
        "bedrock",
        "boto3",
        "200 with truncated JSON: botocore returns the metadata and no output",
        PARSE_DOC,
        200,
        (),
        TRUNCATED,
        None,
    ),
]

# --- caller bugs: errors of the caller's own code, not provider failures -----------------
CALLER_DOC = (
    "Python language reference: NameError / TypeError / AttributeError raised by the caller's own code"
)

CALLER_BUGS: list[Case] = [
    Case(
        "caller-name-error",
        "openai",
        "openai",
        "NameError in the caller's run() before any request",
        CALLER_DOC,
        0,
        (),
        "",
        None,
    ),
    Case(
        "caller-openai-unexpected-kwarg",
        "openai",
        "openai",
        "TypeError: create() got an unexpected keyword argument (typo 'temprature')",
        CALLER_DOC,
        0,
        (),
        "",
        None,
    ),
    Case(
        "caller-anthropic-missing-argument",
        "anthropic",
        "anthropic",
        "TypeError: messages.create() missing the required max_tokens",
        CALLER_DOC,
        0,
        (),
        "",
        None,
    ),
    Case(
        "caller-attribute-typo-on-response",
        "openai",
        "openai",
        "AttributeError: the caller reads response.choices[0].mesage (typo) on a good response",
        CALLER_DOC,
        0,
        (),
        "",
        None,
    ),
]
