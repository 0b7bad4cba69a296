"""Session coordination: the parts that *produce* coordination errors.

* :class:`SessionWriteLock` — an async write lock, exclusive across processes and tasks,
  that never blocks the event loop; dead holders are reclaimed at once, stuck live ones
  after ``stale_after``; a timeout raises :class:`~model_fallback.SessionWriteLockTimeoutError`.
* :class:`SessionFile` — a JSONL transcript with atomic appends under that lock, and
  :meth:`SessionFile.locked` to hold it across operations and release it for a prompt
  (:meth:`HeldSession.released_for_prompt`), verifying on return that nobody else changed
  the file (else :class:`~model_fallback.SessionTakeoverError`).
* :func:`run_embedded_turn` — one agent turn composed of all of it and the fallback driver;
  :func:`stream_embedded_turn`, its streaming form (the fence verified when the stream ends).

A local OS error in any of it (disk full, directory gone, read-only filesystem, no descriptors
left, a symlink or FIFO at a session path) raises :class:`~model_fallback.SessionIOError`,
a coordination error of kind ``session_io``: never charged to a model. A holder whose lock was
broken while it held it raises :class:`SessionLockLostError` (a takeover) before it writes.
"""

from __future__ import annotations

from model_fallback.errors import SessionIOError
from model_fallback.session._file import (
    Fingerprint,
    HeldSession,
    SessionFile,
    SessionLock,
    Transcript,
    fingerprint,
)
from model_fallback.session._lock import (
    SessionLockLostError,
    SessionLockPathError,
    SessionWriteLock,
    pid_alive,
)
from model_fallback.session._turn import run_embedded_turn, stream_embedded_turn

__all__ = [
    "Fingerprint",
    "HeldSession",
    "SessionFile",
    "SessionIOError",
    "SessionLock",
    "SessionLockLostError",
    "SessionLockPathError",
    "SessionWriteLock",
    "Transcript",
    "fingerprint",
    "pid_alive",
    "run_embedded_turn",
    "stream_embedded_turn",
]
