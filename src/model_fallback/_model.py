"""Value types shared by every core module: candidates, reasons, outcomes, attempts.

They live in one private module so that :mod:`model_fallback.errors`,
:mod:`model_fallback.classify`, :mod:`model_fallback.events` and
:mod:`model_fallback.driver` can all use them without import cycles; the public
modules re-export them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Attempt", "Candidate", "FailoverReason", "Outcome"]


class FailoverReason(enum.StrEnum):
    """Why a provider call failed, as far as fallback is concerned.

    The values are stable strings: they appear as ``reason`` labels on metrics and as
    ``error.type`` on spans.
    """

    AUTH = "auth"
    AUTH_PERMANENT = "auth_permanent"
    BILLING = "billing"
    RATE_LIMIT = "rate_limit"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    FORMAT = "format"
    MODEL_NOT_FOUND = "model_not_found"
    CONTEXT_OVERFLOW = "context_overflow"
    SESSION_EXPIRED = "session_expired"
    REFUSAL = "refusal"
    UNKNOWN = "unknown"


class Outcome(enum.StrEnum):
    """What happened to one candidate in one run."""

    SUCCESS = "success"
    PROVIDER_FAILURE = "provider_failure"
    COORDINATION_ABORT = "coordination_abort"
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    SKIPPED = "skipped"
    CALLER_ERROR = "caller_error"
    """A bug in the caller's own code (a ``NameError`` in ``run``): never charged to the
    model, no cooldown, no further candidate called."""


@dataclass(frozen=True, slots=True, order=True)
class Candidate:
    """One model of a fallback chain: a provider name and a model name.

    ``str(candidate)`` is ``"provider/model"``; :meth:`parse` is its inverse.
    """

    provider: str
    model: str
    # Computed once: every run hashes its chain (the driver's cache of parsed chains).
    _hash: int = field(init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        return self._hash

    def __post_init__(self) -> None:
        if not isinstance(self.provider, str) or not isinstance(self.model, str):
            raise TypeError("Candidate provider and model must be strings")
        if not self.provider.strip() or not self.model.strip():
            raise ValueError(
                f"Candidate needs a non-empty provider and model, got {self.provider!r}/{self.model!r}"
            )
        object.__setattr__(self, "_hash", hash((self.provider, self.model)))

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """Parse ``"provider/model"``; the model part may itself contain slashes.

        Raises:
            ValueError: for ``""``, ``"x"``, ``"/m"``, ``"p/"`` and other malformed names.
            TypeError: if *text* is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(f"candidate must be a 'provider/model' string, got {type(text).__name__}")
        provider, sep, model = text.strip().partition("/")
        if not sep or not provider.strip() or not model.strip():
            raise ValueError(f"malformed candidate {text!r}: expected 'provider/model'")
        return cls(provider.strip(), model.strip())


class Attempt(NamedTuple):
    """The record of one candidate in one run (immutable).

    A named tuple rather than a dataclass: the driver builds one per candidate on the
    hot path, and a tuple costs a quarter of a frozen dataclass to build.

    Attributes:
        candidate: the candidate.
        index: its position in the de-duplicated chain (0 = primary).
        outcome: what happened (:class:`Outcome`).
        reason: the provider failure reason, or the cooldown reason for a skip; ``None``
            for success, cancellation, coordination aborts and caller errors.
        coordination_kind: ``"session_takeover"``, ``"write_lock_timeout"`` or a registered
            kind when ``outcome`` is ``coordination_abort``.
        error: the exception the candidate raised, if any.
        duration_s: wall time of the call (0 for a skip).
        status: HTTP-like status found on the error, if any.
        code: provider/errno code found on the error, if any.
    """

    candidate: Candidate
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: a DESIGN field name
    outcome: Outcome
    reason: FailoverReason | None = None
    coordination_kind: str | None = None
    error: BaseException | None = None
    duration_s: float = 0.0
    status: int | None = None
    code: str | None = None
