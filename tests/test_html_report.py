"""``model-fallback simulate --html``: the page, opened in a real browser with the network shut.

A short real simulation (``mixed``: the primary's outage and the coordination faults both
happen) writes the page; Debian's ``chromium`` opens it headless, with every route to the
network closed (no DNS, a dead proxy, no background services), driven over the DevTools
protocol: every chart must have drawn its SVG, nothing may be logged as an error or thrown,
no request may leave for anything but the file itself, and the page must load in under 2 s.
A screenshot of it is kept in ``tests/artifacts/``; with ``MF_UPDATE_SCREENSHOT=1`` the test
runs the default 30 s job instead and rewrites ``docs/img/simulate-report.png``, the picture
the docs show.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from model_fallback.cli import _config, build_parser
from model_fallback.simulate import Stats, Timeline, Workload
from model_fallback.simulate._html import CHART_IDS, reproduce_command
from model_fallback.simulate._timeline import merge_stats

from .conftest import ROOT, require_tool

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_SHOT = ROOT / "docs" / "img" / "simulate-report.png"
UPDATE_SHOT = os.environ.get("MF_UPDATE_SCREENSHOT") == "1"
MAX_BYTES = 5 * 1024 * 1024
MAX_LOAD_MS = 2000
WIDTH = 1400

# Every way out closed: no DNS (every name resolves to nothing), a proxy on a port nobody
# listens on, no QUIC, and none of the browser's own background traffic.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--remote-debugging-port=0",
    "--hide-scrollbars",
)


class DevTools:
    """Headless chromium, one page, driven over the DevTools protocol (flattened sessions)."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.binary = binary
        self.profile = profile
        self.events: list[dict[str, Any]] = []
        self._next = 0
        self._log = profile.parent / "chromium.log"

    def __enter__(self) -> DevTools:
        from websockets.sync.client import connect

        self.profile.mkdir(parents=True, exist_ok=True)
        with open(self._log, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"chromium did not start:\n{self._log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self._exit = contextlib.ExitStack()
        self.ws = self._exit.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=10)
        )
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._exit.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = False) -> Any:
        """Send a command (to the page's session when *page*) and return its result."""
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if page:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        """Wait for the page's event *method* (already received ones count)."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.get("method") == method:
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(method)
            self.events.append(json.loads(self.ws.recv(timeout=left)))

    def evaluate(self, expression: str) -> Any:
        """Evaluate *expression* in the page (promises awaited) and return its value."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            page=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluation failed: {result['exceptionDetails']}")
        return result["result"].get("value")


@dataclass
class PageCheck:
    """What the browser saw of the page."""

    charts: dict[str, dict[str, Any]]
    load_ms: float
    resources: int
    requests: list[str]
    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""


# Per chart: its figure, the SVG elements it drew, and the streaming chart's placeholder.
_COUNT_JS = """
(() => {
  const out = {};
  for (const id of %s) {
    const fig = document.getElementById(id);
    if (!fig) { out[id] = null; continue; }
    const svg = fig.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : null;
    out[id] = {
      svgs: fig.querySelectorAll('svg').length,
      elements: svg ? svg.querySelectorAll('path, text, use, rect, line, polyline').length : 0,
      texts: svg ? svg.querySelectorAll('text').length : 0,
      width: box ? box.width : 0,
      height: box ? box.height : 0,
      empty: (fig.querySelector('.empty') || {}).textContent || null,
    };
  }
  return out;
})()
"""

_TIMING_JS = """
new Promise(resolve => {
  const done = () => {
    const t = performance.timing;
    if (t.loadEventEnd > 0) {
      resolve({load_ms: t.loadEventEnd - t.navigationStart,
               resources: performance.getEntriesByType('resource').length});
    } else { setTimeout(done, 20); }
  };
  done();
})
"""


