"""The chain walk: read every error in a chain once, then decide.

:func:`analyze` walks breadth-first from the error through ``__cause__``, ``__context__``,
the members of exception groups and the attributes/keys ``cause``, ``error``, ``reason``,
``response``, ``body``, ``detail`` and ``details`` (and AWS's ``Error``, MiniMax's
``base_resp``), parsing JSON bodies found in text. Cycles are guarded; the full read
stops at depth 25 and after 256 nodes, and past that a cheap scan (identity and type
only) still finds a coordination error at any depth.

From each node it reads a status, codes, the type's names and the text, then
:func:`_decide` applies the precedence documented in :mod:`._vocabulary`. Coordination
comes first: an error that *is* a coordination error is coordination whatever lies
beneath it; one deeper in the chain wins unless explicit provider metadata on an error
*above* it (a :class:`~model_fallback.FailoverError`, a numeric status, a specific code
other than a timeout) says the provider failed.

Nothing here raises, whatever it is given.
"""

from __future__ import annotations

import errno as _errno
import json
import re
from typing import Any, NamedTuple

from model_fallback._model import FailoverReason
from model_fallback.classify import _vocabulary as vocab
from model_fallback.classify._types import CACHED, CHILD_ATTRS, CHILD_SET, READ_ATTRS, UNCACHED, TypeFacts
from model_fallback.errors import FailoverError

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Classification",
    "analyze",
    "analyze_uncached",
    "classify_failure",
    "coordination_kind",
    "is_coordination_error",
]

MAX_DEPTH = 25
MAX_NODES = 256
#: How far the identity-only scan for a coordination error goes past the full read.
MAX_SCAN = 100_000
_MAX_TEXT = 4096
_MAX_JSON = 16_384
_READ_SET = frozenset(READ_ATTRS)
_SCALARS = (str, bytes, bytearray, int, float, list, tuple)
_TEXT_KEYS = ("message", "Message", "msg", "error_msg", "status_msg", "error_message")
_STATUS_KEYS = ("status", "status_code", "statusCode", "http_status", "HTTPStatusCode")
_CODE_LIKE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:#/-]{0,63}")
_REASON_CODE = re.compile(r"[A-Z][A-Z0-9_]{2,63}")
_STRICT_INT = re.compile(r"\s*(\d{3})\s*")
_LEADING_STATUS = re.compile(
    r"^\s*(?:error[:\s]+)?(?:http(?:/\d(?:\.\d)?)?[\s:]*)?(?:status(?:\s*code)?[\s:=]*)?"
    r"([1-5]\d\d)\b(?![.\d])",
    re.IGNORECASE,
)


class Classification(NamedTuple):
    """The result of reading one error: everything the driver needs from one walk.

    Attributes:
        reason: the provider failure reason, or ``None``.
        coordination_kind: the coordination kind when the error is a local coordination
            error (then ``reason`` is ``None``).
        status: the HTTP-like status found, if any.
        code: the code found, if any.
        caller_error: the name of the Python programming error (``NameError``,
            ``TypeError``, ...) when the failure is a bug in the caller's own code: no
            provider signal anywhere in the chain, raised outside any provider SDK's
            response parsing. Then ``reason`` and ``coordination_kind`` are ``None``.
    """

    reason: FailoverReason | None
    coordination_kind: str | None
    status: int | None
    code: str | None
    caller_error: str | None = None


NOTHING = Classification(None, None, None, None)

# --- reading one node ----------------------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    """``getattr`` (or a mapping lookup) that never raises."""
    try:
        if isinstance(obj, dict):
            return obj.get(name)
        return getattr(obj, name, None)
    except Exception:
        return None


def _attrs(node: Any, facts: TypeFacts) -> dict[str, Any]:
    """The non-None values of :data:`READ_ATTRS` on *node* (attributes or mapping keys)."""
    found: dict[str, Any] = {}
    try:
        if isinstance(node, dict):
            for k in node.keys() & _READ_SET:
                v = node[k]
                if v is not None:
                    found[k] = v
            return found
        if not isinstance(node, BaseException) and isinstance(node, _SCALARS):
            return found
        plain, class_names = facts.attribute_layout(type(node))
        if plain:
            try:
                d = node.__dict__
            except Exception:
                d = None
            if d:
                for k in d.keys() & _READ_SET:
                    v = d[k]
                    if v is not None:
                        found[k] = v
            for k in class_names:
                if k not in found:
                    v = _get(node, k)
                    if v is not None:
                        found[k] = v
        else:
            for k in READ_ATTRS:
                v = _get(node, k)
                if v is not None:
                    found[k] = v
    except Exception:
        return found
    return found


