"""Classifier rules beyond the shared conformance cases: chains, precedence, hostile input."""

from __future__ import annotations

import errno
import time
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import model_fallback as mf
from model_fallback import (
    FailoverReason as R,
)
from model_fallback import (
    classify_failure,
    coordination_kind,
    is_coordination_error,
    register_coordination_error,
    unregister_coordination_error,
)
from model_fallback.classify import MAX_DEPTH, analyze


def _err(message: str = "", cls: type[Exception] = Exception, **attrs: object) -> Exception:
    e = cls(message)
    for k, v in attrs.items():
        setattr(e, k, v)
    return e


def _lock() -> mf.SessionWriteLockTimeoutError:
    return mf.SessionWriteLockTimeoutError(path="/tmp/s.jsonl", waited_s=60.0, owner_pid=42)


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (401, "Unauthorized", R.AUTH),
        (403, "your API key has been deactivated", R.AUTH_PERMANENT),
        (403, "Your credit balance is too low to access the API", R.BILLING),
        (429, "You exceeded your current quota, please check your plan and billing details", R.BILLING),
        (429, "Rate limit reached for gpt-4.1-mini", R.RATE_LIMIT),
        (402, "insufficient credits — please top up your account", R.BILLING),
        (402, "Monthly spend limit reached, resets at midnight", R.RATE_LIMIT),
        (404, "The model `gpt-6` does not exist", R.MODEL_NOT_FOUND),
        (422, "This model's maximum context length is 8192 tokens", R.CONTEXT_OVERFLOW),
        (499, "client closed request", R.TIMEOUT),
        (502, "bad gateway", R.SERVER_ERROR),
        (503, "Service Unavailable", R.OVERLOADED),  # RFC 9110: temporary overload or maintenance
        (503, "Internal database error", R.SERVER_ERROR),
        (504, "gateway timeout", R.TIMEOUT),
        (522, "origin connection timed out", R.TIMEOUT),
        (524, "a timeout occurred", R.TIMEOUT),
        (529, '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', R.OVERLOADED),
    ],
)
def test_status_rules(status: int, message: str, expected: R) -> None:
    """Each HTTP status maps to its reason, refined by the message where DESIGN says so."""
    assert classify_failure(_err(message, status=status)) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("RATE_LIMIT_EXCEEDED", R.RATE_LIMIT),
        ("rate_limited", R.RATE_LIMIT),
        ("TOO_MANY_REQUESTS", R.RATE_LIMIT),
        ("ThrottlingException", R.RATE_LIMIT),
        ("OVERLOADED_ERROR", R.OVERLOADED),
        ("ECONNREFUSED", R.TIMEOUT),
        ("ECONNABORTED", R.TIMEOUT),
        ("EPIPE", R.TIMEOUT),
        ("EHOSTUNREACH", R.TIMEOUT),
        ("ENETUNREACH", R.TIMEOUT),
        ("EAI_AGAIN", R.TIMEOUT),
        ("insufficient_quota", R.BILLING),
    ],
)
def test_code_rules(code: str, expected: R) -> None:
    """Provider and errno codes map to reasons (case-insensitively)."""
    assert classify_failure(_err("socket", code=code)) is expected


def test_errno_of_a_real_oserror() -> None:
    """An OSError's errno is read as its code name."""
    e = OSError(errno.ECONNREFUSED, "Connection refused")
    info = analyze(e)
    assert info.reason is R.TIMEOUT
    assert info.code == "ECONNREFUSED"


def test_httpx_style_names_match_without_import() -> None:
    """Foreign exception classes are recognised by name anywhere in their MRO."""
    transport = type("TransportError", (Exception,), {})
    timeout_exc = type("TimeoutException", (transport,), {})
    read_timeout = type("ReadTimeout", (timeout_exc,), {})
    connect_error = type("ConnectError", (transport,), {})
    assert classify_failure(read_timeout("")) is R.TIMEOUT
    assert classify_failure(connect_error("[Errno 111]")) is R.TIMEOUT
    # (that the core never imports httpx is checked in a fresh interpreter: test_errors_and_api)