def check_page(page: Path, screenshot: Path, profile: Path) -> PageCheck:
    """Open *page* in headless chromium, offline; count what each chart drew; screenshot it."""
    binary = require_tool("chromium")
    with DevTools(binary, profile) as dt:
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.send(f"{domain}.enable", page=True)
        dt.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            page=True,
        )
        dt.events.clear()
        dt.send("Page.navigate", {"url": page.resolve().as_uri()}, page=True)
        dt.wait_for("Page.loadEventFired")
        timing = dt.evaluate(_TIMING_JS)
        charts = dt.evaluate(_COUNT_JS % json.dumps(list(CHART_IDS)))
        metrics = dt.send("Page.getLayoutMetrics", page=True)
        height = int(metrics["cssContentSize"]["height"]) + 1
        dt.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
            page=True,
        )
        shot = base64.b64decode(dt.send("Page.captureScreenshot", {"format": "png"}, page=True)["data"])
        errors: list[str] = []
        requests: list[str] = []
        for e in dt.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                errors.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                errors.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.requestWillBeSent":
                requests.append(params["request"]["url"])
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(shot)
    return PageCheck(charts, timing["load_ms"], timing["resources"], requests, errors, shot)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A real run of the main job writing its page (6 s; the default 30 s to update the docs)."""
    tmp = tmp_path_factory.mktemp("html")
    page = tmp / "report.html"
    duration = [] if UPDATE_SHOT else ["--duration", "6"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "model_fallback", "simulate", "--scenario", "mixed", *duration),
            *("--metrics-port", "0", "--no-progress", "--json", "--html", str(page)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr
    return page, json.loads(proc.stdout)


def test_page_is_one_small_self_contained_file(report: tuple[Path, dict[str, Any]]) -> None:
    page, _ = report
    size = page.stat().st_size
    text = page.read_text(encoding="utf-8")
    print(f"\npage size: {size / 1024:.0f} KiB ({size} bytes)")
    assert size <= MAX_BYTES
    # Nothing to fetch: no script, no external reference of any kind.
    assert "<script" not in text.lower()
    for needle in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import", "<link"):
        assert needle not in text, needle
    for chart in CHART_IDS:
        assert f'id="{chart}"' in text, chart
    # The page reproduces its run: the seed and the full command line are printed.
    assert "model-fallback simulate --scenario mixed --seed 1" in text


def test_every_chart_renders_in_chromium_offline(report: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, data = report
    shot = ARTIFACTS / "simulate-report.png"
    result = check_page(page, shot, tmp_path / "profile")
    print(f"\nload time: {result.load_ms:.0f} ms; resources fetched: {result.resources}; screenshot: {shot}")
    for chart, found in result.charts.items():
        print(f"  {chart:<20} {found}")
    assert not result.errors, result.errors
    assert result.requests == [page.resolve().as_uri()], result.requests
    assert result.resources == 0
    assert result.load_ms < MAX_LOAD_MS
    streams = data.get("streams", {}).get("turns", 0)
    for chart in CHART_IDS:
        found = result.charts[chart]
        assert found is not None, f"{chart} missing"
        if chart == "chart-streaming" and not streams:
            assert found["empty"] == "no streaming turns in this run", found
            continue
        assert found["svgs"] == 1, (chart, found)
        assert found["elements"] >= 20, (chart, found)
        assert found["texts"] >= 5, (chart, found)
        assert found["width"] > 300 and found["height"] > 100, (chart, found)
    assert result.screenshot.startswith(b"\x89PNG")
    # The lock storm happened (and is drawn); the outage, when the run reached its window.
    assert sum(data["coordination_aborts"].values()) > 0
    print(f"  outage drawn: {'openai outage' in page.read_text(encoding='utf-8')}")
    if UPDATE_SHOT:
        DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SHOT)
        print(f"  rewrote {DOCS_SHOT.relative_to(ROOT)}")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        [
            *("--scenario", "lock-storm", "--seed", "7", "--duration", "12.5", "--concurrency", "4"),
            *("--sessions", "9", "--candidate", "openai/gpt-4o", "--candidate", "google/gemini-2.5-pro"),
            *("--fault", "openai:hang=0.05", "--fault", "rate_limit=0.2", "--takeover-rate", "0.3"),
            *(
                "--stream-share",
                "0.5",
                "--interrupt-rate",
                "0.1",
                "--stall-rate",
                "0",
                "--idle-timeout",
                "0.7",
            ),
        ],
        ["--stream", "--lock-timeout", "0.25", "--attempt-timeout", "2"],
    ],
)
def test_the_printed_command_reproduces_the_configuration(argv: list[str]) -> None:
    config = _config(build_parser().parse_args(["simulate", *argv]))
    command = reproduce_command(config)
    assert command[:2] == ["model-fallback", "simulate"]
    assert _config(build_parser().parse_args(command[1:])) == config


def test_the_seconds_of_the_timeline_add_up_to_the_run() -> None:
    """Each second's Stats, merged, gives the run's own report: same runs, attempts, naive figures."""
    config = _config(
        build_parser().parse_args(["simulate", "--duration", "2", "--concurrency", "4", "--sessions", "8"])
    )
    stats = Stats(chain=config.candidates)
    timeline = Timeline(config.candidates, started=stats.started)
    workload = Workload(config, stats, [timeline])
    try:
        anyio.run(workload.run)
    finally:
        workload.close()
    timeline.finish()
    assert len(timeline.seconds) >= 2
    args: dict[str, Any] = {"scenario": "", "seed": 0, "interrupted": False, "config": {}}
    whole = stats.report(**args)
    assert whole["runs"]["total"] > 0
    for bins in (timeline.seconds, timeline.binned(max_points=2)):
        merged = merge_stats((b.stats for b in bins), config.candidates).report(**args)
        for key in ("runs", "attempts", "provider_calls", "coordination_aborts", "fallbacks_avoided"):
            assert merged[key] == whole[key], key
        for key in ("cooldown_skips", "fallback_depth", "provider_failure_rate", "naive", "latency_s"):
            assert merged[key] == whole[key], key
        # Streaming turns are counted by the workload itself, not from events: the rest matches.
        assert {k: v for k, v in merged["streams"].items() if k != "turns"} == {
            k: v for k, v in whole["streams"].items() if k != "turns"
        }
        assert merged["session"]["lock_wait_s"] == whole["session"]["lock_wait_s"]
    assert len(timeline.binned(max_points=2)) <= 2


def test_html_options_are_checked_before_any_work(tmp_path: Path) -> None:
    for target, message in (
        (tmp_path / "missing" / "r.html", "cannot write a file there"),
        (tmp_path, "cannot write a file there"),
    ):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "model_fallback",
                "simulate",
                "--metrics-port",
                "0",
                "--html",
                str(target),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr
        assert "runs:" not in proc.stdout


def test_with_dir_the_page_is_written_beside_the_transcripts(tmp_path: Path) -> None:
    """--dir alone writes DIR/report.html; a run without streams says so where their chart would be."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "model_fallback", "simulate", "--duration", "1", "--concurrency", "2"),
            *("--sessions", "2", "--stream-share", "0", "--metrics-port", "0", "--dir", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    page = out / "report.html"
    assert f"wrote {page}" in proc.stderr
    text = page.read_text(encoding="utf-8")
    assert all(f'id="{chart}"' in text for chart in CHART_IDS)
    assert "no streaming turns in this run" in text
    assert any(out.glob("session-*.jsonl"))
