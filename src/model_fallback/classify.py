"""Failure classification: provider failure reasons and local coordination errors.

:func:`classify_failure` names the provider failure behind an exception (or returns
``None``); :func:`is_coordination_error` and :func:`coordination_kind` recognise local
coordination errors (session write-lock timeouts, session takeovers, and types that
applications register) anywhere in a cause chain.

How an error is read:

* The chain is walked breadth-first from the error through ``__cause__``,
  ``__context__``, the attributes ``cause``, ``error``, ``reason``, ``response``,
  ``body`` and ``detail`` (also as mapping keys), and the members of exception groups.
  Cycles are guarded; the walk stops at depth 25 and after 256 nodes.
* Signals: a status (``status``, ``status_code``, ``statusCode``,
  ``response.status_code``; numeric strings parsed strictly; a leading HTTP status in
  the message), a code (``code``, ``detail.code``, ``error.code``, a non-numeric string
  ``status`` such as gRPC ``RESOURCE_EXHAUSTED``, an ``errno`` name), the exception
  type's names (matched by name, never imported), and the message text.
* Precedence: a status, then a code, then the type names, then message patterns.
* Coordination: an error that *is* a coordination error is coordination whatever lies
  beneath it. A coordination error deeper in the chain wins unless explicit provider
  metadata on an error *above* it classifies the failure: a numeric status, a code that
  maps to a reason other than ``timeout``, or a :class:`~model_fallback.FailoverError`
  (which always keeps its own reason). So a 429 wrapping a lock timeout is a
  ``rate_limit`` and falls back, while ``TimeoutError`` or an ``ETIMEDOUT`` code or a
  "rate limited" message around a lock timeout is coordination.

Nothing here raises, whatever it is given: hostile ``__getattr__``/``__str__``, bytes,
mappings, ``None`` and non-exceptions all classify (usually to ``None``).
"""

from __future__ import annotations

import errno as _errno
import re
import threading
from typing import Any, NamedTuple

from model_fallback._model import FailoverReason
from model_fallback.errors import CoordinationError, FailoverError

__all__ = [
    "Classification",
    "FailoverReason",
    "analyze",
    "classify_failure",
    "coordination_kind",
    "is_coordination_error",
    "register_coordination_error",
    "unregister_coordination_error",
]

MAX_DEPTH = 25
MAX_NODES = 256
_MAX_TEXT = 4096

R = FailoverReason


class Classification(NamedTuple):
    """The result of reading one error: everything the driver needs from one walk.

    Attributes:
        reason: the provider failure reason, or ``None``.
        coordination_kind: the coordination kind when the error is a coordination error
            (then ``reason`` is ``None``).
        status: the HTTP-like status found, if any.
        code: the code found, if any.
    """

    reason: FailoverReason | None
    coordination_kind: str | None
    status: int | None
    code: str | None


_NOTHING = Classification(None, None, None, None)

# --- coordination registry -----------------------------------------------------------

_BUILTIN_COORDINATION_NAMES: dict[str, str] = {
    "SessionTakeoverError": "session_takeover",
    "EmbeddedAttemptSessionTakeoverError": "session_takeover",
    "SessionWriteLockTimeoutError": "write_lock_timeout",
}
_COORDINATION_CODES: dict[str, str] = {
    "OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT": "write_lock_timeout",
    "SESSION_WRITE_LOCK_TIMEOUT": "write_lock_timeout",
}
_registry_lock = threading.Lock()
_coordination_names: dict[str, str] = dict(_BUILTIN_COORDINATION_NAMES)
_coordination_types: tuple[tuple[type, str], ...] = ()


def register_coordination_error(error_type: type[BaseException] | str, kind: str) -> None:
    """Treat *error_type* (a class, or a class name matched anywhere in the MRO) as a
    local coordination error of the given *kind*.

    Registered types stop the fallback driver at once, like the built-in session errors,
    and are counted under ``kind`` in ``model_fallback_coordination_aborts_total``.

    Raises:
        TypeError: if *error_type* is neither an exception class nor a string.
        ValueError: if *kind* is empty or not a plain identifier.
    """
    global _coordination_types
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", kind):
        raise ValueError(f"coordination kind must be a lower_snake_case identifier, got {kind!r}")
    with _registry_lock:
        if isinstance(error_type, str):
            if not error_type:
                raise ValueError("coordination error name must not be empty")
            _coordination_names[error_type] = kind
        elif isinstance(error_type, type) and issubclass(error_type, BaseException):
            _coordination_types = (
                *((t, k) for t, k in _coordination_types if t is not error_type),
                (error_type, kind),
            )
        else:
            raise TypeError(f"expected an exception class or a class name, got {error_type!r}")
        _coord_cache.clear()
        _fast_types.clear()


