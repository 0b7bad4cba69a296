"""model-fallback: an observability-first model fallback runner for LLM applications.

Try candidate models in order, classify every failure, stop at once on local
coordination errors (a session write-lock timeout, a session takeover) instead of
walking the chain against the same local condition, and tell observers about every
candidate so that dashboards stop blaming models for lock contention.

Quick start::

    from model_fallback import run_with_model_fallback

    async def call(candidate):
        return await client_for(candidate.provider).chat(model=candidate.model, ...)

    result = await run_with_model_fallback(call, ["openai/gpt-4o", "anthropic/claude-sonnet-4"])
    print(result.candidate, result.value)

Telemetry backends live in :mod:`model_fallback.otel` and :mod:`model_fallback.prometheus`
(optional extras); importing this package loads neither.
"""

from __future__ import annotations

from model_fallback._model import Attempt, Candidate, FailoverReason, Outcome
from model_fallback.classify import (
    classify_failure,
    coordination_kind,
    is_coordination_error,
    register_coordination_error,
    unregister_coordination_error,
)
from model_fallback.cooldown import CooldownTracker
from model_fallback.driver import FallbackPolicy, FallbackResult, run_with_model_fallback
from model_fallback.errors import (
    AllCandidatesFailedError,
    CoordinationError,
    FailoverError,
    SessionIOError,
    SessionTakeoverError,
    SessionWriteLockTimeoutError,
    StreamInterruptedError,
)
from model_fallback.events import Observer, ObserverSet, RunOutcome
from model_fallback.streaming import FallbackStream, stream_with_model_fallback

__all__ = [
    "AllCandidatesFailedError",
    "Attempt",
    "Candidate",
    "CooldownTracker",
    "CoordinationError",
    "FailoverError",
    "FailoverReason",
    "FallbackPolicy",
    "FallbackResult",
    "FallbackStream",
    "Observer",
    "ObserverSet",
    "Outcome",
    "RunOutcome",
    "SessionIOError",
    "SessionTakeoverError",
    "SessionWriteLockTimeoutError",
    "StreamInterruptedError",
    "__version__",
    "classify_failure",
    "coordination_kind",
    "is_coordination_error",
    "register_coordination_error",
    "run_with_model_fallback",
    "stream_with_model_fallback",
    "unregister_coordination_error",
]

# Show the public path in reprs and tracebacks (model_fallback.Candidate, not ._model).
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) and _obj.__module__ == "model_fallback._model":
        _obj.__module__ = "model_fallback"
del _name, _obj


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("model-fallback")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0.0.0+unknown"
    raise AttributeError(f"module 'model_fallback' has no attribute {name!r}")
