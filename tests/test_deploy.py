"""The docker compose stack (no Docker engine here): what can be checked without running it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from .conftest import ROOT, require_tool

DEPLOY = ROOT / "deploy"


def compose() -> dict:  # type: ignore[type-arg]
    return dict(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def test_compose_mounts_the_files_the_tests_validate() -> None:
    """Every mounted file exists; the collector runs ../otel-collector.yaml, Prometheus the generated rules."""
    services = compose()["services"]
    assert set(services) == {"otel-collector", "prometheus", "tempo", "grafana", "redis"}
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (DEPLOY / source).resolve().exists(), f"{name}: {source} missing"
    assert "../otel-collector.yaml:/etc/otelcol/config.yaml:ro" in services["otel-collector"]["volumes"]
    assert "../dashboards/prometheus:/etc/dashboards/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]


def test_published_ports_are_loopback_only() -> None:
    """Nothing is published beyond 127.0.0.1."""
    for svc in compose()["services"].values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_compose_prometheus_config_is_valid() -> None:
    """`promtool check config` accepts the stack's Prometheus config and finds the rules it loads."""
    proc = subprocess.run([require_tool("promtool"), "check", "config", str(DEPLOY / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "15 rules found" in proc.stdout or "rules found" in proc.stdout


def test_grafana_provisioning_links_exemplars_to_traces() -> None:
    """The Prometheus datasource sends trace_id exemplars to Tempo; dashboards are provisioned from ../dashboards."""
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/datasources.yaml").read_text())
    prom = next(d for d in ds["datasources"] if d["type"] == "prometheus")
    tempo = next(d for d in ds["datasources"] if d["type"] == "tempo")
    (dest,) = prom["jsonData"]["exemplarTraceIdDestinations"]
    assert dest["name"] == "trace_id" and dest["datasourceUid"] == tempo["uid"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/dashboards.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert any(m.startswith("../dashboards:") and m.split(":")[1] == path for m in mounts)
    assert sorted(p.name for p in Path(ROOT / "dashboards").glob("*.json")) == [
        "model-fallback-overview.json", "session-coordination.json",
    ]  # fmt: skip


def test_redis_for_shared_cooldowns_and_locks() -> None:
    """The stack has the Redis that RedisCooldownStore and RedisSessionLock use: on loopback,
    no persistence (cooldowns expire by themselves), and the URL the docs give."""
    redis = compose()["services"]["redis"]
    assert redis["image"].startswith("redis:")
    assert redis["ports"] == ["127.0.0.1:6379:6379"]
    assert "--save" in redis["command"] and "--appendonly" in redis["command"]
    assert "redis://127.0.0.1:6379/0" in (DEPLOY / "docker-compose.yml").read_text()