def unregister_coordination_error(error_type: type[BaseException] | str) -> None:
    """Undo :func:`register_coordination_error` (built-in names cannot be removed)."""
    global _coordination_types
    with _registry_lock:
        if isinstance(error_type, str):
            if error_type not in _BUILTIN_COORDINATION_NAMES:
                _coordination_names.pop(error_type, None)
        else:
            _coordination_types = tuple((t, k) for t, k in _coordination_types if t is not error_type)
        _coord_cache.clear()
        _fast_types.clear()


# type -> kind or "" (not coordination); cleared when the registry changes
_coord_cache: dict[type, str] = {}


def _type_coordination_kind(tp: type) -> str:
    try:
        return _coord_cache[tp]
    except KeyError:
        pass
    except Exception:  # unhashable metaclass
        return ""
    kind = ""
    try:
        if issubclass(tp, CoordinationError):
            kind = getattr(tp, "kind", "coordination") or "coordination"
        else:
            for t, k in _coordination_types:
                if issubclass(tp, t):
                    kind = k
                    break
            else:
                for base in tp.__mro__:
                    named = _coordination_names.get(base.__name__)
                    if named:
                        kind = named
                        break
    except Exception:
        kind = ""
    try:
        if len(_coord_cache) < 4096:
            _coord_cache[tp] = kind
    except Exception:
        pass
    return kind


# --- safe access ---------------------------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    """``getattr`` (or dict lookup) that never raises."""
    try:
        if isinstance(obj, dict):
            return obj.get(name)
        return getattr(obj, name, None)
    except Exception:
        return None


# Every attribute the classifier reads from a node; fetched once per node.
_ATTRS = (
    "status", "status_code", "statusCode", "http_status", "code", "message", "errno",
    "response", "detail", "error", "cause", "reason", "body",
)  # fmt: skip
_ATTR_SET = frozenset(_ATTRS)
_STATUS_ATTRS = ("status", "status_code", "statusCode", "http_status")
_CHILD_ATTRS = ("cause", "error", "reason", "response", "body", "detail")
_BUILTIN_GETATTR_OWNERS = (object, BaseException)

# type -> (plain, class-level names among _ATTRS). "plain" types have no custom attribute
# hooks, so their instance attributes can be read straight from __dict__: one C-level set
# intersection instead of thirteen getattr calls per node.
_type_info: dict[type, tuple[bool, tuple[str, ...]]] = {}


def _info(tp: type) -> tuple[bool, tuple[str, ...]]:
    try:
        return _type_info[tp]
    except KeyError:
        pass
    except Exception:
        return (False, ())
    try:
        plain = not any(
            ("__getattribute__" in vars(base) and base not in _BUILTIN_GETATTR_OWNERS)
            or "__getattr__" in vars(base)
            for base in tp.__mro__
        )
        names = tuple(n for n in _ATTRS if hasattr(tp, n))
    except Exception:
        plain, names = False, ()
    info = (plain, names)
    try:
        if len(_type_info) < 4096:
            _type_info[tp] = info
    except Exception:
        pass
    return info


# type -> the non-None values of its class-level attributes among _ATTRS, when they are all
# plain values (no properties or other descriptors) on a plain type; else None. An instance
# of such a type with an empty __dict__ is fully described by its type and its text.
_const_info: dict[type, dict[str, Any] | None] = {}


def _class_constants(tp: type) -> dict[str, Any] | None:
    try:
        return _const_info[tp]
    except KeyError:
        pass
    except Exception:
        return None
    found: dict[str, Any] | None = None
    try:
        plain, names = _info(tp)
        if plain:
            found = {}
            for name in names:
                raw = next((vars(base)[name] for base in tp.__mro__ if name in vars(base)), None)
                if hasattr(type(raw), "__get__"):
                    found = None  # a descriptor (property, getset): varies per instance
                    break
                if raw is not None:
                    found[name] = raw
    except Exception:
        found = None
    try:
        if len(_const_info) < 4096:
            _const_info[tp] = found
    except Exception:
        pass
    return found


