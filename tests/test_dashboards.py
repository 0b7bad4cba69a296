"""Generated dashboards and rules: fresh, linted, and built only from telemetry_spec names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from model_fallback import dashboards
from model_fallback import telemetry_spec as spec

from .conftest import ROOT, require_tool

DASHBOARDS = ["model-fallback-overview.json", "session-coordination.json"]
COUNTERS = {m.prometheus for m in spec.METRICS if m.kind == "counter"}
HISTOGRAM_SERIES = {
    f"{m.prometheus}_{s}" for m in spec.METRICS if m.kind == "histogram" for s in ("bucket", "sum", "count")
}
GRAFANA_UNITS = {"s", "ms", "percentunit", "reqps", "short", "none", "ops"}


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "dashboards" / name).read_text()))


def panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, p) for name in DASHBOARDS for p in load(name)["panels"]]


def test_committed_files_are_fresh() -> None:
    """The committed dashboards and rules are exactly what the generator produces."""
    assert dashboards.main(check=True, out=ROOT / "dashboards") == 0


def test_check_detects_stale_files(tmp_path: Path) -> None:
    """--check fails on a stale or missing file and passes after regeneration."""
    out = tmp_path / "d"
    shutil.copytree(ROOT / "dashboards", out)
    (out / "model-fallback-overview.json").write_text("{}\n")
    (out / "prometheus" / "rules.yml").unlink()
    assert dashboards.main(check=True, out=out) == 1
    assert dashboards.main(check=False, out=out) == 0
    assert dashboards.main(check=True, out=out) == 0


def test_cli_check_command() -> None:
    """`model-fallback dashboards --check` is the freshness check users and CI run."""
    proc = subprocess.run([sys.executable, "-m", "model_fallback", "dashboards", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_datasource_variable_and_job_instance_variables() -> None:
    """A `datasource` variable labelled 'Data source'; job/instance query variables using it."""
    for name in DASHBOARDS:
        variables = {v["name"]: v for v in load(name)["templating"]["list"]}
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus" and ds["label"] == "Data source"
        for var in ("job", "instance"):
            v = variables[var]
            assert v["type"] == "query" and v["multi"] and v["includeAll"] and v["allValue"] == ".+"
            assert v["datasource"]["uid"] == "${datasource}"


# A series read through a range-vector function only: `rate(name{...}[...])` (or irate/increase).
COUNTER_LIKE = COUNTERS | HISTOGRAM_SERIES
SERIES = re.compile(r"\b(model_fallback_[a-z_]+)\b(\{[^}]*\})?(\[[^\]]+\])?")


def counter_misuse(expr: str) -> list[str]:
    """Occurrences of a counter (or histogram series) not directly inside rate/irate/increase
    over a range: the dashboard-linter's target-counter-agg-rule, extended to histogram series."""
    bad = []
    for m in SERIES.finditer(expr):
        name, _, rng = m.groups()
        if expr[m.end(1) : m.end(1) + 1] == ":" or expr[max(0, m.start(1) - 1) : m.start(1)] == ":":
            continue  # a recording rule name such as job:model_fallback_runs:rate5m
        if name not in COUNTER_LIKE:
            continue
        before = expr[: m.start()].rstrip()
        if not (rng and re.search(r"\b(rate|irate|increase)\($", before)):
            bad.append(m.group(0))
    return bad


def test_counter_misuse_detector_can_fail() -> None:
    """The counter rule flags bare counters, counters outside the range function, and passes rates."""
    assert counter_misuse(f"sum({spec.RUNS.prometheus})") == [spec.RUNS.prometheus]
    assert counter_misuse(f"rate({spec.RUNS.prometheus}[5m]) / {spec.RUNS.prometheus}") == [
        spec.RUNS.prometheus
    ]
    assert counter_misuse(f'sum(rate({spec.RUNS.prometheus}{{job=~"$job"}}[$__rate_interval]))') == []
    assert counter_misuse("sum(job:model_fallback_runs:rate5m)") == []


