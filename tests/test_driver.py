"""The fallback driver, with real anyio cancellation and real timeouts."""

from __future__ import annotations

import logging
import pickle
import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import model_fallback as mf
from model_fallback import (
    AllCandidatesFailedError,
    Candidate,
    CooldownTracker,
    FailoverReason,
    FallbackPolicy,
    Outcome,
    run_with_model_fallback,
)
from model_fallback import events as ev

pytestmark = pytest.mark.anyio

CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"]


def http_error(status: int, message: str = "", **attrs: Any) -> Exception:
    e = Exception(message or f"HTTP {status}")
    e.status = status  # type: ignore[attr-defined]
    for k, v in attrs.items():
        setattr(e, k, v)
    return e


class Script:
    """A run function that plays a script per model and records calls."""

    def __init__(self, behaviour: dict[str, Any]) -> None:
        self.behaviour = behaviour
        self.calls: list[Candidate] = []

    async def __call__(self, c: Candidate) -> str:
        self.calls.append(c)
        b = self.behaviour.get(c.model, "ok")
        if callable(b) and not isinstance(b, type):
            return await b(c)
        if isinstance(b, BaseException):
            raise b
        return f"{b} from {c}"


class Recorder(ev.Observer):
    """Records every hook call."""

    component = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def __getattribute__(self, name: str) -> Any:
        if name in {"run_started", "attempt_started", "attempt_ended", "candidate_skipped",
                    "coordination_aborted", "run_ended", "observer_failed"}:  # fmt: skip
            return lambda e: object.__getattribute__(self, "seen").append((name, e))
        return object.__getattribute__(self, name)


async def test_429_then_success() -> None:
    """A rate limit falls back to the next candidate; attempts say why."""
    run = Script({"gpt-4o": http_error(429, "Too Many Requests")})
    result = await run_with_model_fallback(run, CHAIN)
    assert result.value == "ok from anthropic/claude-sonnet-4"
    assert result.candidate == Candidate("anthropic", "claude-sonnet-4")
    assert [a.outcome for a in result.attempts] == [Outcome.PROVIDER_FAILURE, Outcome.SUCCESS]
    assert result.attempts[0].reason is FailoverReason.RATE_LIMIT
    assert result.attempts[0].status == 429
    assert result.fallback_depth == 1 and result.fell_back
    assert len(run.calls) == 2


@pytest.mark.parametrize(
    "make_error",
    [
        lambda: mf.SessionTakeoverError(path="s.jsonl"),
        lambda: type("EmbeddedAttemptSessionTakeoverError", (Exception,), {})("changed: s.jsonl"),
        lambda: _caused(RuntimeError("turn failed"), mf.SessionWriteLockTimeoutError(path="s.jsonl")),
        lambda: _caused(TimeoutError("timed out"), mf.SessionWriteLockTimeoutError(path="s.jsonl")),
    ],
    ids=["takeover", "foreign-takeover-name", "caused-by-lock-timeout", "timeout-around-lock"],
)
async def test_coordination_error_stops_at_once(make_error: Callable[[], Exception]) -> None:
    """A coordination error on the first candidate: run called once, the very object re-raised."""
    err = make_error()
    run = Script({"gpt-4o": err})
    rec = Recorder()
    cooldowns = CooldownTracker()
    with pytest.raises(Exception) as info:
        await run_with_model_fallback(run, CHAIN, observers=[rec], cooldowns=cooldowns)
    assert info.value is err
    assert len(run.calls) == 1
    assert not cooldowns.is_cooling(Candidate.parse(CHAIN[0]))
    aborted = [e for name, e in rec.seen if name == "coordination_aborted"]
    assert len(aborted) == 1 and aborted[0].untried == 2
    ended = [e for name, e in rec.seen if name == "run_ended"]
    assert ended[0].outcome is ev.RunOutcome.COORDINATION_ABORT
    assert "All models failed" not in str(info.value)


def _caused(outer: Exception, inner: BaseException) -> Exception:
    outer.__cause__ = inner
    return outer


