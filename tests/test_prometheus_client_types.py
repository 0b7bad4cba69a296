"""PrometheusObserver on prometheus_client's own Counter and Histogram: multiprocess mode with
real worker processes, the label-child caches, the direct value path against the public calls."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

import model_fallback as mf
from model_fallback import events as ev
from model_fallback import prometheus as prom
from model_fallback import telemetry_spec as spec
from model_fallback.prometheus import PrometheusObserver

pytestmark = pytest.mark.anyio
CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"]


def rate_limited_then_ok() -> Any:
    async def run(c: mf.Candidate) -> str:
        if c.provider == "openai":
            e = Exception("Too Many Requests")
            e.status_code = 429  # type: ignore[attr-defined]
            raise e
        return "ok"

    return run


def exposition(reg: CollectorRegistry) -> list[str]:
    """The text exposition without ``_created`` samples (creation times differ)."""
    return [
        line for line in generate_latest(reg).decode().splitlines() if "_created" not in line.split(" ")[0]
    ]


# --- multiprocess mode, real worker processes ----------------------------------------------

WORKER = """
import os, sys
assert os.environ["PROMETHEUS_MULTIPROC_DIR"]
import anyio
import model_fallback as mf
from model_fallback.prometheus import PrometheusObserver

CHAIN = {chain!r}

async def run(c):
    if c.provider == "openai":
        e = Exception("Too Many Requests"); e.status_code = 429
        raise e
    return "ok"

def work(traced):
    obs = PrometheusObserver(candidates=CHAIN)  # the global REGISTRY, as an application does
    observers = [obs]
    if traced:  # a recording span makes the observer pass exemplars (multiprocess mode drops them)
        from opentelemetry.sdk.trace import TracerProvider
        from model_fallback.otel import OTelObserver
        observers.insert(0, OTelObserver(tracer_provider=TracerProvider()))
    async def go():
        for _ in range({runs}):
            r = await mf.run_with_model_fallback(run, CHAIN, observers=observers)
            assert r.value == "ok"
    anyio.run(go)
"""

SPAWNED = (
    WORKER
    + """
work(traced=sys.argv[1] == "0")
print("done", os.getpid())
"""
)

# gunicorn --preload: the master imports the application and builds the observer, then forks.
PREFORK = (
    WORKER
    + """
import multiprocessing as mp
ctx = mp.get_context("fork")
procs = [ctx.Process(target=work, args=(i == 0,)) for i in range({workers})]
for p in procs:
    p.start()
for p in procs:
    p.join(60)
print("exit codes", [p.exitcode for p in procs])
sys.exit(max(abs(p.exitcode or 0) for p in procs))
"""
)


def aggregated(path: Path) -> CollectorRegistry:
    """What a multiprocess /metrics handler serves: one collector over every worker's files."""
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=str(path))
    return reg


def assert_thirty_runs(reg: CollectorRegistry, runs: int) -> None:
    v = reg.get_sample_value
    assert v("model_fallback_runs_total", {"outcome": "success"}) == runs
    assert v("model_fallback_attempts_total", {"provider": "openai", "model": "gpt-4o",
             "outcome": "provider_failure", "reason": "rate_limit"}) == runs  # fmt: skip
    assert v("model_fallback_attempts_total", {"provider": "anthropic", "model": "claude-sonnet-4",
             "outcome": "success", "reason": "none"}) == runs  # fmt: skip
    assert v("model_fallback_attempt_duration_seconds_count", {"provider": "openai", "model": "gpt-4o",
             "outcome": "provider_failure"}) == runs  # fmt: skip
    assert v("model_fallback_run_duration_seconds_count", {"outcome": "success"}) == runs
    assert v("model_fallback_fallback_depth_bucket", {"le": "1.0"}) == runs
    assert v("model_fallback_fallback_depth_bucket", {"le": "0.0"}) == 0
    # label sets made up front are there as zeros in the aggregate too
    assert v("model_fallback_runs_total", {"outcome": "exhausted"}) == 0
    assert v("model_fallback_attempts_total", {"provider": "google", "model": "gemini-2.5-pro",
             "outcome": "success", "reason": "none"}) == 0  # fmt: skip
    assert v("model_fallback_telemetry_errors_total", {"component": "otel"}) == 0
    assert v("model_fallback_session_lock_timeouts_total") == 0