def _text_of(node: Any, attrs: dict[str, Any]) -> str:
    try:
        text: Any = ""
        for key in _TEXT_KEYS:
            msg = attrs.get(key)
            if type(msg) is str and msg:
                text = msg
                break
        else:
            if isinstance(node, BaseException):
                text = str(node)
            elif isinstance(node, str):
                text = node
            elif isinstance(node, bytes | bytearray):
                text = bytes(node[:_MAX_TEXT]).decode("utf-8", "replace")
    except Exception:
        return ""
    if type(text) is not str:
        return ""
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT]


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


def _node_status(attrs: dict[str, Any]) -> int | None:
    for name in _STATUS_KEYS:
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
    code = attrs.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        return _as_status(code)  # Google's error.code is the HTTP status
    return None


def _as_code(value: Any) -> str | None:
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            v = value.strip()
            if v and _CODE_LIKE.fullmatch(v):
                return v.rsplit("#", 1)[-1].upper()  # AWS: "com.amazon...#ThrottlingException"
    except Exception:
        return None
    return None


def _node_codes(node: Any, attrs: dict[str, Any]) -> list[str]:
    codes: list[str] = []
    for key in ("code", "error_code", "Code", "errorType", "__type", "type"):
        c = _as_code(attrs.get(key))
        if c and c not in ("ERROR", "EXCEPTION"):
            codes.append(c)
    for holder in ("detail", "error"):
        inner = attrs.get(holder)
        if inner is not None and inner is not node and not isinstance(inner, str | bytes | int | float):
            for name in ("code", "type"):
                c = _as_code(_get(inner, name))
                if c and c not in ("ERROR", "EXCEPTION"):
                    codes.append(c)
    status = attrs.get("status")
    if isinstance(status, str) and _as_status(status) is None:
        c = _as_code(status)
        if c:
            codes.append(c)
    reason = attrs.get("reason")
    if isinstance(reason, str) and _REASON_CODE.fullmatch(reason):
        codes.append(reason)  # Google ErrorInfo: details[].reason = "API_KEY_INVALID"
    sc = attrs.get("status_code")
    if isinstance(sc, int) and not isinstance(sc, bool) and _as_status(sc) is None:
        codes.append(str(sc))  # MiniMax: base_resp.status_code = 1002
    en = attrs.get("errno")
    if isinstance(en, int) and not isinstance(en, bool) and isinstance(node, OSError):
        errno_name = _errno.errorcode.get(en)
        if errno_name:
            codes.append(errno_name)
    return codes


def _json_in(text: str) -> Any:
    """The JSON object embedded in *text* (an SDK message that quotes the body), or None."""
    start = text.find("{")
    if start < 0 or len(text) > _MAX_JSON:
        return None
    end = text.rfind("}")
    if end <= start:
        return None
    try:
        found = json.loads(text[start : end + 1])
    except Exception:
        return None
    return found if isinstance(found, dict) else None


def _children(node: Any, attrs: dict[str, Any], raw_text: str) -> list[Any]:
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
    if isinstance(node, list | tuple):
        out.extend(node[:16])
        return out
    if not isinstance(node, str | bytes | bytearray):
        for name in CHILD_ATTRS:
            v = attrs.get(name)
            if v is not None and v is not node and not isinstance(v, int | float | bool):
                out.append(v)
    if "{" in raw_text and not isinstance(node, dict):
        body = _json_in(raw_text)
        if body is not None:
            out.append(body)
    return out


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


def _raised_while_parsing(err: Any) -> bool:
    """Whether a provider SDK's response parsing is on *err*'s traceback."""
    try:
        tb = err.__traceback__
        for _ in range(200):
            if tb is None:
                return False
            frame = tb.tb_frame
            module = frame.f_globals.get("__name__", "")
            # pydantic's __getattr__ raising AttributeError for a typo in the caller's
            # `response.choices[0].mesage` is the caller's access, not a parse
            if isinstance(module, str) and frame.f_code.co_name not in ("__getattr__", "__getattribute__"):
                for prefix in vocab.RESPONSE_PARSING_MODULES:
                    if module == prefix or module.startswith(prefix + "."):
                        return True
            tb = tb.tb_next
    except Exception:
        return False
    return False


# --- the walk ------------------------------------------------------------------------


class _Read(NamedTuple):
    """What the walk read off the chain, node by node, in breadth-first order."""

    nodes: list[Any]
    parents: list[int]
    statuses: list[int | None]
    codes: list[list[str]]
    texts: list[str]  # lower-cased; "" for programming errors (their text is the caller's)
    explicit: list[FailoverReason | None]
    specific_types: list[FailoverReason | None]
    generic_types: list[FailoverReason | None]
    callers: list[str | None]
    coord_index: int
    coord_kind: str
    truncated: bool
    parse_failure: bool  # an exception raised inside an SDK's response parsing