async def test_429_wrapping_lock_timeout_falls_back() -> None:
    """Explicit provider metadata above a nested lock timeout wins: fallback continues."""
    err = _caused(http_error(429, "rate limited"), mf.SessionWriteLockTimeoutError(path="s"))
    run = Script({"gpt-4o": err})
    result = await run_with_model_fallback(run, CHAIN)
    assert len(run.calls) == 2
    assert result.attempts[0].reason is FailoverReason.RATE_LIMIT


async def test_coordination_on_a_later_candidate() -> None:
    """A coordination error on the second candidate stops there; one candidate left untried."""
    run = Script({"gpt-4o": http_error(503, "overloaded"), "claude-sonnet-4": mf.SessionTakeoverError()})
    rec = Recorder()
    with pytest.raises(mf.SessionTakeoverError):
        await run_with_model_fallback(run, CHAIN, observers=[rec])
    assert len(run.calls) == 2
    aborted = [e for name, e in rec.seen if name == "coordination_aborted"]
    assert aborted[0].untried == 1 and aborted[0].kind == "session_takeover"


async def test_exhaustion_is_an_exception_group_of_failover_errors() -> None:
    """All candidates failing gives AllCandidatesFailedError with one FailoverError each."""
    originals = [http_error(429, "slow down"), http_error(503, "The model is overloaded"), ValueError("boom")]
    run = Script(dict(zip(["gpt-4o", "claude-sonnet-4", "gemini-2.5-pro"], originals, strict=True)))
    with pytest.raises(AllCandidatesFailedError) as info:
        await run_with_model_fallback(run, CHAIN)
    err = info.value
    assert isinstance(err, ExceptionGroup)
    assert str(err).startswith("All models failed (3): openai/gpt-4o: slow down (rate_limit) | ")
    assert "google/gemini-2.5-pro: boom (unknown)" in str(err)
    assert [e.reason for e in err.exceptions] == [
        FailoverReason.RATE_LIMIT, FailoverReason.OVERLOADED, FailoverReason.UNKNOWN,
    ]  # fmt: skip
    assert [e.__cause__ for e in err.exceptions] == originals
    assert [e.candidate for e in err.exceptions] == [Candidate.parse(c) for c in CHAIN]
    assert len(err.attempts) == 3
    # except* works and pickling keeps everything
    try:
        raise err
    except* mf.FailoverError as group:
        assert len(group.exceptions) == 3
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is AllCandidatesFailedError
    assert str(clone) == str(err)
    assert len(clone.attempts) == 3


async def test_single_candidate_exhaustion() -> None:
    """Even one candidate reports 'All models failed (1)'."""
    with pytest.raises(AllCandidatesFailedError, match=r"^All models failed \(1\): a/b: "):
        await run_with_model_fallback(Script({"b": http_error(500)}), ["a/b"])


async def test_duplicates_dropped() -> None:
    """Duplicates are dropped and order is kept."""
    run = Script({"x": http_error(500), "y": http_error(500)})
    result = await run_with_model_fallback(run, ["p/x", Candidate("p", "y"), "p/x", " p/y ", "p/z"])
    assert [str(c) for c in run.calls] == ["p/x", "p/y", "p/z"]
    assert result.fallback_depth == 2


async def test_real_cancellation_propagates_and_is_not_counted() -> None:
    """Cancelling a run mid-call propagates, records 'cancelled', starts no cooldown."""
    started = anyio.Event()

    async def hang(c: Candidate) -> str:
        started.set()
        await anyio.sleep(30)
        return "never"

    run = Script({"gpt-4o": hang})
    rec = Recorder()
    cooldowns = CooldownTracker()
    with anyio.move_on_after(5) as outer:
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                await run_with_model_fallback(run, CHAIN, observers=[rec], cooldowns=cooldowns)

            tg.start_soon(go)
            await started.wait()
            tg.cancel_scope.cancel()
    assert not outer.cancelled_caught
    assert len(run.calls) == 1
    ended = [e for name, e in rec.seen if name == "run_ended"]
    assert ended[0].outcome is ev.RunOutcome.CANCELLED
    assert ended[0].attempts[-1].outcome is Outcome.CANCELLED
    assert all(not cooldowns.is_cooling(Candidate.parse(c)) for c in CHAIN)