def test_detail_code_and_leading_status() -> None:
    """``detail.code`` is a code; a status leading the message is a status."""
    e = _err("bad", detail=types.SimpleNamespace(code="RESOURCE_EXHAUSTED"))
    assert classify_failure(e) is R.RATE_LIMIT
    assert analyze(Exception("429 Too Many Requests")).status == 429
    assert classify_failure(Exception("Error: 503 upstream overloaded")) is R.OVERLOADED


def test_wrapper_text_alone_does_not_hide_a_nested_status() -> None:
    """A status anywhere in the chain beats wrapper text."""
    inner = _err("Client error", status=401)
    outer = RuntimeError("request timed out")
    outer.__cause__ = inner
    assert classify_failure(outer) is R.AUTH


def test_body_and_response_children_are_read() -> None:
    """Attributes ``body``/``response`` are walked: their status and text count."""
    e = _err("API error", response=types.SimpleNamespace(status_code=529, text=""))
    assert classify_failure(e) is R.OVERLOADED
    e2 = _err("provider said no", body={"error": {"message": "The model is overloaded"}})
    assert classify_failure(e2) is R.OVERLOADED


# --- coordination and precedence -----------------------------------------------------


def test_exception_group_members_are_walked() -> None:
    """A lock timeout inside an exception group is coordination; a 429 member classifies."""
    group = ExceptionGroup("turn failed", [ValueError("x"), _lock()])
    assert coordination_kind(group) == "write_lock_timeout"
    group2 = ExceptionGroup("many", [ValueError("x"), _err("slow", status=429)])
    assert classify_failure(group2) is R.RATE_LIMIT


def test_lock_under_context_is_found() -> None:
    """``__context__`` (implicit chaining) is walked like ``__cause__``."""
    try:
        try:
            raise _lock()
        except mf.SessionWriteLockTimeoutError:
            raise RuntimeError("cleanup failed")  # noqa: B904 - implicit chaining is the point
    except RuntimeError as e:
        err = e
    assert err.__context__ is not None
    assert is_coordination_error(err)


def test_leading_status_in_wrapper_message_beats_nested_lock() -> None:
    """'429 Too Many Requests' text with a leading status is explicit metadata."""
    outer = Exception("429 Too Many Requests")
    outer.__cause__ = _lock()
    assert classify_failure(outer) is R.RATE_LIMIT
    assert not is_coordination_error(outer)


def test_408_wrapping_lock_falls_back() -> None:
    """A 408 status is explicit even though its reason is timeout (DESIGN §3)."""
    outer = _err("timeout", status=408)
    outer.__cause__ = _lock()
    assert classify_failure(outer) is R.TIMEOUT
    assert not is_coordination_error(outer)


def test_text_only_wrapper_around_lock_is_coordination() -> None:
    """'rate limited' text without metadata does not override a nested lock timeout."""
    outer = Exception("rate limited, try again")
    outer.__cause__ = _lock()
    assert classify_failure(outer) is None
    assert coordination_kind(outer) == "write_lock_timeout"


def test_status_below_a_lock_does_not_count() -> None:
    """Metadata *beneath* the coordination error is its own business."""
    lock = _lock()
    lock.__cause__ = _err("quota", status=429)
    outer = RuntimeError("turn failed")
    outer.__cause__ = lock
    assert coordination_kind(outer) == "write_lock_timeout"


def test_takeover_itself_wins_whatever_lies_beneath() -> None:
    """An error that *is* a takeover is coordination even with a provider-looking cause."""
    t = mf.SessionTakeoverError(path="s.jsonl")
    t.__cause__ = _err("rate limited", status=429)
    t.status = 429  # type: ignore[attr-defined]
    assert coordination_kind(t) == "session_takeover"
    assert classify_failure(t) is None