def _read_chain(err: object, facts: TypeFacts) -> _Read:
    nodes: list[Any] = [err]
    parents = [-1]
    depths = [0]
    seen = {id(err)}
    r = _Read(nodes, parents, [], [], [], [], [], [], [], -1, "", False, False)
    coord_index, coord_kind, truncated = -1, "", False
    parse_failure = False
    i = 0
    while i < len(nodes):
        node = nodes[i]
        attrs = _attrs(node, facts)
        raw_text = _text_of(node, attrs)
        is_exc = isinstance(node, BaseException)
        specific = generic = None
        caller = None
        if is_exc:
            specific, generic, caller, located = facts.type_reasons(type(node))
            if located and _raised_while_parsing(node):
                parse_failure = True
                caller = None  # an SDK choking on a response, not the caller's bug
        status = _node_status(attrs)
        text = "" if caller else raw_text.lower()
        if status is None and text and not isinstance(node, str | bytes | bytearray):
            m = _LEADING_STATUS.match(text)
            status = int(m.group(1)) if m else None
        r.statuses.append(status)
        r.codes.append(_node_codes(node, attrs))
        r.texts.append(text)
        r.specific_types.append(specific)
        r.generic_types.append(generic)
        r.callers.append(caller)
        kind = facts.coordination_kind(type(node)) if is_exc and i > 0 else ""
        fo = None if i == 0 else _failover_reason(node)
        r.explicit.append(fo)
        if kind:
            if coord_index < 0:
                coord_index, coord_kind = i, kind
            i += 1
            continue  # what lies beneath a coordination error is its own business
        if fo is not None:
            i += 1
            continue  # a FailoverError's reason is authoritative; don't re-read its cause
        children = _children(node, attrs, raw_text)
        if is_exc and isinstance(node, BaseExceptionGroup) and len(node.exceptions) > 64:
            truncated = True
        if children and (depths[i] >= MAX_DEPTH or len(nodes) >= MAX_NODES):
            truncated = True
        elif children:
            for child in children:
                cid = id(child)
                if cid in seen:
                    continue
                seen.add(cid)
                nodes.append(child)
                parents.append(i)
                depths.append(depths[i] + 1)
                if len(nodes) >= MAX_NODES:
                    truncated = True
                    break
        i += 1
    if coord_index < 0 and truncated:
        coord_index, coord_kind = _scan_for_coordination(nodes, seen, facts)
    return r._replace(
        coord_index=coord_index, coord_kind=coord_kind, truncated=truncated, parse_failure=parse_failure
    )


def _scan_for_coordination(nodes: list[Any], seen: set[int], facts: TypeFacts) -> tuple[int, str]:
    """Past the full read: follow exception links only, by identity, for a coordination
    error. Returns ``(MAX_NODES, kind)`` when found (an index past every read node)."""
    stack = [n for n in nodes if isinstance(n, BaseException)]
    visited = set(seen)
    steps = 0
    while stack and steps < MAX_SCAN:
        node = stack.pop()
        steps += 1
        try:
            links: list[Any] = [node.__cause__, node.__context__]
            if isinstance(node, BaseExceptionGroup):
                links.extend(node.exceptions)
        except Exception:  # a hostile exception object: nothing to follow
            links = []
        for link in links:
            if link is None or id(link) in visited or not isinstance(link, BaseException):
                continue
            visited.add(id(link))
            kind = facts.coordination_kind(type(link))
            if kind:
                return MAX_NODES, kind
            stack.append(link)
    return -1, ""


# When several specific codes disagree (LiteLLM's own type "throttling_error" over the
# provider's "insufficient_quota"), the narrower reason wins.
_RANK = {
    r: i
    for i, r in enumerate(
        (
            FailoverReason.AUTH_PERMANENT,
            FailoverReason.BILLING,
            FailoverReason.CONTEXT_OVERFLOW,
            FailoverReason.MODEL_NOT_FOUND,
            FailoverReason.REFUSAL,
            FailoverReason.AUTH,
            FailoverReason.OVERLOADED,
            FailoverReason.RATE_LIMIT,
            FailoverReason.SERVER_ERROR,
            FailoverReason.FORMAT,
            FailoverReason.TIMEOUT,
        )
    )
}


