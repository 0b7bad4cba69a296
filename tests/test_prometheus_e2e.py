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

from model_fallback import metrics_spec as spec

from .conftest import ROOT, require_tool
from .test_telemetry import _Receiver

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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("prom")
    sim_port, prom_port = free_port(), free_port()
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_address[1]}",
        OTEL_METRICS_EXPORTER="none",
        OTEL_SERVICE_NAME="e2e",
    )
    sim = subprocess.Popen(
        [sys.executable, "-m", "model_fallback", "simulate", "--scenario", "mixed", "--duration", "60",
         "--metrics-port", str(sim_port), "--json", "--hold"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    (tmp / "rules.yml").write_text((ROOT / "dashboards" / "prometheus" / "rules.yml").read_text())
    (tmp / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["rules.yml"],
                "scrape_configs": [
                    {"job_name": "model-fallback", "static_configs": [{"targets": [f"127.0.0.1:{sim_port}"]}]}
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
                got = st.query('sum(model_fallback_runs_total{outcome="coordination_abort"})')
                if got["data"]["result"] and float(got["data"]["result"][0]["value"][1]) > 0:
                    break
            except OSError:
                pass
            assert prom.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            assert sim.poll() is None, sim.stderr.read().decode() if sim.stderr else ""
            time.sleep(1)
        time.sleep(20)  # enough samples for rates and for the recording rules
        yield st
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            sim.kill()
        prom.terminate()
        prom.wait(timeout=30)
        log.close()
        receiver.shutdown()
        receiver.server_close()


def _substitute(expr: str) -> str:
    return expr.replace("$__rate_interval", "15s").replace("$job", ".+").replace("$instance", ".+")


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
    assert [t["health"] for t in targets] == ["up"]


def _exemplar_trace_ids(stack: Stack, series: str) -> set[str]:
    end = time.time()
    params = urllib.parse.urlencode({"query": series, "start": end - 300, "end": end})
    got = get(f"{stack.base}/api/v1/query_exemplars?{params}")
    assert got["status"] == "success"
    return {e["labels"]["trace_id"] for s in got["data"] for e in s["exemplars"] if "trace_id" in e["labels"]}


@pytest.mark.parametrize(
    "series", [f"{m.prometheus}_bucket" for m in (spec.ATTEMPT_DURATION, spec.RUN_DURATION)]
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
