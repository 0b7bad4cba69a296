"""Session coordination: the parts that *produce* coordination errors.

* :class:`SessionWriteLock` — an async write lock, exclusive across processes and tasks,
  that never blocks the event loop; dead holders are reclaimed at once, stuck live ones
  after ``stale_after``; a timeout raises :class:`~model_fallback.SessionWriteLockTimeoutError`.
* :class:`SessionFile` — a JSONL transcript with atomic appends under that lock, and
  :meth:`SessionFile.locked` to hold it across operations and release it for a prompt
  (:meth:`HeldSession.released_for_prompt`), verifying on return that nobody else changed
  the file (else :class:`~model_fallback.SessionTakeoverError`).
* :func:`run_embedded_turn` — one agent turn composed of all of it and the fallback driver.
"""

from __future__ import annotations

from model_fallback.errors import SessionIOError
from model_fallback.session._file import Fingerprint, HeldSession, SessionFile, Transcript, fingerprint
from model_fallback.session._lock import (
    SessionLockLostError,
    SessionLockPathError,
    SessionWriteLock,
    pid_alive,
)
from model_fallback.session._turn import run_embedded_turn

__all__ = [
    "Fingerprint",
    "HeldSession",
    "SessionFile",
    "SessionIOError",
    "SessionLockLostError",
    "SessionLockPathError",
    "SessionWriteLock",
    "Transcript",
    "fingerprint",
    "pid_alive",
    "run_embedded_turn",
]