def _codes_reason(
    codes: list[str], provider: vocab.ProviderVocabulary | None
) -> tuple[FailoverReason | None, str | None]:
    """The reason a provider's own code or a specific code states, with that code."""
    if provider is not None:
        for c in codes:
            r = provider.codes.get(c)
            if r is not None:
                return r, c
    best: tuple[FailoverReason | None, str | None] = (None, None)
    for c in codes:
        r = vocab.SPECIFIC_CODES.get(c)
        if r is None and c.startswith("THROTTL"):
            r = FailoverReason.RATE_LIMIT  # DashScope's Throttling.* family
        if r is not None and (best[0] is None or _RANK.get(r, 99) < _RANK.get(best[0], 99)):
            best = (r, c)
    return best


def _decide(read: _Read, provider: vocab.ProviderVocabulary | None) -> Classification:
    statuses, codes, texts = read.statuses, read.codes, read.texts
    status = next((s for s in statuses if s is not None), None)
    code = next((c[0] for c in codes if c), None)
    all_text = " | ".join(t for t in texts if t)[: _MAX_TEXT * 2]

    if read.coord_index >= 0:
        # Explicit provider metadata on an ancestor of the coordination error wins.
        j = read.parents[read.coord_index] if read.coord_index < len(read.parents) else 0
        ancestors = []
        while j >= 0:
            ancestors.append(j)
            j = read.parents[j]
        if read.coord_index >= len(read.parents):
            ancestors = list(range(len(read.parents)))  # found past the read: all read nodes are above it
        for j in ancestors:
            if read.explicit[j] is not None:
                return Classification(read.explicit[j], None, statuses[j], codes[j][0] if codes[j] else None)
            s = statuses[j]
            if s is not None:
                r = vocab.classify_status(s, all_text)
                if r is not None:
                    return Classification(r, None, s, codes[j][0] if codes[j] else None)
            r, c = _codes_reason(codes[j], provider)
            if r is not None and r is not FailoverReason.TIMEOUT:
                return Classification(r, None, statuses[j], c)
        return Classification(None, read.coord_kind, status, code)

    def found(reason: FailoverReason, with_code: str | None = None) -> Classification:
        return Classification(reason, None, status, with_code or code)

    # 1. a nested FailoverError keeps its reason
    nested = next((e for e in read.explicit if e is not None), None)
    if nested is not None:
        return found(nested)
    # 2-3. a provider's own code, a specific code (a timeout code waits for the status)
    transport: FailoverReason | None = None
    r, c = _codes_reason([c for node_codes in codes for c in node_codes], provider)
    if r is FailoverReason.TIMEOUT:
        transport = r
    elif r is not None:
        return found(r, c)
    if provider is not None and all_text:
        for pattern, reason in provider.messages:
            if pattern.search(all_text):
                return found(reason)
    for r in read.specific_types:
        if r is FailoverReason.TIMEOUT:
            transport = transport or r
        elif r is not None:
            return found(r)
    # 4. overflow text and malformed-response text beat a generic status
    if status != 429 and vocab.is_overflow_text(all_text):
        return found(FailoverReason.CONTEXT_OVERFLOW)
    if vocab.MALFORMED_RESPONSE_TEXT.search(all_text):
        return found(FailoverReason.FORMAT)
    # an SDK that choked on the response: beats a transport wrapper around it (LiteLLM's
    # APIConnectionError with status 500), not a real error status
    if read.parse_failure and (transport is not None or status is None or 200 <= status < 300):
        return found(FailoverReason.FORMAT)
    # a connection that failed: only a 4xx status says more about the request
    if transport is not None and (status is None or status >= 500):
        return found(transport)
    # 5. the status, refined by the text
    if status is not None:
        r = vocab.classify_status(status, all_text)
        if r is not None:
            return found(r)
    # 6. generic codes and type names
    for node_codes in codes:
        for c in node_codes:
            r = vocab.GENERIC_CODES.get(c)
            if r is not None:
                return found(r, c)
            if c in vocab.TIMEOUT_CODES:
                transport = transport or FailoverReason.TIMEOUT
    for r in read.generic_types:
        if r is not None:
            return found(r)
    # 7. the message
    for t in texts:
        r = vocab.classify_message(t)
        if r is not None:
            return found(r)
    # 8. a transport failure with nothing else said
    if transport is not None:
        return found(transport)
    if read.parse_failure:
        return found(FailoverReason.FORMAT)
    # 9. a programming error raised outside any response parsing: the caller's bug
    for caller in read.callers:
        if caller is not None:
            return Classification(None, None, status, code, caller)
    return Classification(None, None, status, code)


def _walk(err: object, provider: vocab.ProviderVocabulary | None, facts: TypeFacts) -> Classification:
    return _decide(_read_chain(err, facts), provider)


