"""The repository stands alone: no test reads outside the checkout."""

from __future__ import annotations

from .conftest import CONTRACT, DATA, OUTSIDE_READS, ROOT


def test_the_guard_sees_a_read_beside_the_checkout() -> None:
    """Opening a path beside the checkout is recorded (the session then fails if any real
    test did so); the probe path itself is ignored by the session check."""
    before = len(OUTSIDE_READS)
    try:
        open(ROOT.parent / "outside-probe", "rb").close()
    except OSError:
        pass
    assert OUTSIDE_READS[before:] == [str(ROOT.parent / "outside-probe")]


def test_the_contract_copies_are_in_the_repository() -> None:
    """The design contract and the conformance cases the tests use live in tests/data."""
    assert (CONTRACT / "DESIGN.md").read_text(encoding="utf-8").startswith("# model-fallback")
    assert (DATA / "conformance" / "classification.json").stat().st_size > 1000