def _attrs(node: Any) -> dict[str, Any]:
    """The non-None values of :data:`_ATTRS` on *node* (attributes or dict keys)."""
    found: dict[str, Any] = {}
    try:
        if isinstance(node, dict):
            for k in node.keys() & _ATTR_SET:
                v = node[k]
                if v is not None:
                    found[k] = v
            return found
        plain, class_names = _info(type(node))
        if plain:
            try:
                d = node.__dict__
            except Exception:
                d = None
            if d:
                for k in d.keys() & _ATTR_SET:
                    v = d[k]
                    if v is not None:
                        found[k] = v
            for k in class_names:
                if k not in found:
                    v = _get(node, k)
                    if v is not None:
                        found[k] = v
        else:
            for k in _ATTRS:
                v = _get(node, k)
                if v is not None:
                    found[k] = v
    except Exception:
        return found
    return found


def _text_of(obj: Any, attrs: dict[str, Any]) -> str:
    try:
        msg = attrs.get("message")
        if type(msg) is str and msg:
            text = msg
        elif isinstance(obj, BaseException):
            text = str(obj)
        elif isinstance(obj, str):
            text = obj
        elif isinstance(obj, bytes | bytearray):
            text = bytes(obj[:_MAX_TEXT]).decode("utf-8", "replace")
        elif isinstance(obj, dict):
            alt = obj.get("error_message") or obj.get("msg")
            text = alt if isinstance(alt, str) else ""
        else:
            text = ""
    except Exception:
        return ""
    if type(text) is not str:
        return ""
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT]


_STRICT_INT = re.compile(r"\s*(\d{3})\s*")


def _as_status(value: Any) -> int | None:
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if 100 <= value <= 599 else None
        if isinstance(value, str):
            m = _STRICT_INT.fullmatch(value)
            if m:
                n = int(m.group(1))
                return n if 100 <= n <= 599 else None
    except Exception:
        return None
    return None


_LEADING_STATUS = re.compile(
    r"^\s*(?:error[:\s]+)?(?:http(?:/\d(?:\.\d)?)?[\s:]*)?(?:status(?:\s*code)?[\s:=]*)?"
    r"([1-5]\d\d)\b(?![.\d])",
    re.IGNORECASE,
)


def _leading_status(text: str) -> int | None:
    m = _LEADING_STATUS.match(text)
    return int(m.group(1)) if m else None


def _node_status(attrs: dict[str, Any]) -> int | None:
    for name in _STATUS_ATTRS:
        v = attrs.get(name)
        if v is not None:
            s = _as_status(v)
            if s is not None:
                return s
    resp = attrs.get("response")
    if resp is not None and not isinstance(resp, str | bytes | int | float):
        for name in ("status_code", "status", "statusCode"):
            s = _as_status(_get(resp, name))
            if s is not None:
                return s
    return None


def _as_code(value: Any) -> str | None:
    if isinstance(value, str):
        v = value.strip()
        if v and len(v) <= 64 and not v.isdigit():
            return v.upper()
    return None


def _node_code(node: Any, attrs: dict[str, Any]) -> str | None:
    c = _as_code(attrs.get("code"))
    if c:
        return c
    for holder in ("detail", "error"):
        inner = attrs.get(holder)
        if inner is not None and inner is not node and not isinstance(inner, str | bytes | int | float):
            c = _as_code(_get(inner, "code"))
            if c:
                return c
    status = attrs.get("status")
    if isinstance(status, str) and _as_status(status) is None:
        c = _as_code(status)
        if c:
            return c
    en = attrs.get("errno")
    if isinstance(en, int) and not isinstance(en, bool) and isinstance(node, OSError):
        name = _errno.errorcode.get(en)
        if name:
            return name
    return None


# --- tables --------------------------------------------------------------------------

