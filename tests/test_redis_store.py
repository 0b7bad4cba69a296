"""RedisCooldownStore against a real redis-server: shared cooldowns between real processes,
the mirror on the hot path (no Redis command in a healthy run), and the faults — Redis
killed, restarted empty, paused — under a loop of runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from model_fallback import (
    Candidate,
    CooldownTracker,
    FailoverError,
    FailoverReason,
    Outcome,
    run_with_model_fallback,
)
from model_fallback.events import telemetry_errors
from tests.test_redis_server import RedisServer, redis_server, require_redis_py

pytestmark = [pytest.mark.anyio, pytest.mark.tool]

require_redis_py()
from model_fallback.redis import RedisCooldownStore  # noqa: E402

A, B, C = Candidate("p", "a"), Candidate("p", "b"), Candidate("p", "c")
__all__ = ["redis_server"]


def rate_limited(after: float = 30.0) -> FailoverError:
    err = FailoverError("429 Too Many Requests", reason=FailoverReason.RATE_LIMIT, status=429)
    err.retry_after = after  # type: ignore[attr-defined]
    return err


async def serve_first(candidate: Candidate) -> str:
    return str(candidate)


def cmdstats(client: Any) -> dict[str, int]:
    info: dict[str, Any] = client.info("commandstats")
    return {name: int(v["calls"]) for name, v in info.items()}


async def until(predicate: Any, within: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


# --- one process --------------------------------------------------------------------------


async def test_the_mirror_serves_the_hot_path_a_healthy_run_makes_no_redis_command(
    redis_server: RedisServer,
) -> None:
    """300 healthy runs over a 3-candidate chain (entry/is_cooling/record_success per run,
    a cooling candidate skipped in the mirror) leave Redis's command counters untouched."""
    async with RedisCooldownStore(redis_server.url) as store:
        tracker = CooldownTracker(store=store)
        tracker.record_failure(C, FailoverReason.RATE_LIMIT, rate_limited())  # a cooling candidate
        assert await until(lambda: store.stats()["pending"] == 0 and store.stats()["messages"] >= 1, 2)
        probe = redis_server.client()
        before = cmdstats(probe)
        for _ in range(300):
            result = await run_with_model_fallback(serve_first, [C, A, B], cooldowns=tracker)
            assert result.candidate == A
            assert [a.outcome for a in result.attempts] == [Outcome.SKIPPED, Outcome.SUCCESS]
        await asyncio.sleep(0.05)
        after = cmdstats(probe)
    changed = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    # the only new command is our own first INFO (counted once it ran)
    assert changed == {"cmdstat_info": 1}, changed


async def test_entries_expire_in_redis_and_carry_wall_clock_json(redis_server: RedisServer) -> None:
    """A cooldown is JSON {reason, streak, until_wall} under {ns}:cd:{key}, expiring
    keep_expired_s after its end; a success deletes it everywhere."""
    client = redis_server.client()
    async with RedisCooldownStore(redis_server.url, namespace="t1", keep_expired_s=5) as store:
        tracker = CooldownTracker(store=store)
        before = time.time()
        tracker.record_failure(A, FailoverReason.RATE_LIMIT, rate_limited(30))
        assert await until(lambda: client.exists("t1:cd:p/a") == 1, 2)  # type: ignore[attr-defined]
        value = json.loads(client.get("t1:cd:p/a"))  # type: ignore[attr-defined]
        assert value["reason"] == "rate_limit" and value["streak"] == 1
        assert before + 30 <= value["until_wall"] <= time.time() + 30
        pttl = client.pttl("t1:cd:p/a")  # type: ignore[attr-defined]
        assert 33_000 < pttl <= 35_000
        tracker.record_success(A)
        assert store.get("p/a") is None
        assert await until(lambda: client.exists("t1:cd:p/a") == 0, 2)  # type: ignore[attr-defined]
        # an ended cooldown leaves Redis keep_expired_s later (here: at once)
    async with RedisCooldownStore(redis_server.url, namespace="t2", keep_expired_s=0) as store:
        tracker = CooldownTracker(store=store)
        tracker.record_failure(A, FailoverReason.RATE_LIMIT, rate_limited(0.2))
        assert await until(lambda: client.exists("t2:cd:p/a") == 1, 2)  # type: ignore[attr-defined]
        assert await until(lambda: client.exists("t2:cd:p/a") == 0, 3)  # type: ignore[attr-defined]


