"""The simulated workload: sessions, turns, maintenance, contention, crashed holders.

Every coordination error the simulator counts is produced by the real session
subsystem: real JSONL transcripts, real :class:`~model_fallback.session.SessionWriteLock`
locks, a real prompt-release fence.

* **Turns.** Each worker owns a fixed set of sessions and runs turns on them one after
  another through the embedded-turn helper: lock, append the user message, release the
  lock for the model call, :func:`~model_fallback.run_with_model_fallback` over the chain,
  re-acquire and verify, append the reply.
* **Streaming turns.** A planned share of turns stream instead, through
  :func:`~model_fallback.session.stream_embedded_turn`: the chain is walked up to the first
  chunk, the lock stays released while the chunks are read, the fence is verified when the
  stream ends. Streams that started may be interrupted after a few chunks or stall past
  the idle timeout (:class:`~model_fallback.StreamInterruptedError`).
* **Maintenance writer** (takeovers). For a planned share of turns, a maintenance job —
  its own ``SessionFile`` on the same path, as a compaction or migration job would have —
  appends to the transcript while the prompt is out; the fence then raises
  :class:`~model_fallback.SessionTakeoverError`.
* **Contention** (lock timeouts). For a planned share of turns, a compactor takes the
  session's write lock while the prompt is out and holds it past the turn's lock timeout;
  re-acquiring then raises :class:`~model_fallback.SessionWriteLockTimeoutError`.
* **Crashed holders** (stale locks). For a planned share of turns, a separate Python
  process takes the session's lock and is killed with SIGKILL while holding it; the next
  acquirer reclaims the lock at once.

What happens in each turn (whether it streams, too) is planned from ``(seed, session,
turn)``, so a seed gives the same outcomes whatever the scheduling.

* **Cooldowns.** In one process (the default), each worker has its own cooldown tracker on a
  simulated clock (:class:`~model_fallback.simulate._faults.SimClock`), so which candidates
  are skipped depends on the seed only. A replica of a fleet
  (:mod:`model_fallback.simulate._replicas`) runs some of the workers instead, sharing one
  tracker on wall-clock time (its own, or Redis's through
  :class:`~model_fallback.redis.RedisCooldownStore`): a simulated clock of one process means
  nothing to another.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from model_fallback._model import Candidate
from model_fallback.classify import coordination_kind
from model_fallback.cooldown import CooldownTracker
from model_fallback.errors import AllCandidatesFailedError, StreamInterruptedError
from model_fallback.events import ObserverSet
from model_fallback.session import SessionFile, SessionWriteLock, run_embedded_turn, stream_embedded_turn
from model_fallback.simulate._faults import FaultProfile, Outage, SimClock, SimulatedProvider, rng_for
from model_fallback.simulate._report import Stats

__all__ = ["SimConfig", "Workload"]


@dataclass(frozen=True)
class SimConfig:
    """Everything one simulation run needs (validated before any work)."""

    scenario: str
    duration_s: float
    concurrency: int
    sessions: int
    candidates: tuple[Candidate, ...]
    seed: int
    attempt_timeout: float
    lock_timeout: float
    takeover_rate: float
    contention_rate: float
    crash_rate: float
    profiles: dict[str, FaultProfile] = field(default_factory=dict)
    outages: tuple[Outage, ...] = ()
    directory: Path | None = None
    stream_share: float = 0.0
    idle_timeout: float = 0.5
    replicas: int = 1
    redis_url: str | None = None

    @property
    def fleet(self) -> bool:
        """Whether the run is a fleet of replica processes (``--replicas N`` or ``--redis``)."""
        return self.replicas > 1 or self.redis_url is not None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary for the report."""
        fleet: dict[str, Any] = {}
        if self.fleet:
            # Never the Redis URL itself: it may carry a password.
            fleet = {
                "replicas": self.replicas,
                "cooldowns": "shared (redis)" if self.redis_url else "per process",
            }
        return {
            "duration_s": self.duration_s,
            "concurrency": self.concurrency,
            "sessions": self.sessions,
            "candidates": [str(c) for c in self.candidates],
            "attempt_timeout_s": self.attempt_timeout,
            "lock_timeout_s": self.lock_timeout,
            "takeover_rate": self.takeover_rate,
            "contention_rate": self.contention_rate,
            "crash_rate": self.crash_rate,
            "stream_share": round(self.stream_share, 4),
            "idle_timeout_s": self.idle_timeout,
            "stream_fault_rates": {
                p: {"interrupt": f.interrupt_rate, "stall": f.stall_rate}
                for p, f in sorted(self.profiles.items())
            },
            "fault_rates": {p: dict(f.rates) for p, f in sorted(self.profiles.items())},
            "outages": [
                {"provider": o.provider, "start_s": o.start_s, "end_s": o.end_s} for o in self.outages
            ],
            **fleet,
        }