def test_a_lock_is_found_at_any_depth() -> None:
    """Our own coordination types are found past the full read's depth and node limits
    (an identity-only scan), and explicit provider metadata above still wins."""

    def chain(depth: int, top_status: int | None = None) -> Exception:
        inner: BaseException = _lock()
        for i in range(depth):
            outer = RuntimeError(f"layer {i}")
            outer.__cause__ = inner
            inner = outer
        assert isinstance(inner, Exception)
        if top_status is not None:
            inner.status = top_status  # type: ignore[attr-defined]
        return inner

    assert is_coordination_error(chain(MAX_DEPTH - 1))
    assert coordination_kind(chain(MAX_DEPTH + 5)) == "write_lock_timeout"
    assert coordination_kind(chain(3000)) == "write_lock_timeout"
    assert classify_failure(chain(3000, top_status=429)) is R.RATE_LIMIT
    assert not is_coordination_error(chain(3000, top_status=429))
    # ... in a wide group too, past the 64 members read in full
    members = [ValueError(str(i)) for i in range(300)] + [_lock()]
    assert coordination_kind(ExceptionGroup("many", members)) == "write_lock_timeout"


def test_registered_coordination_types() -> None:
    """Applications register their own coordination errors by class or by name."""

    class ActiveTurnClaimError(Exception):
        pass

    foreign = type("GatewayDrainingError", (Exception,), {})
    assert not is_coordination_error(ActiveTurnClaimError())
    register_coordination_error(ActiveTurnClaimError, "active_turn")
    register_coordination_error("GatewayDrainingError", "gateway_draining")
    try:
        wrapped = RuntimeError("x")
        wrapped.__cause__ = ActiveTurnClaimError()
        assert coordination_kind(wrapped) == "active_turn"
        assert coordination_kind(foreign()) == "gateway_draining"
    finally:
        unregister_coordination_error(ActiveTurnClaimError)
        unregister_coordination_error("GatewayDrainingError")
    assert not is_coordination_error(ActiveTurnClaimError())
    assert not is_coordination_error(foreign())


def test_register_rejects_bad_arguments() -> None:
    """Bad registrations fail clearly."""
    with pytest.raises(ValueError, match="lower_snake_case"):
        register_coordination_error(RuntimeError, "Bad Kind")
    with pytest.raises(TypeError):
        register_coordination_error(42, "x")  # type: ignore[arg-type]


def test_builtin_names_cannot_be_unregistered() -> None:
    """The built-in takeover names stay coordination."""
    unregister_coordination_error("EmbeddedAttemptSessionTakeoverError")
    foreign = type("EmbeddedAttemptSessionTakeoverError", (Exception,), {})
    assert coordination_kind(foreign("x")) == "session_takeover"


# --- hostile input -------------------------------------------------------------------


class Hostile(Exception):
    """Raises from every attribute access and from str()."""

    def __getattribute__(self, name: str) -> object:
        if name in {"__class__", "__cause__", "__context__", "__suppress_context__", "__traceback__"}:
            return object.__getattribute__(self, name)
        raise RuntimeError(f"no {name} for you")

    def __str__(self) -> str:
        raise RuntimeError("no str either")


class HostileObj:
    def __getattr__(self, name: str) -> object:
        raise KeyError(name)

    def __repr__(self) -> str:
        raise RuntimeError


@pytest.mark.parametrize(
    "obj",
    [
        None,
        42,
        "429 Too Many Requests",
        b"\xff\xfe rate limit",
        {"status": 429},
        [1, 2, 3],
        object(),
        HostileObj(),
        Hostile(),
        ValueError,
        types.SimpleNamespace(status="NaN", code=object(), message=b"x"),
    ],
    ids=lambda o: type(o).__name__,
)
def test_never_raises(obj: object) -> None:
    """Whatever it is given, the classifier returns instead of raising."""
    classify_failure(obj)
    is_coordination_error(obj)
    coordination_kind(obj)


