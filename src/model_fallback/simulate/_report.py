"""What the simulator counts, and the report it prints.

:class:`Stats` is an ordinary observer: the report is built from the same events the
OpenTelemetry and Prometheus observers see. The *naive* column is computed from them too:
for every coordination abort it replays what a driver that treats coordination errors as
model failures would have done on the same run — record the local error against the
candidate, call every remaining candidate (each of which hits the same local condition:
the session is still taken over, the lock still contended), and end in
"All models failed".

Streams are counted from the same events: the serving attempt of a stream ends with the
number of chunks and the time to its first chunk, and an interrupted stream is an attempt
that failed after its first chunk (:attr:`~model_fallback.events.AttemptEnded.interrupted`).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from model_fallback._model import Candidate, Outcome
from model_fallback.events import (
    AttemptEnded,
    CandidateSkipped,
    CoordinationAborted,
    FenceChecked,
    LockAcquired,
    LockTimedOut,
    Observer,
    RunEnded,
    RunOutcome,
    StaleLockReclaimed,
)

__all__ = ["Stats", "format_report", "percentile"]

# What a naive driver's classifier makes of each coordination kind: a lock timeout is a
# TimeoutError (so "timeout"), a takeover is nothing it knows ("unknown").
_NAIVE_REASON = {"write_lock_timeout": "timeout", "session_takeover": "unknown"}


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


@dataclass
class Stats(Observer):
    """Counts everything the simulator reports; also an observer of driver/session events."""

    component: str = "simulate-stats"
    chain: tuple[Candidate, ...] = ()
    started: float = field(default_factory=time.monotonic)
    runs: Counter[str] = field(default_factory=Counter)
    attempts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    coordination_aborts: Counter[str] = field(default_factory=Counter)
    fallbacks_avoided: Counter[str] = field(default_factory=Counter)
    cooldown_skips: Counter[str] = field(default_factory=Counter)
    naive_blamed: Counter[tuple[str, str]] = field(default_factory=Counter)
    naive_extra_calls: int = 0
    naive_all_failed_extra: int = 0
    run_durations: list[float] = field(default_factory=list)
    attempt_durations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    fallback_depths: Counter[int] = field(default_factory=Counter)
    lock_waits: list[float] = field(default_factory=list)
    lock_timeouts: int = 0
    takeovers: int = 0
    stale_reclaims: Counter[str] = field(default_factory=Counter)
    turn_errors: Counter[str] = field(default_factory=Counter)
    maintenance_writes: int = 0
    held_locks: int = 0
    crashed_holders: int = 0
    provider_calls: int = 0
    stream_turns: int = 0
    streams: Counter[str] = field(default_factory=Counter)
    stream_chunks: int = 0
    interruptions: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_chunk: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    # --- observer hooks ------------------------------------------------------------

    def attempt_ended(self, event: AttemptEnded) -> None:
        """Count the attempt by candidate, outcome and reason."""
        a = event.attempt
        reason = a.coordination_kind or (a.reason.value if a.reason is not None else "none")
        self.attempts[(str(a.candidate), a.outcome.value, reason)] += 1
        if a.outcome is not Outcome.CANCELLED:
            self.attempt_durations[str(a.candidate)].append(a.duration_s)
        if event.chunks is not None:  # a stream that delivered its first chunk (or ended empty)
            cand = str(a.candidate)
            self.streams[cand] += 1
            self.stream_chunks += event.chunks
            if event.time_to_first_chunk_s is not None:
                self.first_chunk[cand].append(event.time_to_first_chunk_s)
            if event.interrupted:
                self.interruptions[(cand, reason)] += 1

    def candidate_skipped(self, event: CandidateSkipped) -> None:
        """Count a cooldown skip."""
        a = event.attempt
        self.attempts[(str(a.candidate), Outcome.SKIPPED.value, a.reason.value if a.reason else "none")] += 1
        self.cooldown_skips[str(a.candidate)] += 1

    def coordination_aborted(self, event: CoordinationAborted) -> None:
        """Count the abort and replay what a naive driver would have done."""
        self.coordination_aborts[event.kind] += 1
        self.fallbacks_avoided[event.kind] += event.untried
        naive_reason = _NAIVE_REASON.get(event.kind, "unknown")
        for c in self.chain[event.attempt.index :]:
            self.naive_blamed[(str(c), naive_reason)] += 1
        self.naive_extra_calls += event.untried
        self.naive_all_failed_extra += 1

    def run_ended(self, event: RunEnded) -> None:
        """Count the run by outcome, with its duration and fallback depth."""
        self.runs[event.outcome.value] += 1
        self.run_durations.append(event.duration_s)
        if event.outcome is RunOutcome.SUCCESS and event.fallback_depth is not None:
            self.fallback_depths[event.fallback_depth] += 1
        self.provider_calls += sum(
            1 for a in event.attempts if a.outcome not in (Outcome.SKIPPED, Outcome.CANCELLED)
        )

    def lock_acquired(self, event: LockAcquired) -> None:
        """Record a lock wait."""
        self.lock_waits.append(event.waited_s)

    def lock_timed_out(self, event: LockTimedOut) -> None:
        """Count a lock timeout."""
        self.lock_timeouts += 1
        self.lock_waits.append(event.waited_s)

    def stale_lock_reclaimed(self, event: StaleLockReclaimed) -> None:
        """Count a stale lock reclaim by reason."""
        self.stale_reclaims[event.reason] += 1

    def fence_checked(self, event: FenceChecked) -> None:
        """Count a takeover."""
        if event.takeover:
            self.takeovers += 1

    # --- the report ------------------------------------------------------------------

    def report(
        self,
        *,
        scenario: str,
        seed: int,
        interrupted: bool,
        config: dict[str, Any],
        elapsed_s: float | None = None,
    ) -> dict[str, Any]:
        """The machine-readable report (what ``--json`` prints); *elapsed_s*: the run's
        length when it is not the time since :attr:`started` (a fleet's merged report)."""
        elapsed = time.monotonic() - self.started if elapsed_s is None else elapsed_s
        total_runs = sum(self.runs.values())
        by_candidate: dict[str, dict[str, dict[str, int]]] = {}
        for (cand, outcome, reason), n in sorted(self.attempts.items()):
            by_candidate.setdefault(cand, {}).setdefault(outcome, {})[reason] = n
        provider_failures: Counter[str] = Counter()
        attempted: Counter[str] = Counter()
        for (cand, outcome, _reason), n in self.attempts.items():
            if outcome in ("provider_failure", "aborted"):
                provider_failures[cand] += n
            if outcome != "skipped":
                attempted[cand] += n
        blamed: dict[str, dict[str, int]] = {}
        for (cand, reason), n in sorted(self.naive_blamed.items()):
            blamed.setdefault(cand, {})[reason] = n
        naive_failures = Counter(provider_failures)
        naive_attempted = Counter(attempted)
        for (cand, _reason), n in self.naive_blamed.items():
            naive_failures[cand] += n
        # A naive driver calls every candidate we left untried: blamed minus the ones we
        # attempted ourselves (the candidate that hit the coordination error).
        extra_by_candidate: Counter[str] = Counter()
        for (cand, _), n in self.naive_blamed.items():
            extra_by_candidate[cand] += n
        for cand in extra_by_candidate:
            naive_attempted[cand] += extra_by_candidate[cand] - self._coordination_attempts(cand)
        exhausted = self.runs.get("exhausted", 0)

        def rate(f: Counter[str], a: Counter[str], c: str) -> float | None:
            return round(f[c] / a[c], 4) if a[c] else None

        def pct(values: list[float]) -> dict[str, float | None]:
            return {
                f"p{q}": (round(v, 4) if (v := percentile(values, q)) is not None else None)
                for q in (50, 95, 99)
            }

        interruptions: dict[str, dict[str, int]] = {}
        interrupted_by: Counter[str] = Counter()
        for (cand, reason), n in sorted(self.interruptions.items()):
            interruptions.setdefault(cand, {})[reason] = n
            interrupted_by[cand] += n

        return {
            "scenario": scenario,
            "seed": seed,
            "interrupted": interrupted,
            "elapsed_s": round(elapsed, 3),
            "config": config,
            "runs": {"total": total_runs, **dict(sorted(self.runs.items()))},
            "runs_per_s": round(total_runs / elapsed, 2) if elapsed > 0 else 0.0,
            "attempts": by_candidate,
            "provider_calls": self.provider_calls,
            "coordination_aborts": dict(sorted(self.coordination_aborts.items())),
            "fallbacks_avoided": dict(sorted(self.fallbacks_avoided.items())),
            "cooldown_skips": dict(sorted(self.cooldown_skips.items())),
            "fallback_depth": {str(k): v for k, v in sorted(self.fallback_depths.items())},
            "provider_failure_rate": {str(c): rate(provider_failures, attempted, str(c)) for c in self.chain},
            "latency_s": {
                "run": pct(self.run_durations),
                "attempt": {c: pct(v) for c, v in sorted(self.attempt_durations.items())},
            },
            "streams": {
                "turns": self.stream_turns,
                "served": dict(sorted(self.streams.items())),
                "chunks": self.stream_chunks,
                "interrupted": sum(interrupted_by.values()),
                "interruptions": interruptions,
                "interruption_rate": {
                    c: round(interrupted_by[c] / n, 4) for c, n in sorted(self.streams.items())
                },
                "time_to_first_chunk_s": {c: pct(v) for c, v in sorted(self.first_chunk.items())},
            },
            "session": {
                "lock_wait_s": pct(self.lock_waits),
                "lock_timeouts": self.lock_timeouts,
                "takeovers": self.takeovers,
                "stale_locks_reclaimed": dict(sorted(self.stale_reclaims.items())),
                "maintenance_writes": self.maintenance_writes,
                "contended_holds": self.held_locks,
                "crashed_holders": self.crashed_holders,
                "turn_errors_outside_fallback": dict(sorted(self.turn_errors.items())),
            },
            "naive": {
                "all_models_failed": exhausted + self.naive_all_failed_extra,
                "all_models_failed_ours": exhausted,
                "extra_provider_calls": self.naive_extra_calls,
                "blamed": blamed,
                "provider_failure_rate": {
                    str(c): rate(naive_failures, naive_attempted, str(c)) for c in self.chain
                },
            },
        }

    def _coordination_attempts(self, cand: str) -> int:
        return sum(
            n for (c, outcome, _), n in self.attempts.items() if c == cand and outcome == "coordination_abort"
        )


def _fmt_pct(d: dict[str, float | None]) -> str:
    return "  ".join(f"{k}={v * 1000:.0f}ms" if v is not None else f"{k}=-" for k, v in d.items())


def format_report(report: dict[str, Any]) -> str:
    """The human-readable report (what the command prints without ``--json``)."""
    lines: list[str] = []
    w = lines.append
    runs = report["runs"]
    head = "interrupted: report so far" if report["interrupted"] else "done"
    w(
        f"model-fallback simulate — scenario {report['scenario']}, seed {report['seed']}, "
        f"{report['elapsed_s']:.1f}s ({head})"
    )
    w("")
    w(
        f"runs: {runs['total']} ({report['runs_per_s']}/s)  "
        + "  ".join(f"{k}={v}" for k, v in runs.items() if k != "total")
    )
    w("")
    w("attempts by candidate x outcome x reason")
    for cand, outcomes in report["attempts"].items():
        parts = []
        for outcome, reasons in outcomes.items():
            detail = ", ".join(f"{r}={n}" for r, n in reasons.items())
            parts.append(f"{outcome}[{detail}]")
        w(f"  {cand:<34} " + "  ".join(parts))
    w("")
    coord = report["coordination_aborts"]
    avoided = report["fallbacks_avoided"]
    w("coordination aborts (local errors, stopped at once, no model blamed)")
    if coord:
        for kind, n in coord.items():
            w(f"  {kind:<22} {n:>6}   fallbacks avoided: {avoided.get(kind, 0)}")
    else:
        w("  none")
    s = report["session"]
    w(
        f"  session: takeovers={s['takeovers']} lock_timeouts={s['lock_timeouts']} "
        f"stale_locks_reclaimed={sum(s['stale_locks_reclaimed'].values())} "
        f"lock wait {_fmt_pct(s['lock_wait_s'])}"
    )
    extra_takeovers = s["takeovers"] - coord.get("session_takeover", 0)
    extra_timeouts = s["lock_timeouts"] - coord.get("write_lock_timeout", 0)
    if extra_takeovers > 0 or extra_timeouts > 0:
        # An SRE comparing the two lines deserves the reason rather than a puzzle.
        w(
            f"  {max(extra_takeovers, 0)} takeover(s) and {max(extra_timeouts, 0)} lock timeout(s) "
            "seen by the session layer ended no run as a"
        )
        w("    coordination abort: they came beneath a provider error, whose explicit metadata takes")
        w("    precedence, in runs that then ended exhausted with no further candidate called (the rest")
        w("    cooling down or none left) or in streams interrupted by that error, or before the prompt")
    if s["turn_errors_outside_fallback"]:
        w(
            "  turn errors the driver never saw: "
            + ", ".join(f"{k}={v}" for k, v in s["turn_errors_outside_fallback"].items())
        )
    w("")
    lat = report["latency_s"]
    w(f"run latency      {_fmt_pct(lat['run'])}")
    for cand, d in lat["attempt"].items():
        w(f"  attempt {cand:<26} {_fmt_pct(d)}")
    depth = report["fallback_depth"]
    if depth:
        w("served by        " + "  ".join(f"depth {k}: {v}" for k, v in depth.items()))
    w("")
    streams = report["streams"]
    if streams["turns"]:
        served = sum(streams["served"].values())
        share = f" ({streams['interrupted'] / served:.1%} of those served)" if served else ""
        w(
            f"streaming turns: {streams['turns']}  served={served}  chunks={streams['chunks']}  "
            f"interrupted={streams['interrupted']}{share}"
        )
        named = [*streams["interruptions"], *streams["time_to_first_chunk_s"]]
        width = max([22, *map(len, named)])
        for cand, reasons in streams["interruptions"].items():
            w(f"  interrupted  {cand:<{width}}  " + ", ".join(f"{r}={n}" for r, n in reasons.items()))
        for cand, d in streams["time_to_first_chunk_s"].items():
            w(f"  first chunk  {cand:<{width}}  {_fmt_pct(d)}")
        w("")
    naive = report["naive"]
    w("                                   this driver   naive driver (coordination = model failure)")
    w(
        f"  'All models failed' reported     {naive['all_models_failed_ours']:>11}   "
        f"{naive['all_models_failed']:>11}"
    )
    w(
        f"  provider calls                   {report['provider_calls']:>11}   "
        f"{report['provider_calls'] + naive['extra_provider_calls']:>11}"
    )
    width = max([22, *(len(c) for c in report["provider_failure_rate"])])
    for cand in report["provider_failure_rate"]:
        ours = report["provider_failure_rate"][cand]
        theirs = naive["provider_failure_rate"][cand]
        o = f"{ours:.1%}" if ours is not None else "-"
        t = f"{theirs:.1%}" if theirs is not None else "-"
        w(f"  {'failure rate ' + cand:<{width + 13}}  {o:>{31 - width}}   {t:>11}")
    if naive["blamed"]:
        w("  models the naive driver's metrics would blame for local errors:")
        for cand, reasons in naive["blamed"].items():
            w(f"    {cand:<32} " + ", ".join(f"{r}={n}" for r, n in reasons.items()))
    if report.get("fleet"):
        lines.extend(["", *_format_fleet(report["fleet"])])
    return "\n".join(lines)


def _format_fleet(fleet: dict[str, Any]) -> list[str]:
    """The fleet section of a ``--replicas`` run."""
    lines = [f"fleet: {fleet['replicas']} replica processes, cooldowns {fleet['cooldowns']}"]
    for r in fleet["by_replica"]:
        runs = "no report" if r["runs"] is None else f"{r['runs']} runs"
        lines.append(
            f"  replica {r['replica']}: {r['workers']} workers, {r['sessions']} sessions, {runs}"
            + (f" (exit status {r['exit_status']})" if r["exit_status"] not in (0, None) else "")
        )
    elsewhere = fleet["calls_to_candidate_cooling_elsewhere"]
    width = max([22, *map(len, elsewhere)])
    per = fleet.get("per_process")
    if per:
        was, was_calls = per["calls_to_candidate_cooling_elsewhere"], per["calls"]
        lines.append("  calls to a candidate already cooling down in another replica (same seed, two runs)")
        lines.append(f"    {'':<{width}} {'per process':>28}   {fleet['cooldowns']:>28}")
        for cand, n in elsewhere.items():
            before = _share(was.get(cand, 0), was_calls.get(cand, 0))
            lines.append(f"    {cand:<{width}} {before:>28}   {_share(n, fleet['calls'].get(cand, 0)):>28}")
    else:
        lines.append("  calls to a candidate already cooling down in another replica")
        for cand, n in elsewhere.items():
            lines.append(
                f"    {cand:<{width}} {_share(n, fleet['calls'].get(cand, 0)):>28}"
                f"   cooldowns started: {fleet['cooldowns_started'].get(cand, 0)}"
            )
    store = fleet.get("cooldown_store")
    if store:
        lines.append("  cooldown store: " + "  ".join(f"{k}={v}" for k, v in store.items()))
    lines.extend(f"  failure: {failure}" for failure in fleet.get("failures", ()))
    return lines


def _share(n: int, calls: int) -> str:
    """``n of calls (x %)``."""
    return f"{n} of {calls} calls" + (f" ({n / calls:.1%})" if calls else "")


def dumps(report: dict[str, Any]) -> str:
    """The report as JSON."""
    return json.dumps(report, indent=2, sort_keys=False)
