"""Redis benchmarks: shared cooldowns and the session lock, against a real redis-server.

Run: ``.venv/bin/python benchmarks/bench_redis.py`` (``--quick`` for a shorter run). It starts
its own ``redis-server`` on a free 127.0.0.1 port (no persistence, a temporary directory) and
stops it at the end. Prints:

1. a healthy run (3 candidates, the first serves) with ``RedisCooldownStore`` vs the
   in-memory tracker: µs per run and the ratio (goal: within 10 %);
2. propagation: ``record_failure`` in this process → ``entry()`` seeing it in another
   process (p50, p99, max; goal: well under 0.5 s);
3. Redis SIGKILLed for 5 s under load (4 concurrent run loops, failures recorded during the
   outage): failed runs, runs slower than the in-memory p99 + 5 ms, store errors, time to
   resync after the restart;
4. the lock: 4 processes x 200 acquisitions of one key, overlaps of the holding intervals
   (host monotonic timestamps) and lost read-modify-writes;
5. a SIGKILLed holder: how long after the kill a waiter holds the lock, vs its ttl.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import itertools
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from model_fallback import Candidate, CooldownTracker, FailoverError, FailoverReason, run_with_model_fallback
from model_fallback.events import telemetry_errors
from model_fallback.redis import RedisCooldownStore

CHAIN = [Candidate("p", "a"), Candidate("p", "b"), Candidate("p", "c")]


class Server:
    """A redis-server on a free loopback port, killable and restartable."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server is not installed (scripts/ensure-redis installs it)")
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(1000):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def spawn(code: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    """A Python worker process (its stdout a text pipe)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=stdin, stdout=subprocess.PIPE, text=True
    )


def pct(values: Any, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- 1. a healthy run ----------------------------------------------------------------------


async def serve(candidate: Candidate) -> str:
    return candidate.model


async def per_run_us(tracker: CooldownTracker, n: int) -> float:
    """CPU time of this thread per run: the other processes of a shared machine (which
    preempt us at random) do not count; the background tasks of the store would, if they ran."""
    t0 = time.thread_time()
    for _ in range(n):
        await run_with_model_fallback(serve, CHAIN, cooldowns=tracker)
    return (time.thread_time() - t0) / n * 1e6


async def bench_healthy(url: str, n: int, rounds: int) -> None:
    memory = CooldownTracker()
    async with RedisCooldownStore(url, namespace="bench_healthy") as store:
        shared = CooldownTracker(store=store)
        await per_run_us(memory, n)
        await per_run_us(shared, n)
        mem_runs, redis_runs = [], []
        for i in range(rounds):  # short rounds, interleaved and alternating in order: a shared
            pair = (memory, shared) if i % 2 else (shared, memory)  # machine's noise hits both alike
            first, second = await per_run_us(pair[0], n), await per_run_us(pair[1], n)
            mem_runs.append(first if pair[0] is memory else second)
            redis_runs.append(second if pair[0] is memory else first)
    ratios = [r / m for r, m in zip(redis_runs, mem_runs, strict=True)]
    print(
        f"1. healthy run, 3 candidates, first serves ({rounds} interleaved rounds of {n} runs, thread CPU time)"
    )
    print(
        f"   in-memory tracker     best {min(mem_runs):6.2f} µs/run   median {statistics.median(mem_runs):6.2f}"
    )
    print(
        f"   RedisCooldownStore    best {min(redis_runs):6.2f} µs/run   median {statistics.median(redis_runs):6.2f}"
    )
    print(f"   ratio: best-of {min(redis_runs) / min(mem_runs):.3f}, median of paired rounds "
          f"{statistics.median(ratios):.3f} (goal <= 1.10)")  # fmt: skip


# --- 2. propagation between processes ------------------------------------------------------

WATCHER = textwrap.dedent(
    """
    import asyncio, sys, time
    from model_fallback import Candidate, CooldownTracker
    from model_fallback.redis import RedisCooldownStore

    async def main(url):
        async with RedisCooldownStore(url, namespace="bench_prop") as store:
            tracker = CooldownTracker(store=store)
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            print("ready", flush=True)
            while line := (await reader.readline()).decode().strip():
                c = Candidate.parse(line)
                print("watching", flush=True)
                while tracker.entry(c) is None:
                    await asyncio.sleep(0.0002)
                print(repr(time.time()), flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


async def bench_propagation(url: str, rounds: int) -> None:
    proc = spawn(WATCHER, url, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None
    readline = proc.stdout.readline
    delays: list[float] = []
    try:
        assert (await asyncio.to_thread(readline)).strip() == "ready"
        async with RedisCooldownStore(url, namespace="bench_prop") as store:
            tracker = CooldownTracker(store=store)
            for i in range(rounds):
                c = Candidate("prop", f"m{i}")
                proc.stdin.write(f"{c}\n")
                proc.stdin.flush()
                assert (await asyncio.to_thread(readline)).strip() == "watching"
                await asyncio.sleep(0.002)
                recorded = time.time()
                tracker.record_failure(c, FailoverReason.RATE_LIMIT)
                seen = float(await asyncio.to_thread(readline))
                delays.append(seen - recorded)
    finally:
        proc.kill()
        proc.wait()
    ms = [d * 1000 for d in delays]
    print(f"2. propagation record_failure -> entry() in another process ({rounds} rounds)")
    print(
        f"   p50 {pct(ms, 0.5):.2f} ms   p99 {pct(ms, 0.99):.2f} ms   max {max(ms):.2f} ms   (contract: 500 ms)"
    )


# --- 3. Redis killed under load --------------------------------------------------------------


async def load(
    tracker: CooldownTracker, seconds: float, events: dict[float, Any] | None = None
) -> dict[str, Any]:
    """4 concurrent loops of runs for *seconds*; every 50th call of p/a answers 429 (a cooldown
    write); *events* maps offsets (s) to callables run once, in a thread (kill, restart).

    Each run's duration is taken twice: wall clock (which also counts the moments another
    process of this shared machine had the CPU) and this thread's CPU time (which counts all
    work of this event loop during the run, the store's background tasks included, and
    nothing of other processes)."""
    # arrays, not lists: a million-item list is a GC-tracked container, and a collection
    # that happens to traverse it stalls this event loop for tens of ms (measured), which
    # would be charged to whatever store is being measured
    wall, cpu, ends = array.array("d"), array.array("d"), array.array("d")
    failed = 0
    counter = itertools.count()
    pending = dict(sorted((events or {}).items()))
    gc.collect()  # set-up garbage (a store's start, the previous load) is not this load's cost
    start = time.perf_counter()

    async def call(candidate: Candidate) -> str:
        await asyncio.sleep(0)  # a real await point: background tasks get their turn here
        if candidate.model == "a" and next(counter) % 50 == 0:
            raise FailoverError("429", reason=FailoverReason.RATE_LIMIT, status=429)
        return candidate.model

    async def loop() -> None:
        nonlocal failed
        while time.perf_counter() - start < seconds:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                await run_with_model_fallback(call, CHAIN, cooldowns=tracker)
            except Exception:
                failed += 1
            t1, c1 = time.perf_counter(), time.thread_time()
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
            ends.append(t1 - start)

    async def scheduler() -> None:
        while pending:
            at = next(iter(pending))
            await asyncio.sleep(max(0.0, at - (time.perf_counter() - start)))
            await asyncio.to_thread(pending.pop(at))

    await asyncio.gather(scheduler(), *(loop() for _ in range(4)))
    return {"wall": wall, "cpu": cpu, "ends": ends, "failed": failed}


async def bench_outage(server: Server, seconds_down: float) -> None:
    before_s, after_s = 1.5, 2.5
    base = await load(CooldownTracker(), before_s + seconds_down + after_s)
    p99 = {k: pct(base[k], 0.99) for k in ("wall", "cpu")}
    errors_before = telemetry_errors().get("cooldown_store", 0)
    async with RedisCooldownStore(server.url, namespace="bench_outage") as store:
        tracker = CooldownTracker(store=store)
        restarted: list[float] = []

        def restart() -> None:
            server.start()
            restarted.append(time.monotonic())

        events = {before_s: server.kill, before_s + seconds_down: restart}
        out = await load(tracker, before_s + seconds_down + after_s, events)
        synced = await store.wait_synced(10)
        stats = store.stats()
    back_after = stats["synced_at"] - restarted[0] if restarted and stats["synced_at"] else float("nan")

    def slow(result: dict[str, Any], kind: str) -> list[float]:
        return [end for d, end in zip(result[kind], result["ends"], strict=True) if d > p99[kind] + 0.005]

    print(f"3. Redis SIGKILLed at {before_s:g} s for {seconds_down:g} s under load "
          "(4 concurrent run loops, a 429 every 50th call of p/a)")  # fmt: skip
    print(
        f"   runs: {len(out['wall'])} with Redis, failed {out['failed']}; {len(base['wall'])} in-memory, failed {base['failed']}"
    )
    for kind, label in (("wall", "wall clock"), ("cpu", "thread CPU time")):
        mine, theirs = slow(out, kind), slow(base, kind)
        phases = [sum(1 for e in mine if lo <= e < hi) for lo, hi in
                  ((0, before_s), (before_s, before_s + seconds_down), (before_s + seconds_down, 1e9))]  # fmt: skip
        worst = sorted(zip(out[kind], out["ends"], strict=True), reverse=True)[:3]
        print(f"   {label}: in-memory p99 {p99[kind] * 1e6:.0f} µs; runs slower than that + 5 ms: "
              f"{len(mine)} with Redis (before/down/after: {phases[0]}/{phases[1]}/{phases[2]}, "
              f"max {max(out[kind]) * 1000:.1f} ms), {len(theirs)} in-memory under the same load "
              f"(max {max(base[kind]) * 1000:.1f} ms); worst with Redis: "
              + ", ".join(f"{d * 1000:.1f} ms at {t:.2f} s" for d, t in worst))  # fmt: skip
    print(f"   store errors counted: {telemetry_errors().get('cooldown_store', 0) - errors_before} "
          f"(component cooldown_store); connected and reloaded {back_after:.2f} s after the restart "
          f"(synced {synced}, {stats['resyncs']} reloads in all)")  # fmt: skip


# --- 4. and 5. the lock ----------------------------------------------------------------------

CONTENDER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import redis.asyncio as aioredis
    from model_fallback.redis import RedisSessionLock

    async def main(url, counter, n):
        client = aioredis.Redis.from_url(url)
        spans = []
        for _ in range(n):
            async with RedisSessionLock(client, "bench_lock", ttl=5, acquire_timeout=60):
                t_in = time.monotonic_ns()
                value = int(open(counter).read() or 0)
                with open(counter, "w") as f:
                    f.write(str(value + 1))
                t_out = time.monotonic_ns()
            spans.append((t_in, t_out))
        await client.aclose()
        print(json.dumps(spans), flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)

HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    import redis.asyncio as aioredis
    from model_fallback.redis import RedisSessionLock

    async def main(url, key, ttl):
        lock = RedisSessionLock(aioredis.Redis.from_url(url), key, ttl=ttl)
        await lock.acquire()
        print("held", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
    """
)


def bench_lock(url: str, workdir: Path, procs: int, each: int) -> None:
    counter = workdir / "counter"
    counter.write_text("0")
    t0 = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, url, str(counter), str(each)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(procs)
    ]
    spans: list[tuple[int, int]] = []
    for w in workers:
        out, _ = w.communicate(timeout=300)
        spans.extend(tuple(s) for s in json.loads(out))
    wall = time.monotonic() - t0
    spans.sort()
    overlaps = sum(1 for (_, end), (nxt, _) in itertools.pairwise(spans) if nxt < end)
    print(f"4. lock: {procs} processes x {each} acquisitions of one key")
    print(f"   {len(spans)} acquisitions in {wall:.2f} s ({len(spans) / wall:.0f}/s incl. start-up), "
          f"overlaps {overlaps}, counter {counter.read_text()} (expected {procs * each})")  # fmt: skip


async def bench_takeover(url: str, ttl: float, rounds: int) -> None:
    import redis.asyncio as aioredis

    from model_fallback.redis import RedisSessionLock

    client = aioredis.Redis.from_url(url)
    delays = []
    for i in range(rounds):
        key = f"bench_victim_{i}"
        proc = spawn(HOLDER, url, key, str(ttl))
        assert proc.stdout is not None
        assert (await asyncio.to_thread(proc.stdout.readline)).strip() == "held"
        await asyncio.sleep(ttl * (0.3 + 0.2 * i))  # killed at different points of the renewal cycle
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        proc.wait()
        async with RedisSessionLock(client, key, ttl=ttl, acquire_timeout=ttl * 3):
            delays.append(time.monotonic() - killed)
    await client.aclose()
    print(f"5. SIGKILLed holder (ttl {ttl:g} s): taken over after " + ", ".join(f"{d:.2f}" for d in delays)
          + f" s (max {max(delays):.2f} s, within ttl: {max(delays) <= ttl})")  # fmt: skip


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    quick = args.quick
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server = Server(Path(tmp))
        server.start()
        try:
            await bench_healthy(server.url, 1000, 10 if quick else 60)
            await bench_propagation(server.url, 50 if quick else 300)
            await bench_outage(server, 2.0 if quick else 5.0)
            bench_lock(server.url, Path(tmp), 4, 50 if quick else 200)
            await bench_takeover(server.url, 1.0 if quick else 2.0, 2 if quick else 3)
        finally:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
