"""What the classifier knows of an exception *type*, and every cache it keeps, in one place.

Facts about a type (is it a coordination error, which reason its name states, how its
attributes can be read) do not change between two instances, so they are computed once
per type. :class:`TypeFacts` computes them; :class:`CachedTypeFacts` remembers them, and
also remembers whole answers for repeated *leaf* errors (nothing chained beneath them,
no instance attributes: fully described by their type and their text), which is how a
provider's repeated 429 classifies in well under a microsecond.

Invalidation: the coordination registry (:mod:`._registry`) is the
only input that can change a cached answer, so registering or unregistering clears every
cache that depends on it (:meth:`CachedTypeFacts.invalidate`). Answers that depend on
*where* an error was raised (a programming error: the caller's bug, or a malformed
response inside an SDK) are never put in the leaf cache.

``tests/test_classify_cache.py`` checks, as a property, that the cached path answers
exactly what :data:`UNCACHED` answers, across registrations and instance attributes.
"""

from __future__ import annotations

from typing import Any

from model_fallback._model import FailoverReason
from model_fallback.classify import _registry
from model_fallback.classify._vocabulary import (
    CALLER_ERROR_TYPES,
    GENERIC_TYPES,
    PARSE_FAILURE_TYPES,
    SPECIFIC_TYPES,
)
from model_fallback.errors import CoordinationError, FailoverError

__all__ = [
    "CACHED",
    "READ_ATTRS",
    "UNCACHED",
    "CachedTypeFacts",
    "TypeFacts",
]

#: Every attribute the classifier reads from a node (also as mapping keys).
READ_ATTRS = (
    "status", "status_code", "statusCode", "http_status", "code", "error_code", "type",
    "errorType", "__type", "message", "Message", "msg", "error_msg", "status_msg",
    "error_message", "errno", "response", "detail", "details", "error", "Error", "cause",
    "reason", "body", "base_resp", "ResponseMetadata", "HTTPStatusCode", "Code",
)  # fmt: skip
#: The attributes that lead to nested nodes.
CHILD_ATTRS = (
    "cause", "error", "Error", "reason", "response", "body", "detail", "details", "base_resp",
    "ResponseMetadata",
)  # fmt: skip
CHILD_SET = frozenset(CHILD_ATTRS)
_BUILTIN_GETATTR_OWNERS = (object, BaseException)
_CACHE_LIMIT = 4096
_LEAF_CACHE_LIMIT = 2048

# --- type facts ----------------------------------------------------------------------


class TypeFacts:
    """Facts about exception types, computed on every call (the reference answers)."""

    def coordination_kind(self, tp: type) -> str:
        """The coordination kind of instances of *tp*, or ``""``."""
        try:
            if issubclass(tp, CoordinationError):
                return getattr(tp, "kind", "coordination") or "coordination"
            for t, k in _registry.coordination_types:
                if issubclass(tp, t):
                    return k
            for base in tp.__mro__:
                named = _registry.coordination_names.get(base.__name__)
                if named:
                    return named
        except Exception:
            return ""
        return ""

    def type_reasons(self, tp: type) -> tuple[FailoverReason | None, FailoverReason | None, str | None, bool]:
        """``(specific, generic, caller_error, located)`` from the names in *tp*'s MRO: the
        reason a specific type name states, the one a generic name states, the name of the
        programming error it is (``None`` when it is none), and whether its meaning
        depends on where it was raised (:data:`PARSE_FAILURE_TYPES`)."""
        specific = generic = None
        caller = None
        located = False
        try:
            for base in tp.__mro__:
                name = base.__name__
                if specific is None:
                    specific = SPECIFIC_TYPES.get(name)
                if generic is None:
                    generic = GENERIC_TYPES.get(name)
                if caller is None and name in CALLER_ERROR_TYPES:
                    caller = tp.__name__
                located = located or name in PARSE_FAILURE_TYPES
        except Exception:
            return None, None, None, False
        return specific, generic, caller, located

    def attribute_layout(self, tp: type) -> tuple[bool, tuple[str, ...]]:
        """``(plain, class_names)``: whether *tp* has no custom attribute hooks (so its
        instance attributes can be read straight from ``__dict__``), and which of
        :data:`READ_ATTRS` it defines at class level."""
        try:
            plain = not any(
                ("__getattribute__" in vars(base) and base not in _BUILTIN_GETATTR_OWNERS)
                or "__getattr__" in vars(base)
                for base in tp.__mro__
            )
            names = tuple(n for n in READ_ATTRS if hasattr(tp, n))
        except Exception:
            return False, ()
        return plain, names

    def class_constants(self, tp: type) -> dict[str, Any] | None:
        """The non-None class-level values of :data:`READ_ATTRS` on a plain *tp* when all
        of them are plain values (no descriptors), else ``None``: an instance with an empty
        ``__dict__`` is then fully described by its type and its text."""
        try:
            plain, names = self.attribute_layout(tp)
            if not plain:
                return None
            found: dict[str, Any] = {}
            for name in names:
                raw = next((vars(base)[name] for base in tp.__mro__ if name in vars(base)), None)
                if hasattr(type(raw), "__get__"):
                    return None  # a property or getset: varies per instance
                if raw is not None:
                    found[name] = raw
        except Exception:
            return None
        return found

    def is_leaf_type(self, tp: type) -> bool:
        """Whether instances of *tp* with nothing chained and an empty ``__dict__`` are fully
        described by ``(type, str(instance))``: the fast path's precondition. (Whether *tp*
        is a coordination error is not a fact of this kind: it can change, and the answers
        cached for it are dropped when it does.)"""
        try:
            if not issubclass(tp, BaseException) or issubclass(tp, BaseExceptionGroup | FailoverError):
                return False
            if tp.__name__ == "FailoverError":
                return False
            if self.type_reasons(tp)[3]:
                return False  # the answer depends on where it was raised
            consts = self.class_constants(tp)
        except Exception:
            return False
        return consts is not None and "message" not in consts and not (consts.keys() & CHILD_SET)

    # Leaf answers: the reference computes them every time.
    def leaf_get(self, key: Any) -> Any:  # noqa: ARG002 - the cached subclass uses it
        """A remembered answer for *key* (never, here)."""
        return None

    def leaf_put(self, key: Any, value: Any) -> None:
        """Remember an answer (not here)."""