def test_hostile_wrapper_around_lock() -> None:
    """A hostile wrapper still lets the chain be walked to the lock error."""
    h = Hostile()
    h.__cause__ = _lock()
    assert is_coordination_error(h)


def test_5000_deep_chain_and_cycle_are_fast() -> None:
    """A 5 000-deep chain and a cyclic chain classify quickly without error."""
    inner: BaseException = _err("429", status=429)
    for i in range(5000):
        outer = RuntimeError(f"layer {i}")
        outer.__cause__ = inner
        inner = outer
    t0 = time.perf_counter()
    assert classify_failure(inner) is None  # the 429 is far below the depth limit
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert classify_failure(a) is None
    assert time.perf_counter() - t0 < 5  # generous: proves termination, not speed


def test_huge_message_is_capped() -> None:
    """A multi-megabyte message classifies (patterns see a bounded prefix)."""
    e = Exception("rate limit exceeded " + "x" * 5_000_000)
    assert classify_failure(e) is R.RATE_LIMIT


# --- property tests ------------------------------------------------------------------

_leaf = st.one_of(
    st.none(),
    st.integers(-1000, 1000),
    st.text(max_size=40),
    st.binary(max_size=20),
    st.sampled_from(["429", "RESOURCE_EXHAUSTED", "ETIMEDOUT", "overloaded", "timed out"]),
)


@st.composite
def error_graphs(draw: st.DrawFn) -> object:
    """Random error graphs: nodes of several kinds, random edges, cycles, groups."""
    n = draw(st.integers(1, 12))
    nodes: list[BaseException] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["exc", "timeout", "lock", "takeover", "failover", "hostile", "group"]))
        msg = draw(st.text(max_size=60))
        node: BaseException
        if kind == "exc":
            node = Exception(msg)
        elif kind == "timeout":
            node = TimeoutError(msg)
        elif kind == "lock":
            node = mf.SessionWriteLockTimeoutError(msg)
        elif kind == "takeover":
            node = mf.SessionTakeoverError(msg)
        elif kind == "failover":
            node = mf.FailoverError(msg, reason=draw(st.sampled_from(list(R))))
        elif kind == "hostile":
            node = Hostile()
        else:
            node = ExceptionGroup(msg or "g", [Exception("m"), TimeoutError("t")])
        if kind not in {"hostile"}:
            for attr in draw(st.lists(st.sampled_from(["status", "code", "statusCode", "body"]), max_size=2)):
                try:
                    setattr(node, attr, draw(_leaf))
                except Exception:
                    pass
        nodes.append(node)
    for i, node in enumerate(nodes):
        if draw(st.booleans()):
            node.__cause__ = nodes[draw(st.integers(0, n - 1))] if n > 1 else None
        if draw(st.booleans()):
            node.__context__ = nodes[draw(st.integers(0, n - 1))]
        if draw(st.booleans()) and not isinstance(node, Hostile):
            try:
                node.error = nodes[(i + 1) % n]  # type: ignore[attr-defined]
            except Exception:
                pass
    return nodes[0]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(error_graphs())
def test_property_terminates_and_never_raises(err: object) -> None:
    """Random nested, cyclic, grouped, hostile error graphs: no exception, consistent answers."""
    info = analyze(err)
    assert (info.reason is None) or (info.coordination_kind is None)
    assert classify_failure(err) == info.reason
    assert is_coordination_error(err) == (info.coordination_kind is not None)
    if isinstance(err, mf.CoordinationError):
        assert info.coordination_kind == type(err).kind
    elif isinstance(err, mf.FailoverError):
        assert info.reason is err.reason


def _chain(top: Exception, *below: BaseException) -> Exception:
    node: BaseException = top
    for b in below:
        node.__cause__ = b
        node = b
    return top


