"""``model-fallback simulate --replicas N``: real worker processes, a real redis-server, real signals.

The figure the fleet mode exists for — calls made to a candidate already cooling down in
another replica — is checked on the same seed and scenario with per-process cooldowns and with
cooldowns shared through Redis. The scenario makes it robust: the primary answers half of its
calls with 429 ``Retry-After: 2`` (and goes down for the middle of the run), so cooldowns start
all the time, each replica on its own schedule when nothing is shared.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from model_fallback.simulate._replicas import calls_cooling_elsewhere, split_workers
from tests.test_redis_server import RedisServer, free_port, redis_server

__all__ = ["redis_server"]

CMD = [sys.executable, "-m", "model_fallback", "simulate"]
# The same seed and scenario for both figures (per-process and shared cooldowns).
RUN = [
    "--replicas", "2", "--duration", "4", "--concurrency", "4", "--sessions", "8", "--seed", "7",
    "--scenario", "provider-outage", "--fault", "openai:rate_limit=0.5", "--json",
]  # fmt: skip


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CMD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )


def _pids(proc: subprocess.Popen[str]) -> list[int]:
    """The replica pids from the parent's 'started N replica processes (pids ...)' line."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"started \d+ replica processes \(pids ([\d, ]+)\)", line)
        if m:
            return [int(p) for p in m.group(1).split(",")]
    raise AssertionError("the parent never said which replicas it started")


def _gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() for p in pids):
            return True
        time.sleep(0.05)
    return False


