"""Failure classification: provider failure reasons, local coordination errors, caller bugs.

:func:`classify_failure` names the provider failure behind an exception (or returns
``None``); :func:`is_coordination_error` and :func:`coordination_kind` recognise local
coordination errors (session write-lock timeouts, session takeovers, session I/O
failures, and types that applications register) anywhere in a cause chain;
:func:`analyze` returns everything at once, including whether the failure is a bug in
the caller's own code (``caller_error``).

The package, one concern per module:

* :mod:`._vocabulary`: the provider vocabulary as data: status rules, specific and
  generic codes, exception type names, message patterns (English and Chinese), and
  per-provider entries (:data:`~._vocabulary.PROVIDERS`). Which text maps to which
  reason, and why, is read there.
* :mod:`._walk`: the chain walk and the precedence that turns what it read into a
  :class:`Classification`.
* :mod:`._registry`: which exception types are coordination errors.
* :mod:`._types`: per-type facts and every cache, with their invalidation.

How an error is read: breadth-first through ``__cause__``, ``__context__``, exception
group members and the attributes ``cause``, ``error``, ``reason``, ``response``,
``body``, ``detail``, ``details`` (JSON bodies quoted in messages are parsed too), with
cycles guarded, 25 levels and 256 nodes read in full (a coordination error is found at
any depth). Signals: a status, codes, the exception type's names (matched by name, never
imported) and the message.

Precedence, strongest first: the error *is* a coordination error; a nested
:class:`~model_fallback.FailoverError`; explicit metadata above a nested coordination
error (a numeric status, a non-timeout code); the provider's own codes; specific codes
and type names; context-overflow text; the status refined by its text; generic codes
and type names; the message; transport failures; and last, a Python programming error
with none of the above is the caller's bug (or ``format`` when it was raised while an
SDK parsed a response). A provider's words never make a coordination error: only local
types do.

Nothing here raises, whatever it is given: hostile ``__getattr__``/``__str__``, bytes,
mappings, ``None`` and non-exceptions all classify (usually to ``None``).
"""

from __future__ import annotations

from model_fallback._model import FailoverReason
from model_fallback.classify._registry import register_coordination_error, unregister_coordination_error
from model_fallback.classify._walk import (
    MAX_DEPTH,
    MAX_NODES,
    Classification,
    analyze,
    analyze_uncached,
    classify_failure,
    coordination_kind,
    is_coordination_error,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Classification",
    "FailoverReason",
    "analyze",
    "analyze_uncached",
    "classify_failure",
    "coordination_kind",
    "is_coordination_error",
    "register_coordination_error",
    "unregister_coordination_error",
]