_CRASHER = textwrap.dedent(
    """
    import os, signal, sys, anyio
    from model_fallback.session import SessionWriteLock

    async def main(path):
        lock = SessionWriteLock(path, acquire_timeout=30.0)
        await lock.__aenter__()
        sys.stdout.write("held\\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main, sys.argv[1])
    """
)


class Workload:
    """Runs the simulation; counts into a :class:`Stats`.

    Args:
        config: the run.
        stats: where the run is counted.
        observers: further observers of every run and session (telemetry, a timeline).
        workers: the workers this process runs, by index in ``range(config.concurrency)``
            (default: all of them); worker *w* runs the sessions ``i % concurrency == w``
            whichever process runs it, so their fault plans do not depend on the split.
        cooldowns: one tracker shared by every worker of this process, on wall-clock time
            (a replica of a fleet); default: each worker its own, on a simulated clock.
        started: the run's start on ``time.monotonic()`` (default: now), from which outage
            windows are counted when *cooldowns* is given (replicas agree on it).
        record_calls: keep :attr:`calls`, every provider call's wall-clock time per candidate.
    """

    def __init__(
        self,
        config: SimConfig,
        stats: Stats,
        observers: Sequence[object],
        *,
        workers: Sequence[int] | None = None,
        cooldowns: CooldownTracker | None = None,
        started: float | None = None,
        record_calls: bool = False,
    ) -> None:
        self.config = config
        self.stats = stats
        # One observer set for the whole simulation: hooks resolved once, and an observer
        # that raises stays disabled across runs.
        self.observers = ObserverSet([stats, *observers])
        self.provider = SimulatedProvider(
            config.profiles, outages=config.outages, seed=config.seed, started=started
        )
        self.workers = tuple(range(config.concurrency)) if workers is None else tuple(workers)
        self.cooldowns = cooldowns
        #: candidate -> wall-clock times (``time.time()``) of its calls, with ``record_calls``
        self.calls: dict[str, list[float]] | None = {} if record_calls else None
        self._owned_dir = config.directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="model-fallback-sim-"))
            if config.directory is None
            else config.directory
        )
        self.paths = [self.directory / f"session-{i:04d}.jsonl" for i in range(config.sessions)]
        self.stop = anyio.Event()
        self.turns_done = 0

    def close(self) -> None:
        """Remove the temporary session directory (kept when the user gave one)."""
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def session(self, i: int) -> SessionFile:
        """A SessionFile for session *i*, reporting to the observers."""
        return SessionFile(self.paths[i], lock_timeout=self.config.lock_timeout, observers=self.observers)

    async def run(self) -> None:
        """Run workers until the duration is over or :attr:`stop` is set."""
        cfg = self.config
        async with anyio.create_task_group() as background, anyio.create_task_group() as tg:
            self._tg = background
            for w in self.workers:
                tg.start_soon(self._worker, w)
            with anyio.move_on_after(cfg.duration_s):
                await self.stop.wait()
            self.stop.set()
            # Let turns in flight finish (they are short), then cut what is left. A stream
            # adds its chunks (each gap under idle_timeout / 5, at most 12) and a stall.
            grace = max(2.0, cfg.attempt_timeout * len(cfg.candidates) + cfg.lock_timeout * 2)
            if cfg.stream_share:
                grace += cfg.idle_timeout * 4
            with anyio.move_on_after(grace):
                while self._active:  # noqa: ASYNC110 - a counter, not an event, is what we have
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
            background.cancel_scope.cancel()

    _active = 0
    _tg: Any = None

    async def _worker(self, w: int) -> None:
        cfg = self.config
        mine = [i for i in range(cfg.sessions) if i % cfg.concurrency == w]
        if not mine:
            return
        turn_no = dict.fromkeys(mine, 0)
        clock: SimClock | None = None
        if self.cooldowns is not None:
            cooldowns = self.cooldowns
        else:
            # Each worker is like one replica of an application: its own cooldown tracker, on a
            # simulated clock that advances by the planned duration of each call, so that which
            # candidates are skipped (and which calls fall in an outage) depends on the seed only.
            clock = SimClock(hang_s=cfg.attempt_timeout)
            cooldowns = CooldownTracker(clock=clock)
        k = 0
        while not self.stop.is_set():
            s = mine[k % len(mine)]
            k += 1
            t = turn_no[s]
            turn_no[s] += 1
            self._active += 1
            try:
                await self._turn(s, t, clock, cooldowns)
            finally:
                self._active -= 1
                self.turns_done += 1

    async def _turn(self, s: int, t: int, clock: SimClock | None, cooldowns: CooldownTracker) -> None:
        cfg = self.config
        plan = rng_for(cfg.seed, "turn", s, t)
        takeover = plan.random() < cfg.takeover_rate
        contended = not takeover and plan.random() < cfg.contention_rate
        crash = plan.random() < cfg.crash_rate
        path = self.paths[s]
        if crash:
            await self._crashed_holder(path)
        # A draw of its own, so that adding streaming turns moved none of the plans above.
        streaming = rng_for(cfg.seed, "stream-turn", s, t).random() < cfg.stream_share
        session = self.session(s)
        first_call = True
        prompt = f"turn {t} of session {s}"
        user = {"role": "user", "content": prompt, "turn": t}

        async def first() -> None:
            nonlocal first_call
            if first_call:
                first_call = False
                if takeover:
                    await self._maintenance_write(path, t)
                elif contended:
                    await self._hold_lock_past_timeout(path)

        async def call(candidate: Candidate) -> str:
            await first()
            self._record_call(candidate)
            return await self.provider.complete(candidate, s, t, prompt, clock)

        async def open_stream(candidate: Candidate) -> AsyncIterator[str]:
            await first()
            self._record_call(candidate)
            return self.provider.stream(candidate, s, t, prompt, idle_timeout=cfg.idle_timeout, clock=clock)

        try:
            if streaming:
                self.stats.stream_turns += 1
                async with stream_embedded_turn(
                    session,
                    user,
                    open_stream,
                    cfg.candidates,
                    cooldowns=cooldowns,
                    observers=self.observers,
                    first_chunk_timeout=cfg.attempt_timeout,
                    idle_timeout=cfg.idle_timeout,
                ) as stream:
                    async for _ in stream:
                        pass
            else:
                await run_embedded_turn(
                    session,
                    user,
                    call,
                    cfg.candidates,
                    cooldowns=cooldowns,
                    observers=self.observers,
                    attempt_timeout=cfg.attempt_timeout,
                )
        except (AllCandidatesFailedError, StreamInterruptedError):
            pass  # counted by Stats from the run's events
        except Exception as exc:
            # The driver's own aborts are counted by Stats from its events; errors it never
            # saw (the lock could not be taken before the prompt, a policy abort) are
            # counted here, apart.
            if first_call:
                kind = coordination_kind(exc)
                self.stats.turn_errors[f"{kind or type(exc).__name__} before prompt"] += 1

    def _record_call(self, candidate: Candidate) -> None:
        if self.calls is not None:
            self.calls.setdefault(str(candidate), []).append(time.time())

    async def _maintenance_write(self, path: Path, t: int) -> None:
        """Another writer changes the transcript while this turn's prompt is out."""
        job = SessionFile(path, lock_timeout=self.config.lock_timeout * 4, observers=self.observers)
        await job.append(
            {"role": "system", "content": f"maintenance: compacted before turn {t}", "job": "compaction"}
        )
        self.stats.maintenance_writes += 1

    async def _hold_lock_past_timeout(self, path: Path) -> None:
        """A compactor takes the lock now and keeps it past the turn's lock timeout."""
        held = anyio.Event()
        hold_for = self.config.lock_timeout + 0.25

        async def compactor() -> None:
            lock = SessionWriteLock(
                path, acquire_timeout=self.config.lock_timeout * 4, observers=self.observers
            )
            async with lock:
                held.set()
                await anyio.sleep(hold_for)

        async def background() -> None:
            try:
                await compactor()
            finally:
                held.set()

        self._spawn(background)
        await held.wait()
        self.stats.held_locks += 1

    def _spawn(self, fn: Any) -> None:
        if self._tg is not None:
            self._tg.start_soon(fn)

    async def _crashed_holder(self, path: Path) -> None:
        """A separate process takes the lock and is killed while holding it."""
        proc = await anyio.run_process(
            [sys.executable, "-c", _CRASHER, str(path)],
            check=False,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        if proc.returncode == -signal.SIGKILL and b"held" in proc.stdout:
            self.stats.crashed_holders += 1
