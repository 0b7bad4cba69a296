"""Every case of the conformance file (tests/data/conformance, a copy of the project's shared cases), built as real exception objects."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

import model_fallback as mf
from model_fallback import classify_failure, coordination_kind, is_coordination_error

from .conftest import DATA

_LIBRARY_TYPES: dict[str, type[BaseException]] = {
    "FailoverError": mf.FailoverError,
    "SessionWriteLockTimeoutError": mf.SessionWriteLockTimeoutError,
    "SessionTakeoverError": mf.SessionTakeoverError,
}
_FOREIGN: dict[str, type[BaseException]] = {}


def _exc_type(name: str) -> type[BaseException]:
    if name in _LIBRARY_TYPES:
        return _LIBRARY_TYPES[name]
    builtin = getattr(__import__("builtins"), name, None)
    if isinstance(builtin, type) and issubclass(builtin, BaseException):
        return builtin
    if name not in _FOREIGN:
        _FOREIGN[name] = type(name, (Exception,), {"__module__": "foreign.sdk"})
    return _FOREIGN[name]


def _obj(attrs: dict[str, Any]) -> object:
    ns = types.SimpleNamespace()
    for key, value in attrs.items():
        setattr(ns, key, _obj(value) if isinstance(value, dict) else value)
    return ns


def build(spec: dict[str, Any]) -> BaseException:
    """Build one error object from a conformance 'error' spec."""
    name = spec["type"]
    message = spec.get("message", "")
    err: BaseException
    if name == "ExceptionGroup":
        err = ExceptionGroup(message or "group", [build(m) for m in spec["members"]])
    elif name == "FailoverError":
        err = mf.FailoverError(message, reason=spec["reason"])
    else:
        err = _exc_type(name)(message)
    for key, value in spec.get("attrs", {}).items():
        setattr(err, key, value)
    for key, value in spec.get("objattrs", {}).items():
        setattr(err, key, _obj(value))
    if "cause" in spec:
        err.__cause__ = build(spec["cause"])
    if "context" in spec:
        err.__context__ = build(spec["context"])
    return err


def _innermost(err: BaseException) -> BaseException:
    seen = set()
    while err.__cause__ is not None and id(err.__cause__) not in seen:
        seen.add(id(err))
        err = err.__cause__
    return err


def _cases() -> list[dict[str, Any]]:
    path = DATA / "conformance" / "classification.json"
    if not path.exists():  # collected before the fixture can fail: fail the test instead
        return [{"id": "missing-conformance-file", "missing": str(path)}]
    return list(json.loads(Path(path).read_text())["cases"])


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_conformance_case(case: dict[str, Any]) -> None:
    """classify_failure, is_coordination_error and coordination_kind match the case."""
    if "missing" in case:
        pytest.fail(f"conformance file not found: {case['missing']}")
    err = build(case["error"])
    if case.get("cycle"):
        _innermost(err).__cause__ = err
    expect = case["expect"]
    reason = classify_failure(err)
    assert (reason.value if reason is not None else None) == expect["reason"]
    assert is_coordination_error(err) is expect["coordination"]
    assert coordination_kind(err) == expect.get("kind")


def test_conformance_file_is_not_empty() -> None:
    """The shared file is loaded and holds the cases (guards against a silent empty run)."""
    assert len(_cases()) >= 30