def test_multiprocess_mode_three_worker_processes(tmp_path: Path) -> None:
    """Issue #15: 3 worker processes x 10 runs with PROMETHEUS_MULTIPROC_DIR set; the aggregated
    exposition (MultiProcessCollector) has 30 runs and the attempts of all three (the
    hand-written collector of before showed no model_fallback_runs_total at all)."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(SPAWNED.format(chain=CHAIN, runs=10))
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    pids = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        pids.add(int(out.split()[-1]))
    files = sorted(f.name for f in metrics_dir.iterdir())
    assert {f"counter_{pid}.db" for pid in pids} <= set(files), files
    reg = aggregated(metrics_dir)
    assert_thirty_runs(reg, 30)
    text = generate_latest(reg).decode()
    assert 'model_fallback_runs_total{outcome="success"} 30.0' in text


def test_multiprocess_mode_preforked_workers(tmp_path: Path) -> None:
    """gunicorn --preload: the observer is built in the master before it forks three workers;
    each worker's counts land in its own file and the aggregate has all 30 runs."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    script = tmp_path / "master.py"
    script.write_text(PREFORK.format(chain=CHAIN, runs=10, workers=3) + "\n")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len([f for f in metrics_dir.iterdir() if f.name.startswith("counter_")]) >= 3
    assert_thirty_runs(aggregated(metrics_dir), 30)


# --- the label-child caches ---------------------------------------------------------------


async def test_labels_is_asked_once_per_label_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a chain's first runs, runs ask prometheus_client for no child at all: the
    observer's caches answer (``.labels()`` costs more than a whole observation)."""
    reg = CollectorRegistry()
    obs = PrometheusObserver(reg, candidates=CHAIN)
    observers = ev.ObserverSet([obs])
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for metric in (obs._m.attempts, obs._m.attempt_duration, obs._m.runs, obs._m.run_duration):
        original = metric.labels

        def counting(*labels: Any, _original: Any = original, _name: str = metric._name) -> Any:
            calls.append((_name, labels))
            return _original(*labels)

        monkeypatch.setattr(metric, "labels", counting)
    run = rate_limited_then_ok()
    await mf.run_with_model_fallback(run, CHAIN, observers=observers)
    assert calls, "the first run makes its children"
    calls.clear()
    for _ in range(20):
        await mf.run_with_model_fallback(run, CHAIN, observers=observers)
    assert calls == []
    assert reg.get_sample_value("model_fallback_runs_total", {"outcome": "success"}) == 21