async def test_keyboard_interrupt_propagates() -> None:
    """Non-Exception BaseExceptions are never classified or swallowed."""
    run = Script({"gpt-4o": KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        await run_with_model_fallback(run, CHAIN)
    assert len(run.calls) == 1


async def test_attempt_timeout_is_a_provider_timeout() -> None:
    """A hanging candidate is cut by attempt_timeout and the chain continues."""

    async def hang(c: Candidate) -> str:
        await anyio.sleep(30)
        return "never"

    run = Script({"gpt-4o": hang})
    with anyio.fail_after(10):
        result = await run_with_model_fallback(run, CHAIN, attempt_timeout=0.05)
    assert result.attempts[0].reason is FailoverReason.TIMEOUT
    assert result.attempts[0].outcome is Outcome.PROVIDER_FAILURE
    assert result.candidate == Candidate.parse(CHAIN[1])


async def test_lock_timeout_inside_attempt_timeout_is_still_coordination() -> None:
    """A SessionWriteLockTimeoutError raised by run is not mistaken for the attempt timeout."""
    err = mf.SessionWriteLockTimeoutError(path="s")
    run = Script({"gpt-4o": err})
    with pytest.raises(mf.SessionWriteLockTimeoutError) as info:
        await run_with_model_fallback(run, CHAIN, attempt_timeout=5)
    assert info.value is err and len(run.calls) == 1


async def test_stop_on_context_overflow_by_default() -> None:
    """context_overflow aborts with the original error (outcome aborted)."""
    err = http_error(400, "This model's maximum context length is 8192 tokens")
    run = Script({"gpt-4o": err})
    rec = Recorder()
    with pytest.raises(Exception) as info:
        await run_with_model_fallback(run, CHAIN, observers=[rec])
    assert info.value is err and len(run.calls) == 1
    ended = next(e for name, e in rec.seen if name == "run_ended")
    assert ended.outcome is ev.RunOutcome.ABORTED
    assert ended.attempts[0].outcome is Outcome.ABORTED


async def test_policy_stop_on_and_should_fallback() -> None:
    """stop_on is configurable; should_fallback can veto a fallback."""
    err = http_error(401, "invalid api key")
    with pytest.raises(Exception) as info:
        await run_with_model_fallback(
            Script({"gpt-4o": err}), CHAIN, policy=FallbackPolicy(stop_on=frozenset({"auth"}))
        )
    assert info.value is err
    seen: list[mf.Attempt] = []

    def veto(a: mf.Attempt) -> bool:
        seen.append(a)
        return a.reason is not FailoverReason.BILLING

    run = Script({"gpt-4o": http_error(429), "claude-sonnet-4": http_error(402, "payment required")})
    with pytest.raises(Exception, match="payment"):
        await run_with_model_fallback(run, CHAIN, policy=FallbackPolicy(should_fallback=veto))
    assert [a.reason for a in seen] == [FailoverReason.RATE_LIMIT, FailoverReason.BILLING]
    assert len(run.calls) == 2
    # with no stop reasons, context overflow falls back
    run2 = Script({"gpt-4o": http_error(413)})
    result = await run_with_model_fallback(run2, CHAIN, policy=FallbackPolicy(stop_on=frozenset()))
    assert result.fallback_depth == 1


async def test_cooldown_skip_and_single_probe() -> None:
    """Cooling candidates are skipped; when all remaining are cooling, one probe per run."""
    clock = [1000.0]
    cd = CooldownTracker(clock=lambda: clock[0])
    run = Script({"gpt-4o": http_error(429), "claude-sonnet-4": http_error(529), "gemini-2.5-pro": "ok"})
    r1 = await run_with_model_fallback(run, CHAIN, cooldowns=cd)
    assert r1.fallback_depth == 2
    assert cd.is_cooling(Candidate.parse(CHAIN[0])) and cd.is_cooling(Candidate.parse(CHAIN[1]))
    run.calls.clear()
    rec = Recorder()
    r2 = await run_with_model_fallback(run, CHAIN, cooldowns=cd, observers=[rec])
    assert [str(c) for c in run.calls] == [CHAIN[2]]
    assert [a.outcome for a in r2.attempts] == [Outcome.SKIPPED, Outcome.SKIPPED, Outcome.SUCCESS]
    assert r2.attempts[0].reason is FailoverReason.RATE_LIMIT
    assert len([1 for name, _ in rec.seen if name == "candidate_skipped"]) == 2
    # now the last one fails too: all cooling -> the first is probed, once
    run.behaviour["gemini-2.5-pro"] = http_error(503, "overloaded")

    run.calls.clear()
    with pytest.raises(AllCandidatesFailedError) as info:
        await run_with_model_fallback(run, CHAIN, cooldowns=cd)
    assert [str(c) for c in run.calls] == [CHAIN[2]]
    run.calls.clear()
    with pytest.raises(AllCandidatesFailedError) as info:
        await run_with_model_fallback(run, CHAIN, cooldowns=cd)
    assert [str(c) for c in run.calls] == [CHAIN[0]]  # the single probe
    assert str(info.value).startswith("All models failed (3): ")
    assert [a.outcome for a in info.value.attempts] == [
        Outcome.PROVIDER_FAILURE, Outcome.SKIPPED, Outcome.SKIPPED,
    ]  # fmt: skip
    # a successful probe clears the cooldown
    run.behaviour["gpt-4o"] = "ok"
    clock[0] += 0.1
    run.calls.clear()
    r3 = await run_with_model_fallback(run, CHAIN, cooldowns=cd)
    assert r3.fallback_depth == 0 and not cd.is_cooling(Candidate.parse(CHAIN[0]))


async def test_retry_after_is_honoured() -> None:
    """Retry-After on an attached response sets the cooldown length."""
    clock = [0.0]
    cd = CooldownTracker(clock=lambda: clock[0])

    class Resp:
        status_code = 429
        headers = {"Retry-After": "7"}

    err = Exception("Client error '429 Too Many Requests'")
    err.response = Resp()  # type: ignore[attr-defined]
    await run_with_model_fallback(Script({"gpt-4o": err}), CHAIN, cooldowns=cd)
    assert cd.remaining(Candidate.parse(CHAIN[0])) == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"candidates": []}, ValueError),
        ({"candidates": ["x"]}, ValueError),
        ({"candidates": ["/m"]}, ValueError),
        ({"candidates": ["p/"]}, ValueError),
        ({"candidates": ["openai/gpt-4o", ""]}, ValueError),
        ({"candidates": "openai/gpt-4o"}, TypeError),
        ({"candidates": [42]}, TypeError),
        ({"attempt_timeout": -1}, ValueError),
        ({"attempt_timeout": 0}, ValueError),
        ({"attempt_timeout": float("nan")}, ValueError),
        ({"attempt_timeout": "5"}, TypeError),
        ({"policy": {"stop_on": []}}, TypeError),
        ({"cooldowns": {}}, TypeError),
        ({"observers": "prometheus"}, TypeError),
        ({"observers": ev.Observer()}, TypeError),  # a lone observer, not a list of them
    ],
)
async def test_bad_arguments_fail_before_any_call(kwargs: dict[str, Any], exc: type[Exception]) -> None:
    """Validation errors come before any attempt."""
    run = Script({})
    args: dict[str, Any] = {"candidates": CHAIN} | kwargs
    with pytest.raises(exc):
        await run_with_model_fallback(run, **args)
    assert run.calls == []


