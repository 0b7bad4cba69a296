"""The classifier's caches are provably safe: the cached path answers what the uncached
reference walk answers, across repeated calls, registrations and instance attributes.

Each example is a sequence of steps over a small pool of exception types: classify an
instance (with or without instance attributes, chained or not, with a provider hint),
register a type as a coordination error, unregister it. After every classification the
cached answer (:func:`analyze`, twice, so the second comes from the caches) must equal
:func:`analyze_uncached` for the same object. Removing any one cache guard makes this
fail (each was tried): dropping the leaf answers or the per-type coordination kinds when
the registry changes (``CachedTypeFacts.invalidate``), or the empty-``__dict__`` checks
on the fast path (``analyze``) and the leaf path (``_analyze``).
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from model_fallback.classify import (
    analyze,
    analyze_uncached,
    register_coordination_error,
    unregister_coordination_error,
)

# A fixed pool of foreign types, so that steps of one example share cache entries.
POOL: list[type[Exception]] = [type(f"PoolError{i}", (Exception,), {}) for i in range(4)]
POOL.append(type("RateLimitError", (Exception,), {}))
POOL.append(type("ServiceUnavailableError", (Exception,), {}))
MESSAGES = ["", "Too Many Requests", "bad request", "context length exceeded", "timed out", "x"]
PROVIDERS = [None, "openai", "zhipu", "dashscope"]

_step = st.one_of(
    st.tuples(
        st.just("classify"),
        st.integers(0, len(POOL) - 1),
        st.sampled_from(MESSAGES),
        st.one_of(st.none(), st.sampled_from([429, 503, 400, "1113", "insufficient_quota"])),
        st.booleans(),  # chained beneath another pool error
        st.sampled_from(PROVIDERS),
    ),
    st.tuples(st.just("register"), st.integers(0, len(POOL) - 1)),
    st.tuples(st.just("unregister"), st.integers(0, len(POOL) - 1)),
)


def _build(i: int, message: str, attr: Any, chained: bool) -> Exception:
    err = POOL[i](message)
    if attr is not None:
        if isinstance(attr, int):
            err.status = attr  # type: ignore[attr-defined]
        else:
            err.code = attr  # type: ignore[attr-defined]
    if chained:
        err.__cause__ = POOL[(i + 1) % len(POOL)]("inner")
    return err


def _play(steps: list[tuple[Any, ...]]) -> None:
    registered: set[int] = set()
    try:
        for step in steps:
            if step[0] == "register":
                register_coordination_error(POOL[step[1]], "pool_kind")
                registered.add(step[1])
            elif step[0] == "unregister":
                unregister_coordination_error(POOL[step[1]])
                registered.discard(step[1])
            else:
                _, i, message, attr, chained, provider = step
                err = _build(i, message, attr, chained)
                first = analyze(err, provider)
                second = analyze(err, provider)
                reference = analyze_uncached(err, provider)
                assert first == reference, (step, first, reference)
                assert second == reference, (step, second, reference)
    finally:
        for i in registered:
            unregister_coordination_error(POOL[i])


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(_step, min_size=1, max_size=12))
# Invalidation on registration: classified (and cached) as a plain leaf first, then
# registered as a coordination error.
@example([("classify", 0, "Too Many Requests", None, False, None), ("register", 0),
          ("classify", 0, "Too Many Requests", None, False, None)])  # fmt: skip
# The empty-__dict__ guard: the same type and text, first bare, then with a status.
@example([("classify", 1, "x", None, False, None), ("classify", 1, "x", 429, False, None)])
# A provider hint changes the answer for the same error (Zhipu's 1113 is billing).
@example([("classify", 2, "x", "1113", False, None), ("classify", 2, "x", "1113", False, "zhipu")])
def test_cached_answers_equal_the_uncached_walk(steps: list[tuple[Any, ...]]) -> None:
    """analyze(e) == analyze_uncached(e), for every step of every sequence."""
    _play(steps)


def _raise_in_json() -> BaseException:
    import json

    try:
        json.loads(None)  # type: ignore[arg-type]  # a TypeError raised inside json
    except TypeError as exc:
        return exc
    raise AssertionError("json.loads(None) did not raise")


def _raise_here(message: str) -> BaseException:
    try:
        raise TypeError(message)
    except TypeError as exc:
        return exc


def test_where_an_error_was_raised_is_part_of_the_cached_answer() -> None:
    """The same type and text mean a malformed response when raised inside a parser and
    the caller's bug when raised in the caller's code: the cache keeps the two apart."""
    inside = _raise_in_json()
    outside = _raise_here(str(inside))
    for err in (inside, outside, inside, outside):
        assert analyze(err) == analyze_uncached(err)
    assert analyze(inside).reason is not None and analyze(outside).caller_error == "TypeError"
