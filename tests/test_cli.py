"""``model-fallback simulate`` driven as a user would: a subprocess, real files, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

CMD = [sys.executable, "-m", "model_fallback"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def simulate(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, "simulate", *args], capture_output=True, text=True, timeout=timeout, env=_env(**env)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "nope"], "invalid choice: 'nope'"),
        (["--candidate", "openai"], "malformed candidate 'openai'"),
        (["--candidate", "/gpt-4o"], "malformed candidate"),
        (["--fault", "rate_limit=-0.1"], "must be between 0 and 1"),
        (["--fault", "rate_limit=1.5"], "must be between 0 and 1"),
        (["--fault", "meteor=0.1"], "unknown fault kind 'meteor'"),
        (["--fault", "rate_limit=0.6", "--fault", "overloaded=0.6"], "add up to more than 1"),
        (["--fault", "mistral:rate_limit=0.1"], "not in the chain"),
        (["--takeover-rate", "-1"], "must be between 0 and 1"),
        (["--duration", "-5"], "must be a positive number"),
        (["--duration", "abc"], "must be a number"),
        (["--concurrency", "0"], "must be at least 1"),
        (["--sessions", "2", "--concurrency", "4"], "must be at least --concurrency"),
        (["--metrics-port", "70000"], "between 0 and 65535"),
        (["--stream", "--stream-share", "0.5"], "give one of them"),
        (["--stream-share", "2"], "must be between 0 and 1"),
        (["--interrupt-rate", "0.7", "--stall-rate", "0.6"], "add up to more than 1"),
        (["--idle-timeout", "0"], "must be a positive number"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(args: list[str], message: str, tmp_path: Path) -> None:
    """Bad options: exit status 2, a clear message on stderr, nothing written."""
    out = tmp_path / "sessions"
    proc = simulate(*args, "--dir", str(out), "--metrics-port", "0", timeout=60) if "--metrics-port" not in args \
        else simulate(*args, "--dir", str(out), timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""
    assert not out.exists()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """A metrics port already in use: exit 2 before any work, nothing written."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = tmp_path / "sessions"
        proc = simulate("--duration", "2", "--metrics-port", str(port), "--dir", str(out), timeout=60)
    assert proc.returncode == 2
    assert f"127.0.0.1:{port}" in proc.stderr and "--metrics-port 0" in proc.stderr
    assert proc.stdout == ""
    assert not out.exists() or not any(out.iterdir())