_CODE_REASONS: dict[str, FailoverReason] = {
    **dict.fromkeys(
        (
            "RESOURCE_EXHAUSTED",
            "RATE_LIMIT",
            "RATE_LIMITED",
            "RATE_LIMIT_EXCEEDED",
            "RATE_LIMIT_ERROR",
            "TOO_MANY_REQUESTS",
            "THROTTLED",
            "THROTTLING",
            "THROTTLINGEXCEPTION",
            "THROTTLING_EXCEPTION",
            "MODEL_COOLDOWN",
        ),
        R.RATE_LIMIT,
    ),
    "OVERLOADED": R.OVERLOADED,
    "OVERLOADED_ERROR": R.OVERLOADED,
    "UNAVAILABLE": R.OVERLOADED,
    "INSUFFICIENT_QUOTA": R.BILLING,
    "INSUFFICIENT_CREDITS": R.BILLING,
    "BILLING_HARD_LIMIT_REACHED": R.BILLING,
    "PAYMENT_REQUIRED": R.BILLING,
    "INVALID_API_KEY": R.AUTH,
    "UNAUTHENTICATED": R.AUTH,
    "PERMISSION_DENIED": R.AUTH,
    "AUTHENTICATION_ERROR": R.AUTH,
    "PERMISSION_ERROR": R.AUTH,
    "DEACTIVATED_WORKSPACE": R.AUTH_PERMANENT,
    "API_KEY_REVOKED": R.AUTH_PERMANENT,
    "MODEL_NOT_FOUND": R.MODEL_NOT_FOUND,
    "NOT_FOUND_ERROR": R.MODEL_NOT_FOUND,
    "CONTEXT_LENGTH_EXCEEDED": R.CONTEXT_OVERFLOW,
    "REQUEST_TOO_LARGE": R.CONTEXT_OVERFLOW,
    "CONTEXT_WINDOW_EXCEEDED": R.CONTEXT_OVERFLOW,
    "INTERNAL": R.SERVER_ERROR,
    "INTERNAL_ERROR": R.SERVER_ERROR,
    "SERVER_ERROR": R.SERVER_ERROR,
    "API_ERROR": R.SERVER_ERROR,
    "PROVIDER_REFUSAL": R.REFUSAL,
    "CONTENT_FILTER": R.REFUSAL,
    "DEADLINE_EXCEEDED": R.TIMEOUT,
    **dict.fromkeys(
        (
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
        ),
        R.TIMEOUT,
    ),
}

# Exception class names (anywhere in the MRO) -> reason; matched by name so that
# httpx, openai, anthropic, google and friends are recognised without importing them.
_TYPE_REASONS: dict[str, FailoverReason] = {
    "TimeoutError": R.TIMEOUT,
    "ConnectionError": R.TIMEOUT,
    "TimeoutException": R.TIMEOUT,
    "ConnectTimeout": R.TIMEOUT,
    "ReadTimeout": R.TIMEOUT,
    "WriteTimeout": R.TIMEOUT,
    "PoolTimeout": R.TIMEOUT,
    "ConnectError": R.TIMEOUT,
    "ReadError": R.TIMEOUT,
    "WriteError": R.TIMEOUT,
    "RemoteProtocolError": R.TIMEOUT,
    "NetworkError": R.TIMEOUT,
    "APITimeoutError": R.TIMEOUT,
    "APIConnectionError": R.TIMEOUT,
    "ServerDisconnectedError": R.TIMEOUT,
    "ClientConnectorError": R.TIMEOUT,
    "DeadlineExceeded": R.TIMEOUT,
    "RateLimitError": R.RATE_LIMIT,
    "TooManyRequests": R.RATE_LIMIT,
    "ResourceExhausted": R.RATE_LIMIT,
    "OverloadedError": R.OVERLOADED,
    "ServiceUnavailable": R.OVERLOADED,
    "AuthenticationError": R.AUTH,
    "PermissionDeniedError": R.AUTH,
    "Unauthenticated": R.AUTH,
    "PermissionDenied": R.AUTH,
    "NotFoundError": R.MODEL_NOT_FOUND,
    "ContextWindowExceededError": R.CONTEXT_OVERFLOW,
    "InternalServerError": R.SERVER_ERROR,
    "ContentPolicyViolationError": R.REFUSAL,
}
_type_cache: dict[type, FailoverReason | None] = {}


