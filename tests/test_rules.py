"""Prometheus rules and config checked by the real promtool."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from model_fallback import dashboards

from .conftest import ROOT, require_tool

PROM = ROOT / "dashboards" / "prometheus"
PROVIDER_ALERT = "ModelFallbackProviderFailureRateHigh"


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_promtool_check_rules() -> None:
    """`promtool check rules` accepts the generated rules."""
    proc = promtool("check", "rules", "rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules() -> None:
    """Every alert firing and not firing, including the coordination storm that must not fire
    the provider-failure alert."""
    proc = promtool("test", "rules", "rules_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    """rules_test.yml has, for every alert, a case where it fires and one where it must not."""
    doc = yaml.safe_load((PROM / "rules_test.yml").read_text())
    cases = [c for t in doc["tests"] for c in t["alert_rule_test"]]
    for alert in (a["alert"] for a in dashboards.ALERTS):
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert} never expected to fire"
        assert any(not c["exp_alerts"] for c in mine), f"{alert} never expected to stay silent"


def test_the_storm_case_really_guards_the_provider_alert(tmp_path: Path) -> None:
    """The same storm with coordination aborts counted as provider failures (what a naive
    driver's metrics would say) makes promtool fail: the test can fail."""
    shutil.copy(PROM / "rules.yml", tmp_path / "rules.yml")
    text = (PROM / "rules_test.yml").read_text()
    naive = text.replace('outcome="coordination_abort", reason="session_takeover"',
                         'outcome="provider_failure", reason="unknown"')  # fmt: skip
    assert naive != text
    (tmp_path / "rules_test.yml").write_text(naive)
    proc = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert proc.returncode != 0
    assert PROVIDER_ALERT in proc.stdout + proc.stderr


def test_coordination_aborts_must_not_dilute_the_provider_rate(tmp_path: Path) -> None:
    """Rules that count coordination aborts as calls (denominator) hide a provider failing 25 %
    of its calls during a storm: promtool's unit tests catch it."""
    rules = (PROM / "rules.yml").read_text()
    diluted = rules.replace(
        "success|provider_failure|aborted", "success|provider_failure|aborted|coordination_abort"
    )
    assert diluted != rules
    (tmp_path / "rules.yml").write_text(diluted)
    shutil.copy(PROM / "rules_test.yml", tmp_path / "rules_test.yml")
    proc = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert proc.returncode != 0
    assert "provider failing during a coordination storm" in proc.stdout + proc.stderr
    assert PROVIDER_ALERT in proc.stdout + proc.stderr


def test_interruptions_are_a_share_of_streams_not_of_all_calls(tmp_path: Path) -> None:
    """The interruption alert divides by streamed attempts (time-to-first-chunk observations):
    with the calls as denominator, the storm that breaks 20 % of gpt-4o's streams (a fifth of
    its calls) reads 4 % and the alert never fires; promtool's unit tests catch it."""
    rules = (PROM / "rules.yml").read_text()
    naive = rules.replace(
        "sum by (job, provider, model) (rate(model_fallback_time_to_first_chunk_seconds_count[5m]))\n  ",
        "sum by (job, provider, model) (rate(model_fallback_attempts_total[5m]))\n  ",
    )
    assert naive != rules
    (tmp_path / "rules.yml").write_text(naive)
    shutil.copy(PROM / "rules_test.yml", tmp_path / "rules_test.yml")
    proc = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert proc.returncode != 0
    assert "interruption storm" in proc.stdout + proc.stderr
    assert "ModelFallbackStreamInterruptionRateHigh" in proc.stdout + proc.stderr


def test_absolute_runbook_links_for_a_deployment(tmp_path: Path) -> None:
    """`--runbook-base` writes rules whose runbook_url is absolute; promtool accepts them."""
    base = "https://docs.example.com/model-fallback/README.md#runbook-"
    proc = subprocess.run(
        [sys.executable, "-m", "model_fallback.ops", "--out", str(tmp_path),
         "--runbook-base", base],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load((tmp_path / "prometheus" / "rules.yml").read_text())
    urls = [r["annotations"]["runbook_url"] for g in doc["groups"] for r in g["rules"] if "alert" in r]
    assert len(urls) == len(dashboards.ALERTS) + len(dashboards.slo_rules()[1])
    assert all(u.startswith(base) and u.removeprefix(base).startswith("modelfallback") for u in urls)
    check = promtool("check", "rules", str(tmp_path / "prometheus" / "rules.yml"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_promtool_check_config() -> None:
    """The example scrape config is valid (and loads the rules)."""
    proc = promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rules.yml" in proc.stdout
