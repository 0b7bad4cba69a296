"""Exceptions pickle and print usefully; the public surface is pinned; the core stays light."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest

import model_fallback as mf
from model_fallback import Candidate, FailoverReason


def test_failover_error_fields_pickle_and_str() -> None:
    """FailoverError keeps its keyword fields through pickle/copy and names the candidate."""
    e = mf.FailoverError("slow down", reason="rate_limit", candidate=Candidate("openai", "gpt-4o"),
                         status=429, code="RATE_LIMIT_EXCEEDED")  # fmt: skip
    for clone in (pickle.loads(pickle.dumps(e)), copy.copy(e), copy.deepcopy(e)):
        assert type(clone) is mf.FailoverError
        assert clone.reason is FailoverReason.RATE_LIMIT
        assert clone.candidate == Candidate("openai", "gpt-4o")
        assert (clone.status, clone.code, clone.message) == (429, "RATE_LIMIT_EXCEEDED", "slow down")
    assert str(e) == "openai/gpt-4o: slow down (rate_limit)"
    assert "reason='rate_limit'" in repr(e)
    with pytest.raises(ValueError):
        mf.FailoverError("x", reason="not-a-reason")


def test_lock_timeout_error_message_and_pickle() -> None:
    """The lock timeout names path and holder, is a TimeoutError, and pickles with its fields."""
    e = mf.SessionWriteLockTimeoutError(path="/s/a.jsonl", waited_s=0.3, owner_pid=123, owner_alive=True)
    assert isinstance(e, TimeoutError) and isinstance(e, mf.CoordinationError)
    assert "/s/a.jsonl" in str(e) and "pid=123" in str(e) and "alive" in str(e)
    clone = pickle.loads(pickle.dumps(e))
    assert (clone.path, clone.waited_s, clone.owner_pid, clone.owner_alive) == ("/s/a.jsonl", 0.3, 123, True)
    assert str(clone) == str(e)
    assert mf.SessionWriteLockTimeoutError.kind == "write_lock_timeout"


def test_takeover_error_message_and_pickle() -> None:
    """The takeover carries path/before/after through pickle."""
    e = mf.SessionTakeoverError(path="/s/a.jsonl", before=(1, 2, 3), after=(1, 2, 4))
    assert "/s/a.jsonl" in str(e)
    clone = pickle.loads(pickle.dumps(e))
    assert (clone.path, clone.before, clone.after) == ("/s/a.jsonl", (1, 2, 3), (1, 2, 4))
    custom = mf.SessionTakeoverError("custom text", path="p")
    assert str(pickle.loads(pickle.dumps(custom))) == "custom text"


def test_candidate_parse_and_str() -> None:
    """Candidate.parse is the inverse of str and rejects malformed names."""
    c = Candidate.parse("openrouter/meta-llama/llama-3.1-70b")
    assert (c.provider, c.model) == ("openrouter", "meta-llama/llama-3.1-70b")
    assert str(c) == "openrouter/meta-llama/llama-3.1-70b"
    for bad in ["", "x", "/m", "p/", " / "]:
        with pytest.raises(ValueError):
            Candidate.parse(bad)
    with pytest.raises(TypeError):
        Candidate.parse(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Candidate("", "m")
    assert repr(c).startswith("Candidate(")


def test_all_is_pinned() -> None:
    """__all__ is sorted and equals the public names the package documents."""
    expected = [
        "AllCandidatesFailedError", "Attempt", "Candidate", "CooldownTracker", "CoordinationError",
        "FailoverError", "FailoverReason", "FallbackPolicy", "FallbackResult", "FallbackStream", "Observer",
        "ObserverSet", "Outcome", "RunOutcome", "SessionIOError", "SessionTakeoverError",
        "SessionWriteLockTimeoutError", "StreamInterruptedError", "__version__", "classify_failure",
        "coordination_kind", "is_coordination_error", "register_coordination_error",
        "run_with_model_fallback", "stream_with_model_fallback", "unregister_coordination_error",
    ]  # fmt: skip
    assert mf.__all__ == expected
    assert sorted(mf.__all__) == mf.__all__
    for name in mf.__all__:
        assert getattr(mf, name) is not None
    assert isinstance(mf.__version__, str) and mf.__version__[0].isdigit()


def test_public_objects_have_docstrings() -> None:
    """Every public object is documented."""
    for name in mf.__all__:
        if name == "__version__":
            continue
        assert (getattr(mf, name).__doc__ or "").strip(), name


def test_importing_the_core_loads_no_telemetry_backend() -> None:
    """Importing model_fallback (and running it) loads neither opentelemetry nor prometheus_client."""
    code = (
        "import sys, anyio, model_fallback as mf\n"
        "import model_fallback.classify, model_fallback.driver, model_fallback.cooldown\n"
        "import model_fallback.events, model_fallback.errors\n"
        "try:\n"
        "    import model_fallback.session\n"
        "except ImportError:\n"
        "    pass\n"
        "async def run(c):\n"
        "    return 1\n"
        "anyio.run(mf.run_with_model_fallback, run, ['a/b'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'prometheus_client', 'httpx')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_candidate_hash_is_its_value_and_survives_copies() -> None:
    """Equal candidates hash alike however they were made (parsed, copied, pickled, replaced),
    so a chain of Candidates and the same chain parsed from strings share cache entries."""
    import dataclasses

    a = mf.Candidate("openai", "gpt-4o")
    for b in (
        mf.Candidate.parse("openai/gpt-4o"),
        copy.copy(a),
        copy.deepcopy(a),
        pickle.loads(pickle.dumps(a)),
        dataclasses.replace(mf.Candidate("x", "y"), provider="openai", model="gpt-4o"),
    ):
        assert a == b and hash(a) == hash(b)
    assert hash(a) != hash(mf.Candidate("openai", "gpt-4o-mini"))
    assert {a: 1}[mf.Candidate.parse(" openai/gpt-4o ")] == 1
