"""A real Prometheus scraping the real simulator: every dashboard query and every rule returns data.

Debian's ``prometheus`` is started on 127.0.0.1 with exemplar storage, a temp data dir,
a 1 s scrape/evaluation interval and the generated rules; ``model-fallback simulate``
runs the ``mixed`` scenario with OTLP export to a receiver in the test (so spans record
and exemplars carry trace ids). Then every PromQL expression of every panel and every rule
is evaluated through the HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from model_fallback import telemetry_spec as spec

from .conftest import ROOT, require_tool
from .telemetry_support import Receiver

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


class Stack:
    def __init__(self, prom_port: int) -> None:
        self.base = f"http://127.0.0.1:{prom_port}"

    def query(self, expr: str) -> dict[str, Any]:
        return dict(get(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))


JOBS = ("model-fallback", "lock-storm")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Prometheus scraping two simulators: `mixed` (every fault; exports traces so exemplars carry
    trace ids) as job model-fallback, and `lock-storm` (the seed's story) as job lock-storm."""
    prometheus = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("prom")
    ports = {job: free_port() for job in JOBS}
    prom_port = free_port()
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    bare_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    traced_env = bare_env | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "e2e",
    }
    sims: dict[str, subprocess.Popen[bytes]] = {}
    sim_logs = {job: open(tmp / f"{job}.log", "wb") for job in JOBS}  # noqa: SIM115 - closed in finally
    for job, scenario, extra, env in (
        ("model-fallback", "mixed", [], traced_env),
        ("lock-storm", "lock-storm", ["--concurrency", "8", "--takeover-rate", "0.25"], bare_env),
    ):
        sims[job] = subprocess.Popen(
            [sys.executable, "-m", "model_fallback", "simulate", "--scenario", scenario, "--duration", "60",
             "--metrics-port", str(ports[job]), "--json", "--no-progress", "--hold", *extra],
            stdout=sim_logs[job], stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    (tmp / "rules.yml").write_text((ROOT / "dashboards" / "prometheus" / "rules.yml").read_text())
    (tmp / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["rules.yml"],
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                    for job, port in ports.items()
                ],
            }
        )
    )
    log = open(tmp / "prometheus.log", "w")  # noqa: SIM115 - closed in the finally below
    prom = subprocess.Popen(
        [prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--enable-feature=exemplar-storage"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        st = Stack(prom_port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                got = st.query('count by (job) (model_fallback_runs_total{outcome="coordination_abort"} > 0)')
                if len(got["data"]["result"]) == len(JOBS):
                    break
            except OSError:
                pass
            assert prom.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            for job, sim in sims.items():
                assert sim.poll() is None, (tmp / f"{job}.log").read_text()[-3000:]
            time.sleep(1)
        time.sleep(20)  # enough samples for rates and for the recording rules
        yield st
    finally:
        for sim in sims.values():
            sim.send_signal(signal.SIGINT)
        for sim in sims.values():
            try:
                sim.wait(timeout=60)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        for f in sim_logs.values():
            f.close()
        prom.terminate()
        prom.wait(timeout=30)
        log.close()
        receiver.shutdown()
        receiver.server_close()


def _substitute(expr: str) -> str:
    return (
        expr.replace("$__rate_interval", "15s")
        .replace("$__range", "5m")
        .replace("$job", ".+")
        .replace("$instance", ".+")
    )


def _dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for name in ("model-fallback-overview.json", "session-coordination.json"):
        for panel in json.loads((ROOT / "dashboards" / name).read_text())["panels"]:
            for t in panel["targets"]:
                out.append((f"{name}: {panel['title']} [{t['refId']}]", t["expr"]))
    return out


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "dashboards" / "prometheus" / "rules.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    """Every PromQL expression of every panel is valid and returns a non-empty result."""
    empty = []
    for where, expr in _dashboard_exprs():
        got = stack.query(_substitute(expr))
        assert got["status"] == "success", (where, got)
        if not got["data"]["result"]:
            empty.append(where)
    assert not empty, f"queries with no data: {empty}"


def test_every_rule_expression_is_valid_and_has_data(stack: Stack) -> None:
    """Recording rules return data (also as recorded series); alert expressions are valid and
    the quantity they compare (left of the threshold) has data."""
    problems: list[tuple[object, object]] = []
    for r in _rules():
        got = stack.query(r["expr"])
        if got["status"] != "success":
            problems.append((r.get("record") or r.get("alert"), got))
            continue
        if "record" in r:
            if not got["data"]["result"]:
                problems.append((r["record"], "empty"))
            recorded = stack.query(r["record"])
            if not recorded["data"]["result"]:
                problems.append((r["record"], "not recorded by Prometheus"))
        else:
            lhs = re.split(r"\s[<>]=?\s", r["expr"], maxsplit=1)[0]
            if not stack.query(lhs)["data"]["result"]:
                problems.append((r["alert"], f"no data for {lhs!r}"))
    assert not problems, problems


def test_prometheus_evaluates_every_rule_without_error(stack: Stack) -> None:
    """Prometheus loaded every generated rule and its own evaluations are healthy; the target is up."""
    groups = get(f"{stack.base}/api/v1/rules")["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    expected = {r.get("record") or r["alert"] for r in _rules()}
    assert set(loaded) == expected
    unhealthy = {n: (r["health"], r.get("lastError")) for n, r in loaded.items() if r["health"] != "ok"}
    assert not unhealthy
    targets = get(f"{stack.base}/api/v1/targets")["data"]["activeTargets"]
    assert sorted((t["labels"]["job"], t["health"]) for t in targets) == sorted((j, "up") for j in JOBS)


def _exemplar_trace_ids(stack: Stack, series: str) -> set[str]:
    end = time.time()
    params = urllib.parse.urlencode({"query": series, "start": end - 300, "end": end})
    got = get(f"{stack.base}/api/v1/query_exemplars?{params}")
    assert got["status"] == "success"
    return {e["labels"]["trace_id"] for s in got["data"] for e in s["exemplars"] if "trace_id" in e["labels"]}


@pytest.mark.parametrize(
    "series",
    [f"{m.prometheus}_bucket" for m in (spec.ATTEMPT_DURATION, spec.RUN_DURATION, spec.TIME_TO_FIRST_CHUNK)],
)
def test_exemplars_carry_trace_ids(stack: Stack, series: str) -> None:
    """Prometheus stored exemplars with W3C trace ids on the latency buckets the dashboards
    show with exemplars, so Grafana can link a slow bucket to its trace."""
    trace_ids = _exemplar_trace_ids(stack, series)
    assert trace_ids and all(re.fullmatch(r"[0-9a-f]{32}", t) and t != "0" * 32 for t in trace_ids)


def test_coordination_storm_is_not_a_provider_failure(stack: Stack) -> None:
    """In the real data: coordination aborts exist, and the provider-failure ratio never counts them."""
    aborts = stack.query('sum(model_fallback_attempts_total{outcome="coordination_abort"})')["data"]["result"]
    assert float(aborts[0]["value"][1]) > 0
    bad = stack.query(
        'model_fallback_attempts_total{outcome="provider_failure", reason=~"session_takeover|write_lock_timeout"}'
    )["data"]["result"]
    assert bad == []


def _alerts(stack: Stack, job: str) -> dict[str, str]:
    alerts = get(f"{stack.base}/api/v1/alerts")["data"]["alerts"]
    return {a["labels"]["alertname"]: a["state"] for a in alerts if a["labels"].get("job") == job}


def test_lock_storm_trips_the_takeover_alert_and_never_the_provider_alert(stack: Stack) -> None:
    """The mission, on real data: Prometheus evaluating the generated rules over the lock-storm
    simulator puts the takeover alert in pending/firing and never the provider-failure alert,
    although the same attempts counted the naive way (coordination aborts as provider failures)
    would put the primary far above the provider alert's threshold."""
    states: dict[str, str] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = _alerts(stack, "lock-storm")
        if "ModelFallbackSessionTakeoverRateHigh" in states:
            break
        time.sleep(1)
    assert states.get("ModelFallbackSessionTakeoverRateHigh") in {"pending", "firing"}, states
    assert "ModelFallbackProviderFailureRateHigh" not in states, states

    sel = 'job="lock-storm", provider="openai", model="gpt-4o"'
    naive = stack.query(
        f'sum(rate(model_fallback_attempts_total{{{sel}, outcome=~"provider_failure|aborted|coordination_abort"}}[5m]))'
        f' / sum(rate(model_fallback_attempts_total{{{sel}, outcome!~"skipped|cancelled"}}[5m]))'
    )["data"]["result"]
    true = stack.query(
        f"job_provider_model:model_fallback_provider_failures_per_calls:ratio_rate5m{{{sel}}}"
    )["data"]["result"]
    naive_ratio, true_ratio = float(naive[0]["value"][1]), float(true[0]["value"][1])
    assert true_ratio < 0.2 < naive_ratio, (true_ratio, naive_ratio)
