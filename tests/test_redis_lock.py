"""RedisSessionLock against a real redis-server: mutual exclusion between processes (with
timestamps), renewal, release by its holder only, a SIGKILLed holder's lock taken over
within its ttl, and SessionFile on it — the fence and the lost-lock checks as with the file
lock."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from model_fallback import (
    SessionTakeoverError,
    SessionWriteLockTimeoutError,
    coordination_kind,
    is_coordination_error,
)
from model_fallback.session import SessionFile, SessionLockLostError
from tests.test_redis_server import RedisServer, redis_server, require_redis_py
from tests.test_redis_store import start_worker

pytestmark = [pytest.mark.anyio, pytest.mark.tool]

require_redis_py()
import redis.asyncio as aioredis  # noqa: E402

from model_fallback.redis import RedisSessionLock  # noqa: E402

__all__ = ["redis_server"]


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Any]:
    """An asyncio client on the test's server."""
    c = aioredis.Redis.from_url(redis_server.url)
    try:
        yield c
    finally:
        await c.aclose()


async def test_exclusive_renewed_and_released_by_its_holder_only(client: Any) -> None:
    """A second acquirer times out (a coordination error naming the holder) while the holder's
    lease is renewed past its ttl; a stale token cannot release someone else's lock; the
    holder's release frees it."""
    async with RedisSessionLock(client, "lk", ttl=0.3) as held:
        assert held.held and held.token is not None
        token = held.token.encode()
        assert await client.get("lk") == token
        await asyncio.sleep(1.0)  # > 3 ttl: renewals keep it
        assert await client.get("lk") == token
        assert 0 < await client.pttl("lk") <= 300
        with pytest.raises(SessionWriteLockTimeoutError) as info:
            await RedisSessionLock(client, "lk", acquire_timeout=0.2).acquire()
        err = info.value
        assert is_coordination_error(err) and coordination_kind(err) == "write_lock_timeout"
        assert err.owner_pid is not None and err.owner_alive is True
        assert "lk" in str(err) and err.waited_s is not None and err.waited_s >= 0.2
        # a release by another object (another token) leaves the holder's lock alone
        other = RedisSessionLock(client, "lk", ttl=0.3)
        other._token = "someone:else:token"
        await other.arelease()
        assert await client.get("lk") == token
    assert await client.get("lk") is None
    # the synchronous release (HeldSession's) runs in the background and is awaited by the next acquire
    lock = RedisSessionLock(client, "lk2", ttl=5)
    await lock.acquire()
    lock.release()
    assert not lock.held
    await lock.acquire()
    await lock.arelease()
    assert await client.get("lk2") is None


async def test_a_lost_lock_makes_the_next_write_a_takeover(client: Any, tmp_path: Path) -> None:
    """Another holder's token in the key (the lease was lost and taken): the held session's
    next append raises SessionLockLostError (a takeover), before writing, and every later
    operation of that turn raises it too — as when a file lock is broken under its holder.
    A loss found by a renewal is raised by the next read."""
    path = tmp_path / "s.jsonl"
    factory = RedisSessionLock.factory(client, ttl=0.3, acquire_timeout=2)
    session = SessionFile(path, lock=factory)
    key = f"model_fallback:session:{path}"
    await session.append({"n": 1})
    with pytest.raises(SessionLockLostError) as info:
        async with session.locked() as held:
            await held.append({"n": 2})
            await client.set(key, "otherhost:1:token", px=500)
            await held.append({"n": 3})
    assert coordination_kind(info.value) == "session_takeover"
    assert isinstance(info.value, SessionTakeoverError)
    assert [e["n"] for e in await session.read()] == [1, 2]
    # found by the renewal task, raised by an operation that does not write
    with pytest.raises(SessionLockLostError):
        async with session.locked() as held:
            await client.set(key, "otherhost:1:token", px=500)
            await asyncio.sleep(0.25)  # a renewal (every ttl/3) finds the foreign token
            await held.read()


async def test_sessionfile_on_the_redis_lock_keeps_the_fence(client: Any, tmp_path: Path) -> None:
    """Two SessionFile objects on one transcript with the Redis lock: a write by the other
    while the prompt lock is released is a SessionTakeoverError at re-acquire, as with the
    file lock; the holder's own writes while released are not."""
    path = tmp_path / "t.jsonl"
    factory = RedisSessionLock.factory(client, ttl=2, acquire_timeout=2)
    mine, theirs = SessionFile(path, lock=factory), SessionFile(path, lock=factory)
    async with mine.locked() as held:
        await held.append({"who": "me"})
        async with held.released_for_prompt():
            await held.append({"who": "me, released"})
        with pytest.raises(SessionTakeoverError):
            async with held.released_for_prompt():
                await theirs.append({"who": "them"})
    assert [e["who"] for e in await theirs.read()] == ["me", "me, released", "them"]
    with pytest.raises(TypeError):
        SessionFile(path, lock="redis")  # type: ignore[arg-type]