async def test_non_callable_run() -> None:
    """A non-callable run is a TypeError."""
    with pytest.raises(TypeError, match="run must be"):
        await run_with_model_fallback("nope", CHAIN)  # type: ignore[arg-type]


async def test_500_concurrent_runs_are_independent() -> None:
    """500 concurrent runs in one task group each get their own correct result."""
    rng = random.Random(7)
    plans = [[rng.choice(["429", "503", "ok", "lock"]) for _ in range(3)] for _ in range(500)]
    results: dict[int, object] = {}

    def make_run(plan: list[str]) -> Callable[[Candidate], Awaitable[str]]:
        async def run(c: Candidate) -> str:
            await anyio.sleep(rng.random() / 1000)
            step = plan[CHAIN.index(str(c))]
            if step == "429":
                raise http_error(429)
            if step == "503":
                raise http_error(503, "overloaded")
            if step == "lock":
                raise mf.SessionWriteLockTimeoutError(path=f"s{id(plan)}")
            return f"{c}"

        return run

    async def one(i: int) -> None:
        try:
            results[i] = (await run_with_model_fallback(make_run(plans[i]), CHAIN)).value
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(500):
            tg.start_soon(one, i)

    for i, plan in enumerate(plans):
        first = next((j for j, s in enumerate(plan) if s in {"ok", "lock"}), None)
        got = results[i]
        if first is None:
            assert isinstance(got, AllCandidatesFailedError)
            assert len(got.exceptions) == 3
        elif plan[first] == "lock":
            assert isinstance(got, mf.SessionWriteLockTimeoutError)
            assert got.path == f"s{id(plan)}"
        else:
            assert got == CHAIN[first]