def _read_report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON report a --hold run prints when its run ends (it then keeps serving)."""
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the parent closed stdout before printing its report"
        lines.append(line)
        if line.rstrip("\n") == "}":
            return dict(json.loads("".join(lines)))
    raise AssertionError("no report within 60 s")


def _samples(body: str, name: str) -> list[tuple[str, float]]:
    out = []
    for line in body.splitlines():
        if line.startswith((name + "{", name + " ")):
            labels, _, value = line.rpartition(" ")
            out.append((labels, float(value)))
    return out


@pytest.fixture(scope="module")
def per_process() -> tuple[dict[str, Any], str]:
    """One 2-replica run without Redis: its merged report and the aggregated /metrics after it."""
    port = free_port()
    proc = _popen(*RUN, "--metrics-port", str(port), "--hold")
    try:
        report = _read_report(proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return report, body


@pytest.mark.slow
def test_two_replicas_one_merged_report_and_one_aggregated_metrics(
    per_process: tuple[dict[str, Any], str],
) -> None:
    """Two real worker processes split the workers and sessions; the parent's report sums
    them, and its one /metrics (multiprocess mode) counts the runs of both."""
    report, body = per_process
    fleet = report["fleet"]
    assert fleet["replicas"] == 2
    assert fleet["cooldowns"] == "per process"
    assert report["config"]["replicas"] == 2
    assert [(r["workers"], r["sessions"]) for r in fleet["by_replica"]] == [(2, 4), (2, 4)]
    per_replica = [r["runs"] for r in fleet["by_replica"]]
    assert all(n > 0 for n in per_replica), per_replica
    assert report["runs"]["total"] == sum(per_replica)
    assert report["interrupted"] is False
    # /metrics: one scrape target for the fleet, the runs of every process summed.
    runs = _samples(body, "model_fallback_runs_total")
    assert runs, body[:2000]
    assert sum(v for _, v in runs) == report["runs"]["total"]
    successes = sum(
        v for labels, v in _samples(body, "model_fallback_attempts_total") if 'outcome="success"' in labels
    )
    assert successes == sum(r.get("success", {}).get("none", 0) for r in report["attempts"].values())
    assert "model_fallback_run_duration_seconds_bucket" in body
    # every call and cooldown accounted for, per candidate
    assert set(fleet["calls"]) == set(report["provider_failure_rate"])
    assert fleet["cooldowns_started"]["openai/gpt-4o"] > 0


@pytest.mark.slow
@pytest.mark.tool
def test_shared_cooldowns_cut_the_calls_to_candidates_cooling_down_elsewhere(
    per_process: tuple[dict[str, Any], str], redis_server: RedisServer, tmp_path: Path
) -> None:
    """The same seed and scenario with cooldowns shared through a real redis-server: far fewer
    calls go to a candidate another replica already has cooling down. --dir keeps each
    replica's transcripts in a directory of its own."""
    d = tmp_path / "run"
    proc = subprocess.run(
        [*CMD, *RUN, "--metrics-port", "0", "--redis", redis_server.url, "--dir", str(d)],
        capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shared = json.loads(proc.stdout)
    assert shared["fleet"]["cooldowns"] == "shared (redis)"
    store = shared["fleet"]["cooldown_store"]
    assert store["errors"] == 0
    assert store["writes"] > 0
    assert store["messages"] > 0
    alone = per_process[0]["fleet"]["calls_to_candidate_cooling_elsewhere"]
    together = shared["fleet"]["calls_to_candidate_cooling_elsewhere"]
    assert sum(alone.values()) >= 5, alone
    assert sum(together.values()) < sum(alone.values()) / 2, (together, alone)
    # disjoint session files, one directory per replica
    names = [sorted(p.name for p in (d / f"replica-{r}").glob("session-*.jsonl")) for r in (0, 1)]
    assert names[0]
    assert names[1]
    assert not set(names[0]) & set(names[1])
    assert {int(n[8:12]) % 4 for n in names[0]} == {0, 2}  # worker w runs in replica w % 2
    if (d / "report.html").exists():  # the report extra is installed: the page of the fleet's run
        assert "--replicas 2" in (d / "report.html").read_text()


@pytest.mark.slow
@pytest.mark.tool
def test_compare_prints_per_process_and_shared_side_by_side(redis_server: RedisServer) -> None:
    """--compare runs the fleet twice on the same seed (per-process cooldowns, then shared)
    and prints the two figures side by side."""
    args = [a for a in RUN if a != "--json"]
    args[args.index("--duration") + 1] = "2"
    proc = subprocess.run(
        [*CMD, *args, "--metrics-port", "0", "--redis", redis_server.url, "--compare"],
        capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "same seed, two runs" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if "per process" in line and "shared" in line)
    assert header.index("per process") < header.index("shared (redis)")
    assert re.search(r"openai/gpt-4o +\d+ of \d+ calls.* +\d+ of \d+ calls", proc.stdout), proc.stdout
    assert proc.stderr.count("started 2 replica processes") == 2


@pytest.mark.slow
def test_ctrl_c_stops_every_replica_and_prints_the_merged_report() -> None:
    """Ctrl-C reaches the parent only (the replicas run in sessions of their own); it forwards
    it, prints the merged report so far, exits 130 and leaves no replica behind."""
    proc = _popen(*RUN[:-1], "--duration", "60", "--json", "--metrics-port", "0")
    pids = _pids(proc)
    time.sleep(3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 20
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert report["runs"]["total"] > 0
    assert all(r["runs"] for r in report["fleet"]["by_replica"])
    assert "Traceback" not in err
    assert _gone(pids, within=5), "a replica outlived its parent"


@pytest.mark.slow
def test_replicas_stop_by_themselves_when_the_parent_is_killed() -> None:
    """A SIGKILLed parent cannot forward anything: its replicas see their stdin close, stop,
    and remove the run's temporary directory."""
    before = set(Path(tempfile.gettempdir()).glob("model-fallback-fleet-*"))
    proc = _popen(*RUN[:-1], "--duration", "60", "--metrics-port", "0")
    pids = _pids(proc)
    time.sleep(2)
    proc.kill()
    proc.wait(timeout=10)
    assert _gone(pids, within=20), "replicas outlived a killed parent"
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()
    assert set(Path(tempfile.gettempdir()).glob("model-fallback-fleet-*")) <= before


def _closed_port() -> int:
    return free_port()  # bound and released at once: nothing listens there


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replicas", "0"], "--replicas must be at least 1"),
        (["--replicas", "5", "--concurrency", "4", "--sessions", "8"], "must be at most --concurrency (4)"),
        (["--redis", "redis://127.0.0.1:6379/0"], "give --replicas 2 or more"),
        (["--replicas", "2", "--compare"], "give --redis URL"),
        (["--replicas", "2", "--redis", "http://127.0.0.1/"], "not a Redis URL"),
        (["--replicas", "2", "--redis", "redis://:hunter2@127.0.0.1:{port}/0"], "cannot reach it within"),
    ],
    ids=[
        "zero",
        "more-than-workers",
        "redis-without-replicas",
        "compare-without-redis",
        "not-redis",
        "unreachable",
    ],
)
def test_bad_options_exit_2_before_any_work(args: list[str], message: str, tmp_path: Path) -> None:
    """Bad fleet options are usage errors before anything starts (no --dir created, no
    replica), and a password in a Redis URL is never printed."""
    args = [a.replace("{port}", str(_closed_port())) for a in args]
    d = tmp_path / "never"
    t0 = time.monotonic()
    proc = subprocess.run(
        [*CMD, *args, "--duration", "1", "--metrics-port", "0", "--dir", str(d)],
        capture_output=True, text=True, timeout=60, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "hunter2" not in proc.stderr
    assert "started" not in proc.stderr
    assert not d.exists()
    assert time.monotonic() - t0 < 15


def test_metrics_port_in_use_is_a_usage_error_and_leaves_dir_untouched(tmp_path: Path) -> None:
    """The parent binds the fleet's /metrics before it starts anything."""
    d = tmp_path / "never"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [*CMD, "--replicas", "2", "--duration", "1", "--metrics-port", str(port), "--dir", str(d)],
            capture_output=True, text=True, timeout=60, env=_env(),
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "cannot serve /metrics" in proc.stderr
    assert not d.exists()
    assert "started" not in proc.stderr


@pytest.mark.slow
def test_a_replica_that_dies_is_named_and_the_others_are_reported() -> None:
    """A replica killed mid-run (SIGKILL) leaves no report: the merged report holds the others,
    names the missing one, and the exit status is 1."""
    proc = _popen(*RUN[:-1], "--duration", "5", "--json", "--metrics-port", "0")
    pids = _pids(proc)
    time.sleep(2)
    os.kill(pids[1], signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    report = json.loads(out)
    fleet = report["fleet"]
    assert fleet["by_replica"][0]["runs"] > 0
    assert fleet["by_replica"][1]["runs"] is None
    assert fleet["by_replica"][1]["exit_status"] == -signal.SIGKILL
    assert report["runs"]["total"] == fleet["by_replica"][0]["runs"]
    assert any("replica 1" in f for f in fleet["failures"])
    assert "replica 1 exited with status -9 without a report" in err
    assert _gone(pids, within=5)


def test_calls_cooling_elsewhere_counts_other_replicas_cooldowns_in_force() -> None:
    """The figure: a call counts when another replica's cooldown of that candidate was in force
    at its time — not its own replica's, not after the cooldown ended, and not after a success
    cleared it (the recording replica's success alone, unless the store is shared)."""
    calls = [{"a/x": [1.0, 5.0, 9.0]}, {"a/x": [2.0, 3.0, 6.5], "b/y": [2.0]}]
    cooldowns = [{"a/x": [[1.5, 4.0]]}, {"a/x": [[4.5, 7.0]], "b/y": [[0.0, 9.0]]}]
    # replica 1's calls at 2 and 3 fall in replica 0's cooldown; replica 0's call at 5 in
    # replica 1's; nobody else cools b/y; replica 1's own cooldown never counts for itself.
    assert calls_cooling_elsewhere(calls, cooldowns) == {"a/x": 3, "b/y": 0}
    clears = [{}, {"a/x": [2.5]}]
    # replica 1 cleared a/x at 2.5 by a success: per process that ends only its own cooldowns
    # (none in force then), shared it ends replica 0's too (its call at 3 no longer counts).
    assert calls_cooling_elsewhere(calls, cooldowns, clears) == {"a/x": 3, "b/y": 0}
    assert calls_cooling_elsewhere(calls, cooldowns, clears, shared=True) == {"a/x": 2, "b/y": 0}
    assert split_workers(5, 2) == [(0, 2, 4), (1, 3)]