# --- entry points --------------------------------------------------------------------


def _analyze(err: object, hint: str | None) -> Classification:
    if err is None:
        return NOTHING
    # Leaf answers are keyed by the hint as given (its spelling), so the fast path in
    # analyze() needs no lookup; the vocabulary is resolved here, off the fast path.
    name = hint if hint is None or type(hint) is str else None
    provider = vocab.provider_vocabulary(name)[1]
    tp = type(err)
    # An error that *is* a coordination error wins whatever lies beneath it.
    kind = CACHED.coordination_kind(tp)
    if kind:
        return Classification(None, kind, None, None)
    top = _failover_reason(err)
    if top is not None:
        return Classification(top, None, _as_status(_get(err, "status")), _as_code(_get(err, "code")))
    if (
        isinstance(err, BaseException)
        and err.__cause__ is None
        and (err.__context__ is None or err.__suppress_context__)
        and not isinstance(err, BaseExceptionGroup)
    ):
        # A leaf error (nothing beneath it) is classified by its type, its scalar attributes
        # and its text alone (and, for a type whose meaning depends on where it was raised,
        # by whether a response parser raised it): remember the answer, since providers
        # repeat the same errors.
        consts = CACHED.class_constants(tp)
        located = CACHED.type_reasons(tp)[3]
        try:
            if consts is not None and not err.__dict__ and not (consts.keys() & CHILD_SET):
                key: Any = (tp, 1 if CACHED.is_leaf_type(tp) else None, _text_of(err, consts), name)
            else:
                attrs = _attrs(err, CACHED)
                if attrs.keys() & CHILD_SET:
                    return _walk(err, provider, CACHED)
                key = (tp, tuple(attrs.items()), _text_of(err, attrs), name)
            if located:
                key = (*key, _raised_while_parsing(err))
            hit = CACHED.leaf_get(key)
        except Exception:  # an unhashable attribute value
            return _walk(err, provider, CACHED)
        if hit is None:
            hit = _walk(err, provider, CACHED)
            CACHED.leaf_put(key, hit)
        return hit  # type: ignore[no-any-return]
    return _walk(err, provider, CACHED)


def analyze(err: object, provider: str | None = None) -> Classification:
    """Read *err* once and return its reason, coordination kind, status, code and, for a
    bug in the caller's own code, the programming error's name.

    *provider* is the candidate's provider (``Candidate.provider``): provider-specific
    codes and messages apply when it names a provider in the vocabulary; other names
    keep the generic rules. This is what the driver uses: one walk per failure. Never
    raises.
    """
    tp = type(err)
    try:
        if CACHED.leaf_types.get(tp):  # the repeated leaf provider error, without a call layer
            exc: BaseException = err  # type: ignore[assignment]  # only exception types are leaf types
            if (
                exc.__cause__ is None
                and not exc.__dict__
                and (exc.__context__ is None or exc.__suppress_context__)
            ):
                hit = CACHED.leaves.get((tp, 1, str(exc), provider))
                if hit is not None:
                    return hit  # type: ignore[no-any-return]
    except Exception:
        pass
    try:
        return _analyze(err, provider)
    except Exception:  # includes RecursionError from a pathological __str__
        return NOTHING


def analyze_uncached(err: object, provider: str | None = None) -> Classification:
    """:func:`analyze` without any cache: the reference answer (tests compare the two)."""
    if err is None:
        return NOTHING
    _, vocabulary = vocab.provider_vocabulary(provider)
    try:
        kind = UNCACHED.coordination_kind(type(err))
        if kind:
            return Classification(None, kind, None, None)
        top = _failover_reason(err)
        if top is not None:
            return Classification(top, None, _as_status(_get(err, "status")), _as_code(_get(err, "code")))
        return _walk(err, vocabulary, UNCACHED)
    except Exception:
        return NOTHING


def classify_failure(err: object, provider: str | None = None) -> FailoverReason | None:
    """The provider failure reason behind *err*, or ``None``.

    ``None`` means: not a provider failure we recognise, including every coordination
    error and every bug in the caller's own code. *provider* (the candidate's provider)
    turns on that provider's own codes and messages.
    """
    return analyze(err, provider).reason


def is_coordination_error(err: object) -> bool:
    """Whether *err* is, or is caused by, a local coordination error that no explicit
    provider metadata overrides (see :mod:`model_fallback.classify` for the precedence)."""
    return analyze(err).coordination_kind is not None


def coordination_kind(err: object) -> str | None:
    """``"session_takeover"``, ``"write_lock_timeout"``, a registered kind, or ``None``."""
    return analyze(err).coordination_kind