@pytest.mark.parametrize(
    ("err", "provider", "expected"),
    [
        # context overflow worded otherwise; overflow text beats a 404/5xx status path
        (
            _err(
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                status=400,
            ),
            "google",
            R.CONTEXT_OVERFLOW,
        ),
        (
            _err(
                "Input is too long for requested model.",
                cls=type("ValidationException", (Exception,), {}),
                status=400,
            ),
            "bedrock",
            R.CONTEXT_OVERFLOW,
        ),
        (_err("input token count exceeds the model limit"), None, R.CONTEXT_OVERFLOW),
        (_err("Context size has been exceeded.", status=500), None, R.CONTEXT_OVERFLOW),
        (_err("500 Context size has been exceeded."), None, R.CONTEXT_OVERFLOW),
        (
            _err("the request exceeds the available context size, try increasing it", status=400),
            None,
            R.CONTEXT_OVERFLOW,
        ),
        (
            _err(
                "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`",
                status=422,
            ),
            None,
            R.CONTEXT_OVERFLOW,
        ),
        (
            _err(
                "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4225",
                status=400,
            ),
            "cohere",
            R.CONTEXT_OVERFLOW,
        ),
        (
            _err(
                "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length",
                status=400,
            ),
            "mistral",
            R.CONTEXT_OVERFLOW,
        ),
        (_err("context_window_exceeded"), None, R.CONTEXT_OVERFLOW),
        # model names with dots; deactivated models; invalid model
        (_err("model gpt-4.1-mini not found"), None, R.MODEL_NOT_FOUND),
        (_err("The model gemini-2.5-pro-x does not exist"), None, R.MODEL_NOT_FOUND),
        (_err("model_is_deactivated"), "groq", R.MODEL_NOT_FOUND),
        (_err("invalid model: foo/bar", status=422), None, R.MODEL_NOT_FOUND),
        # explicit overload beats model-not-found prose
        (
            _err('{"type":"error","error":{"type":"overloaded_error","message":"model not found"}}'),
            None,
            R.OVERLOADED,
        ),
        (_err("The model claude-x is not available right now, try again later"), None, R.OVERLOADED),
        (
            _err("Service Unavailable: the server is down due to overloading or maintenance.", status=503),
            "groq",
            R.OVERLOADED,
        ),
        (_err("We are experiencing capacity limits, please retry"), None, R.OVERLOADED),
        (
            _err("boom", cls=type("ModelNotReadyException", (Exception,), {}), status=429),
            "bedrock",
            R.OVERLOADED,
        ),
        (
            _err("boom", cls=type("ServiceUnavailableException", (Exception,), {}), status=503),
            "bedrock",
            R.OVERLOADED,
        ),
        (
            _err("Too many tokens", cls=type("ThrottlingException", (Exception,), {}), status=400),
            "bedrock",
            R.RATE_LIMIT,
        ),
        # rate-limit wordings
        (_err("concurrency limit reached"), None, R.RATE_LIMIT),
        (_err("quota_exceeded"), None, R.RATE_LIMIT),
        (_err("ResourceExhausted: 429 too much"), None, R.RATE_LIMIT),
        # a specific code refines a generic status
        (_err("forbidden", status=403, code="deactivated_workspace"), None, R.AUTH_PERMANENT),
        (_err("You exceeded your current quota", status=429, code="insufficient_quota"), None, R.BILLING),
        (
            _err("bad request", status=400, body={"error": {"code": "context_length_exceeded"}}),
            None,
            R.CONTEXT_OVERFLOW,
        ),
        (
            _err(
                "API key not valid. Please pass a valid API key.",
                status=400,
                details=[{"reason": "API_KEY_INVALID"}],
            ),
            "google",
            R.AUTH,
        ),
        (_err("API key not valid. Please pass a valid API key.", status=400), "google", R.AUTH),
        # LiteLLM's exception types beat its generic statuses
        (
            _err(
                "litellm.ContextWindowExceededError: too long",
                cls=type("ContextWindowExceededError", (Exception,), {}),
                status_code=400,
            ),
            None,
            R.CONTEXT_OVERFLOW,
        ),
        (
            _err(
                "litellm.ContentPolicyViolationError",
                cls=type("ContentPolicyViolationError", (Exception,), {}),
                status_code=400,
            ),
            None,
            R.REFUSAL,
        ),
        (
            _err(
                "litellm.ServiceUnavailableError",
                cls=type("ServiceUnavailableError", (Exception,), {}),
                status_code=503,
            ),
            None,
            R.OVERLOADED,
        ),
        (
            _err(
                "litellm.APIConnectionError: Connection refused",
                cls=type("APIConnectionError", (Exception,), {}),
                status_code=500,
            ),
            None,
            R.TIMEOUT,
        ),
        (
            _err(
                "Budget has been exceeded!",
                cls=type("BudgetExceededError", (Exception,), {}),
                status_code=400,
            ),
            None,
            R.BILLING,
        ),
        # Groq's 413 on tokens per minute is a rate limit
        (
            _err(
                "Request too large for model `llama3` in organization `org` on tokens per minute (TPM): Limit 6000, Requested 7000",
                status=413,
            ),
            "groq",
            R.RATE_LIMIT,
        ),
        # refusal and content-policy wording
        (_err("Your request was rejected as a result of our safety system.", status=400), None, R.REFUSAL),
        (
            _err(
                "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
                status=400,
            ),
            "azure",
            R.REFUSAL,
        ),
        (_err("Blocked by guardrails"), None, R.REFUSAL),
        (_err("flagged by moderation"), None, R.REFUSAL),
        # localized messages and codes
        (_err("余额不足或无可用资源包,请充值。", status=429, code="1113"), "zhipu", R.BILLING),
        (_err("您当前使用该API的并发数过高，请降低并发", status=429, code="1302"), "zhipu", R.RATE_LIMIT),
        (
            _err(
                "Requests rate limit exceeded, please try again later.",
                status=429,
                code="Throttling.RateQuota",
            ),
            "dashscope",
            R.RATE_LIMIT,
        ),
        (
            _err(
                "Access denied, please make sure your account is in good standing.",
                status=400,
                code="Arrearage",
            ),
            "dashscope",
            R.BILLING,
        ),
        (
            _err("Input data may contain inappropriate content.", status=400, code="DataInspectionFailed"),
            "dashscope",
            R.REFUSAL,
        ),
        (_err("请求过于频繁，请稍后再试"), None, R.RATE_LIMIT),
        (_err("系统繁忙，请稍后重试"), None, R.OVERLOADED),
        (_err("输入长度超过模型上下文限制"), None, R.CONTEXT_OVERFLOW),
        (_err("Insufficient Balance", status=402), "deepseek", R.BILLING),
        (_err("Open api qps request limit reached", error_code=18), "baidu", R.RATE_LIMIT),
        (
            _err("rate limit", base_resp={"status_code": 1008, "status_msg": "insufficient balance"}),
            "minimax",
            R.BILLING,
        ),
    ],
)
def test_issue_11_examples(err: Exception, provider: str | None, expected: R) -> None:
    """The misnamings found against the reference corpus and real SDK shapes (issue #11)."""
    assert classify_failure(err, provider=provider) is expected


def test_provider_codes_apply_only_with_the_hint() -> None:
    """Zhipu's numeric 1113 means billing for Zhipu only; other providers keep the generic rules."""
    err = _err("error", status=429, code="1113")
    assert classify_failure(err, provider="zhipu") is R.BILLING
    assert classify_failure(err, provider="openai") is R.RATE_LIMIT
    assert classify_failure(err) is R.RATE_LIMIT


def test_a_provider_body_code_never_aborts_the_chain() -> None:
    """Only local evidence makes a coordination error: a provider 503 whose body code is
    session_write_lock_timeout is the provider's overload, not our lock (issue #12 item 9)."""
    for code in ("session_write_lock_timeout", "OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT"):
        err = _err("Service Unavailable", status=503, body={"error": {"code": code}})
        assert not is_coordination_error(err)
        assert classify_failure(err) is R.OVERLOADED
        assert not is_coordination_error({"code": code})
