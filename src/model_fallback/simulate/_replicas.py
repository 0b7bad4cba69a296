"""``model-fallback simulate --replicas N``: the workload as a fleet of real worker processes.

A deployed application runs as many processes; this runs the simulator that way. The parent
(:class:`Fleet`) starts N replica processes and each runs a share of the workers (worker *w*
in replica ``w % N``, with the sessions ``i % concurrency == w`` it would have in one process,
so every fault is planned from ``(seed, session, turn, candidate)`` exactly as in one process)
in a directory of its own (``replica-R``). What differs from one process:

* **Cooldowns** are one tracker per process — the status quo of a fleet — or, with
  ``--redis URL``, one :class:`~model_fallback.redis.RedisCooldownStore` shared by every
  replica. Either way they run on **wall-clock time**: a simulated clock of one process cannot
  be shared with another. Outage windows are counted from one start that every replica agrees
  on (the parent starts them together once all are ready). Which candidate is skipped then
  depends on timing, not on the seed alone; the planned faults still do not.
* **Metrics**: the parent creates a ``PROMETHEUS_MULTIPROC_DIR`` and sets it in the replicas'
  environment before they start; each replica records with a
  :class:`~model_fallback.prometheus.PrometheusObserver`, and the parent's ``/metrics`` serves
  the aggregate (``prometheus_client.multiprocess.MultiProcessCollector``): one scrape target
  for the fleet.
* **The report**: each replica writes what it counted (its :class:`Stats`, the wall-clock time
  of every provider call, every cooldown it started with its wall-clock end and when its
  successes cleared one, its timeline for the HTML page) to a file the parent reads after the
  run; the parent merges them into one report and adds, per candidate, the **calls made to a
  candidate that was already cooling down in another replica**
  (:func:`calls_cooling_elsewhere`) — the calls that a shared cooldown saves.

The parent talks to a replica over its stdin and stdout, one line at a time: the replica says
``{"ready": true}`` once set up, the parent answers ``go T0`` (T0: the common start, epoch
seconds) or ``stop``; the replica sends its progress as JSON lines; ``stop`` ends its run as
Ctrl-C does, ``cut`` also cuts the turns in flight. Replicas run in sessions of their own (a
terminal's Ctrl-C reaches the parent only, which forwards it), and one whose stdin closes
(the parent died) stops by itself: no replica outlives the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.buffered import BufferedByteReceiveStream

from model_fallback._model import Candidate, FailoverReason
from model_fallback._redact import redact_url
from model_fallback.cooldown import CooldownStore, CooldownTracker
from model_fallback.simulate._faults import FaultProfile, Outage
from model_fallback.simulate._report import Stats
from model_fallback.simulate._timeline import Second, Timeline, merge_stats
from model_fallback.simulate._workload import SimConfig, Workload

__all__ = [
    "Fleet",
    "FleetProgress",
    "RecordingTracker",
    "calls_cooling_elsewhere",
    "config_from_json",
    "config_to_json",
    "merge",
    "redis_unreachable",
    "safe_url",
    "split_workers",
    "stats_from_state",
    "stats_state",
    "worker_main",
]

# What a replica process runs.
_ENTRY = (
    "import sys; from model_fallback.simulate._replicas import worker_main; "
    "sys.exit(worker_main(sys.argv[1:]))"
)

#: How long replicas may take to start (import, connect to Redis) before the run gives up.
START_TIMEOUT_S = 60.0


# --- what crosses the process boundary ------------------------------------------------------


def config_to_json(config: SimConfig) -> dict[str, Any]:
    """*config* as JSON-friendly data (:func:`config_from_json` reads it back exactly)."""
    out: dict[str, Any] = {}
    for f in fields(SimConfig):
        value = getattr(config, f.name)
        if f.name == "candidates":
            value = [str(c) for c in value]
        elif f.name == "profiles":
            value = {p: asdict(prof) for p, prof in value.items()}
        elif f.name == "outages":
            value = [asdict(o) for o in value]
        elif f.name == "directory":
            value = None if value is None else str(value)
        out[f.name] = value
    return out


def config_from_json(data: Mapping[str, Any]) -> SimConfig:
    """The :class:`SimConfig` that :func:`config_to_json` wrote."""
    values = dict(data)
    values["candidates"] = tuple(Candidate.parse(c) for c in values["candidates"])
    values["profiles"] = {p: FaultProfile(**prof) for p, prof in values["profiles"].items()}
    values["outages"] = tuple(Outage(**o) for o in values["outages"])
    values["directory"] = None if values["directory"] is None else Path(values["directory"])
    return SimConfig(**values)


_NOT_COUNTS = ("component", "chain", "started")


def stats_state(stats: Stats) -> dict[str, Any]:
    """What *stats* counted, as JSON-friendly data (field by field, so that a field added to
    :class:`Stats` later crosses too): counters as ``[key, n]`` pairs, tuple keys as lists."""
    out: dict[str, Any] = {}
    for f in fields(Stats):
        if f.name in _NOT_COUNTS:
            continue
        value = getattr(stats, f.name)
        if isinstance(value, Counter):
            out[f.name] = [[list(k) if isinstance(k, tuple) else k, n] for k, n in value.items()]
        elif isinstance(value, dict):
            out[f.name] = {k: list(v) if isinstance(v, list) else v for k, v in value.items()}
        elif isinstance(value, list):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def stats_from_state(state: Mapping[str, Any], chain: tuple[Candidate, ...]) -> Stats:
    """A :class:`Stats` holding what :func:`stats_state` wrote (unknown fields are ignored)."""
    stats = Stats(chain=chain)
    for f in fields(Stats):
        if f.name in _NOT_COUNTS or f.name not in state:
            continue
        value, mine = state[f.name], getattr(stats, f.name)
        if isinstance(mine, Counter):
            mine.update({(tuple(k) if isinstance(k, list) else k): n for k, n in value})
        elif isinstance(mine, dict):
            for k, v in value.items():
                mine[k] = list(v) if isinstance(v, list) else v
        elif isinstance(mine, list):
            mine.extend(value)
        else:
            setattr(stats, f.name, value)
    return stats


# --- the figure that shared cooldowns sell ------------------------------------------------------


def _union(spans: Iterable[Sequence[float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted((float(s[0]), float(s[1])) for s in spans):
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _in_force(spans: Sequence[Sequence[float]], clears: Sequence[float]) -> list[tuple[float, float]]:
    """The cooldowns ``[start, until]`` cut at the first clear after their start."""
    ordered = sorted(clears)
    out = []
    for start, until in spans:
        i = bisect_right(ordered, start)
        end = min(until, ordered[i]) if i < len(ordered) else until
        if end > start:
            out.append((float(start), float(end)))
    return out


def calls_cooling_elsewhere(
    calls: Sequence[Mapping[str, Sequence[float]]],
    cooldowns: Sequence[Mapping[str, Sequence[Sequence[float]]]],
    clears: Sequence[Mapping[str, Sequence[float]]] | None = None,
    *,
    shared: bool = False,
) -> dict[str, int]:
    """Per candidate, the calls made to it while another replica had it cooling down.

    A call to candidate C in replica R at wall-clock time t counts when some other replica
    Q had started a cooldown of C (at ``start``, ending at ``until``) that was still in force
    in Q at t: ``start <= t < until``, and not cleared in between by a success — Q's own
    successes when each replica keeps its cooldowns (*shared* false), anyone's when they
    share one store (a success there clears the cooldown everywhere).

    Args:
        calls: per replica, candidate -> wall-clock times of its calls.
        cooldowns: per replica, candidate -> ``[start, until]`` of each cooldown it started.
        clears: per replica, candidate -> wall-clock times at which a success of that replica
            cleared the candidate's cooldown (default: none).
        shared: whether the replicas shared their cooldowns.
    """
    clears = clears if clears is not None else [{} for _ in cooldowns]
    out: dict[str, int] = {}
    for cand in sorted({c for per in calls for c in per}):
        everyone = [t for per in clears for t in per.get(cand, ())]
        in_force = [
            _in_force(cd.get(cand, ()), everyone if shared else clears[q].get(cand, ()))
            for q, cd in enumerate(cooldowns)
        ]
        n = 0
        for r, per in enumerate(calls):
            times = per.get(cand)
            if not times:
                continue
            spans = _union(s for q, mine in enumerate(in_force) if q != r for s in mine)
            starts = [a for a, _ in spans]
            for t in times:
                i = bisect_right(starts, t) - 1
                if i >= 0 and t < spans[i][1]:
                    n += 1
        out[cand] = n
    return out


class RecordingTracker(CooldownTracker):
    """A :class:`~model_fallback.cooldown.CooldownTracker` that also keeps every cooldown it
    started (:attr:`started_cooldowns`, candidate -> ``(start, until)``) and when its successes
    cleared one (:attr:`clears`, candidate -> times), in wall-clock seconds."""

    def __init__(self, *, store: CooldownStore | None = None) -> None:
        super().__init__(store=store)
        self.started_cooldowns: dict[str, list[tuple[float, float]]] = {}
        self.clears: dict[str, list[float]] = {}

    def record_failure(self, candidate: Candidate, reason: FailoverReason, error: object = None) -> float:
        """Start (or extend) a cooldown, as the tracker does, and remember it."""
        now = self.wall_clock()
        length = super().record_failure(candidate, reason, error)
        if length > 0:
            self.started_cooldowns.setdefault(str(candidate), []).append((now, now + length))
        return length

    def record_success(self, candidate: Candidate) -> None:
        """Clear the cooldown, as the tracker does, and remember when if there was one."""
        had = self.store.get(f"{candidate.provider}/{candidate.model}") is not None
        super().record_success(candidate)
        if had:
            self.clears.setdefault(str(candidate), []).append(self.wall_clock())


# --- checks the command makes before any work --------------------------------------------------


def split_workers(concurrency: int, replicas: int) -> list[tuple[int, ...]]:
    """The workers of each replica: worker *w* runs in replica ``w % replicas``."""
    return [tuple(w for w in range(concurrency) if w % replicas == r) for r in range(replicas)]


safe_url = redact_url  # the name the CLI and the HTML report use


def redis_unreachable(url: str, timeout: float = 2.0) -> str | None:
    """Why the Redis at *url* cannot be used (not a Redis URL, redis-py missing, no answer to
    PING within *timeout* seconds), or None when it answers."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return "not a Redis URL (redis://HOST:PORT/DB, rediss://... or unix://PATH)"
    try:
        import redis
    except ImportError:
        return "needs redis-py: pip install 'model-fallback[redis]'"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except (ValueError, redis.RedisError) as exc:
        return f"not a usable Redis URL ({exc})"
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"cannot reach it within {timeout:g} s ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    return None


# --- a replica process ------------------------------------------------------------------------------


def _say(obj: Mapping[str, Any]) -> None:
    """One line of JSON to the parent (gone parents are not an error here)."""
    try:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


class _Control:
    """What the parent (or a signal) asked of this replica."""

    def __init__(self) -> None:
        self.decided = anyio.Event()
        self.t0: float | None = None
        self.stopped = False
        self.workload: Workload | None = None
        self.run_scope = anyio.CancelScope()
        self.orphaned = False

    def command(self, line: str) -> None:
        word, _, rest = line.strip().partition(" ")
        if word == "go" and not self.decided.is_set():
            self.t0 = float(rest)
            self.decided.set()
        elif word == "stop":
            self.stop()
        elif word == "cut":
            self.stop()
            self.run_scope.cancel()
        elif word == "eof":  # the parent is gone: nobody waits for this run any more
            self.orphaned = True
            self.stop()

    def stop(self) -> None:
        self.stopped = True
        self.decided.set()
        if self.workload is not None:
            self.workload.stop.set()


def _read_stdin(control: _Control, token: anyio.lowlevel.EventLoopToken) -> None:
    """The parent's lines, handed to the event loop (a daemon thread: never keeps us alive)."""

    def hand(line: str) -> None:
        try:
            anyio.from_thread.run_sync(control.command, line, token=token)
        except RuntimeError:  # the loop has ended
            pass

    # os.read on the descriptor, not sys.stdin: a thread blocked inside the buffered reader
    # holds its lock, and the interpreter's shutdown aborts on that lock.
    pending = b""
    while True:
        try:
            chunk = os.read(0, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            hand(line.decode(errors="replace"))
    hand("eof")


def _telemetry(chain: tuple[Candidate, ...]) -> Any:
    """OTLP export when the environment asks for it (each replica exports its own)."""
    try:
        from model_fallback import telemetry

        return telemetry.configure(
            service_name=os.environ.get("OTEL_SERVICE_NAME", "model-fallback-simulate"), candidates=chain
        )
    except ImportError:
        return None


async def _replica(spec: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Run this replica's share of the workload; return what it counted."""
    import logging

    logging.getLogger("model_fallback.session").setLevel(logging.ERROR)
    part = spec["parts"][index]
    config = replace(config_from_json(spec["config"]), directory=Path(part["directory"]))
    chain = config.candidates
    stats = Stats(chain=chain)
    observers: list[object] = []
    prometheus = None
    if spec["metrics"]:
        try:
            from prometheus_client import CollectorRegistry

            from model_fallback.prometheus import PrometheusObserver
        except ImportError:
            pass
        else:
            # Multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the parent) writes the values
            # to that directory whichever registry the metrics are on.
            prometheus = PrometheusObserver(CollectorRegistry(), candidates=chain)
            observers.append(prometheus)
    handle = _telemetry(chain)
    if handle is not None:
        observers[:0] = handle.observers  # OTel first: its span is current for exemplars
    timeline = Timeline(chain) if spec["html"] else None
    if timeline is not None:
        observers.append(timeline)
    control = _Control()
    elapsed = 0.0
    store: Any = None
    store_stats: dict[str, Any] | None = None
    workload: Workload | None = None
    try:
        if spec["redis"]:
            from model_fallback.redis import RedisCooldownStore

            store = RedisCooldownStore(
                spec["redis"],
                namespace=spec["namespace"],
                keep_expired_s=60.0,  # the run's own namespace: nothing needs it for long
                observers=[prometheus] if prometheus is not None else (),
            )
            await store.start()
        tracker = RecordingTracker(store=store)
        try:
            async with anyio.create_task_group() as tg:
                token = anyio.lowlevel.current_token()
                threading.Thread(
                    target=_read_stdin, args=(control, token), name="replica-stdin", daemon=True
                ).start()

                async def signals() -> None:
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                        async for _ in received:
                            control.command("cut" if control.stopped else "stop")

                tg.start_soon(signals)
                _say({"ready": True, "pid": os.getpid()})
                await control.decided.wait()
                if control.t0 is not None and not control.stopped:
                    started = time.monotonic() + (control.t0 - time.time())
                    await anyio.sleep(max(0.0, started - time.monotonic()))
                    stats.started = started
                    if timeline is not None:
                        timeline.started = started
                    workload = Workload(
                        config,
                        stats,
                        observers,
                        workers=part["workers"],
                        cooldowns=tracker,
                        started=started,
                        record_calls=True,
                    )
                    control.workload = workload

                    async def progress() -> None:
                        while True:
                            await anyio.sleep(0.5)
                            _say(
                                {
                                    "runs": dict(stats.runs),
                                    "takeovers": stats.takeovers,
                                    "lock_timeouts": stats.lock_timeouts,
                                }
                            )

                    tg.start_soon(progress)
                    with control.run_scope:
                        await workload.run()
                    elapsed = time.monotonic() - started
                    if timeline is not None:
                        timeline.finish()
                tg.cancel_scope.cancel()
        finally:
            if store is not None:
                await store.aclose()
                store_stats = store.stats()
    finally:
        if workload is not None:
            workload.close()
        if handle is not None:
            handle.shutdown()
    return {
        "replica": index,
        "pid": os.getpid(),
        "interrupted": control.stopped and workload is not None,
        "orphaned": control.orphaned,
        "elapsed_s": elapsed,
        "stats": stats_state(stats),
        "calls": workload.calls if workload is not None and workload.calls is not None else {},
        "cooldowns": {c: [list(s) for s in spans] for c, spans in tracker.started_cooldowns.items()},
        "clears": tracker.clears,
        "cooldown_store": store_stats,
        "timeline": _timeline_state(timeline),
    }


def _timeline_state(timeline: Timeline | None) -> list[dict[str, Any]] | None:
    if timeline is None:
        return None
    return [{"stats": stats_state(s.stats), "outage_calls": dict(s.outage_calls)} for s in timeline.seconds]


def worker_main(argv: Sequence[str]) -> int:
    """A replica process: ``SPEC_FILE INDEX``; writes its result next to the spec file."""
    spec_path, index = Path(argv[0]), int(argv[1])
    spec = json.loads(spec_path.read_text())
    result = anyio.run(_replica, spec, index)
    if result["orphaned"]:
        # The parent died (SIGKILL) and left its directory behind: nobody will read the result.
        shutil.rmtree(spec_path.parent, ignore_errors=True)
        return 0
    out = Path(spec["results"]) / f"replica-{index}.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, separators=(",", ":")))
    tmp.replace(out)
    _say({"done": True})
    return 0


# --- the parent ----------------------------------------------------------------------------------


@dataclass
class _Replica:
    index: int
    workers: tuple[int, ...]
    directory: Path
    proc: anyio.abc.Process | None = None
    ready: bool = False
    exited: bool = False
    progress: dict[str, Any] = field(default_factory=dict)


class FleetProgress:
    """The replicas' latest progress, summed: what the live line shows."""

    def __init__(self, replicas: Sequence[_Replica]) -> None:
        self._replicas = replicas
        self.started = time.monotonic()

    @property
    def runs(self) -> Counter[str]:
        """Runs by outcome, all replicas."""
        total: Counter[str] = Counter()
        for r in self._replicas:
            total.update(r.progress.get("runs", {}))
        return total

    @property
    def takeovers(self) -> int:
        """Takeovers seen by the session layer, all replicas."""
        return sum(int(r.progress.get("takeovers", 0)) for r in self._replicas)

    @property
    def lock_timeouts(self) -> int:
        """Lock timeouts seen by the session layer, all replicas."""
        return sum(int(r.progress.get("lock_timeouts", 0)) for r in self._replicas)


class Fleet:
    """The parent of a run of replica processes.

    Args:
        config: the run (``config.replicas`` processes; ``config.redis_url`` shares cooldowns).
        metrics: give the replicas a ``PROMETHEUS_MULTIPROC_DIR`` (:attr:`metrics_dir`).
        html: have the replicas keep a timeline for the HTML page.
        directory: where the replicas' ``replica-R`` session directories go (default: a
            temporary directory, removed by :meth:`close`).
    """

    def __init__(self, config: SimConfig, *, metrics: bool, html: bool, directory: Path | None) -> None:
        self.config = config
        self.work = Path(tempfile.mkdtemp(prefix="model-fallback-fleet-"))
        base = directory if directory is not None else self.work / "sessions"
        self.replicas = [
            _Replica(r, workers, base / f"replica-{r}")
            for r, workers in enumerate(split_workers(config.concurrency, config.replicas))
        ]
        self.metrics_dir: Path | None = None
        if metrics:
            self.metrics_dir = self.work / "metrics"
            self.metrics_dir.mkdir()
        (self.work / "results").mkdir()
        self.namespace = f"model_fallback_sim_{secrets.token_hex(4)}"
        self.spec = self.work / "spec.json"
        self.spec.write_text(
            json.dumps(
                {
                    "config": config_to_json(replace(config, directory=None)),
                    "parts": [
                        {"workers": list(r.workers), "directory": str(r.directory)} for r in self.replicas
                    ],
                    "metrics": metrics,
                    "html": html,
                    "redis": config.redis_url,
                    "namespace": self.namespace,
                    "results": str(self.work / "results"),
                }
            )
        )
        self.progress = FleetProgress(self.replicas)
        #: epoch seconds at which the replicas started their runs (None until they do)
        self.t0: float | None = None
        self._stopping = 0
        self.failures: list[str] = []

    @property
    def pids(self) -> list[int]:
        """The replica processes' ids (once started)."""
        return [r.proc.pid for r in self.replicas if r.proc is not None]

    async def run(self, on_started: Callable[[list[int]], None] | None = None) -> None:
        """Start the replicas, start their runs together once all are ready, and wait for them
        to end (killed if they overrun by far). *on_started* is called with their pids."""
        for r in self.replicas:  # here, not before: a usage error must leave --dir untouched
            r.directory.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        else:
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        async with anyio.create_task_group() as tg:
            for r in self.replicas:
                r.proc = await anyio.open_process(
                    [sys.executable, "-c", _ENTRY, str(self.spec), str(r.index)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=None,  # the replicas' warnings go where ours go
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches the parent, which forwards it
                )
                tg.start_soon(self._follow, r)
            if on_started is not None:
                on_started(self.pids)
            with anyio.move_on_after(START_TIMEOUT_S):
                while not self._stopping and not all(r.ready or r.exited for r in self.replicas):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            if self._stopping or not all(r.ready for r in self.replicas):
                if not self._stopping:
                    self.failures.append("not every replica got ready; the run did not start")
                await self._tell_all("stop")
            else:
                self.t0 = time.time() + 0.05
                self.progress.started = time.monotonic() + 0.05
                await self._tell_all(f"go {self.t0!r}")
            cfg = self.config
            deadline = cfg.duration_s + cfg.attempt_timeout * len(cfg.candidates) + cfg.lock_timeout * 2 + 30
            with anyio.move_on_after(deadline) as overran:
                for r in self.replicas:
                    assert r.proc is not None
                    await r.proc.wait()
            if overran.cancelled_caught:
                self.failures.append(f"replicas still running {deadline:.0f} s after the start were killed")
                self.kill()
            tg.cancel_scope.cancel()

    async def _follow(self, r: _Replica) -> None:
        assert r.proc is not None
        assert r.proc.stdout is not None
        lines = BufferedByteReceiveStream(r.proc.stdout)
        try:
            while True:
                line = await lines.receive_until(b"\n", 1 << 20)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("ready"):
                    r.ready = True
                elif "runs" in msg:
                    r.progress = msg
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound, anyio.ClosedResourceError):
            pass
        finally:
            r.exited = True

    async def _tell_all(self, line: str) -> None:
        for r in self.replicas:
            if r.proc is None or r.proc.stdin is None or r.proc.returncode is not None:
                continue
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await r.proc.stdin.send(f"{line}\n".encode())

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was asked (Ctrl-C)."""
        return self._stopping > 0

    async def stop(self) -> None:
        """Ctrl-C: the first stops the replicas' runs (turns in flight finish), the second
        cuts those turns too, a third kills the replicas."""
        self._stopping += 1
        if self._stopping == 1:
            await self._tell_all("stop")
        elif self._stopping == 2:
            await self._tell_all("cut")
        else:
            self.kill()

    def kill(self) -> None:
        """SIGKILL every replica still running (and what it started in its session)."""
        for r in self.replicas:
            if r.proc is not None and r.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(r.proc.pid, signal.SIGKILL)

    async def reap(self) -> None:
        """Kill and wait for any replica still running (never leaves one behind)."""
        self.kill()
        with anyio.CancelScope(shield=True):
            for r in self.replicas:
                if r.proc is not None:
                    with anyio.move_on_after(10):
                        await r.proc.wait()
                    with contextlib.suppress(Exception):
                        await r.proc.aclose()

    def results(self) -> list[dict[str, Any]]:
        """The replicas' results (a replica that wrote none is named in :attr:`failures`)."""
        out = []
        for r in self.replicas:
            path = self.work / "results" / f"replica-{r.index}.json"
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                code = r.proc.returncode if r.proc is not None else None
                self.failures.append(f"replica {r.index} exited with status {code} without a report")
        return out

    def close(self) -> None:
        """Remove the fleet's temporary directory (metrics files, results, temp sessions)."""
        shutil.rmtree(self.work, ignore_errors=True)

    def sessions_of(self, r: _Replica) -> int:
        """How many sessions replica *r* runs."""
        return sum(1 for i in range(self.config.sessions) if i % self.config.concurrency in r.workers)


def merge(
    fleet: Fleet, results: Sequence[Mapping[str, Any]], *, started: float
) -> tuple[Stats, Timeline | None, dict[str, Any], float]:
    """The fleet's merged :class:`Stats` (and timeline, when the replicas kept one), the
    report's ``fleet`` section, and the run's length in seconds.

    *started* is the run's common start on this process's ``time.monotonic()``.
    """
    chain = fleet.config.candidates
    stats = merge_stats((stats_from_state(r["stats"], chain) for r in results), chain)
    stats.started = started
    timeline: Timeline | None = None
    if results and all(r.get("timeline") is not None for r in results):
        timeline = Timeline(chain, started=started)
        for r in results:
            for i, sec in enumerate(r["timeline"]):
                while len(timeline.seconds) <= i:
                    timeline.seconds.append(Second(float(len(timeline.seconds)), 1.0, Stats(chain=chain)))
                slot = timeline.seconds[i]
                slot.stats = merge_stats([slot.stats, stats_from_state(sec["stats"], chain)], chain)
                slot.outage_calls.update(sec["outage_calls"])
    elapsed = max((float(r["elapsed_s"]) for r in results), default=0.0)
    if not fleet.stopping:
        fleet.failures.extend(
            f"replica {r['replica']} was stopped by a signal before the end of the run"
            for r in results
            if r.get("interrupted")
        )
    if timeline is not None:
        timeline.ended = started + elapsed
    calls = [r["calls"] for r in results]
    cooldowns = [r["cooldowns"] for r in results]
    by_index = {int(r["replica"]): r for r in results}
    names = [str(c) for c in chain]
    total_calls = {c: sum(len(per.get(c, ())) for per in calls) for c in names}
    started_cd = {c: sum(len(per.get(c, ())) for per in cooldowns) for c in names}
    elsewhere = calls_cooling_elsewhere(
        calls, cooldowns, [r.get("clears", {}) for r in results], shared=fleet.config.redis_url is not None
    )
    section: dict[str, Any] = {
        "replicas": fleet.config.replicas,
        "cooldowns": "shared (redis)" if fleet.config.redis_url else "per process",
        "by_replica": [
            {
                "replica": r.index,
                "pid": r.proc.pid if r.proc is not None else None,
                "workers": len(r.workers),
                "sessions": fleet.sessions_of(r),
                "runs": (
                    sum(n for _, n in by_index[r.index]["stats"]["runs"]) if r.index in by_index else None
                ),
                "exit_status": r.proc.returncode if r.proc is not None else None,
            }
            for r in fleet.replicas
        ],
        "calls": total_calls,
        "cooldowns_started": started_cd,
        "calls_to_candidate_cooling_elsewhere": {c: elsewhere.get(c, 0) for c in names},
    }
    stores = [r["cooldown_store"] for r in results if r.get("cooldown_store")]
    if stores:
        keys = ("errors", "writes", "messages", "resyncs", "dropped")
        section["cooldown_store"] = {k: sum(int(s.get(k) or 0) for s in stores) for k in keys}
    if fleet.failures:
        section["failures"] = list(fleet.failures)
    return stats, timeline, section, elapsed