def _type_reason(tp: type) -> FailoverReason | None:
    try:
        return _type_cache[tp]
    except KeyError:
        pass
    except Exception:
        return None
    found: FailoverReason | None = None
    try:
        for base in tp.__mro__:
            r = _TYPE_REASONS.get(base.__name__)
            if r is not None:
                found = r
                break
    except Exception:
        found = None
    try:
        if len(_type_cache) < 4096:
            _type_cache[tp] = found
    except Exception:
        pass
    return found


def _rx(*parts: str) -> re.Pattern[str]:
    # Texts are lower-cased once per node; case-sensitive patterns are much faster.
    return re.compile("|".join(parts))


_SESSION_EXPIRED = _rx(
    r"\b(?:session|conversation)(?: id)? (?:not found|does not exist|has expired|expired|is invalid)",
    r"\bno such session\b",
    r"\binvalid session\b",
)
_MODEL_NOT_FOUND = _rx(
    r"\bmodel[_\- ]?not[_\- ]?found\b",
    r"\bunknown model\b",
    r"\bno endpoints found for\b",
    r"\bmodel\b[^.\n]{0,80}\b(?:does not exist|not found|is not available|is not a valid model)",
    r"\bis not a valid model id\b",
    r"\bnot_found_error\b",
)
_CONTEXT_OVERFLOW = _rx(
    r"context[_ ]length[_ ]exceeded",
    r"maximum context length",
    r"context window",
    r"prompt is too long",
    r"prompt too long",
    r"request_too_large",
    r"request exceeds the maximum size",
    r"exceeds? (?:the )?(?:model'?s? )?(?:maximum )?context",
    r"model token limit",
    r"too many (?:input )?tokens",
    r"input (?:is )?too long",
    r"context overflow",
    r"input length.{0,40}exceed",
)
_REFUSAL = _rx(
    r"content[_ ]policy",
    r"content[_ ]filter",
    r"refus(?:ed|al) to",
    r"safety (?:system|filter)",
)
_BILLING = _rx(
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
    r"budget limit exceeded",
    r"subscription (?:has )?(?:expired|lapsed|required)",
)
_RETRYABLE_WINDOW = _rx(
    r"try again (?:later|in|after)",
    r"retry (?:later|in|after)",
    r"\bresets? (?:at|in|on)\b",
    r"rate limit",
    r"too many requests",
    r"(?:daily|weekly|monthly|hourly|organization|org) (?:usage|spend(?:ing)?) limit",
    r"usage limit (?:reached|exceeded)",
    r"spend(?:ing)? limit reached",
)
_HARD_BILLING = _rx(
    r"insufficient[_ ]credits?",
    r"add more credits",
    r"top up",
    r"upgrade your plan",
    r"maximum allowed",
    r"payment method",
    r"credit balance",
)
_PERIODIC_LIMIT = _rx(r"\b(?:daily|weekly|monthly) (?:usage )?limits? (?:exhausted|reached|exceeded)")
_RATE_LIMIT = _rx(
    r"rate[_ ]?limit",
    r"too many (?:concurrent )?requests",
    r"throttl",
    r"exceeded your current quota",
    r"resource has been exhausted",
    r"resource[_ ]exhausted",
    r"quota exceeded",
    r"\bquota\b",
    r"usage limit",
    r"\btpm\b",
    r"tokens per (?:minute|day)",
    r"requests per (?:minute|day)",
    r"model_cooldown",
    r"\b429\b",
)
_OVERLOADED = _rx(
    r"overloaded",
    r"\bat capacity\b",
    r"high demand",
    r"high load",
    r"temporarily overloaded",
    r"server is busy",
    r"no capacity",
)
_SERVER_ERROR = _rx(
    r"internal server error",
    r"internal[_ ]error",
    r"server[_ ]error",
    r"bad gateway",
    r"upstream (?:connect )?error",
    r"an error occurred while processing",
    r"service[_ ]unavailable",
    r"service temporarily unavailable",
)
_AUTH_PERMANENT = _rx(
    r"api[_ ]?key[_ ]?(?:has been )?(?:revoked|deactivated|deleted|disabled)",
    r"key has been (?:disabled|revoked)",
    r"deactivated[_ ]workspace",
    r"account (?:has been )?(?:deactivated|suspended|banned|disabled)",
    r"not allowed for this organization",
)
_AUTH = _rx(
    r"invalid[_ ]?(?:api[_ ]?)?key",
    r"incorrect api key",
    r"invalid (?:x-)?api[_ -]key",
    r"could not (?:authenticate|validate).{0,40}(?:api key|credentials)",
    r"permission[_ ]error",
    r"invalid (?:auth(?:entication)? )?token",
    r"\bauthentication\b",
    r"\bunauthori[sz]ed\b",
    r"\bforbidden\b",
    r"access denied",
    r"insufficient permissions?",
    r"token (?:has )?expired",
    r"no (?:api key|credentials) found",
    r"missing (?:api key|credentials|authorization)",
    r"\b401\b",
    r"\b403\b",
)
_FORMAT = _rx(
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
_TIMEOUT = _rx(
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
)


def _classify_message(text: str) -> FailoverReason | None:
    if not text:
        return None
    if _SESSION_EXPIRED.search(text):
        return R.SESSION_EXPIRED
    if _MODEL_NOT_FOUND.search(text):
        return R.MODEL_NOT_FOUND
    if _CONTEXT_OVERFLOW.search(text) and not _RATE_LIMIT.search(text):
        return R.CONTEXT_OVERFLOW
    if _REFUSAL.search(text):
        return R.REFUSAL
    if _BILLING.search(text) and not (_PERIODIC_LIMIT.search(text) and not _HARD_BILLING.search(text)):
        return R.BILLING
    if _RATE_LIMIT.search(text) or _PERIODIC_LIMIT.search(text):
        return R.RATE_LIMIT
    if _OVERLOADED.search(text):
        return R.OVERLOADED
    if _AUTH_PERMANENT.search(text):
        return R.AUTH_PERMANENT
    if _AUTH.search(text):
        return R.AUTH
    if _SERVER_ERROR.search(text):
        return R.SERVER_ERROR
    if _FORMAT.search(text):
        return R.FORMAT
    if _TIMEOUT.search(text):
        return R.TIMEOUT
    return None


def _classify_402(text: str) -> FailoverReason:
    if _RETRYABLE_WINDOW.search(text) and not _HARD_BILLING.search(text):
        return R.RATE_LIMIT
    return R.BILLING


def _classify_status(status: int, text: str) -> FailoverReason | None:
    if status == 402:
        return _classify_402(text)
    if status == 429:
        if _BILLING.search(text) and not _RETRYABLE_WINDOW.search(text):
            return R.BILLING
        return R.RATE_LIMIT
    if status in (401, 403):
        if _AUTH_PERMANENT.search(text):
            return R.AUTH_PERMANENT
        if _BILLING.search(text):
            return R.BILLING
        return R.AUTH
    if status == 404:
        msg = _classify_message(text)
        if msg in (R.CONTEXT_OVERFLOW, R.SESSION_EXPIRED, R.BILLING, R.AUTH, R.AUTH_PERMANENT):
            return msg
        return R.MODEL_NOT_FOUND
    if status == 413:
        return R.CONTEXT_OVERFLOW
    if status in (408, 499, 504, 522, 524):
        return R.TIMEOUT
    if status == 529:
        return R.OVERLOADED
    if status == 503:
        return R.OVERLOADED if _OVERLOADED.search(text) else R.SERVER_ERROR
    if 500 <= status <= 599:
        return R.OVERLOADED if _OVERLOADED.search(text) else R.SERVER_ERROR
    if status in (400, 422):
        msg = _classify_message(text)
        if msg is not None and msg not in (R.SERVER_ERROR, R.TIMEOUT):
            return msg
        return R.FORMAT
    if status == 410:
        msg = _classify_message(text)
        return msg if msg in (R.SESSION_EXPIRED, R.BILLING, R.AUTH, R.AUTH_PERMANENT) else R.SESSION_EXPIRED
    if 400 <= status <= 499:
        return _classify_message(text)
    return None


def _failover_reason(node: Any) -> FailoverReason | None:
    """The reason of a FailoverError, or of a foreign one recognised by name."""
    if isinstance(node, FailoverError):
        return node.reason
    try:
        if type(node).__name__ == "FailoverError":
            r = _get(node, "reason")
            if isinstance(r, str):
                return FailoverReason(r)
    except Exception:
        return None
    return None


def _children(node: Any, attrs: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    if isinstance(node, BaseException):
        try:
            c = node.__cause__
            if c is not None:
                out.append(c)
            ctx = node.__context__
            if ctx is not None and not node.__suppress_context__:
                out.append(ctx)
            if isinstance(node, BaseExceptionGroup):
                out.extend(tuple(node.exceptions)[:64])
        except Exception:
            pass
    if isinstance(node, str | bytes | bytearray):
        return out
    for name in _CHILD_ATTRS:
        v = attrs.get(name)
        if v is not None and v is not node and not isinstance(v, int | float | bool):
            out.append(v)
    return out


# Exception types whose instances, with nothing chained and an empty __dict__, are fully
# described by (type, str(instance)): the fastest path, for the common repeated provider error.
_fast_types: dict[type, bool] = {}


def _fast_type(tp: type) -> bool:
    found = _fast_types.get(tp)
    if found is not None:
        return found
    ok = False
    try:
        if (
            issubclass(tp, BaseException)
            and not issubclass(tp, BaseExceptionGroup | FailoverError)
            and tp.__name__ != "FailoverError"
            and not _type_coordination_kind(tp)
        ):
            consts = _class_constants(tp)
            ok = consts is not None and "message" not in consts and not (consts.keys() & _CHILD_SET)
    except Exception:
        ok = False
    try:
        if len(_fast_types) < 4096:
            _fast_types[tp] = ok
    except Exception:
        pass
    return ok


def _analyze(err: object) -> Classification:
    if err is None:
        return _NOTHING
    tp = type(err)
    # An error that *is* a coordination error wins whatever lies beneath it.
    kind = _type_coordination_kind(type(err))
    if kind:
        return Classification(None, kind, None, None)
    top_failover = _failover_reason(err)
    if top_failover is not None:
        status = _as_status(_get(err, "status"))
        return Classification(top_failover, None, status, _as_code(_get(err, "code")))

    if (
        isinstance(err, BaseException)
        and err.__cause__ is None
        and (err.__context__ is None or err.__suppress_context__)
        and not isinstance(err, BaseExceptionGroup)
    ):
        # A leaf error (nothing beneath it) is classified by its type, its scalar attributes
        # and its text alone: remember the answer, since providers repeat the same errors.
        consts = _class_constants(tp)
        if consts is not None and not getattr(err, "__dict__", True) and not (consts.keys() & _CHILD_SET):
            # Fields are class constants: type and text say it all. analyze() probes the same
            # (tp, 1, text) key for "fast" types before calling here.
            return _leaf(err, lambda: (tp, 1 if _fast_type(tp) else None, _text_of(err, consts)))
        attrs = _attrs(err)
        if not (attrs.keys() & _CHILD_SET):
            return _leaf(err, lambda: (tp, tuple(attrs.items()), _text_of(err, attrs)))
    return _walk(err)


_LEAF_CACHE_SIZE = 2048
_leaf_cache: dict[tuple[type, Any, str], Classification] = {}


def _leaf(err: object, make_key: Any) -> Classification:
    """Classify a leaf error through the cache (the key is built lazily: it may raise)."""
    try:
        key = make_key()
        hit = _leaf_cache.get(key)
    except Exception:
        return _walk(err)
    if hit is None:
        hit = _walk(err)
        if len(_leaf_cache) >= _LEAF_CACHE_SIZE:
            _leaf_cache.clear()
        _leaf_cache[key] = hit
    return hit


_CHILD_SET = frozenset(_CHILD_ATTRS)


def _walk(err: object) -> Classification:
    # Breadth-first walk. parents[i] is the index of node i's parent (-1 for the root),
    # so that explicit metadata can be checked on the ancestors of a coordination error.
    nodes: list[Any] = [err]
    parents: list[int] = [-1]
    depths: list[int] = [0]
    seen: set[int] = {id(err)}
    statuses: list[int | None] = []
    codes: list[str | None] = []
    explicit: list[FailoverReason | None] = []
    texts: list[str] = []
    type_reason: FailoverReason | None = None
    coord_index = -1
    coord_kind = ""
    i = 0
    while i < len(nodes):
        node = nodes[i]
        depth = depths[i]
        attrs = _attrs(node)
        status = _node_status(attrs)
        code = _node_code(node, attrs)
        text = _text_of(node, attrs).lower()
        if status is None and text and not isinstance(node, str | bytes | bytearray):
            status = _leading_status(text)
        statuses.append(status)
        codes.append(code)
        texts.append(text)
        node_kind = "" if i == 0 else _type_coordination_kind(type(node))
        if not node_kind and code in _COORDINATION_CODES:
            node_kind = _COORDINATION_CODES[code]
        fo = None if i == 0 else _failover_reason(node)
        explicit.append(fo)
        if node_kind:
            if coord_index < 0:
                coord_index, coord_kind = i, node_kind
            i += 1
            continue  # what lies beneath a coordination error is its own business
        if fo is not None:
            i += 1
            continue  # a FailoverError's reason is authoritative; don't re-read its cause
        if type_reason is None and isinstance(node, BaseException):
            type_reason = _type_reason(type(node))
        if depth < MAX_DEPTH and len(nodes) < MAX_NODES:
            for child in _children(node, attrs):
                cid = id(child)
                if cid in seen:
                    continue
                seen.add(cid)
                nodes.append(child)
                parents.append(i)
                depths.append(depth + 1)
                if len(nodes) >= MAX_NODES:
                    break
        i += 1

    walked = range(len(statuses))
    all_text = " | ".join(t for t in texts if t)[: _MAX_TEXT * 2]
    status = next((s for s in statuses if s is not None), None)
    code = next((c for c in codes if c is not None), None)

    if coord_index >= 0:
        # Explicit provider metadata on an ancestor of the coordination error wins.
        j = parents[coord_index]
        while j >= 0:
            if explicit[j] is not None:
                return Classification(explicit[j], None, statuses[j], codes[j])
            s = statuses[j]
            if s is not None:
                r = _classify_status(s, all_text)
                if r is not None:
                    return Classification(r, None, s, codes[j])
            c = codes[j]
            if c is not None:
                r = _CODE_REASONS.get(c)
                if r is not None and r is not R.TIMEOUT:
                    return Classification(r, None, statuses[j], c)
            j = parents[j]
        return Classification(None, coord_kind, status, code)

    nested = next((e for e in explicit if e is not None), None)
    if nested is not None:
        return Classification(nested, None, status, code)
    if status is not None:
        r = _classify_status(status, all_text)
        if r is not None:
            return Classification(r, None, status, code)
    for k in walked:
        c = codes[k]
        if c is not None:
            r = _CODE_REASONS.get(c)
            if r is not None:
                return Classification(r, None, status, c)
    if type_reason is not None:
        return Classification(type_reason, None, status, code)
    for t in texts:
        r = _classify_message(t)
        if r is not None:
            return Classification(r, None, status, code)
    return Classification(None, None, status, code)


def analyze(err: object) -> Classification:
    """Read *err* once and return its reason, coordination kind, status and code.

    This is what the driver uses: one walk of the chain per failure. Never raises.
    """
    tp = type(err)
    if _fast_types.get(tp):  # the repeated leaf provider error, without a call layer
        exc: BaseException = err  # type: ignore[assignment]  # only exception types are "fast"
        try:
            if (
                exc.__cause__ is None
                and not exc.__dict__
                and (exc.__context__ is None or exc.__suppress_context__)
            ):
                hit = _leaf_cache.get((tp, 1, str(exc)))
                if hit is not None:
                    return hit
        except Exception:
            pass
    try:
        return _analyze(err)
    except Exception:  # includes RecursionError from a pathological __str__
        return _NOTHING


def classify_failure(err: object) -> FailoverReason | None:
    """The provider failure reason behind *err*, or ``None``.

    ``None`` means: not a provider failure we recognise — including every coordination
    error. The driver records such failures as ``unknown`` and still falls back.
    """
    return analyze(err).reason


def is_coordination_error(err: object) -> bool:
    """Whether *err* is, or is caused by, a local coordination error that no explicit
    provider metadata overrides (see the module docstring for the precedence rule)."""
    return analyze(err).coordination_kind is not None


def coordination_kind(err: object) -> str | None:
    """``"session_takeover"``, ``"write_lock_timeout"``, a registered kind, or ``None``."""
    return analyze(err).coordination_kind
