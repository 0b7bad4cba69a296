"""Redaction of secrets from error text before it leaves the process (spans, logs).

Provider errors quote API keys more often than one would hope ("Incorrect API key
provided: sk-proj-…"), and HTTP libraries quote headers and URLs. Everything exported as
text goes through :func:`redact`: API keys (``sk-…``, ``sk-ant-…``, ``AIza…``, ``xai-…``,
``gsk_…``), bearer/basic credentials, ``key=``/``api_key=``/``token=``/``secret=``/
``password=`` values, and long hex or base64-like runs are replaced by ``[REDACTED]``;
the result is capped (default 512 characters).
"""

from __future__ import annotations

import re

__all__ = ["MAX_EXPORTED_TEXT", "REDACTED", "redact"]

REDACTED = "[REDACTED]"
MAX_EXPORTED_TEXT = 512

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization headers: Bearer / Basic / token credentials.
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    # Provider key formats.
    (re.compile(r"\bsk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"), REDACTED),
    (re.compile(r"\b(?:xai|gsk|pplx|hf|ghp|gho|glpat|xox[abp])[-_][A-Za-z0-9_-]{12,}"), REDACTED),
    # key=value / "api_key": "value" / x-api-key: value
    (
        re.compile(
            r"(?i)((?:api[_-]?key|x-api-key|access[_-]?token|refresh[_-]?token|auth[_-]?token|token|"
            r"secret|client[_-]?secret|password|passwd|key|sig|signature)\"?\s*[:=]\s*\"?)"
            r"([^\s\"'&,;}]{4,})"
        ),
        r"\1" + REDACTED,
    ),
    # Long opaque tokens: 32+ hex, or 40+ base64/base64url characters with mixed classes.
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), REDACTED),
    (
        re.compile(
            r"(?<![A-Za-z0-9_+/-])(?=[A-Za-z0-9_+/-]*[0-9])(?=[A-Za-z0-9_+/-]*[A-Za-z])[A-Za-z0-9_+/-]{40,}={0,2}"
        ),
        REDACTED,
    ),
)


# Cheap pre-check: text that has none of these cannot hold anything the patterns replace.
_MAYBE_SECRET = re.compile(
    r"(?i)sk-|aiza|bearer|basic|token|key|secret|passw|sig|xai-|gsk_|pplx-|hf_|gh[po]_|glpat|xox|"
    r"[0-9a-f]{32}|[A-Za-z0-9_+/-]{40}"
)
_cache: dict[tuple[str, int], str] = {}


def redact(text: object, limit: int = MAX_EXPORTED_TEXT) -> str:
    """*text* (any object: ``str()`` is taken safely) with secrets replaced, capped to *limit*."""
    try:
        s = text if isinstance(text, str) else str(text)
    except Exception:
        return f"<unprintable {type(text).__name__}>"
    key = (s, limit)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    out = _redact(s, limit)
    if len(s) <= 4096:  # providers repeat their error texts: remember a bounded number
        if len(_cache) >= 1024:
            _cache.clear()
        _cache[key] = out
    return out


def _redact(s: str, limit: int) -> str:
    # Look at a bounded window: redaction must not be the slow part of a failure path.
    if len(s) > limit * 4:
        s = s[: limit * 4]
    if _MAYBE_SECRET.search(s):
        for pattern, repl in _PATTERNS:
            s = pattern.sub(repl, s)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s