async def test_two_stores_converge_and_share_the_probe(redis_server: RedisServer) -> None:
    """Two stores (two origins) writing the same key end on the value Redis ends on; the one
    probe of a cooldown claimed through one is refused through the other until released;
    a store entered later loads everything (SCAN + MGET)."""
    async with (
        RedisCooldownStore(redis_server.url) as s1,
        RedisCooldownStore(redis_server.url) as s2,
    ):
        t1, t2 = CooldownTracker(store=s1), CooldownTracker(store=s2)
        for i in range(20):
            (t1 if i % 2 else t2).record_failure(A, FailoverReason.OVERLOADED, rate_limited(10 + i))
        client = redis_server.client()

        def converged() -> bool:
            raw = client.get("model_fallback:cd:p/a")  # type: ignore[attr-defined]
            e1, e2 = s1.get("p/a"), s2.get("p/a")
            return (
                raw is not None
                and e1 is not None
                and e1 == e2
                and json.loads(raw)["until_wall"] == e1.until_wall
                and not s1.stats()["pending"]
                and not s2.stats()["pending"]
            )

        assert await until(converged, 2)
        until_wall = s1.get("p/a").until_wall  # type: ignore[union-attr]
        assert t1.claim_probe(A) is True
        assert await until(lambda: s2.probe_claim("p/a") == (s1.origin, until_wall), 0.5)
        assert t2.claim_probe(A) is False
        t1.release_probe(A)
        assert await until(lambda: s2.probe_claim("p/a") is None, 0.5)
        assert t2.claim_probe(A) is True
        assert await until(lambda: s1.probe_claim("p/a") == (s2.origin, until_wall), 0.5)
        assert t1.claim_probe(A) is False
        async with RedisCooldownStore(redis_server.url) as s3:
            assert s3.get("p/a") == s1.get("p/a")
            assert s3.probe_claim("p/a") == (s2.origin, until_wall)


async def test_unreachable_at_start_runs_go_on_and_it_syncs_when_redis_appears(
    redis_server: RedisServer,
) -> None:
    """Entering the store with Redis down neither raises nor waits past connect_timeout;
    runs use local state; errors are counted under cooldown_store; when Redis comes up the
    store connects, writes what it recorded meanwhile and loads the namespace."""
    redis_server.kill()
    before = telemetry_errors().get("cooldown_store", 0)
    t0 = time.monotonic()
    async with RedisCooldownStore(redis_server.url, connect_timeout=0.2, command_timeout=0.2) as store:
        assert time.monotonic() - t0 < 1.0
        assert not store.connected
        tracker = CooldownTracker(store=store)
        result = await run_with_model_fallback(
            _fail_on(A, rate_limited()), [A, B], cooldowns=tracker
        )  # fmt: skip
        assert result.candidate == B and tracker.is_cooling(A)
        assert store.errors >= 1
        assert telemetry_errors()["cooldown_store"] >= before + 1
        redis_server.start()
        assert await store.wait_synced(5)
        client = redis_server.client()
        assert await until(lambda: client.exists("model_fallback:cd:p/a") == 1, 2)  # type: ignore[attr-defined]


def _fail_on(bad: Candidate, error: BaseException) -> Any:
    async def call(candidate: Candidate) -> str:
        if candidate == bad:
            raise error
        return str(candidate)

    return call


