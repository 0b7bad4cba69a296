"""The coordination registry: which exception types are local coordination errors.

Built in: :class:`~model_fallback.CoordinationError` and its subclasses (by class, with
their ``kind``), and the session takeover / write-lock timeout class names of other
libraries (matched by name anywhere in the MRO). Applications add their own with
:func:`register_coordination_error`; every change clears the classifier's caches.
"""

from __future__ import annotations

import re
import threading

__all__ = ["register_coordination_error", "unregister_coordination_error"]


_BUILTIN_COORDINATION_NAMES: dict[str, str] = {
    "SessionTakeoverError": "session_takeover",
    "EmbeddedAttemptSessionTakeoverError": "session_takeover",
    "SessionWriteLockTimeoutError": "write_lock_timeout",
}
_registry_lock = threading.Lock()
coordination_names: dict[str, str] = dict(_BUILTIN_COORDINATION_NAMES)
coordination_types: tuple[tuple[type, str], ...] = ()


def register_coordination_error(error_type: type[BaseException] | str, kind: str) -> None:
    """Treat *error_type* (a class, or a class name matched anywhere in the MRO) as a
    local coordination error of the given *kind*.

    Registered types stop the fallback driver at once, like the built-in session errors,
    and are counted under ``kind`` in ``model_fallback_coordination_aborts_total``. Only
    types raised by local code should be registered: a provider's words (a code in a
    response body) never abort the chain.

    Raises:
        TypeError: if *error_type* is neither an exception class nor a string.
        ValueError: if *kind* is empty or not a plain identifier.
    """
    global coordination_types
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", kind):
        raise ValueError(f"coordination kind must be a lower_snake_case identifier, got {kind!r}")
    with _registry_lock:
        if isinstance(error_type, str):
            if not error_type:
                raise ValueError("coordination error name must not be empty")
            coordination_names[error_type] = kind
        elif isinstance(error_type, type) and issubclass(error_type, BaseException):
            coordination_types = (
                *((t, k) for t, k in coordination_types if t is not error_type),
                (error_type, kind),
            )
        else:
            raise TypeError(f"expected an exception class or a class name, got {error_type!r}")
        _invalidate()


def unregister_coordination_error(error_type: type[BaseException] | str) -> None:
    """Undo :func:`register_coordination_error` (built-in names cannot be removed)."""
    global coordination_types
    with _registry_lock:
        if isinstance(error_type, str):
            if error_type not in _BUILTIN_COORDINATION_NAMES:
                coordination_names.pop(error_type, None)
        else:
            coordination_types = tuple((t, k) for t, k in coordination_types if t is not error_type)
        _invalidate()


def _invalidate() -> None:
    from model_fallback.classify._types import CACHED  # the caches import this module

    CACHED.invalidate()