@pytest.mark.parametrize(
    ("dashboard", "panel"), panels(), ids=lambda x: x if isinstance(x, str) else x["title"]
)
def test_panel_lint(dashboard: str, panel: dict[str, Any]) -> None:
    """dashboard-linter rules that apply: datasource, title/description, units, no-targets, rate
    interval, counters only inside rate/increase, job/instance matchers, exemplars on latency panels."""
    assert panel["datasource"]["uid"] == "${datasource}"
    assert panel["title"].strip() and len(panel["description"]) > 20
    assert panel["fieldConfig"]["defaults"]["unit"] in GRAFANA_UNITS
    assert panel["targets"], "panel without targets"
    for t in panel["targets"]:
        expr = t["expr"]
        assert t["datasource"]["uid"] == "${datasource}" and t["refId"]
        for rng in re.findall(r"\[([^\]]+)\]", expr):
            # an error budget is counted over the whole time range shown (the SLO window)
            allowed = (
                {"$__rate_interval", "$__range"} if "error budget" in panel["title"] else {"$__rate_interval"}
            )
            assert rng in allowed, f"range [{rng}] must be $__rate_interval: {expr}"
        for name in re.findall(r"\b(model_fallback_[a-z_]+)\b", expr):
            assert name in COUNTER_LIKE, f"{name} is not in telemetry_spec"
        assert not counter_misuse(expr), f"counters outside rate(): {counter_misuse(expr)} in {expr}"
        for selector in re.findall(r"model_fallback_[a-z_]+(\{[^}]*\})", expr):
            assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, expr
        if "histogram_quantile" in expr:
            assert t["exemplar"] is True


def test_template_variables_reload_on_time_change() -> None:
    """template-on-time-change-reload-rule: query variables refresh on time range change (2)."""
    for name in DASHBOARDS:
        for v in load(name)["templating"]["list"]:
            if v["type"] == "query":
                assert v["refresh"] == 2, (name, v["name"])


def _promql_of_dashboards() -> list[tuple[str, str]]:
    """Every PromQL expression of the dashboards with Grafana's variables given concrete values
    (what Grafana sends), plus the series selectors of the label_values() variable queries."""
    out = []
    for name in DASHBOARDS:
        d = load(name)
        for p in d["panels"]:
            for t in p["targets"]:
                out.append((f"{name} {p['title']} {t['refId']}", t["expr"]))
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                m = re.fullmatch(r"label_values\((.+), *([a-z_]+)\)", v["definition"])
                assert m, v["definition"]
                out.append((f"{name} ${v['name']}", m.group(1)))
    return [
        (
            where,
            e.replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$job", ".+")
            .replace("$instance", ".+"),
        )
        for where, e in out
    ]