async def test_redis_killed_and_restarted_under_a_loop_of_runs(redis_server: RedisServer) -> None:
    """Redis SIGKILLed for 2 s while runs go on: 0 failed runs, none slowed (no wait on
    Redis), errors counted under cooldown_store, and after the restart (empty: no
    persistence) both stores resync: the cooldown recorded during the outage and the one
    recorded before it (restored by the stores that still knew it) are in Redis and in
    every mirror."""
    async with (
        RedisCooldownStore(redis_server.url, connect_timeout=0.2, command_timeout=0.3) as s1,
        RedisCooldownStore(redis_server.url, connect_timeout=0.2, command_timeout=0.3) as s2,
    ):
        t1, t2 = CooldownTracker(store=s1), CooldownTracker(store=s2)
        t1.record_failure(C, FailoverReason.RATE_LIMIT, rate_limited(60))  # before the outage
        assert await until(lambda: t2.is_cooling(C), 0.5)
        errors_before = telemetry_errors().get("cooldown_store", 0)
        resyncs_before = s1.resyncs, s2.resyncs
        failed = 0
        durations: list[float] = []
        killed_at = restarted_at = 0.0
        recorded_in_outage = False
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 3.5:
            i += 1
            now = time.monotonic() - start
            if not killed_at and now >= 0.4:
                redis_server.kill()
                killed_at = now
            if killed_at and not recorded_in_outage and now >= killed_at + 0.3:
                t1.record_failure(A, FailoverReason.RATE_LIMIT, rate_limited(60))
                recorded_in_outage = True
            if killed_at and not restarted_at and now >= killed_at + 2.0:
                redis_server.start()
                restarted_at = now
            tracker = t1 if i % 2 else t2
            t0 = time.perf_counter()
            try:
                await run_with_model_fallback(serve_first, [A, B, C], cooldowns=tracker)
            except Exception:
                failed += 1
            durations.append(time.perf_counter() - t0)
            await asyncio.sleep(0.002)
        assert restarted_at
        assert failed == 0
        assert max(durations) < 0.1, max(durations)  # nothing waits on Redis (a connect takes 0.2 s)
        assert s1.errors >= 1 and s2.errors >= 1
        assert telemetry_errors()["cooldown_store"] >= errors_before + 2
        assert await s1.wait_synced(5) and await s2.wait_synced(5)
        assert s1.resyncs > resyncs_before[0] and s2.resyncs > resyncs_before[1]
        client = redis_server.client()
        assert await until(
            lambda: client.exists("model_fallback:cd:p/a", "model_fallback:cd:p/c") == 2,  # type: ignore[attr-defined]
            2,
        )
        assert await until(lambda: t2.is_cooling(A) and t2.is_cooling(C) and t1.is_cooling(C), 1)
        # and a third process's view, loaded from Redis alone
        async with RedisCooldownStore(redis_server.url) as s3:
            assert s3.get("p/a") == s1.get("p/a") and s3.get("p/c") == s1.get("p/c")


async def test_a_paused_redis_slows_no_run(redis_server: RedisServer) -> None:
    """SIGSTOPped Redis (connections open, no answers): writes time out in the background,
    runs keep their speed, errors are counted; after SIGCONT the store reconnects and the
    write made meanwhile reaches Redis."""
    async with RedisCooldownStore(redis_server.url, connect_timeout=0.2, command_timeout=0.2) as store:
        tracker = CooldownTracker(store=store)
        redis_server.pause()
        try:
            tracker.record_failure(A, FailoverReason.RATE_LIMIT, rate_limited(60))
            durations = []
            start = time.monotonic()
            while time.monotonic() - start < 1.0:
                t0 = time.perf_counter()
                result = await run_with_model_fallback(serve_first, [A, B], cooldowns=tracker)
                durations.append(time.perf_counter() - t0)
                assert result.candidate == B
                await asyncio.sleep(0.002)
            assert max(durations) < 0.1, max(durations)
            assert await until(lambda: store.errors >= 1, 2)
        finally:
            redis_server.resume()
        assert await store.wait_synced(5)
        client = redis_server.client()
        assert await until(lambda: client.exists("model_fallback:cd:p/a") == 1, 2)  # type: ignore[attr-defined]


async def test_store_errors_reach_observers_with_count_error(redis_server: RedisServer) -> None:
    """Observers given to the store with a count_error(component) method (the Prometheus
    observer has one) are told of every store error, under cooldown_store."""

    class Counting:
        def __init__(self) -> None:
            self.components: list[str] = []

        def count_error(self, component: str) -> None:
            self.components.append(component)

    counting = Counting()
    redis_server.kill()
    async with RedisCooldownStore(
        redis_server.url, connect_timeout=0.1, command_timeout=0.1, observers=[counting]
    ) as store:
        assert await until(lambda: store.errors >= 2, 3)
    assert counting.components[:2] == ["cooldown_store", "cooldown_store"]


FORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from model_fallback import Candidate, CooldownTracker, FailoverReason
    from model_fallback.redis import RedisCooldownStore

    store = RedisCooldownStore(sys.argv[1])  # started before the fork (gunicorn --preload style)

    async def parent_start():
        await store.start()

    asyncio.run(parent_start())
    parent_origin = store.origin
    pid = os.fork()
    if pid == 0:
        async def child():
            await store.start()  # the thread did not follow the fork: a fresh one here
            CooldownTracker(store=store).record_failure(Candidate("p", "forked"), FailoverReason.OVERLOADED)
            await store.aclose()
            return store.origin != parent_origin and store.stats()["writes"] >= 1
        os._exit(0 if asyncio.run(child()) else 3)

    async def parent():
        _, status = os.waitpid(pid, 0)
        seen = False
        for _ in range(100):
            if store.get("p/forked") is not None:
                seen = True
                break
            await asyncio.sleep(0.01)
        await store.aclose()
        print(json.dumps({"child": os.waitstatus_to_exitcode(status), "seen": seen}))

    asyncio.run(parent())
    """
)


def test_a_store_started_before_a_fork_starts_again_in_the_child(redis_server: RedisServer) -> None:
    """A store started in a parent (its thread does not survive fork) can be started again in
    the forked child, with an identity of its own; the parent sees the child's cooldown."""
    proc = subprocess.run(
        [sys.executable, "-c", FORKER, redis_server.url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"child": 0, "seen": True}, proc.stderr


def test_the_core_does_not_import_redis() -> None:
    """Importing and running the core (driver, cooldown, session) loads no redis module."""
    code = (
        "import sys, anyio, model_fallback as mf\n"
        "import model_fallback.cooldown, model_fallback.driver, model_fallback.session\n"
        "async def run(c):\n"
        "    return 1\n"
        "anyio.run(mf.run_with_model_fallback, run, ['a/b'])\n"
        "bad = [m for m in sys.modules if m == 'redis' or m.startswith('redis.') or m == 'model_fallback.redis']\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_arguments() -> None:
    """Bad settings fail at construction; the repr hides the password."""
    with pytest.raises(ValueError):
        RedisCooldownStore("")
    with pytest.raises(ValueError):
        RedisCooldownStore("redis://x", namespace="")
    with pytest.raises(ValueError):
        RedisCooldownStore("redis://x", command_timeout=-1)
    with pytest.raises(ValueError):
        RedisCooldownStore("redis://x", max_pending=0)
    store = RedisCooldownStore("redis://user:s3cret@example.invalid:6379/0")
    assert "s3cret" not in repr(store)


# --- two real processes -------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from model_fallback import Candidate, CooldownTracker, run_with_model_fallback
    from model_fallback.redis import RedisCooldownStore

    async def serve(candidate):
        return str(candidate)

    async def main(url):
        async with RedisCooldownStore(url) as store:
            tracker = CooldownTracker(store=store)
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            print(json.dumps({"ready": store.connected}), flush=True)
            while line := (await reader.readline()).decode().strip():
                cmd, _, arg = line.partition(" ")
                if cmd == "watch":  # until the candidate cools down here: when did we see it?
                    c = Candidate.parse(arg)
                    while not tracker.is_cooling(c):
                        await asyncio.sleep(0.0005)
                    print(json.dumps({"seen": time.time()}), flush=True)
                elif cmd == "run":  # one run over the given chain, as the driver does it
                    result = await run_with_model_fallback(serve, arg.split(","), cooldowns=tracker)
                    print(json.dumps({"served": str(result.candidate),
                                      "outcomes": [a.outcome.value for a in result.attempts]}), flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


def start_worker(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python worker process talking JSON lines on stdin/stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_two_processes_share_cooldowns_within_half_a_second(redis_server: RedisServer) -> None:
    """A cooldown recorded by a run in this process is honoured by the driver in another
    process: seen there within 0.5 s (measured, 8 rounds), and its next run skips it."""
    proc = start_worker(WORKER, redis_server.url)
    assert proc.stdin is not None and proc.stdout is not None

    async def ask(line: str) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        answer = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)
        assert answer, proc.stderr.read() if proc.stderr else ""
        return dict(json.loads(answer))

    try:
        first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert json.loads(first) == {"ready": True}, first
        delays = []
        async with RedisCooldownStore(redis_server.url) as store:
            tracker = CooldownTracker(store=store)
            for i in range(8):
                bad = Candidate("prov", f"m{i}")
                proc.stdin.write(f"watch {bad}\n")
                proc.stdin.flush()
                await asyncio.sleep(0.05)  # the watcher is polling
                recorded = time.time()
                result = await run_with_model_fallback(
                    _fail_on(bad, rate_limited(30)), [bad, B], cooldowns=tracker
                )
                assert result.candidate == B
                seen = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 5)
                delays.append(json.loads(seen)["seen"] - recorded)
                there = await ask(f"run {bad},p/b")
                assert there == {"served": "p/b", "outcomes": ["skipped", "success"]}
        print(f"propagation: max {max(delays) * 1000:.1f} ms over {len(delays)} rounds")
        assert max(delays) < 0.5, delays
    finally:
        proc.kill()
        proc.wait(timeout=10)