def test_dir_must_be_empty(tmp_path: Path) -> None:
    """--dir refuses a non-empty directory (it would mix transcripts) and loses nothing."""
    (tmp_path / "keep.txt").write_text("precious")
    proc = simulate("--dir", str(tmp_path), "--metrics-port", "0", timeout=60)
    assert proc.returncode == 2 and "new or empty directory" in proc.stderr
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_dir_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    """--dir under a regular file, or where the kernel refuses it: exit 2 with a message, no
    traceback, nothing written."""
    blocker = tmp_path / "file"
    blocker.write_text("precious")
    for target, message in ((blocker / "sessions", "is not a writable directory"),
                            (Path("/proc/model-fallback-test"), "cannot create it")):  # fmt: skip
        proc = simulate("--dir", str(target), "--metrics-port", "0", timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stdout == ""
    assert blocker.read_text() == "precious"


def _report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.strip(), proc.stderr
    return dict(json.loads(proc.stdout))


@pytest.mark.slow
def test_lock_storm_reports_both_kinds_and_the_naive_misattribution() -> None:
    """The seed's story: coordination aborts of both kinds, none counted as a provider
    failure, and a naive column that blames the models."""
    proc = simulate(
        "--scenario", "lock-storm", "--duration", "10", "--json", "--metrics-port", "0", timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    r = _report(proc)
    for key in ("runs", "attempts", "coordination_aborts", "fallbacks_avoided", "naive"):
        assert key in r
    aborts = r["coordination_aborts"]
    assert aborts.get("session_takeover", 0) > 0
    assert aborts.get("write_lock_timeout", 0) > 0
    assert r["session"]["takeovers"] >= aborts["session_takeover"]
    assert r["session"]["lock_timeouts"] >= aborts["write_lock_timeout"]
    assert sum(r["fallbacks_avoided"].values()) > 0
    # no provider failure carries a coordination reason
    for cand, outcomes in r["attempts"].items():
        for reason in outcomes.get("provider_failure", {}):
            assert reason not in ("session_takeover", "write_lock_timeout"), (cand, reason)
        assert set(outcomes.get("coordination_abort", {})) <= {"session_takeover", "write_lock_timeout"}
    naive = r["naive"]
    assert naive["all_models_failed"] >= naive["all_models_failed_ours"] + sum(aborts.values())
    assert naive["extra_provider_calls"] == sum(r["fallbacks_avoided"].values())
    blamed = naive["blamed"]
    assert set(blamed) >= {"openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"}
    for cand in blamed:
        ours = r["provider_failure_rate"][cand] or 0.0
        assert naive["provider_failure_rate"][cand] > ours
    assert r["session"]["stale_locks_reclaimed"], "crashed holders left locks that were reclaimed"


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [[], ["--stream", "--interrupt-rate", "0.1", "--stall-rate", "0.05"]], ids=["mixed", "streaming"]
)
def test_same_seed_same_outcomes(tmp_path: Path, extra: list[str]) -> None:
    """Outcomes are planned per (seed, session, turn): two runs agree turn by turn, streaming
    turns (and their interruptions, which leave no reply) included."""
    runs = []
    for i in range(2):
        d = tmp_path / f"run{i}"
        proc = simulate("--scenario", "mixed", "--duration", "4", "--json", "--metrics-port", "0",
                        "--seed", "42", "--concurrency", "4", "--sessions", "8", "--dir", str(d), *extra)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs.append((d, _report(proc)))
    # Compare the transcripts of the turns both runs completed.
    (d0, _), (d1, _) = runs
    compared = 0
    for f0 in sorted(d0.glob("session-*.jsonl")):
        lines0 = [json.loads(x) for x in f0.read_text().splitlines() if x.strip()]
        lines1 = [json.loads(x) for x in (d1 / f0.name).read_text().splitlines() if x.strip()]
        n = min(len(lines0), len(lines1)) - 2  # the last turn may have been cut at the end
        for a, b in zip(lines0[:n], lines1[:n], strict=True):
            assert (a.get("role"), a.get("model"), a.get("turn")) == (
                b.get("role"),
                b.get("model"),
                b.get("turn"),
            )
            compared += 1
    assert compared > 50


@pytest.mark.slow
def test_metrics_served_during_the_run() -> None:
    """While it runs, /metrics on 127.0.0.1 shows the DESIGN §6 series with non-zero values."""
    port = _free_port()
    proc = subprocess.Popen(
        [*CMD, "simulate", "--scenario", "lock-storm", "--duration", "30", "--metrics-port", str(port), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        body = ""
        deadline = time.monotonic() + 60
        wanted = [
            "model_fallback_runs_total",
            "model_fallback_attempts_total",
            "model_fallback_coordination_aborts_total",
            "model_fallback_fallbacks_avoided_total",
            "model_fallback_attempt_duration_seconds_bucket",
            "model_fallback_run_duration_seconds_bucket",
            "model_fallback_fallback_depth_bucket",
            "model_fallback_session_lock_wait_seconds_bucket",
            "model_fallback_session_lock_timeouts_total",
            "model_fallback_session_takeovers_total",
        ]
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    body = resp.read().decode()
            except OSError:
                continue
            values = _nonzero(body)
            if all(values.get(name) for name in wanted):
                break
        values = _nonzero(body)
        missing = [name for name in wanted if not values.get(name)]
        assert not missing, f"series missing or zero: {missing}"
        assert "model_fallback_telemetry_errors_total" in body
        assert "model_fallback_session_stale_locks_reclaimed_total" in body
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def _nonzero(body: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        out[name] = out.get(name, False) or value > 0
    return out


@pytest.mark.slow
def test_sigint_stops_cleanly_and_prints_the_report(tmp_path: Path) -> None:
    """Ctrl-C stops the run, prints the report so far, removes nothing it should keep."""
    proc = subprocess.Popen(
        [*CMD, "simulate", "--duration", "60", "--metrics-port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    time.sleep(4)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert report["runs"]["total"] > 0
    assert "Traceback" not in err


@pytest.mark.slow
def test_human_report_on_a_short_healthy_run() -> None:
    """Without --json: a readable report with the naive column."""
    proc = simulate("--scenario", "healthy", "--duration", "2", "--metrics-port", "0")
    assert proc.returncode == 0, proc.stderr
    assert "runs:" in proc.stdout
    assert "naive driver" in proc.stdout
    assert "'All models failed' reported" in proc.stdout
    # the default mixes streaming turns in
    assert "streaming turns:" in proc.stdout and "first chunk  openai/gpt-4o" in proc.stdout


@pytest.mark.slow
def test_stream_makes_every_turn_stream_and_the_report_counts_interruptions() -> None:
    """--stream: every turn goes through stream_embedded_turn; mid-stream faults end runs as
    interrupted (never as a silent switch), counted by candidate and reason, beside the time
    to first chunk; coordination aborts still stop turns at once."""
    proc = simulate("--stream", "--interrupt-rate", "0.2", "--stall-rate", "0.1", "--duration", "3", "--json",
                    "--metrics-port", "0", "--concurrency", "4", "--sessions", "8", "--seed", "5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = _report(proc)
    streams = r["streams"]
    assert r["config"]["stream_share"] == 1.0 and r["config"]["idle_timeout_s"] == 0.5
    assert streams["turns"] >= r["runs"]["total"] > 0  # turns that failed before the prompt make no run
    assert streams["interrupted"] == r["runs"].get("interrupted", 0) > 0
    assert sum(streams["served"].values()) >= r["runs"]["success"] + streams["interrupted"]
    for cand, reasons in streams["interruptions"].items():
        assert set(reasons) <= {"overloaded", "timeout"}, cand
        # an interruption is a provider failure of that candidate, with that reason
        for reason, n in reasons.items():
            assert r["attempts"][cand]["provider_failure"][reason] >= n
    assert streams["time_to_first_chunk_s"]["openai/gpt-4o"]["p50"] > 0
    assert set(r["coordination_aborts"]) <= {"session_takeover", "write_lock_timeout"}


def test_version_and_help() -> None:
    """--version and --help work; no command prints help and exits 2."""
    v = subprocess.run([*CMD, "--version"], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and v.stdout.startswith("model-fallback ")
    h = subprocess.run([*CMD, "simulate", "--help"], capture_output=True, text=True, timeout=60)
    assert h.returncode == 0 and "--scenario" in h.stdout and "lock-storm" in h.stdout
    n = subprocess.run(CMD, capture_output=True, text=True, timeout=60)
    assert n.returncode == 2


@pytest.mark.slow
def test_hold_prints_the_report_when_the_run_ends_and_exits_0_on_ctrl_c() -> None:
    """--hold: the report is printed as soon as the run ends (not at Ctrl-C), the hold time
    is not run time, and Ctrl-C during the hold is a normal exit (0), not "interrupted"."""
    port = _free_port()
    proc = subprocess.Popen(
        [*CMD, "simulate", "--duration", "3", "--metrics-port", str(port), "--hold", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []  # the JSON report, printed when the run ends (the process then holds)
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("}"):
                break
        report = json.loads("".join(lines))
        assert report["interrupted"] is False
        assert report["elapsed_s"] < 10, report["elapsed_s"]
        time.sleep(3)  # holding: /metrics still answers
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"model_fallback_runs_total" in resp.read()
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted" not in err.lower() and "Traceback" not in err


def test_dir_naming_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    """--dir pointing at a regular file: the message says so (not "must be empty")."""
    f = tmp_path / "notes.txt"
    f.write_text("precious")
    proc = simulate("--dir", str(f), "--metrics-port", "0", timeout=60)
    assert proc.returncode == 2 and "is a file" in proc.stderr, proc.stderr
    assert f.read_text() == "precious"


def test_help_lists_the_fault_kinds() -> None:
    """simulate --help names every fault kind --fault accepts."""
    from model_fallback.simulate._faults import FAULT_KINDS

    h = subprocess.run([*CMD, "simulate", "--help"], capture_output=True, text=True, timeout=60)
    help_text = " ".join(h.stdout.split())
    missing = [k for k in FAULT_KINDS if k not in help_text]
    assert not missing, missing