def _promtool_parse(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = {
        "groups": [
            {
                "name": "lint",
                "rules": [{"record": f"lint:expr_{i}:x", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    f = tmp_path / "lint.yml"
    f.write_text(json.dumps(rules))  # JSON is YAML
    return subprocess.run(
        [require_tool("promtool"), "check", "rules", str(f)], capture_output=True, text=True, timeout=60
    )


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """target-promql-rule / template-label-promql-rule with Prometheus's own parser: promtool
    parses every panel query and variable selector (and rejects a broken one)."""
    exprs = _promql_of_dashboards()
    assert len(exprs) > 20
    proc = _promtool_parse([e for _, e in exprs], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(exprs)} rules found" in proc.stdout
    broken = _promtool_parse([exprs[0][1].rstrip(")")], tmp_path)
    assert broken.returncode != 0


def test_rule_expressions_read_counters_through_rate() -> None:
    """Recording and alert rules read counters only through rate/increase too."""
    for r in [{"expr": e} for _, e in dashboards.RECORDING_RULES] + dashboards.ALERTS:
        assert not counter_misuse(r["expr"]), r["expr"]


def test_provider_failure_panels_exclude_coordination_aborts() -> None:
    """Any panel about provider failures counts only provider_failure|aborted attempts."""
    found = 0
    for _, p in panels():
        if "failure" in p["title"].lower():
            found += 1
            for t in p["targets"]:
                assert 'outcome=~"provider_failure|aborted"' in t["expr"]
                assert "coordination" not in t["expr"]
    assert found >= 1


def test_required_panels_exist() -> None:
    """The panels the issue asks for are all there."""
    titles = " | ".join(p["title"].lower() for _, p in panels())
    for words in ["runs/s by outcome", "attempts/s by outcome", "provider failure rate", "coordination aborts",
                  "fallbacks avoided", "served by a fallback", "attempt latency p50/p95/p99", "chains exhausted",
                  "cooldown skips", "lock wait", "lock timeouts", "takeovers per turn", "stale locks", "telemetry errors",
                  "time to first chunk p50/p95/p99 by model", "stream interruptions/s by model and reason"]:  # fmt: skip
        assert words in titles, words


def test_rules_use_spec_names_and_level_metric_operations() -> None:
    """Recording rule names follow level:metric:operations; every metric exists in the spec;
    every alert has summary, description and a runbook link to its own `## <AlertName>` section
    of docs/runbooks.md (the only copy of the runbooks)."""
    import yaml

    doc = yaml.safe_load((ROOT / "dashboards" / "prometheus" / "rules.yml").read_text())
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    sections = set(re.findall(r"^## (\S+)\s*$", runbooks, flags=re.MULTILINE))
    rules = [r for g in doc["groups"] for r in g["rules"]]
    for r in rules:
        for name in re.findall(r"(?<![:\w])(model_fallback_[a-z_]+)\b(?!:)", r["expr"]):
            assert name in COUNTERS | HISTOGRAM_SERIES, name
        if "record" in r:
            assert re.fullmatch(r"[a-z_]+:model_fallback_[a-z_]+:[a-z0-9_]+", r["record"]), r["record"]
        else:
            a = r["annotations"]
            assert a["summary"] and a["description"]
            assert r["alert"] in sections, f"docs/runbooks.md has no '## {r['alert']}' section"
            assert a["runbook_url"] == f"docs/runbooks.md#{r['alert'].lower()}", a["runbook_url"]
    alerts = {r["alert"] for r in rules if "alert" in r}
    assert {"ModelFallbackSessionTakeoverRateHigh", "ModelFallbackWriteLockTimeouts", "ModelFallbackChainsExhausted",
            "ModelFallbackProviderFailureRateHigh", "ModelFallbackPrimaryRarelyServing",
            "ModelFallbackTelemetryErrors", "ModelFallbackStreamInterruptionRateHigh"} <= alerts  # fmt: skip


def test_streaming_panels_read_the_streaming_series() -> None:
    """DESIGN §9 on the overview: time to first chunk quantiles per model with exemplars, and
    interruptions by provider/model/reason; runs by outcome names interrupted and caller_error."""
    overview = {p["title"]: p for p in load("model-fallback-overview.json")["panels"]}
    ttft = overview["Time to first chunk p50/p95/p99 by model"]
    assert [t["expr"].split("(", 1)[1].split(",")[0] for t in ttft["targets"]] == ["0.5", "0.95", "0.99"]
    assert all(
        f"{spec.TIME_TO_FIRST_CHUNK.prometheus}_bucket" in t["expr"] and t["exemplar"]
        for t in ttft["targets"]
    )
    assert all("by (le, provider, model)" in t["expr"] for t in ttft["targets"])
    (interrupted,) = overview["Stream interruptions/s by model and reason"]["targets"]
    assert spec.STREAM_INTERRUPTIONS.prometheus in interrupted["expr"]
    assert "by (provider, model, reason)" in interrupted["expr"]
    runs = overview["Runs/s by outcome"]
    assert "interrupted" in runs["description"] and "caller_error" in runs["description"]
    assert "by (outcome)" in runs["targets"][0]["expr"]


def test_panels_fit_the_grid_without_overlap() -> None:
    """Every panel lies inside Grafana's 24-column grid and no two panels overlap; ids are unique."""
    for name in DASHBOARDS:
        ps = load(name)["panels"]
        assert len({p["id"] for p in ps}) == len(ps)
        cells: dict[tuple[int, int], str] = {}
        for p in ps:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = p["title"]


def test_slo_burn_rate_rules_and_budget_panels() -> None:
    """Multi-window, multi-burn-rate alerts for both SLOs (1h/5m at 14.4x page, 6h/30m at 6x
    ticket), targets as parameters, the provider SLO blind to coordination aborts and caller
    errors, and an error-budget row on the overview."""
    from model_fallback.ops import SLOTargets, build_overview, slo_rules

    recording, alerts = slo_rules(SLOTargets(provider=0.999, session=0.99))
    by_name = {a["alert"]: a for a in alerts}
    fast = by_name["ModelFallbackProviderErrorBudgetBurnFast"]
    assert "ratio_rate1h > 0.0144" in fast["expr"] and "ratio_rate5m > 0.0144" in fast["expr"]
    assert fast["labels"]["severity"] == "page"
    slow = by_name["ModelFallbackSessionErrorBudgetBurnSlow"]
    assert "ratio_rate6h > 0.06" in slow["expr"] and slow["labels"]["severity"] == "ticket"
    provider_rules = [e for r, e in recording if "slo_provider" in r]
    assert provider_rules and all(
        "coordination_abort" not in e and "caller_error" not in e for e in provider_rules
    )
    titles = [p["title"] for p in build_overview(SLOTargets(provider=0.999))["panels"]]
    assert "Provider error budget remaining (SLO 99.90%)" in titles
    assert any(t.startswith("Session error budget remaining") for t in titles)
    with pytest.raises(ValueError):
        SLOTargets(provider=1.0)
