"""The label values both observers share: the cardinality cap and the enum value table."""

from __future__ import annotations

import pytest

from model_fallback import Candidate, FailoverReason, Outcome, RunOutcome
from model_fallback._labels import ENUM_VALUES, LabelPairs


def test_the_first_pairs_get_their_own_values_the_rest_other() -> None:
    """max_pairs distinct pairs keep their values (capped in length); later ones are _other,
    and an answer never changes once given."""
    pairs = LabelPairs(2)
    a, b, c = Candidate("p", "a"), Candidate("p", "b"), Candidate("p", "c")
    assert pairs(a) == ("p", "a") and pairs(b) == ("p", "b")
    assert pairs(c) == ("_other", "_other")
    assert pairs(a) == ("p", "a") and pairs(c) == ("_other", "_other")
    assert a in pairs and "p/a" not in pairs
    long = Candidate("p", "m" * 500)
    capped = LabelPairs(5)(long)[1]
    assert len(capped) == 128 and capped != LabelPairs(5)(Candidate("p", "m" * 499))[1]


def test_remembered_pairs_are_bounded() -> None:
    """At most four times max_pairs answers are kept, whatever the number of names seen."""
    pairs = LabelPairs(3)
    for i in range(10_000):
        pairs(Candidate("p", f"model-{i}"))
    assert len(pairs) == 12


def test_bad_cap_and_the_enum_table() -> None:
    """The cap is a positive int; every outcome and reason member has its value in the table."""
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError):
            LabelPairs(bad)  # type: ignore[arg-type]
    for member in (*Outcome, *FailoverReason, *RunOutcome):
        assert ENUM_VALUES[id(member)] == member.value
