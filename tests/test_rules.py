"""Prometheus rules and config checked by the real promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .conftest import ROOT, require_tool

PROM = ROOT / "dashboards" / "prometheus"


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


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
    assert "ModelFallbackProviderFailureRateHigh" in proc.stdout + proc.stderr


def test_promtool_check_config() -> None:
    """The example scrape config is valid (and loads the rules)."""
    proc = promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