async def test_redis_unreachable_is_a_lock_timeout(redis_server: RedisServer, client: Any) -> None:
    """No Redis for the whole acquire_timeout: SessionWriteLockTimeoutError saying so (a
    coordination error: never charged to a model)."""
    redis_server.kill()
    with pytest.raises(SessionWriteLockTimeoutError, match="Redis unreachable"):
        await RedisSessionLock(client, "lk", acquire_timeout=0.3).acquire()


async def test_a_paused_redis_does_not_stretch_the_timeout(redis_server: RedisServer, client: Any) -> None:
    """SIGSTOPped Redis (the connection open, no answer): the timeout holds, not the client's
    socket timeout and retries."""
    await client.ping()
    redis_server.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(SessionWriteLockTimeoutError):
            await RedisSessionLock(client, "lk", acquire_timeout=0.3).acquire()
        assert time.monotonic() - t0 < 1.5
    finally:
        redis_server.resume()


async def test_a_lease_that_ran_out_while_redis_was_away_is_lost(
    redis_server: RedisServer, client: Any, tmp_path: Path
) -> None:
    """Redis paused for longer than the ttl while held: no renewal succeeded, so another
    holder may exist; the next write raises SessionLockLostError instead of writing."""
    path = tmp_path / "s.jsonl"
    session = SessionFile(path, lock=RedisSessionLock.factory(client, ttl=0.3, acquire_timeout=2))
    with pytest.raises(SessionLockLostError, match="no renewal succeeded"):
        async with session.locked() as held:
            await held.append({"n": 1})
            redis_server.pause()
            try:
                await asyncio.sleep(0.5)
                await held.append({"n": 2})
            finally:
                redis_server.resume()
    assert [e["n"] for e in await session.read()] == [1]


def test_bad_arguments() -> None:
    """ttl and timeouts are checked at construction (and by the factory at once)."""

    class Fake:
        def register_script(self, script: str) -> Any:
            return None

    with pytest.raises(ValueError):
        RedisSessionLock(Fake(), "k", ttl=0)
    with pytest.raises(ValueError):
        RedisSessionLock(Fake(), "k", acquire_timeout=-1)
    with pytest.raises(ValueError):
        RedisSessionLock(Fake(), "")
    with pytest.raises(ValueError):
        RedisSessionLock.factory(Fake(), ttl=float("nan"))


# --- real processes -------------------------------------------------------------------------

CONTENDER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    import redis.asyncio as aioredis
    from model_fallback.redis import RedisSessionLock

    async def main(url, key, counter, n):
        client = aioredis.Redis.from_url(url)
        spans = []
        for _ in range(n):
            async with RedisSessionLock(client, key, ttl=5, acquire_timeout=30):
                t_in = time.monotonic_ns()  # CLOCK_MONOTONIC: one clock for every process of the host
                value = int(open(counter).read() or 0)  # a read-modify-write that loses updates unless exclusive
                await asyncio.sleep(0)
                with open(counter, "w") as f:
                    f.write(str(value + 1))
                t_out = time.monotonic_ns()
            spans.append((t_in, t_out))
        await client.aclose()
        print(json.dumps(spans), flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
    """
)

HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    import redis.asyncio as aioredis
    from model_fallback.redis import RedisSessionLock

    async def main(url, key, ttl):
        client = aioredis.Redis.from_url(url)
        lock = RedisSessionLock(client, key, ttl=ttl)
        await lock.acquire()
        print("held", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
    """
)


async def test_four_processes_fifty_acquisitions_each_never_overlap(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """4 processes × 50 acquisitions of one key: no two holding intervals overlap
    (timestamps on the host's monotonic clock) and no read-modify-write is lost."""
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [start_worker(CONTENDER, redis_server.url, "contended", str(counter), "50") for _ in range(4)]
    spans: list[tuple[int, int]] = []
    try:
        for proc in procs:
            out, err = await asyncio.wait_for(asyncio.to_thread(proc.communicate), 60)
            assert proc.returncode == 0, err
            spans.extend(tuple(s) for s in json.loads(out))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
    assert len(spans) == 200
    spans.sort()
    overlaps = sum(1 for (_, out), (nxt, _) in itertools.pairwise(spans) if nxt < out)
    assert overlaps == 0
    assert counter.read_text() == "200"


async def test_a_sigkilled_holder_is_taken_over_within_its_ttl(
    redis_server: RedisServer, client: Any
) -> None:
    """A holder SIGKILLed while holding (no release, no more renewals): a waiter gets the
    lock at most ttl after the kill."""
    ttl = 1.0
    proc = start_worker(HOLDER, redis_server.url, "victim", str(ttl))
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.strip() == "held", proc.stderr.read() if proc.stderr else ""
        await asyncio.sleep(0.4)  # a renewal or so has happened
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.to_thread(proc.wait, 10)
        async with RedisSessionLock(client, "victim", acquire_timeout=5, ttl=ttl):
            taken_after = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    print(f"taken over {taken_after:.3f}s after SIGKILL (ttl {ttl}s)")
    assert taken_after <= ttl + 0.1