# --- observers -------------------------------------------------------------------------


class Boom(ev.Observer):
    component = "boom"

    def __init__(self) -> None:
        self.calls = 0

    def attempt_started(self, event: ev.AttemptStarted) -> None:
        self.calls += 1
        raise RuntimeError("observer bug")

    def run_ended(self, event: ev.RunEnded) -> None:
        self.calls += 1
        raise RuntimeError("observer bug")


async def test_raising_observer_is_disabled_logged_once_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An observer that raises is disabled in its observer set (shared by both runs),
    logged once, counted; the run is unchanged."""
    boom, rec = Boom(), Recorder()
    before = ev.telemetry_errors().get("boom", 0)
    run = Script({"gpt-4o": http_error(429)})
    observers = ev.ObserverSet([boom, rec])
    with caplog.at_level(logging.ERROR, logger="model_fallback.events"):
        r1 = await run_with_model_fallback(run, CHAIN, observers=observers)
        r2 = await run_with_model_fallback(run, CHAIN, observers=observers)
    assert r1.value == r2.value == "ok from anthropic/claude-sonnet-4"
    assert boom.calls == 1
    assert observers.is_disabled(boom)
    assert observers.failures == {"boom": 1}
    assert ev.telemetry_errors()["boom"] == before + 1
    assert len([r for r in caplog.records if "boom" in r.getMessage()]) <= 1  # once per process
    failed = [e for name, e in rec.seen if name == "observer_failed"]
    assert len(failed) == 1 and failed[0].component == "boom" and failed[0].hook == "attempt_started"
    # the healthy observer saw both runs completely
    assert len([1 for name, _ in rec.seen if name == "run_ended"]) == 2
    observers.enable(boom)
    assert not observers.is_disabled(boom)
    assert observers.attempt_started  # its hooks are resolved again


async def test_a_plain_list_gets_a_set_per_run() -> None:
    """Observers passed as a list: a broken one is disabled for its run only (and counted
    each time); nothing is kept process-wide about the observer itself."""
    boom = Boom()
    run = Script({})
    await run_with_model_fallback(run, CHAIN, observers=[boom])
    await run_with_model_fallback(run, CHAIN, observers=[boom])
    assert boom.calls == 2


def test_observer_set_arguments() -> None:
    """A string or a lone observer is a clear TypeError; a set of a set is the same observers."""
    with pytest.raises(TypeError, match="string"):
        ev.ObserverSet("otel")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="observers=\\[observer\\]"):
        ev.ObserverSet(Recorder())  # type: ignore[arg-type]
    rec = Recorder()
    s = ev.ObserverSet([rec])
    assert ev.ObserverSet.of(s) is s and ev.ObserverSet(s).observers == (rec,)
    assert not ev.ObserverSet([ev.Observer()]).attempt_ended  # an inherited no-op is not called


async def test_event_order_for_one_run() -> None:
    """Hooks come in run order: start, attempts, end."""
    rec = Recorder()
    await run_with_model_fallback(Script({"gpt-4o": http_error(429)}), CHAIN, observers=[rec])
    assert [n for n, _ in rec.seen] == [
        "run_started", "attempt_started", "attempt_ended", "attempt_started", "attempt_ended", "run_ended",
    ]  # fmt: skip
    run_ids = {e.run_id for _, e in rec.seen}
    assert len(run_ids) == 1
    end = rec.seen[-1][1]
    assert end.fallback_depth == 1 and end.candidate == Candidate.parse(CHAIN[1])


async def test_a_raising_policy_stops_the_run_with_its_error() -> None:
    """should_fallback raising: the run stops (outcome aborted), the policy's error propagates
    with the provider error as its cause, and no further candidate is called."""
    original = http_error(429, "slow down")
    run = Script({"gpt-4o": original})
    rec = Recorder()

    def broken(a: mf.Attempt) -> bool:
        raise LookupError("policy bug")

    with pytest.raises(LookupError, match="policy bug") as info:
        await run_with_model_fallback(
            run, CHAIN, policy=FallbackPolicy(should_fallback=broken), observers=[rec]
        )
    assert info.value.__cause__ is original
    assert len(run.calls) == 1
    ended = next(e for name, e in rec.seen if name == "run_ended")
    assert ended.outcome is ev.RunOutcome.ABORTED and ended.attempts[0].outcome is Outcome.ABORTED


class _Provider429(Exception):
    status_code = 429


class _Provider503(Exception):
    status_code = 503


async def assert_errors_freed_without_gc(observers: tuple[object, ...] = ()) -> None:
    """Every outcome's errors are freed by reference counting alone once the caller lets go.

    Each caught error's traceback references the driver's frame, which outlives the run; a
    frame local holding the errors would make a reference cycle per fallback (garbage for
    the cyclic collector, and memory held until it runs).
    """
    import gc
    import weakref

    def scripted(errors: list[Exception]) -> Callable[[Candidate], Awaitable[str]]:
        async def run(c: Candidate) -> str:
            if errors:
                raise errors.pop(0)
            return "ok"

        return run

    class _ContextOverflow(Exception):
        status_code = 400

    scenarios: list[tuple[str, list[Exception], type[Exception] | None]] = [
        ("success after 429 and 503", [_Provider429("slow down"), _Provider503("overloaded")], None),
        ("exhausted", [_Provider429("a"), _Provider503("b"), _Provider429("c")], AllCandidatesFailedError),
        ("coordination abort", [_Provider429("a"), mf.SessionWriteLockTimeoutError("lock")],
         mf.SessionWriteLockTimeoutError),
        ("aborted by stop_on", [_ContextOverflow("maximum context length is 8192 tokens")], _ContextOverflow),
    ]  # fmt: skip
    gc.collect()
    gc.disable()
    try:
        for name, errors, raised in scenarios:
            refs = [weakref.ref(e) for e in errors]
            run = scripted(errors)
            del errors
            if raised is None:
                result = await run_with_model_fallback(run, CHAIN, observers=observers)
                assert result.value == "ok"
                del result
            else:
                with pytest.raises(raised) as info:
                    await run_with_model_fallback(run, CHAIN, observers=observers)
                del info
            alive = [r() for r in refs if r() is not None]
            assert not alive, f"{name}: {alive!r} outlive the run (a reference cycle)"
    finally:
        gc.enable()


async def test_a_run_leaves_no_reference_cycles() -> None:
    await assert_errors_freed_without_gc()