def test_child_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw candidate names key the caches, and an application may vary them without end: the
    caches stop growing at their bound (counts stay right past it)."""
    monkeypatch.setattr(prom, "MAX_CACHED_CHILDREN", 100)
    reg = CollectorRegistry()
    obs = PrometheusObserver(reg, max_label_pairs=10)
    for i in range(1_000):
        c = mf.Candidate("p", f"model-{i}")
        obs.attempt_ended(ev.AttemptEnded(i, mf.Attempt(c, 0, mf.Outcome.PROVIDER_FAILURE,
                                                        mf.FailoverReason.RATE_LIMIT, duration_s=0.01)))  # fmt: skip
        obs.candidate_skipped(ev.CandidateSkipped(i, mf.Attempt(c, 0, mf.Outcome.SKIPPED,
                                                                mf.FailoverReason.RATE_LIMIT), 1.0))  # fmt: skip
        obs.stale_lock_reclaimed(ev.StaleLockReclaimed("s", f"reason-{i}", None))
    assert len(obs._attempt_refs) <= 100
    assert len(obs._refs) <= 100
    total = reg.get_sample_value
    assert total("model_fallback_attempts_total", {"provider": "_other", "model": "_other",
                 "outcome": "provider_failure", "reason": "rate_limit"}) == 990  # fmt: skip
    assert total("model_fallback_cooldown_skips_total", {"provider": "_other", "model": "_other",
                 "reason": "rate_limit"}) == 990  # fmt: skip


# --- the direct value path ------------------------------------------------------------------

VALUES = [0.0, 0.005, 0.01, 0.010000001, 0.02, 0.3, 1.28, 5.0, 81.92, 81.93, 1e6, 3, 7, 10]


@pytest.mark.parametrize("buckets", [spec.GENAI_DURATION_BUCKETS, spec.FALLBACK_DEPTH.buckets])
def test_direct_histogram_path_equals_observe(buckets: tuple[float, ...]) -> None:
    """The value path of a histogram reference puts every value (on a bound, between bounds,
    beyond the last) in the bucket ``observe()`` picks, with the same sum."""
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "d", ["k"], registry=r1, buckets=buckets).labels("x")
    h2 = Histogram("h", "d", ["k"], registry=r2, buckets=buckets).labels("x")
    ref = prom._histogram(h1)
    assert ref[1] is not None, "prometheus_client's histogram layout changed: the fast path is off"
    for v in VALUES:
        prom._observe(ref, v, None)
        h2.observe(v)
    assert exposition(r1) == exposition(r2)


def test_direct_counter_path_equals_inc() -> None:
    """The value path of a counter reference adds like ``inc()``."""
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    c1 = Counter("c", "d", ["k"], registry=r1).labels("x")
    c2 = Counter("c", "d", ["k"], registry=r2).labels("x")
    ref = prom._counter(c1)
    assert ref[1] is not c1.inc, "prometheus_client's counter layout changed: the fast path is off"
    for v in (1.0, 2.0, 0.5):
        prom._inc(ref, v, None)
        c2.inc(v)
    assert exposition(r1) == exposition(r2)


class _Opaque:
    """A histogram child of an unknown layout: only the public observe()."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, Any]] = []

    def observe(self, value: float, exemplar: Any = None) -> None:
        self.seen.append((value, exemplar))


def test_unknown_histogram_layout_falls_back_to_observe() -> None:
    """A child without the expected values (or with bounds not ending in +Inf) is observed
    through ``observe()``; exemplars always go through the public calls."""
    opaque = _Opaque()
    ref = prom._histogram(opaque)
    assert ref == (opaque, None, None, None)
    prom._observe(ref, 0.5, None)
    assert opaque.seen == [(0.5, None)]
    odd = _Opaque()
    odd._upper_bounds = [1.0, 2.0]  # type: ignore[attr-defined]
    odd._buckets = [Counter("a", "d", registry=None)._value, Counter("b", "d", registry=None)._value]  # type: ignore[attr-defined]
    odd._sum = Counter("s", "d", registry=None)._value  # type: ignore[attr-defined]
    assert prom._histogram(odd)[1] is None
    real = Histogram("h", "d", registry=None, buckets=(1.0,))
    ref = prom._histogram(real)
    prom._observe(ref, 0.5, {"trace_id": "a" * 32, "span_id": "b" * 16})
    assert real._buckets[0].get_exemplar().labels["trace_id"] == "a" * 32


