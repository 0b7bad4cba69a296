"""The Prometheus observer: counting coordination apart, registries, cardinality and label size, exposition, OTel parity, without OpenTelemetry."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

import model_fallback as mf
from model_fallback import events as ev
from model_fallback import telemetry_spec as spec
from model_fallback.otel import OTelObserver
from model_fallback.prometheus import PrometheusObserver

from .conftest import require_tool
from .telemetry_support import (
    CHAIN,
    http_error,
    long_names,
    script,
)

pytestmark = pytest.mark.anyio


# --- Prometheus ------------------------------------------------------------------------


async def test_prometheus_counts_coordination_apart() -> None:
    """One write-lock abort on a 3-candidate chain and one 429->success run, on an isolated registry."""
    reg = CollectorRegistry()
    obs = PrometheusObserver(reg, candidates=CHAIN)
    with pytest.raises(mf.SessionWriteLockTimeoutError):
        await mf.run_with_model_fallback(
            script({"gpt-4o": mf.SessionWriteLockTimeoutError(path="s")}), CHAIN, observers=[obs]
        )
    await mf.run_with_model_fallback(script({"gpt-4o": http_error(429, "slow")}), CHAIN, observers=[obs])
    v = reg.get_sample_value
    assert v("model_fallback_attempts_total", {"provider": "openai", "model": "gpt-4o",
             "outcome": "coordination_abort", "reason": "write_lock_timeout"}) == 1  # fmt: skip
    assert v("model_fallback_coordination_aborts_total", {"kind": "write_lock_timeout"}) == 1
    assert v("model_fallback_fallbacks_avoided_total", {"kind": "write_lock_timeout"}) == 2
    failures = [
        s for m in reg.collect() if m.name == "model_fallback_attempts" for s in m.samples
        if s.name.endswith("_total") and s.labels["model"] == "gpt-4o" and s.labels["outcome"] == "provider_failure"
        and s.value > 0
    ]  # fmt: skip
    assert [(s.labels["reason"], s.value) for s in failures] == [("rate_limit", 1.0)]
    assert v("model_fallback_runs_total", {"outcome": "coordination_abort"}) == 1
    assert v("model_fallback_runs_total", {"outcome": "success"}) == 1
    assert v("model_fallback_fallback_depth_count") == 1
    # pre-initialised label sets: zeros, not gaps
    assert v("model_fallback_attempts_total", {"provider": "google", "model": "gemini-2.5-pro",
             "outcome": "success", "reason": "none"}) == 0  # fmt: skip
    assert v("model_fallback_telemetry_errors_total", {"component": "otel"}) == 0


def test_two_registries_never_collide_one_registry_is_shared() -> None:
    """Observers on two registries are independent; two on one registry share metrics."""
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    a, b, c = PrometheusObserver(r1), PrometheusObserver(r2), PrometheusObserver(r1)
    run_ended = ev.RunEnded(1, ev.RunOutcome.SUCCESS, (), None, None, 0.1, None)
    a.run_ended(run_ended)
    c.run_ended(run_ended)
    b.run_ended(run_ended)
    assert r1.get_sample_value("model_fallback_runs_total", {"outcome": "success"}) == 2
    assert r2.get_sample_value("model_fallback_runs_total", {"outcome": "success"}) == 1
    with pytest.raises(ValueError, match="namespace"):
        PrometheusObserver(r1, namespace="bad name")


def test_cardinality_is_capped() -> None:
    """10 000 distinct model names through one observer: series bounded by the cap."""
    reg = CollectorRegistry()
    obs = PrometheusObserver(reg, max_label_pairs=50)
    for i in range(10_000):
        a = mf.Attempt(mf.Candidate("p", f"model-{i}"), 0, mf.Outcome.PROVIDER_FAILURE, mf.FailoverReason.RATE_LIMIT,
                       duration_s=0.01)  # fmt: skip
        obs.attempt_ended(ev.AttemptEnded(i, a))
    models = {
        s.labels["model"] for m in reg.collect() if m.name == "model_fallback_attempts" for s in m.samples
    }
    assert len(models) <= 51 and spec.OTHER in models
    total = sum(
        s.value for m in reg.collect() if m.name == "model_fallback_attempts" for s in m.samples
        if s.name.endswith("_total")
    )  # fmt: skip
    assert total == 10_000


def _scrape(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as resp:
        body: bytes = resp.read()
    return body


def test_long_label_values_are_capped_in_a_real_scrape() -> None:
    """max_label_pairs bounds the number of series, and the label length bounds their size:
    150 candidates with 10 KB provider and model names, one failed attempt each, scraped over
    HTTP: every provider/model value is at most 128 characters, the 150 stay distinct (a short
    hash ends a capped value), and the scrape is ~2 MB (it was 109 MB before the cap)."""
    import socket

    from model_fallback import telemetry

    names = long_names(150, 10_000)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handle = telemetry.configure(
        prometheus_port=port, registry=CollectorRegistry(), candidates=names, otel=False
    )
    try:
        with pytest.raises(mf.AllCandidatesFailedError):
            anyio.run(lambda: mf.run_with_model_fallback(
                script({n.split("/")[1]: http_error(429, "slow") for n in names}), names, observers=handle.observers,
            ))  # fmt: skip
        assert handle.prometheus_url is not None
        body = _scrape(handle.prometheus_url)
    finally:
        handle.shutdown()
    print(f"\nscrape with 150 candidates of 2 x 10 KB names: {len(body) / 1e3:.0f} KB")
    values = set(re.findall(r'model="([^"]*)"', body.decode()))
    providers = set(re.findall(r'provider="([^"]*)"', body.decode()))
    assert len(values) == 150 and max(map(len, values)) <= 128
    assert max(map(len, providers)) <= 128
    assert max(map(len, body.splitlines())) < 600
    assert len(body) < 3_000_000  # ~40 lines per candidate (two histograms) x ~340 bytes


def test_promtool_finds_no_problem_in_the_exposition(tmp_path: Path) -> None:
    """`promtool check metrics` accepts the native exposition."""
    promtool = require_tool("promtool")
    reg = CollectorRegistry()
    obs = PrometheusObserver(reg, candidates=CHAIN)

    async def go() -> None:
        await mf.run_with_model_fallback(script({"gpt-4o": http_error(429, "slow")}), CHAIN, observers=[obs])

    anyio.run(go)
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=generate_latest(reg), capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b""


def test_otel_path_translates_to_the_same_families_and_labels() -> None:
    """Through opentelemetry-exporter-prometheus, the OTel path yields the native names and label
    keys: every series of the spec, the streaming ones (DESIGN §9) included."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    otel_reg, native_reg = CollectorRegistry(), CollectorRegistry()
    reader = PrometheusMetricReader()
    # The reader registers on the global REGISTRY; move its collector to our registry.
    from prometheus_client import REGISTRY

    REGISTRY.unregister(reader._collector)
    otel_reg.register(reader._collector)
    mp = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "t"}))
    observers = [OTelObserver(meter_provider=mp), PrometheusObserver(native_reg, candidates=CHAIN)]

    async def workload() -> None:
        await mf.run_with_model_fallback(
            script({"gpt-4o": http_error(429, "slow")}), CHAIN, observers=observers
        )
        with pytest.raises(mf.SessionWriteLockTimeoutError):
            await mf.run_with_model_fallback(script({"gpt-4o": mf.SessionWriteLockTimeoutError()}), CHAIN,
                                             observers=observers)  # fmt: skip
        cd = mf.CooldownTracker()
        cd.record_failure(mf.Candidate.parse(CHAIN[0]), mf.FailoverReason.RATE_LIMIT)
        await mf.run_with_model_fallback(script({}), CHAIN, observers=observers, cooldowns=cd)

        async def interrupted_stream(c: mf.Candidate) -> Any:  # DESIGN §9: ttft + an interruption
            yield "first"
            raise http_error(500, "stream broke")

        with pytest.raises(mf.StreamInterruptedError):
            async with mf.stream_with_model_fallback(
                interrupted_stream, CHAIN, observers=observers
            ) as stream:
                async for _ in stream:
                    pass
        for o in observers:
            o.lock_acquired(ev.LockAcquired("s", 0.01, 0, 1))
            o.lock_timed_out(ev.LockTimedOut("s", 0.5, 1, True, 0, 1))
            o.fence_checked(ev.FenceChecked("s", True, None, None, 0, 1))
            o.stale_lock_reclaimed(ev.StaleLockReclaimed("s", "dead_pid", 1))
            o.observer_failed(ev.ObserverFailed("otel", "run_ended", RuntimeError()))

    anyio.run(workload)

    def families(reg: CollectorRegistry) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for fam in reg.collect():
            for s in fam.samples:
                if not s.name.startswith("model_fallback_") or s.name.endswith("_created"):
                    continue
                keys = set(s.labels) - {
                    "le",
                    "otel_scope_name",
                    "otel_scope_version",
                    "otel_scope_schema_url",
                }
                out.setdefault(s.name, set()).update(keys)
        return out

    native, via_otel = families(native_reg), families(otel_reg)
    expected = {m.prometheus for m in spec.METRICS if m.kind == "counter"} | {
        f"{m.prometheus}{suffix}"
        for m in spec.METRICS
        if m.kind == "histogram"
        for suffix in ("_bucket", "_sum", "_count")
    }
    assert set(native) == expected
    assert set(via_otel) == expected
    assert native == via_otel
    otel_reg.unregister(reader._collector)
    REGISTRY.register(reader._collector)
    mp.shutdown()


def test_prometheus_without_opentelemetry() -> None:
    """With OpenTelemetry absent, the Prometheus observer works (no exemplars) and so does the core."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if not installed\n"
        "import anyio, model_fallback as mf\n"
        "from prometheus_client import CollectorRegistry\n"
        "from prometheus_client.openmetrics.exposition import generate_latest\n"
        "from model_fallback.prometheus import PrometheusObserver\n"
        "reg = CollectorRegistry(); obs = PrometheusObserver(reg)\n"
        "async def run(c):\n"
        "    if c.model == 'a':\n"
        "        e = Exception('slow'); e.status = 429; raise e\n"
        "    return 'ok'\n"
        "r = anyio.run(lambda: mf.run_with_model_fallback(run, ['p/a', 'p/b'], observers=[obs]))\n"
        "assert r.value == 'ok'\n"
        "assert reg.get_sample_value('model_fallback_runs_total', {'outcome': 'success'}) == 1\n"
        "assert '# {' not in generate_latest(reg).decode()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
