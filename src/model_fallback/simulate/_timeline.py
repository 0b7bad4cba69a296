"""The simulator's events, second by second: what the HTML report draws over time.

:class:`Timeline` is an observer like :class:`~model_fallback.simulate.Stats`, and it
counts with it: each second of the run gets a :class:`Stats` of its own, and every event
is handed to the one of the second it arrived in. So a second's figures — the naive
driver's and the streams' included — are computed by the very code that computes the
report's totals. Only what :class:`Stats` does not keep is added here: the calls a
simulated provider answered from inside an outage window, so the page can shade the
outage where it happened (the window is planned on the workers' simulated clocks, which
fall behind the wall clock while turns wait on locks).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from model_fallback._model import Candidate
from model_fallback.events import (
    AttemptEnded,
    CandidateSkipped,
    CoordinationAborted,
    FenceChecked,
    LockAcquired,
    LockTimedOut,
    Observer,
    RunEnded,
    StaleLockReclaimed,
)
from model_fallback.simulate._report import Stats

__all__ = ["OUTAGE_MARK", "Second", "Timeline", "merge_stats"]

#: How the simulated provider's answers from inside an outage window end
#: (``_faults.SimulatedProvider``: "503 Service Unavailable: upstream connect error (outage)").
OUTAGE_MARK = "(outage)"


@dataclass
class Second:
    """What happened during one second (or one bin of seconds) of the run.

    Attributes:
        start_s: where the bin starts, in seconds since the run started.
        width_s: how many seconds it covers (1 unless the timeline was binned).
        stats: the counts of that bin, kept by :class:`Stats` itself.
        outage_calls: calls answered from inside an outage window, per provider.
    """

    start_s: float
    width_s: float
    stats: Stats
    outage_calls: Counter[str] = field(default_factory=Counter)

    def report(self) -> dict[str, Any]:
        """The :meth:`Stats.report` of this bin (rates, naive figures, percentiles)."""
        return self.stats.report(scenario="", seed=0, interrupted=False, config={})


def merge_stats(parts: Iterable[Stats], chain: tuple[Candidate, ...]) -> Stats:
    """One :class:`Stats` holding the counts of *parts* (counters added, samples joined).

    Works field by field on what :class:`Stats` declares, so a field added to it later is
    merged too: counters and integers are added, lists joined, dicts of lists joined per key.
    """
    out = Stats(chain=chain)
    for part in parts:
        for f in fields(Stats):
            if f.name in ("component", "chain", "started"):
                continue
            mine, theirs = getattr(out, f.name), getattr(part, f.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, list):
                mine.extend(theirs)
            elif isinstance(mine, dict):
                for k, v in theirs.items():
                    if isinstance(v, list):
                        mine.setdefault(k, []).extend(v)
                    else:
                        mine[k] = mine.get(k, 0) + v
            elif isinstance(mine, int | float) and not isinstance(mine, bool):
                setattr(out, f.name, mine + theirs)
    return out


class Timeline(Observer):
    """An observer that buckets the run's events per second since *started*.

    Args:
        chain: the candidate chain (the naive driver's replay needs it).
        started: the run's start on *clock* (default: now).
        clock: a monotonic clock in seconds (default :func:`time.monotonic`).
    """

    component = "simulate-timeline"

    def __init__(
        self,
        chain: Sequence[Candidate],
        *,
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chain = tuple(chain)
        self.clock = clock
        self.started = clock() if started is None else started
        self.seconds: list[Second] = []
        self.ended: float | None = None

    # --- buckets ------------------------------------------------------------------------

    def _now(self) -> Second:
        i = max(0, int(self.clock() - self.started))
        while len(self.seconds) <= i:
            self.seconds.append(Second(float(len(self.seconds)), 1.0, Stats(chain=self.chain)))
        return self.seconds[i]

    def finish(self) -> None:
        """Mark the end of the run: the timeline then spans every second up to now."""
        self._now()
        self.ended = self.clock()

    @property
    def elapsed_s(self) -> float:
        """Seconds from the start to :meth:`finish` (or to now)."""
        end = self.ended if self.ended is not None else self.clock()
        return max(0.0, end - self.started)

    def binned(self, max_points: int = 300) -> list[Second]:
        """The seconds, merged into wider bins when there are more than *max_points*.

        A 30 s run gives 30 one-second bins; a one-hour run, 300 bins of 12 s.
        """
        n = len(self.seconds)
        width = max(1, -(-n // max_points))
        out = []
        for start in range(0, n, width):
            part = self.seconds[start : start + width]
            merged = (
                part[0]
                if width == 1
                else Second(
                    float(start),
                    float(len(part)),
                    merge_stats((s.stats for s in part), self.chain),
                    sum((s.outage_calls for s in part), Counter()),
                )
            )
            out.append(merged)
        if out:
            # The last bin ends with the run: its rates are per the time it really covers.
            last = out[-1]
            covered = min(last.width_s, max(self.elapsed_s - last.start_s, 0.1))
            if covered < last.width_s:
                out[-1] = replace(last, width_s=covered)
        return out

    def outage_windows(self, gap_s: float = 2.0) -> list[tuple[str, float, float]]:
        """``(provider, start_s, end_s)`` spans of the seconds with calls answered from an
        outage; seconds apart by at most *gap_s* (cooldowns between probes) are joined."""
        spans: list[tuple[str, float, float]] = []
        providers = sorted({p for s in self.seconds for p in s.outage_calls})
        for provider in providers:
            hit = [s.start_s for s in self.seconds if s.outage_calls.get(provider)]
            start = end = hit[0]
            for t in hit[1:]:
                if t - end > gap_s:
                    spans.append((provider, start, end + 1.0))
                    start = t
                end = t
            spans.append((provider, start, end + 1.0))
        return spans

    # --- observer hooks: each event goes to the Stats of its second ----------------------

    def attempt_ended(self, event: AttemptEnded) -> None:
        """Count the attempt (a stream's figures with it), and a call answered from an outage."""
        sec = self._now()
        sec.stats.attempt_ended(event)
        err = event.attempt.error
        if err is not None and str(err).endswith(OUTAGE_MARK):
            sec.outage_calls[event.attempt.candidate.provider] += 1

    def candidate_skipped(self, event: CandidateSkipped) -> None:
        """Count a cooldown skip."""
        self._now().stats.candidate_skipped(event)

    def coordination_aborted(self, event: CoordinationAborted) -> None:
        """Count a coordination abort (and the naive driver's replay of it)."""
        self._now().stats.coordination_aborted(event)

    def run_ended(self, event: RunEnded) -> None:
        """Count the run by outcome."""
        self._now().stats.run_ended(event)

    def lock_acquired(self, event: LockAcquired) -> None:
        """Record a lock wait."""
        self._now().stats.lock_acquired(event)

    def lock_timed_out(self, event: LockTimedOut) -> None:
        """Count a lock timeout."""
        self._now().stats.lock_timed_out(event)

    def stale_lock_reclaimed(self, event: StaleLockReclaimed) -> None:
        """Count a stale lock reclaim."""
        self._now().stats.stale_lock_reclaimed(event)

    def fence_checked(self, event: FenceChecked) -> None:
        """Count a takeover."""
        self._now().stats.fence_checked(event)
