"""Label values shared by the two observers: one cardinality cap and one table of the
enum values, so the Prometheus and the OpenTelemetry pipelines label alike.

Standard library only (the telemetry backends import it; the core does not need it).
"""

from __future__ import annotations

from model_fallback import telemetry_spec as spec
from model_fallback._model import Candidate, FailoverReason, Outcome
from model_fallback._redact import cap_label
from model_fallback.events import RunOutcome

__all__ = ["ENUM_VALUES", "LabelPairs"]

#: The label value of every :class:`Outcome`, :class:`FailoverReason` and
#: :class:`RunOutcome` member, keyed by the member's ``id()``: members are singletons, and an
#: int hashes in C where an enum member's ``.value`` goes through a Python property.
ENUM_VALUES: dict[int, str] = {id(m): m._value_ for m in (*Outcome, *FailoverReason, *RunOutcome)}


class LabelPairs:
    """The provider/model label values of candidates, with the cardinality cap.

    The first *max_pairs* distinct provider/model pairs get their own values (each capped in
    length by :func:`~model_fallback._redact.cap_label`); later pairs are labelled
    ``_other``. A pair's answer never changes once given. Remembered answers are bounded
    (four times *max_pairs*): beyond that, later pairs are answered ``_other`` without being stored.
    """

    __slots__ = ("_known", "max_pairs")

    def __init__(self, max_pairs: int) -> None:
        if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
            raise ValueError("max_label_pairs must be a positive integer")
        self.max_pairs = max_pairs
        # (provider, model) -> label values: strings hash in C, a Candidate in Python
        self._known: dict[tuple[str, str], tuple[str, str]] = {}

    def __call__(self, candidate: Candidate) -> tuple[str, str]:
        """The ``(provider, model)`` label values of *candidate*."""
        key = (candidate.provider, candidate.model)
        pair = self._known.get(key)
        if pair is None:
            own = len(self._known) < self.max_pairs
            pair = (
                (cap_label(candidate.provider), cap_label(candidate.model))
                if own
                else (spec.OTHER, spec.OTHER)
            )
            if len(self._known) < self.max_pairs * 4:
                self._known[key] = pair
        return pair

    def __contains__(self, candidate: object) -> bool:
        return isinstance(candidate, Candidate) and (candidate.provider, candidate.model) in self._known

    def __len__(self) -> int:
        return len(self._known)