async def test_whole_observer_same_exposition_either_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same workload through an observer on the value path and one forced onto the public
    calls gives the same exposition, every series included."""
    fast_reg = CollectorRegistry()
    fast = PrometheusObserver(fast_reg, candidates=CHAIN)
    monkeypatch.setattr(prom, "_histogram", lambda child: (child, None, None, None))
    monkeypatch.setattr(prom, "_counter", lambda child: (child, child.inc))
    slow_reg = CollectorRegistry()
    slow = PrometheusObserver(slow_reg, candidates=CHAIN)
    assert slow._m.depth_ref[1] is None
    for obs in (fast, slow):
        cd = mf.CooldownTracker()
        await mf.run_with_model_fallback(rate_limited_then_ok(), CHAIN, observers=[obs])
        await mf.run_with_model_fallback(rate_limited_then_ok(), CHAIN, observers=[obs], cooldowns=cd)
        # the same tracker again: openai is cooling down and skipped
        await mf.run_with_model_fallback(rate_limited_then_ok(), CHAIN, observers=[obs], cooldowns=cd)
        with pytest.raises(mf.SessionTakeoverError):
            await mf.run_with_model_fallback(_raise(mf.SessionTakeoverError()), CHAIN, observers=[obs])
        obs.lock_acquired(ev.LockAcquired("s", 0.03, 0, 1))
        obs.lock_timed_out(ev.LockTimedOut("s", 61.0, 1, True, 0, 1))
        obs.fence_checked(ev.FenceChecked("s", True, None, None, 0, 1))
        obs.stale_lock_reclaimed(ev.StaleLockReclaimed("s", "dead_pid", 1))
        obs.count_error("exporter")
    durations = ("_sum ", "_bucket{")  # the workload's own timings differ between the two passes

    def shape(reg: CollectorRegistry) -> list[str]:
        return [line.split(" ")[0] if "duration_seconds" in line else line for line in exposition(reg)]

    assert shape(fast_reg) == shape(slow_reg)
    assert fast_reg.get_sample_value("model_fallback_cooldown_skips_total", {"provider": "openai", "model": "gpt-4o",
                                     "reason": "rate_limit"}) == 1  # fmt: skip
    assert any(d in line for line in exposition(fast_reg) for d in durations)


def _raise(exc: BaseException) -> Any:
    async def run(c: mf.Candidate) -> str:
        raise exc

    return run


def test_registration_is_all_or_nothing() -> None:
    """A registry where one of the names is taken: a clear ValueError, and none of the other
    metrics is left registered (a later observer on another namespace still works)."""
    reg = CollectorRegistry()
    taken = Counter("model_fallback_session_takeovers", "someone else's", registry=reg)
    with pytest.raises(ValueError, match="cannot register model-fallback metrics"):
        PrometheusObserver(reg)
    assert [m.name for m in reg.collect()] == ["model_fallback_session_takeovers"]
    reg.unregister(taken)
    obs = PrometheusObserver(reg)
    obs.fence_checked(ev.FenceChecked("s", True, None, None, 0, 1))
    assert reg.get_sample_value("model_fallback_session_takeovers_total") == 1
    other = PrometheusObserver(reg, namespace="other_app")
    other.fence_checked(ev.FenceChecked("s", True, None, None, 0, 1))
    assert reg.get_sample_value("other_app_session_takeovers_total") == 1


def test_exposition_is_prometheus_client_own() -> None:
    """The families are prometheus_client's Counter and Histogram (what multiprocess mode
    and any prometheus_client tooling understand), not a custom collector."""
    reg = CollectorRegistry()
    PrometheusObserver(reg, candidates=CHAIN)
    collectors = list(reg._collector_to_names)
    assert collectors and all(isinstance(c, Counter | Histogram) for c in collectors)
    names = {n for c in collectors for n in reg._collector_to_names[c]}
    for m in spec.METRICS:
        assert m.prometheus in names or f"{m.prometheus}_bucket" in names, m.prometheus


def test_runs_in_a_subprocess_without_multiproc_dir_are_unaffected(tmp_path: Path) -> None:
    """Sanity: the worker script above, without the variable, keeps its counts in memory (no
    files are written anywhere)."""
    script = tmp_path / "w.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import anyio, model_fallback as mf
            from prometheus_client import REGISTRY
            from model_fallback.prometheus import PrometheusObserver
            obs = PrometheusObserver(candidates={CHAIN!r})
            async def run(c):
                return "ok"
            anyio.run(lambda: mf.run_with_model_fallback(run, {CHAIN!r}, observers=[obs]))
            print(REGISTRY.get_sample_value("model_fallback_runs_total", {{"outcome": "success"}}))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.py"]


def test_context_reader_reads_what_the_api_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The observer asks "is there an OpenTelemetry context?" through the ContextVar of the
    default runtime context (what ``get_current()`` returns); with another runtime context
    loaded it goes through ``get_current()`` itself."""
    from opentelemetry import context, trace
    from opentelemetry.sdk.trace import TracerProvider

    reader = prom._context_reader()
    assert reader() == context.get_current()
    with TracerProvider().get_tracer("t").start_as_current_span("s"):
        assert reader() == context.get_current() and reader()
        assert prom._exemplar() is not None
    assert trace.get_current_span() is trace.INVALID_SPAN
    monkeypatch.setattr(context, "_RUNTIME_CONTEXT", object())  # another runtime context
    assert prom._context_reader() is context.get_current
