"""The /metrics server under load: does scraping slow the workload, do idle sockets cost threads?

Runs ``model-fallback simulate`` (a subprocess, /metrics on a free 127.0.0.1 port) three ways:

* alone: runs/s from its JSON report;
* with N scrapers (threads of another process, each fetching /metrics in a loop on a kept-alive
  connection as fast as it answers, with Prometheus's Accept and Accept-Encoding headers):
  runs/s, and how many scrapes were answered;
* with M idle connections held open: the simulator's thread count (``/proc/<pid>/status``)
  and whether a scrape still answers.

Rounds alternate (alone, scraped, alone, scraped, ...) and the best of each is kept: the machine
is shared and noisy, and a single pass measures warm-up. ``--src DIR`` runs the simulator from
another checkout's ``src`` (e.g. a ``git worktree`` of an older commit) to compare before/after.

Run: ``.venv/bin/python benchmarks/bench_scrape.py [--quick] [--src DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(duration: float, port: int, src: str | None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if src:
        env["PYTHONPATH"] = src
    return subprocess.Popen(
        [sys.executable, "-m", "model_fallback", "simulate", "--duration", str(duration),
         "--metrics-port", str(port), "--json", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def wait_up(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


def report(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"simulate failed ({proc.returncode}): {err[-2000:]}")
    data: dict[str, object] = json.loads(out)
    return data


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def run_alone(duration: float, src: str | None) -> float:
    port = free_port()
    proc = start(duration, port, src)
    return float(report(proc)["runs_per_s"])  # type: ignore[arg-type]


# The scrapers run in their own process (like Prometheus, or curl loops, would): each thread
# keeps one HTTP/1.1 connection and asks, as Prometheus does, for OpenMetrics and gzip.
SCRAPER = """
import http.client, sys, threading, time
port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
headers = {"Accept": "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4",
           "Accept-Encoding": "gzip"}
answered = [0] * n
stop = time.monotonic() + seconds
def scrape(i):
    conn = None
    while time.monotonic() < stop:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/metrics", headers=headers)
            resp = conn.getresponse()
            resp.read()
            answered[i] += 1
            if resp.getheader("Connection", "").lower() == "close":
                conn.close(); conn = None
        except OSError:
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
threads = [threading.Thread(target=scrape, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(answered))
"""


def run_scraped(duration: float, scrapers: int, src: str | None, procs: int = 1) -> tuple[float, int]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = start(duration, port, src)
    wait_up(url)
    per = [scrapers // procs + (i < scrapers % procs) for i in range(procs)]
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", SCRAPER, str(port), str(n), str(duration)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in per
        if n
    ]
    data = report(proc)
    answered = sum(int(c.communicate(timeout=120)[0].strip() or 0) for c in clients)
    return float(data["runs_per_s"]), answered  # type: ignore[arg-type]


def idle_threads(idle: int, src: str | None, budget: float = 30.0) -> tuple[int, int, int, float]:
    """Open up to *idle* idle connections (for at most *budget* seconds: a loaded
    thread-per-connection server accepts slowly); the simulator's threads before and after,
    how many were opened, and how long a scrape then takes."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = start(budget + 60, port, src)
    socks: list[socket.socket] = []
    try:
        wait_up(url)
        before = threads_of(proc.pid)
        deadline = time.monotonic() + budget
        while len(socks) < idle and time.monotonic() < deadline:
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                time.sleep(0.01)
        time.sleep(1.0)
        during = threads_of(proc.pid)
        t0 = time.monotonic()
        with urllib.request.urlopen(url, timeout=30) as r:
            r.read()
        return before, during, len(socks), time.monotonic() - t0
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.communicate(timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs, one round")
    ap.add_argument("--src", default=None, help="run the simulator from this src directory")
    ap.add_argument("--scrapers", type=int, default=20)
    ap.add_argument("--procs", type=int, default=1, help="scraper processes the scrapers are spread over")
    ap.add_argument("--idle", type=int, default=800, help="idle connections to hold (0: skip that part)")
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    duration = args.duration or (5.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 3)
    print(f"simulator from: {args.src or 'this checkout'}; {rounds} round(s) of {duration:g} s")

    if args.idle:
        before, during, opened, took = idle_threads(args.idle, args.src)
        print(
            f"threads: {before} before, {during} with {opened} idle connections open "
            f"(of {args.idle} tried for 30 s); a scrape then took {took:.3f} s"
        )

    alone, scraped, answered = 0.0, 0.0, 0
    for _ in range(rounds):
        alone = max(alone, run_alone(duration, args.src))
        r, n = run_scraped(duration, args.scrapers, args.src, args.procs)
        if r > scraped:
            scraped, answered = r, n
    print(f"runs/s alone: {alone:.1f}")
    print(
        f"runs/s with {args.scrapers} scrapers in {args.procs} process(es): {scraped:.1f} ({scraped / alone * 100:.0f} % of alone; "
        f"{answered / duration:.0f} scrapes/s answered)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
