"""The provider vocabulary: which status, code, type name and message means which reason.

This module is data. The chain walk (:mod:`._walk`) reads signals off each error and
looks them up here; nothing in this file walks anything. Adding a provider is one edit:
a :class:`ProviderVocabulary` entry in :data:`PROVIDERS` (its aliases, its own codes and
message patterns, and a note citing the documentation it follows). Rules that hold for
every provider go in the generic tables below.

The order in which the tables are consulted (the precedence, see :mod:`._walk`):

1. a nested :class:`~model_fallback.FailoverError` keeps its reason;
2. a provider's own code (:data:`PROVIDERS`, when the candidate's provider is known);
3. a *specific* code (:data:`SPECIFIC_CODES`) or exception type name
   (:data:`SPECIFIC_TYPES`): an explicit signal beats the status and the prose around it;
4. context-overflow text (:data:`CONTEXT_OVERFLOW`) beats a generic status (a
   ``500 Context size has been exceeded.`` is an overflow, not a server error);
5. the HTTP status (:func:`classify_status`), refined by the text;
6. a *generic* code (:data:`GENERIC_CODES`) or type name (:data:`GENERIC_TYPES`): names
   that only restate a status class (``invalid_request_error``, ``NotFoundError``);
7. the message (:func:`classify_message`);
8. timeout codes and connection-level type names (:data:`TIMEOUT_CODES`).

Texts are lower-cased once before matching, so every pattern here is lower case (CJK
patterns are unaffected by case).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from model_fallback._model import FailoverReason

__all__ = [
    "CALLER_ERROR_TYPES",
    "CONTEXT_OVERFLOW",
    "GENERIC_CODES",
    "GENERIC_TYPES",
    "MALFORMED_RESPONSE_TEXT",
    "PARSE_FAILURE_TYPES",
    "PROVIDERS",
    "RESPONSE_PARSING_MODULES",
    "SPECIFIC_CODES",
    "SPECIFIC_TYPES",
    "TIMEOUT_CODES",
    "ProviderVocabulary",
    "classify_message",
    "classify_status",
    "provider_vocabulary",
]

AUTH = FailoverReason.AUTH
AUTH_PERMANENT = FailoverReason.AUTH_PERMANENT
BILLING = FailoverReason.BILLING
RATE_LIMIT = FailoverReason.RATE_LIMIT
OVERLOADED = FailoverReason.OVERLOADED
SERVER_ERROR = FailoverReason.SERVER_ERROR
TIMEOUT = FailoverReason.TIMEOUT
FORMAT = FailoverReason.FORMAT
MODEL_NOT_FOUND = FailoverReason.MODEL_NOT_FOUND
CONTEXT_OVERFLOW_REASON = FailoverReason.CONTEXT_OVERFLOW
SESSION_EXPIRED = FailoverReason.SESSION_EXPIRED
REFUSAL = FailoverReason.REFUSAL


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(parts))


class Rule:
    """A message pattern with a cheap gate: substrings one of which every match contains.

    Python's regular expressions try every alternative at every position, so a long
    alternation costs microseconds on any text; a few ``in`` checks cost nanoseconds and
    rule most texts out. ``tests/test_classify_vocabulary.py`` checks that each
    alternative's source contains one of its rule's gates.
    """

    __slots__ = ("gates", "parts", "pattern")

    def __init__(self, gates: tuple[str, ...], *parts: str) -> None:
        self.gates = gates
        self.parts = parts
        self.pattern = _rx(*parts)

    def search(self, text: str) -> bool:
        """Whether the (lower-cased) *text* matches."""
        for gate in self.gates:
            if gate in text:
                return self.pattern.search(text) is not None
        return False


# --- codes ---------------------------------------------------------------------------
# Codes are read from ``code``, ``type``, ``error.code``, ``error.type``, ``detail.code``,
# a non-numeric string ``status`` (gRPC/Google: ``RESOURCE_EXHAUSTED``), ``details[].reason``
# (Google's ErrorInfo), AWS's ``Error.Code``/``__type`` and an OSError's errno name; they
# are upper-cased before lookup.

#: Codes that name the failure precisely: they beat the HTTP status and the message.
SPECIFIC_CODES: Final = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "RESOURCE_EXHAUSTED",
                "RATE_LIMIT",
                "RATE_LIMITED",
                "RATE_LIMIT_EXCEEDED",
                "RATE_LIMIT_ERROR",
                "RATE_LIMIT_REACHED_ERROR",  # Moonshot
                "TOO_MANY_REQUESTS",
                "THROTTLED",
                "THROTTLING",
                "THROTTLINGEXCEPTION",
                "THROTTLING_EXCEPTION",
                "SERVICEQUOTAEXCEEDEDEXCEPTION",  # Bedrock
                "MODEL_COOLDOWN",
                "QUOTA_EXCEEDED",
                "RATE_QUOTA_EXCEEDED",
                "CONCURRENCY_LIMIT_EXCEEDED",
                "REQUESTS",  # OpenAI error.type of a request-rate 429
                "TOKENS",  # OpenAI error.type of a token-rate 429
            ),
            RATE_LIMIT,
        ),
        **dict.fromkeys(
            (
                "OVERLOADED",
                "OVERLOADED_ERROR",
                "ENGINE_OVERLOADED_ERROR",  # Moonshot
                "SERVER_OVERLOADED",
                "MODELNOTREADYEXCEPTION",  # Bedrock
                "SERVICEUNAVAILABLEEXCEPTION",  # Bedrock
                "MODEL_NOT_READY",
                "CAPACITY_EXCEEDED",  # Groq flex tier (498)
            ),
            OVERLOADED,
        ),
        **dict.fromkeys(
            (
                "INSUFFICIENT_QUOTA",
                "INSUFFICIENT_CREDITS",
                "INSUFFICIENT_BALANCE",
                "INSUFFICIENT_BALANCE_ERROR",
                "BILLING_HARD_LIMIT_REACHED",
                "BILLING_NOT_ACTIVE",
                "PAYMENT_REQUIRED",
                "EXCEEDED_CURRENT_QUOTA_ERROR",  # Moonshot: the balance, not a rate
                "BUDGET_EXCEEDED",
                "ARREARAGE",  # DashScope: the account is in arrears
                "ENFORCED_SPEND_LIMIT_REACHED",  # Anthropic: do not retry
            ),
            BILLING,
        ),
        **dict.fromkeys(
            (
                "INVALID_API_KEY",
                "API_KEY_INVALID",  # Google ErrorInfo reason
                "INVALIDAPIKEY",  # DashScope
                "API_KEY_EXPIRED",
                "INVALID_AUTHENTICATION_ERROR",  # Moonshot
                "UNRECOGNIZEDCLIENTEXCEPTION",  # AWS: unknown access key
                "EXPIREDTOKENEXCEPTION",
                "INVALIDSIGNATUREEXCEPTION",
                "ACCESSDENIEDEXCEPTION",
            ),
            AUTH,
        ),
        **dict.fromkeys(
            (
                "DEACTIVATED_WORKSPACE",
                "API_KEY_REVOKED",
                "ACCOUNT_DEACTIVATED",
                "ORGANIZATION_DEACTIVATED",
            ),
            AUTH_PERMANENT,
        ),
        **dict.fromkeys(
            (
                "MODEL_NOT_FOUND",
                "MODEL_DECOMMISSIONED",  # Groq
                "MODEL_IS_DEACTIVATED",
                "MODEL_NOT_AVAILABLE",
                "RESOURCENOTFOUNDEXCEPTION",  # Bedrock: unknown model id
                "MODELNOTFOUND",
            ),
            MODEL_NOT_FOUND,
        ),
        **dict.fromkeys(
            (
                "CONTEXT_LENGTH_EXCEEDED",
                "CONTEXT_WINDOW_EXCEEDED",
                "MAX_TOKENS_EXCEEDED",
                "PROMPT_TOO_LONG",
                "TOKENS_TOO_LONG",  # Baidu Qianfan (OpenAI-compatible)
                "CHARACTERS_TOO_LONG",
            ),
            CONTEXT_OVERFLOW_REASON,
        ),
        **dict.fromkeys(
            (
                "PROVIDER_REFUSAL",
                "CONTENT_FILTER",
                "CONTENT_POLICY_VIOLATION",
                "CONTENT_POLICY_VIOLATION_ERROR",
                "RESPONSIBLEAIPOLICYVIOLATION",  # Azure OpenAI content filter
                "DATAINSPECTIONFAILED",  # DashScope content moderation
                "GUARDRAIL_INTERVENED",
            ),
            REFUSAL,
        ),
        "MODELTIMEOUTEXCEPTION": TIMEOUT,  # Bedrock
        "MODELERROREXCEPTION": SERVER_ERROR,  # Bedrock: the model itself failed
        "INTERNALSERVEREXCEPTION": SERVER_ERROR,
    }
)

#: Codes that only restate a status class: used when no status says more.
GENERIC_CODES: Final = MappingProxyType(
    {
        "INVALID_ARGUMENT": FORMAT,
        "INVALID_REQUEST_ERROR": FORMAT,
        "INVALID_REQUEST": FORMAT,
        "FAILED_PRECONDITION": FORMAT,
        "VALIDATIONEXCEPTION": FORMAT,
        "INVALIDPARAMETER": FORMAT,
        "NOT_FOUND": MODEL_NOT_FOUND,
        "NOT_FOUND_ERROR": MODEL_NOT_FOUND,
        "UNAUTHENTICATED": AUTH,
        "PERMISSION_DENIED": AUTH,
        "AUTHENTICATION_ERROR": AUTH,
        "PERMISSION_ERROR": AUTH,
        "INTERNAL": SERVER_ERROR,
        "INTERNAL_ERROR": SERVER_ERROR,
        "INTERNALERROR": SERVER_ERROR,
        "SERVER_ERROR": SERVER_ERROR,
        "API_ERROR": SERVER_ERROR,
        "UPSTREAM_ERROR": SERVER_ERROR,
        "UNAVAILABLE": OVERLOADED,
        "REQUEST_TOO_LARGE": CONTEXT_OVERFLOW_REASON,
    }
)

#: Transport-level codes: a connection that failed says nothing of the request itself,
#: so any status or text that does is preferred.
TIMEOUT_CODES: Final = frozenset(
    {
        "ETIMEDOUT",
        "ESOCKETTIMEDOUT",
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EPIPE",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "EHOSTDOWN",
        "ENETRESET",
        "EAI_AGAIN",
        "ENOTFOUND",
        "DEADLINE_EXCEEDED",
    }
)

# --- exception type names ------------------------------------------------------------
# Matched by name anywhere in the MRO, never imported, so that httpx, openai, anthropic,
# google-genai, mistralai, cohere, groq, botocore and litellm are recognised without
# depending on them.

#: Type names that name the failure precisely (they beat the status: LiteLLM gives its
#: ``ContextWindowExceededError`` status 400 and its ``APIConnectionError`` status 500).
SPECIFIC_TYPES: Final = MappingProxyType(
    {
        "TimeoutError": TIMEOUT,
        "ConnectionError": TIMEOUT,
        "TimeoutException": TIMEOUT,  # httpx
        "ConnectTimeout": TIMEOUT,
        "ReadTimeout": TIMEOUT,
        "WriteTimeout": TIMEOUT,
        "PoolTimeout": TIMEOUT,
        "ConnectError": TIMEOUT,
        "ReadError": TIMEOUT,
        "WriteError": TIMEOUT,
        "RemoteProtocolError": TIMEOUT,
        "NetworkError": TIMEOUT,
        "APITimeoutError": TIMEOUT,  # openai, anthropic, groq
        "APIConnectionError": TIMEOUT,  # ... and LiteLLM, which gives it status 500
        "ServerDisconnectedError": TIMEOUT,  # aiohttp
        "ClientConnectorError": TIMEOUT,
        "DeadlineExceeded": TIMEOUT,  # google.api_core
        "EndpointConnectionError": TIMEOUT,  # botocore
        "ConnectTimeoutError": TIMEOUT,
        "ReadTimeoutError": TIMEOUT,
        "SSLError": TIMEOUT,  # a TLS failure is a connection that did not happen
        "SSLCertVerificationError": TIMEOUT,
        "ResourceExhausted": RATE_LIMIT,  # google.api_core
        "ThrottlingException": RATE_LIMIT,  # Bedrock
        "ServiceQuotaExceededException": RATE_LIMIT,
        "OverloadedError": OVERLOADED,
        "ServiceUnavailable": OVERLOADED,  # google.api_core 503
        "ServiceUnavailableError": OVERLOADED,  # LiteLLM, cohere
        "ModelNotReadyException": OVERLOADED,  # Bedrock
        "ServiceUnavailableException": OVERLOADED,
        "ModelTimeoutException": TIMEOUT,
        "ModelErrorException": SERVER_ERROR,
        "ContextWindowExceededError": CONTEXT_OVERFLOW_REASON,  # LiteLLM
        "ContentPolicyViolationError": REFUSAL,  # LiteLLM
        "BudgetExceededError": BILLING,  # LiteLLM proxy budgets
        "EnforcedSpendLimitReachedError": BILLING,  # anthropic
        "APIResponseValidationError": FORMAT,  # openai & co: a response that does not parse
        "ResponseValidationError": FORMAT,  # mistralai
    }
)

#: Type names that only restate a status class; used when no status is known.
GENERIC_TYPES: Final = MappingProxyType(
    {
        "RateLimitError": RATE_LIMIT,
        "TooManyRequests": RATE_LIMIT,
        "TooManyRequestsError": RATE_LIMIT,
        "AuthenticationError": AUTH,
        "PermissionDeniedError": AUTH,
        "UnauthorizedError": AUTH,
        "ForbiddenError": AUTH,
        "Unauthenticated": AUTH,
        "PermissionDenied": AUTH,
        "AccessDeniedException": AUTH,
        "NotFoundError": MODEL_NOT_FOUND,
        "ResourceNotFoundException": MODEL_NOT_FOUND,
        "InternalServerError": SERVER_ERROR,
        "InternalServerException": SERVER_ERROR,
        "BadRequestError": FORMAT,
        "UnprocessableEntityError": FORMAT,
        "ValidationException": FORMAT,
        "GatewayTimeoutError": TIMEOUT,
        "InvalidTokenError": AUTH,  # cohere 498
        "JSONDecodeError": FORMAT,  # a body that does not parse; an explicit status says more
    }
)

#: Python programming errors: with no provider signal anywhere in the chain, they are a
#: bug in the caller's own code, never a model's failure (outcome ``caller_error``).
CALLER_ERROR_TYPES: Final = frozenset(
    {
        "NameError",  # UnboundLocalError too
        "AttributeError",
        "TypeError",
        "ImportError",  # ModuleNotFoundError too
        "AssertionError",
        "NotImplementedError",
        "RecursionError",
        "SyntaxError",
    }
)

#: Exception types whose meaning depends on where they were raised: inside a provider
#: SDK's response parsing they say the response was malformed (``format``); elsewhere
#: they are a bug (the programming errors above) or say nothing.
PARSE_FAILURE_TYPES: Final = CALLER_ERROR_TYPES | {"LookupError", "ValueError"}

#: Modules that parse provider responses. A programming error raised while one of them is
#: on the traceback is a malformed response (``format``), not a bug in the caller's code:
#: e.g. a field the SDK expected and the provider left out.
RESPONSE_PARSING_MODULES: Final = (
    "json",
    "pydantic",
    "pydantic_core",
    "openai._response",
    "openai._legacy_response",
    "openai._models",
    "openai._streaming",
    "anthropic._response",
    "anthropic._legacy_response",
    "anthropic._models",
    "anthropic._streaming",
    "groq._response",
    "groq._models",
    "groq._streaming",
    "google.genai._common",
    "google.genai.types",
    "google.genai._api_client",
    "mistralai.utils.serializers",
    "mistralai.utils.unmarshal_json_response",
    "cohere.core.unchecked_base_model",
    "cohere.core.pydantic_utilities",
    "botocore.parsers",
    "litellm.litellm_core_utils",
    "litellm.llms",
    "litellm.utils",
    "httpx._models",
)

# --- messages ------------------------------------------------------------------------

SESSION_EXPIRED_TEXT = Rule(
    ("session", "conversation"),
    r"\b(?:session|conversation)(?: id)? (?:not found|does not exist|has expired|expired|is invalid)",
    r"\bno such session\b",
    r"\binvalid session\b",
)
MODEL_NOT_FOUND_TEXT = Rule(
    ("model", "模型", "not_found", "no endpoints", "decommission"),
    r"\bmodel[_\- ]?not[_\- ]?found\b",
    r"\bunknown model\b",
    r"\binvalid model\b",
    r"\bno endpoints found for\b",
    # "model gpt-4.1-mini not found": dots inside a model name, but not a sentence end
    r"\bmodel\b(?:[^.\n]|\.(?!\s)){0,80}?\b(?:does not exist|not found|is not found|is not a valid model)",
    r"\bis not a valid model id\b",
    r"model identifier is invalid|invalid model identifier",
    r"\bnot_found_error\b",
    r"model_is_deactivated|model_decommissioned|has been decommissioned",
    r"模型不存在|模型未找到|model does not exist",
)
CONTEXT_OVERFLOW = Rule(
    ("context", "prompt", "request", "token", "too long", "input", "上下文", "最大", "输入"),
    r"context[_ ]length[_ ]exceeded",
    r"context[_ ]window[_ ]exceeded",
    r"maximum context length",
    r"context window",
    r"context size has been exceeded",  # llama.cpp
    r"exceeds? the available context size",  # llama.cpp
    r"prompt is too long",
    r"prompt too long",
    r"request_too_large",
    r"request exceeds the maximum size",
    r"exceeds? (?:the )?(?:model'?s? )?(?:maximum )?context",
    r"exceeds? the maximum number of tokens",  # Gemini
    r"input token count.{0,40}exceeds",  # Gemini, Bedrock
    r"model token limit",
    r"too many (?:input )?tokens",  # Cohere
    r"input (?:is )?too long",  # Bedrock "Input is too long for requested model"
    r"context overflow",
    r"input length.{0,40}exceed",
    r"`inputs` tokens \+ `max_new_tokens` must be",  # TGI
    r"tokens too long",
    r"max input characters",
    r"tokens? .{0,40}(?:is|are) (?:too large|larger than|longer than) .{0,40}(?:maximum|context)",
    r"上下文长度|超过最大长度|超出模型最大|输入长度超过|输入过长|超过了模型的最大|上下文窗口",
)
REFUSAL_TEXT = Rule(
    ("content", "responsibleai", "refus", "safety", "moderation", "guardrail", "flagged", "内容", "审核"),
    r"content[_ ]policy",
    r"content[_ ]filter",
    r"content[_ ]management[_ ]policy",
    r"responsibleaipolicyviolation",
    r"refus(?:ed|al) to",
    r"safety (?:system|filter|settings|policy)",
    r"\bmoderation\b",
    r"guardrails?\b",
    r"flagged (?:as|by|for)",
    r"敏感内容|内容安全|不安全内容|违规内容|审核未通过|安全审核",
)
BILLING_TEXT = Rule(
    (
        "payment",
        "insufficient",
        "credit",
        "billing",
        "top up",
        "key limit",
        "budget",
        "exceeded_current_quota",
        "subscription",
        "余额",
        "欠费",
        "充值",
        "资源包",
    ),
    r"payment required",
    r"insufficient[_ ](?:credits?|quota|funds|balance)",
    r"\binsufficient \w+ balance\b",
    r"used all available credits",
    r"credit balance",
    r"requires more credits",
    r"plans? (?:&|and) billing",
    r"billing (?:details|settings|account|issue|hard limit)",
    r"\bbilling\b",
    r"add more credits",
    r"top up",
    r"out of credits",
    r"key limit exceeded",
    r"budget (?:limit )?exceeded",
    r"exceeded_current_quota",
    r"subscription (?:has )?(?:expired|lapsed|required)",
    r"余额不足|欠费|请充值|账户余额|资源包",
)
RETRYABLE_WINDOW = _rx(
    r"try again (?:later|in|after)",
    r"retry (?:later|in|after)",
    r"\bresets? (?:at|in|on)\b",
    r"rate limit",
    r"too many requests",
    r"(?:daily|weekly|monthly|hourly|organization|org) (?:usage|spend(?:ing)?) limit",
    r"usage limit (?:reached|exceeded)",
    r"spend(?:ing)? limit reached",
)
HARD_BILLING = _rx(
    r"insufficient[_ ]credits?",
    r"add more credits",
    r"top up",
    r"upgrade your plan",
    r"maximum allowed",
    r"payment method",
    r"credit balance",
)
INTERNAL_ERROR_503 = _rx(r"internal[_ ](?:server )?error", r"database error")
RATE_WORDS = _rx(r"rate[_ ]?limit", r"too many requests", r"throttl", r"quota")
HARD_BILLING_OR_BALANCE = _rx(r"insufficient[_ ](?:credits?|quota|funds|balance)", r"余额不足|欠费")
PERIODIC_LIMIT = _rx(r"\b(?:daily|weekly|monthly) (?:usage )?limits? (?:exhausted|reached|exceeded)")
RATE_LIMIT_TEXT = Rule(
    (
        "rate",
        "too many",
        "throttl",
        "quota",
        "resource",
        "usage limit",
        "concurrency",
        "tpm",
        "rpm",
        "tokens per",
        "requests per",
        "cooldown",
        "429",
        "请求",
        "频率",
        "限流",
        "并发",
        "配额",
        "额度",
        "qps",
    ),
    r"rate[_ ]?limit",
    r"too many (?:concurrent )?requests",
    r"throttl",
    r"exceeded your current quota",
    r"resource has been exhausted",
    r"resource[_ ]?exhausted",
    r"quota[_ ]exceeded",
    r"\bquota\b",
    r"usage limit",
    r"concurrency limit",
    r"\btpm\b",
    r"\brpm\b",
    r"tokens per (?:minute|day)",
    r"requests per (?:minute|day)",
    r"model_cooldown",
    r"\b429\b",
    r"请求过于频繁|调用频率|频率限制|请求频率|速率限制|限流|并发数|并发请求|配额|额度不足|额度已用尽|qps",
)
OVERLOADED_TEXT = Rule(
    ("overload", "capacity", "high", "busy", "available", "繁忙", "负载", "过载", "过多", "紧张"),
    r"overloaded",
    r"overloading",
    r"\bat capacity\b",
    r"capacity limits?",
    r"high demand",
    r"high load",
    r"server is busy",
    r"no capacity",
    r"not available.{0,60}try again later",
    r"temporarily unavailable",
    r"currently unavailable",
    r"服务繁忙|系统繁忙|服务器繁忙|负载过高|过载|访问人数过多|资源紧张|当前请求过多",
)
SERVER_ERROR_TEXT = Rule(
    ("internal", "server", "gateway", "upstream", "while processing", "service", "错误"),
    r"internal server error",
    r"internal[_ ]error",
    r"server[_ ]error",
    r"bad gateway",
    r"upstream (?:connect )?error",
    r"an error occurred while processing",
    r"service[_ ]unavailable",
    r"服务内部错误|内部错误|服务器错误",
)
AUTH_PERMANENT_TEXT = Rule(
    ("revoked", "deactivated", "deleted", "disabled", "suspended", "banned", "not allowed"),
    r"api[_ ]?key[_ ]?(?:has been )?(?:revoked|deactivated|deleted|disabled)",
    r"key has been (?:disabled|revoked)",
    r"deactivated[_ ]workspace",
    r"account (?:has been )?(?:deactivated|suspended|banned|disabled)",
    r"not allowed for this organization",
)
AUTH_TEXT = Rule(
    (
        "key",
        "auth",
        "permission",
        "token",
        "unauthori",
        "forbidden",
        "access denied",
        "could not",
        "found",
        "missing",
        "401",
        "403",
        "鉴权",
        "认证",
        "身份",
        "令牌",
        "无效",
        "api",
    ),
    r"invalid[_ ]?(?:api[_ ]?)?key",
    r"api[_ ]key[_ ]invalid",
    r"api key not valid",
    r"incorrect api key",
    r"invalid (?:x-)?api[_ -]key",
    r"could not (?:authenticate|validate).{0,40}(?:api key|credentials)",
    r"permission[_ ]error",
    r"invalid (?:api |auth(?:entication)? )?token",
    r"\bauthentication\b",
    r"\bunauthori[sz]ed\b",
    r"\bforbidden\b",
    r"access denied",
    r"insufficient permissions?",
    r"token (?:has )?expired",
    r"no (?:api key|credentials) found",
    r"missing (?:api key|credentials|authorization)",
    r"security token included in the request is invalid",  # AWS
    r"\b401\b",
    r"\b403\b",
    r"鉴权失败|认证失败|身份验证失败|令牌已过期|无效的(?:api ?key|令牌)|api ?key(?:无效|错误|不正确)",
)
FORMAT_TEXT = Rule(
    ("format", "pattern", "tool", "prefill", "conversation", "invalid_request", "malformed", "validation"),
    r"invalid request format",
    r"string should match pattern",
    r"tool_use(?:_|\.)id",
    r"tool call id was.{0,40}must be",
    r"does not support assistant message prefill",
    r"conversation must end with a user message",
    r"invalid_request_error",
    r"malformed (?:request|json)",
    r"validation error",
)
#: A response that arrived but does not have the documented shape: beats a generic status
#: (LiteLLM reports it as a 500).
MALFORMED_RESPONSE_TEXT = Rule(
    ("response", "choices", "malformed", "expecting", "parsing"),
    r"expecting (?:value|property name|',' delimiter).{0,20}line \d+ column \d+",  # json
    r"eof while parsing",  # pydantic-core / serde
    r"response with no '?choices",
    r"response validation failed",
    r"malformed (?:response|json)",
    r"invalid json (?:in )?response",
    r"unexpected response (?:format|shape|body)",
)
TIMEOUT_TEXT = Rule(
    (
        "time",
        "deadline",
        "connection",
        "network",
        "fetch",
        "socket",
        "econn",
        "enet",
        "ehost",
        "epipe",
        "eai_again",
        "temporary",
        "stream",
        "aborted",
        "disconnected",
        "stop reason",
        "unknown error",
        "超时",
        "网络",
    ),
    r"time[d]?[ -]?out",
    r"timeout",
    r"deadline exceeded",
    r"connection (?:error|reset|refused|aborted|closed)",
    r"network (?:error|request failed)",
    r"fetch failed",
    r"socket hang up",
    r"\beconn(?:refused|reset|aborted)\b",
    r"\b(?:enetunreach|ehostunreach|ehostdown|enetreset|etimedout|esockettimedout|epipe|eai_again)\b",
    r"temporary (?:dns|name resolution) failure",
    r"stream (?:was )?(?:closed|aborted)",
    r"operation was aborted",
    r"server disconnected",
    r"unhandled stop reason: (?:abort|error|network_error)",
    r"^an unknown error occurred\.?$",
    r"请求超时|连接超时|网络错误",
)


def classify_message(text: str) -> FailoverReason | None:
    """The reason a lower-cased message states, or ``None``."""
    if not text:
        return None
    if SESSION_EXPIRED_TEXT.search(text):
        return SESSION_EXPIRED
    if MODEL_NOT_FOUND_TEXT.search(text):
        # "model x is not available, try again later" is capacity, not a missing model
        return OVERLOADED if OVERLOADED_TEXT.search(text) else MODEL_NOT_FOUND
    if CONTEXT_OVERFLOW.search(text) and not RATE_LIMIT_TEXT.search(text):
        return CONTEXT_OVERFLOW_REASON
    if REFUSAL_TEXT.search(text):
        return REFUSAL
    if BILLING_TEXT.search(text) and not (PERIODIC_LIMIT.search(text) and not HARD_BILLING.search(text)):
        return BILLING
    if RATE_LIMIT_TEXT.search(text) or PERIODIC_LIMIT.search(text):
        return RATE_LIMIT
    if OVERLOADED_TEXT.search(text):
        return OVERLOADED
    if AUTH_PERMANENT_TEXT.search(text):
        return AUTH_PERMANENT
    if AUTH_TEXT.search(text):
        return AUTH
    if SERVER_ERROR_TEXT.search(text):
        return SERVER_ERROR
    if FORMAT_TEXT.search(text):
        return FORMAT
    if TIMEOUT_TEXT.search(text):
        return TIMEOUT
    return None


def is_overflow_text(text: str) -> bool:
    """Whether *text* speaks of the context window (and not of a token *rate*)."""
    return bool(CONTEXT_OVERFLOW.search(text)) and not RATE_LIMIT_TEXT.search(text)


def classify_status(status: int, text: str) -> FailoverReason | None:
    """The reason an HTTP status states, refined by the (lower-cased) text around it.

    A bare 503 is ``overloaded``: RFC 9110 §15.6.4 defines 503 as a temporary overload or
    scheduled maintenance, providers send it with ``Retry-After``, and a cooldown is what
    it asks for (LiteLLM and the reference runtime's newer rules agree). A 503 whose text
    names an internal error is a ``server_error``.
    """
    if status == 402:
        if RETRYABLE_WINDOW.search(text) and not HARD_BILLING.search(text):
            return RATE_LIMIT
        return BILLING
    if status == 429:
        if BILLING_TEXT.search(text) and not RETRYABLE_WINDOW.search(text):
            return BILLING
        if OVERLOADED_TEXT.search(text) and not RATE_WORDS.search(text):
            return OVERLOADED  # TGI: 429 "Model is overloaded"
        return RATE_LIMIT
    if status == 498:  # "Invalid Token" (cohere); Groq's flex tier "capacity exceeded"
        return OVERLOADED if OVERLOADED_TEXT.search(text) else AUTH
    if status in (401, 403):
        if REFUSAL_TEXT.search(text):
            return REFUSAL  # OpenRouter: 403 "Your input was flagged" by moderation
        if AUTH_PERMANENT_TEXT.search(text):
            return AUTH_PERMANENT
        if BILLING_TEXT.search(text):
            return BILLING
        return AUTH
    if status == 404:
        msg = classify_message(text)
        if msg in (CONTEXT_OVERFLOW_REASON, SESSION_EXPIRED, BILLING, AUTH, AUTH_PERMANENT, OVERLOADED):
            return msg
        return MODEL_NOT_FOUND
    if status == 413:
        # Groq: "Request too large ... on tokens per minute (TPM)" is a rate, not a window
        return RATE_LIMIT if RATE_LIMIT_TEXT.search(text) else CONTEXT_OVERFLOW_REASON
    if status in (408, 499, 504, 522, 524):
        return TIMEOUT
    if status == 529:
        return OVERLOADED
    if status == 503:
        if OVERLOADED_TEXT.search(text) or RATE_LIMIT_TEXT.search(text):
            return OVERLOADED
        if INTERNAL_ERROR_503.search(text):
            return SERVER_ERROR
        return OVERLOADED
    if 500 <= status <= 599:
        if BILLING_TEXT.search(text) and HARD_BILLING_OR_BALANCE.search(text):
            return BILLING  # MiniMax (Anthropic-compatible): 500 "insufficient balance (1008)"
        return OVERLOADED if OVERLOADED_TEXT.search(text) else SERVER_ERROR
    if status in (400, 422):
        msg = classify_message(text)
        if msg is not None and msg not in (SERVER_ERROR, TIMEOUT):
            return msg
        return FORMAT
    if status == 410:
        msg = classify_message(text)
        if msg in (SESSION_EXPIRED, BILLING, AUTH, AUTH_PERMANENT, MODEL_NOT_FOUND):
            return msg
        return SESSION_EXPIRED
    if 400 <= status <= 499:
        return classify_message(text)
    return None


# --- providers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderVocabulary:
    """What one provider says that the generic tables would misread.

    Attributes:
        aliases: provider names (as in ``Candidate.provider``, lower case) that mean it.
        codes: the provider's own error codes (upper-cased; numeric codes as strings)
            and their reasons. They beat every generic rule when the candidate's
            provider is known.
        messages: extra ``(pattern, reason)`` pairs tried before the generic messages.
        docs: the documentation the entries follow.
    """

    aliases: tuple[str, ...]
    codes: MappingProxyType[str, FailoverReason] = field(default_factory=lambda: MappingProxyType({}))
    messages: tuple[tuple[re.Pattern[str], FailoverReason], ...] = ()
    docs: str = ""


def _codes(**reasons: tuple[str, ...]) -> MappingProxyType[str, FailoverReason]:
    table: dict[str, FailoverReason] = {}
    for reason, codes in reasons.items():
        for code in codes:
            table[code.upper()] = FailoverReason(reason)
    return MappingProxyType(table)


#: Provider-specific vocabularies, keyed by a canonical name.
PROVIDERS: Final[MappingProxyType[str, ProviderVocabulary]] = MappingProxyType(
    {
        "zhipu": ProviderVocabulary(
            aliases=("zhipu", "zhipuai", "glm", "bigmodel", "zai", "z.ai"),
            codes=_codes(
                auth=("1000", "1001", "1002", "1003", "1004", "1100"),
                auth_permanent=("1110", "1111", "1112"),
                billing=("1113", "1120", "1121"),
                format=("1210", "1212", "1213", "1214"),
                model_not_found=("1211", "1220", "1221", "1222"),
                context_overflow=("1261",),
                refusal=("1301",),
                rate_limit=("1302", "1303", "1304", "1308", "1309", "1310"),
                overloaded=("1305", "1312"),
                server_error=("500",),
            ),
            docs="Zhipu BigModel API error codes (open.bigmodel.cn, 'API 错误码')",
        ),
        "dashscope": ProviderVocabulary(
            aliases=("dashscope", "qwen", "alibaba", "aliyun", "bailian", "tongyi"),
            codes=_codes(
                rate_limit=(
                    "Throttling",
                    "Throttling.RateQuota",
                    "Throttling.AllocationQuota",
                    "Throttling.User",
                    "limit_requests",
                    "LimitRequests",
                ),
                billing=("Arrearage", "Throttling.FreeTierOnly"),
                auth=("InvalidApiKey", "AccessDenied", "AccessDenied.Unpurchased"),
                refusal=("DataInspectionFailed", "data_inspection_failed"),
                model_not_found=("ModelNotFound", "model_not_found", "Model.AccessDenied"),
                server_error=("InternalError", "InternalError.Algo", "InternalError.Timeout"),
                overloaded=("ServiceUnavailable", "ModelServiceFailed", "ModelUnavailable"),
            ),
            messages=((re.compile(r"range of input length should be"), FailoverReason.CONTEXT_OVERFLOW),),
            docs="Alibaba Cloud Model Studio (DashScope) error codes",
        ),
        "moonshot": ProviderVocabulary(
            aliases=("moonshot", "moonshotai", "kimi"),
            codes=_codes(
                billing=("exceeded_current_quota_error",),
                rate_limit=("rate_limit_reached_error",),
                overloaded=("engine_overloaded_error",),
                auth=("invalid_authentication_error", "permission_denied_error"),
                model_not_found=("resource_not_found_error",),
                refusal=("content_filter",),
            ),
            messages=((re.compile(r"exceeded model token limit"), FailoverReason.CONTEXT_OVERFLOW),),
            docs="Moonshot AI platform docs, 'Error Explanation' (platform.moonshot.cn)",
        ),
        "minimax": ProviderVocabulary(
            aliases=("minimax", "minimaxi"),
            codes=_codes(
                rate_limit=("1002", "1039"),
                auth=("1004", "2049"),
                billing=("1008",),
                server_error=("1000", "1013"),
                timeout=("1001",),
                refusal=("1026", "1027"),
                format=("2013",),
            ),
            messages=((re.compile(r"token limit|context length"), FailoverReason.CONTEXT_OVERFLOW),),
            docs="MiniMax API error codes (base_resp.status_code)",
        ),
        "deepseek": ProviderVocabulary(
            aliases=("deepseek",),
            messages=((re.compile(r"insufficient balance"), FailoverReason.BILLING),),
            docs="DeepSeek API docs, 'Error Codes' (402 Insufficient Balance, 503 Server Overloaded)",
        ),
        "baidu": ProviderVocabulary(
            aliases=("baidu", "qianfan", "ernie", "wenxin"),
            codes=_codes(
                rate_limit=("4", "17", "18", "336501", "336502"),
                auth=("110", "111", "6", "14", "336002"),
                format=("336003", "336006"),
                context_overflow=("336007", "336103"),
                billing=("13", "19", "336100"),
                server_error=("1", "2", "336000", "336001"),
                refusal=("336104", "336105"),
            ),
            docs="Baidu Qianfan API error codes (error_code)",
        ),
        "anthropic": ProviderVocabulary(
            aliases=("anthropic", "claude"),
            docs="Anthropic API errors: 529 overloaded_error, 413 request_too_large",
        ),
        "google": ProviderVocabulary(
            aliases=("google", "gemini", "vertex", "vertex_ai", "vertexai", "google-genai"),
            docs="Gemini API troubleshooting: status + details[].reason (ErrorInfo)",
        ),
        "bedrock": ProviderVocabulary(
            aliases=("bedrock", "aws", "amazon-bedrock", "amazon_bedrock", "aws-bedrock"),
            docs="Amazon Bedrock Runtime API errors (x-amzn-ErrorType exception names)",
        ),
    }
)

_ALIASES: dict[str, str] = {alias: name for name, v in PROVIDERS.items() for alias in v.aliases}


_NO_VOCABULARY: tuple[None, None] = (None, None)


def provider_vocabulary(provider: str | None) -> tuple[str | None, ProviderVocabulary | None]:
    """The canonical name and vocabulary of a provider name, or ``(None, None)``."""
    if not provider or type(provider) is not str:
        return _NO_VOCABULARY
    return _resolve(provider)


# Provider names are few and repeat on every failure: resolve each once.
@functools.lru_cache(maxsize=1024)
def _resolve(provider: str) -> tuple[str | None, ProviderVocabulary | None]:
    name = _ALIASES.get(provider.strip().lower())
    return _NO_VOCABULARY if name is None else (name, PROVIDERS[name])
