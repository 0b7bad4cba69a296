"""Redaction of secrets from text before it leaves the process (spans, logs, error messages).

Provider errors quote API keys more often than one would hope ("Incorrect API key
provided: sk-proj-…"), and HTTP libraries quote headers, URLs and request bodies. Everything
exported as text goes through :func:`redact`, which replaces with ``[REDACTED]``:

* credentials of a known shape, whole (prefix included): OpenAI/DeepSeek/Moonshot/OpenRouter
  ``sk-…``, Anthropic ``sk-ant-…``, Google ``AIza…``/``ya29.…``/``GOCSPX-…``, xAI ``xai-…``,
  Groq ``gsk_…``, Perplexity ``pplx-…``, Hugging Face ``hf_…``, Replicate ``r8_…``, GitHub
  ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/``github_pat_…``, GitLab ``glpat-…``, Slack
  ``xox?-…`` and webhook URLs, Stripe ``sk_live_``/``rk_live_``/``whsec_…``, AWS
  ``AKIA``/``ASIA…``, Twilio ``SK…``, SendGrid ``SG.….…``, Mailgun ``key-…``, npm ``npm_…``,
  PyPI ``pypi-…``, Databricks ``dapi…``, DigitalOcean ``dop_v1_…``, Shopify ``shp*_…``,
  Telegram bot tokens, JWTs and PEM private-key blocks;
* ``Authorization``/``Cookie`` header values (to the end of the line), ``Bearer``/``Basic``/
  ``ApiKey`` credentials, and the user-info of URLs (``https://user:password@host``);
* the value of any ``name=value``/``name: value`` pair — also quoted, JSON- or repr-style
  (``'password': '…'``) — whose name ends in ``key``, ``token``, ``secret``, ``password``,
  ``passwd``, ``pwd``, ``credential(s)``, ``signature``, ``sig`` or ``auth``;
* unprefixed keys: runs of 32+ hex digits, of 32+ letters and digits (with at least one
  digit), and of 40+ base64/base64url characters mixing upper case, lower case and digits
  (file paths excepted).

:func:`redact` redacts *first* and cuts *after*: a cut made before redaction can leave a key
too short to be recognised. Very long texts are looked at through a bounded window (so that
redaction is never the slow part of a failure path), and the window ends on a token boundary:
a credential cut by the window is dropped, never left behind as an unrecognisable fragment.

:func:`cap_label` bounds metric label values (model names come from configuration, but a
100 KB model name must not make a 100 KB series).
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["LABEL_VALUE_MAX", "MAX_EXPORTED_TEXT", "REDACTED", "cap_label", "redact", "redact_url"]

REDACTED = "[REDACTED]"
MAX_EXPORTED_TEXT = 512
LABEL_VALUE_MAX = 128
# Redaction looks at no more than this many characters, or four times the limit if larger.
_MIN_WINDOW = 4096

# Credentials recognised by their shape. Each is replaced whole, prefix included.
_SHAPES = (
    # OpenAI (sk-, sk-proj-, sk-svcacct-, sk-admin-), Anthropic sk-ant-, DeepSeek, Moonshot, OpenRouter
    r"sk-[A-Za-z0-9_-]{16,}",
    r"[rsp]k_(?:live|test)_[A-Za-z0-9]{10,}",  # Stripe secret / restricted / publishable
    r"whsec_[A-Za-z0-9]{16,}",  # Stripe webhook signing secret
    r"AIza[0-9A-Za-z_-]{30,}",  # Google API key
    r"ya29\.[0-9A-Za-z_-]{20,}",  # Google OAuth access token
    r"GOCSPX-[0-9A-Za-z_-]{20,}",  # Google OAuth client secret
    r"(?:xai|pplx|nvapi|tvly)-[A-Za-z0-9_-]{20,}",  # xAI, Perplexity, NVIDIA, Tavily
    r"(?:gsk|npm|r8|fw)_[A-Za-z0-9]{20,}",  # Groq, npm, Replicate, Fireworks
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub classic, OAuth, user, server, refresh tokens
    r"github_pat_[A-Za-z0-9_]{40,}",  # GitHub fine-grained token
    r"gl(?:pat|ptt|dt|rt)-[A-Za-z0-9_-]{20,}",  # GitLab
    r"xox[abposre]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"xapp-[A-Za-z0-9-]{10,}",  # Slack app-level token
    r"pypi-[A-Za-z0-9_-]{16,}",  # PyPI
    r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}",  # AWS access key id
    r"SK[0-9a-fA-F]{32}",  # Twilio API key SID
    r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",  # SendGrid
    r"key-[0-9a-f]{32}",  # Mailgun
    r"dapi[0-9a-f]{32}",  # Databricks
    r"dop_v1_[0-9a-f]{64}",  # DigitalOcean
    r"shp(?:at|ss|ca|pa)_[0-9a-fA-F]{32}",  # Shopify
    r"sbp_[0-9a-f]{40}",  # Supabase
    r"lin_(?:api|oauth)_[A-Za-z0-9]{32,}",  # Linear
    r"\d{8,10}:AA[A-Za-z0-9_-]{30,}",  # Telegram bot token
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",  # JWT (header.payload.signature)
)

_Q = r"(?:\\?[\"'])"  # a quote, possibly escaped (JSON inside a string)
_NAME = r"[A-Za-z0-9_.-]*?(?:key|token|secret|passw(?:or)?d|pwd|credentials?|signature|sig|auth)"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, to the END line (or to the end of the text when it was cut).
    (
        re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|\Z)"),
        REDACTED,
    ),
    # URL user-info: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,20}://)[^\s/?#@'\"<>]+@"), r"\1" + REDACTED + "@"),
    # Webhook URLs whose path is the secret.
    (
        re.compile(r"(?i)(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]+"),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)(discord(?:app)?\.com/api/webhooks/)[0-9]+/[A-Za-z0-9_-]+"), r"\1" + REDACTED),
    # Header values that are credentials as a whole: to the end of the line or the quote.
    (
        re.compile(rf"(?i)\b((?:proxy-)?authorization|(?:set-)?cookie){_Q}?(\s*[:=]\s*){_Q}?[^\r\n\"'\\]+"),
        r"\1\2" + REDACTED,
    ),
    # Credentials after an auth scheme, anywhere.
    (
        re.compile(
            r"(?i)\b(bearer|api-?key)(\s+)"
            r"(?=[A-Za-z._~+/=:-]*[0-9]|[A-Za-z0-9._~+/=:-]{20})[A-Za-z0-9._~+/=:-]{8,}"
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"\b(Basic|BASIC)(\s+)[A-Za-z0-9+/=]{8,}"), r"\1\2" + REDACTED),
    (re.compile(r"(?i)\b(token)(\s+)(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}"), r"\1\2" + REDACTED),
    # Known shapes.
    (re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(_SHAPES) + ")"), REDACTED),
)

# name=value, name: value, "name": "value", 'name': 'value', name => value (values quoted or
# not), and OpenAI's "API key provided: value".
_PAIR = re.compile(
    rf"(?i)(?<![A-Za-z0-9])({_NAME}{_Q}?(?:\s+provided)?\s*(?:[:=]|=>)\s*)"
    r"(?:(\\?\")(?:[^\"\\\r\n]|\\[^\"])*(?:\\?\"|(?=[\r\n])|$)|(')[^'\r\n]*(?:'|(?=[\r\n])|$)"
    r"|((?:[^\s\"'`,;&)}\]<>|]|&(?![A-Za-z0-9_.-]+=))+))"
)


def _pair(m: re.Match[str]) -> str:
    if m.group(4) is not None:
        if m.group(4).startswith("[REDACTED"):
            return m.group(0)
        return m.group(1) + REDACTED
    quote = m.group(2) or m.group(3)
    return m.group(1) + quote + REDACTED + quote


# Unprefixed keys: long hex (with a ".suffix" as in Zhipu's id.secret), long alphanumerics
# with a digit, long base64 mixing cases and digits.
_HEX = re.compile(r"(?<![A-Za-z0-9_])[0-9a-fA-F]{32,}(?:\.[A-Za-z0-9_-]{8,})?(?![A-Za-z0-9_])")
_ALNUM = re.compile(r"(?<![A-Za-z0-9_+/-])(?=[A-Za-z]*[0-9])[A-Za-z0-9]{32,}(?![A-Za-z0-9_+/-])")
_B64 = re.compile(
    r"(?<![A-Za-z0-9_+/=-])(?=[A-Za-z0-9_+/=-]*[0-9])(?=[A-Za-z0-9_+/=-]*[A-Z])(?=[A-Za-z0-9_+/=-]*[a-z])"
    r"[A-Za-z0-9_+/-]{40,}={0,2}"
)
# A path segment: words, CamelCase words, digits, joined by - or _ (base64 is none of that).
_PATH_SEGMENT = re.compile(r"[A-Z]*[a-z0-9]*(?:[A-Z][a-z0-9]+)*(?:[-_][A-Za-z0-9]*)*")


def _b64(m: re.Match[str]) -> str:
    run = m.group(0)
    if run.count("/") >= 2 and "+" not in run and all(_PATH_SEGMENT.fullmatch(s) for s in run.split("/")):
        return run
    return REDACTED


# Where a window may end: a character no credential contains.
_UP_TO_LAST_BOUNDARY = re.compile(r"[\s\S]*[\s\"'`<>()\[\]{},;|]")
_cache: dict[tuple[str, int], str] = {}


def redact(text: object, limit: int = MAX_EXPORTED_TEXT) -> str:
    """*text* (any object: ``str()`` is taken safely) with secrets replaced, then capped to *limit*.

    Redaction comes first and the cut after it, so no cut can leave a piece of a key that is
    too short to be recognised. A cut text ends with ``…``.
    """
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
    window = max(limit * 4, _MIN_WINDOW)
    cut = False
    if len(s) > window:
        # Look at a bounded window, ended on a token boundary: a credential straddling the
        # window's edge is dropped whole rather than left as a fragment too short to match.
        m = _UP_TO_LAST_BOUNDARY.match(s, 0, window)
        s = s[: m.end() - 1] if m is not None else ""
        cut = True
    for pattern, repl in _PATTERNS:
        s = pattern.sub(repl, s)
    s = _PAIR.sub(_pair, s)
    s = _HEX.sub(REDACTED, s)
    s = _ALNUM.sub(REDACTED, s)
    s = _B64.sub(_b64, s)
    if cut or len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def cap_label(value: str, limit: int = LABEL_VALUE_MAX) -> str:
    """*value* if it has at most *limit* characters, else a prefix and a short hash of the
    whole value (``<prefix>~<12 hex>``, *limit* characters): two long values that share a
    prefix stay distinct, and the same value always gives the same label."""
    if len(value) <= limit:
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return value[: limit - len(digest) - 1] + "~" + digest


def redact_url(url: str) -> str:
    """*url* with its password, if any, replaced by ``***`` (for reprs, logs and reports)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:***@" if parts.username else "***@"
        return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<url>"