class CachedTypeFacts(TypeFacts):
    """:class:`TypeFacts` with bounded per-type caches and the leaf-answer cache."""

    def __init__(self) -> None:
        self._coordination: dict[type, str] = {}
        self._reasons: dict[type, tuple[FailoverReason | None, FailoverReason | None, str | None, bool]] = {}
        self._layout: dict[type, tuple[bool, tuple[str, ...]]] = {}
        self._constants: dict[type, dict[str, Any] | None] = {}
        self.leaf_types: dict[type, bool] = {}
        self.leaves: dict[Any, Any] = {}

    def invalidate(self) -> None:
        """Forget every answer that depends on the coordination registry."""
        self._coordination.clear()
        self.leaves.clear()

    @staticmethod
    def _remember(cache: dict[type, Any], tp: type, value: Any) -> None:
        try:
            if len(cache) < _CACHE_LIMIT:
                cache[tp] = value
        except Exception:  # an unhashable metaclass
            pass

    def coordination_kind(self, tp: type) -> str:
        try:
            return self._coordination[tp]
        except KeyError:
            pass
        except Exception:
            return ""
        kind = super().coordination_kind(tp)
        self._remember(self._coordination, tp, kind)
        return kind

    def type_reasons(self, tp: type) -> tuple[FailoverReason | None, FailoverReason | None, str | None, bool]:
        try:
            return self._reasons[tp]
        except KeyError:
            pass
        except Exception:
            return None, None, None, False
        found = super().type_reasons(tp)
        self._remember(self._reasons, tp, found)
        return found

    def attribute_layout(self, tp: type) -> tuple[bool, tuple[str, ...]]:
        try:
            return self._layout[tp]
        except KeyError:
            pass
        except Exception:
            return False, ()
        found = super().attribute_layout(tp)
        self._remember(self._layout, tp, found)
        return found

    def class_constants(self, tp: type) -> dict[str, Any] | None:
        try:
            return self._constants[tp]
        except KeyError:
            pass
        except Exception:
            return None
        found = super().class_constants(tp)
        self._remember(self._constants, tp, found)
        return found

    def is_leaf_type(self, tp: type) -> bool:
        try:
            found = self.leaf_types.get(tp)
        except Exception:
            return False
        if found is None:
            found = super().is_leaf_type(tp)
            self._remember(self.leaf_types, tp, found)
        return found

    def leaf_get(self, key: Any) -> Any:
        return self.leaves.get(key)

    def leaf_put(self, key: Any, value: Any) -> None:
        if len(self.leaves) >= _LEAF_CACHE_LIMIT:
            self.leaves.clear()
        self.leaves[key] = value


#: The facts the classifier uses.
CACHED = CachedTypeFacts()
#: The same facts without any cache: the reference the property tests compare against.
UNCACHED = TypeFacts()
