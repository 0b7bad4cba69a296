"""The vocabulary's own consistency: gates, tables and provider entries."""

from __future__ import annotations

import re

import pytest

from model_fallback import FailoverReason
from model_fallback.classify import _vocabulary as vocab

RULES = {name: value for name, value in vars(vocab).items() if isinstance(value, vocab.Rule)}


def test_there_are_gated_rules() -> None:
    """Guards the loop below against an empty set."""
    assert len(RULES) >= 10


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_alternative_contains_a_gate(name: str) -> None:
    """A gate must be in every text an alternative matches: here, literally in the
    alternative's source (all the patterns are plain enough for that to carry over)."""
    rule = RULES[name]
    for part in rule.parts:
        assert any(gate in part for gate in rule.gates), f"{name}: no gate in {part!r}"


@pytest.mark.parametrize("name", sorted(RULES))
def test_gates_are_lower_case(name: str) -> None:
    """Texts are lower-cased before matching; an upper-case gate would never open."""
    assert all(g == g.lower() for g in RULES[name].gates)


def test_code_tables_are_upper_case_and_disjoint() -> None:
    """Codes are looked up upper-cased; a code is specific or generic, never both."""
    for table in (vocab.SPECIFIC_CODES, vocab.GENERIC_CODES):
        assert all(code == code.upper() for code in table)
    assert not (set(vocab.SPECIFIC_CODES) & set(vocab.GENERIC_CODES))
    assert not (set(vocab.SPECIFIC_TYPES) & set(vocab.GENERIC_TYPES))


def test_provider_aliases_are_unique_and_resolve() -> None:
    """Each alias names one provider; lookup is case- and space-insensitive."""
    seen: dict[str, str] = {}
    for name, entry in vocab.PROVIDERS.items():
        assert entry.docs, name
        for alias in entry.aliases:
            assert alias not in seen, (alias, seen.get(alias), name)
            seen[alias] = name
            assert vocab.provider_vocabulary(f" {alias.upper()} ")[0] == name
    assert vocab.provider_vocabulary("some-new-provider") == (None, None)
    assert vocab.provider_vocabulary(None) == (None, None)


def test_provider_codes_are_reasons() -> None:
    """Provider tables hold FailoverReason values keyed by upper-case codes."""
    for entry in vocab.PROVIDERS.values():
        for code, reason in entry.codes.items():
            assert code == code.upper()
            assert isinstance(reason, FailoverReason)
        for pattern, reason in entry.messages:
            assert isinstance(pattern, re.Pattern) and isinstance(reason, FailoverReason)
