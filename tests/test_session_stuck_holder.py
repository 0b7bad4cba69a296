"""SessionWriteLock against a stuck live holder in another process (real flock, real process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import model_fallback as mf
from model_fallback import events as ev
from model_fallback.session import SessionWriteLock

pytestmark = pytest.mark.anyio

HOLDER = textwrap.dedent(
    """
    import anyio, sys
    from model_fallback.session import SessionWriteLock
    async def main(path):
        lock = SessionWriteLock(path)
        await lock.acquire()
        print("held", flush=True)
        await anyio.sleep(600)
        lock.release()
    anyio.run(main, sys.argv[1])
    """
)


class Reclaims(ev.Observer):
    def __init__(self) -> None:
        self.seen: list[ev.StaleLockReclaimed] = []

    def stale_lock_reclaimed(self, e: ev.StaleLockReclaimed) -> None:
        self.seen.append(e)


def start_holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "held":
        proc.kill()
        raise AssertionError(f"holder did not start: {proc.communicate(timeout=10)}")
    return proc


async def test_short_acquire_breaks_a_holder_past_stale_after(tmp_path: Path) -> None:
    """A waiter whose acquire_timeout is shorter than the once-a-second stuck check still breaks a
    live holder older than stale_after at its first refusal, and reports it."""
    path = tmp_path / "s.jsonl"
    holder = start_holder(path)
    try:
        await anyio.sleep(0.5)
        reclaims = Reclaims()
        t0 = time.monotonic()
        async with SessionWriteLock(path, acquire_timeout=0.4, stale_after=0.3, observers=[reclaims]) as lock:
            assert lock.held
            assert time.monotonic() - t0 < 0.4
        assert [(e.reason, e.owner_pid) for e in reclaims.seen] == [("too_old", holder.pid)]
    finally:
        holder.kill()
        holder.wait(timeout=10)


async def test_young_live_holder_is_not_broken(tmp_path: Path) -> None:
    """A live holder younger than stale_after is waited for, not broken: the short acquire times out."""
    path = tmp_path / "s.jsonl"
    holder = start_holder(path)
    try:
        reclaims = Reclaims()
        with pytest.raises(mf.SessionWriteLockTimeoutError) as info:
            await SessionWriteLock(path, acquire_timeout=0.3, stale_after=60, observers=[reclaims]).acquire()
        assert info.value.owner_pid == holder.pid and info.value.owner_alive is True
        assert reclaims.seen == []
    finally:
        holder.kill()
        holder.wait(timeout=10)


TRY_ONCE = textwrap.dedent(
    """
    import anyio, sys
    import model_fallback as mf
    from model_fallback.session import SessionWriteLock
    async def main(path):
        lock = SessionWriteLock(path, acquire_timeout=0, stale_after=0)
        try:
            await lock.acquire()
        except mf.SessionWriteLockTimeoutError:
            print("refused", flush=True)
            return
        print("held", flush=True)
        sys.stdin.read()  # hold until the test closes our stdin
        lock.release()
    anyio.run(main, sys.argv[1])
    """
)


async def test_breaking_a_lock_never_unlinks_one_claimed_after_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between a breaker's re-check and its unlink: the stuck holder releases right
    there and another process tries to take the lock. That process must be refused (it claims
    under a shared lock on the break file, which the breaker holds exclusively), so that after
    the unlink the breaker is the only holder, never two holders on two inodes."""
    path = tmp_path / "s.jsonl"
    stuck = SessionWriteLock(path)
    await stuck.acquire()
    # Age the holder's metadata (its CLOCK_BOOTTIME stamp): it is now a live holder past stale_after.
    meta = json.loads(stuck.lock_path.read_bytes())
    stuck.lock_path.write_text(json.dumps({**meta, "boottime": meta["boottime"] - 3600}))

    breaker = SessionWriteLock(path, acquire_timeout=5, stale_after=60)
    other: list[subprocess.Popen[str]] = []
    said: list[str] = []
    calls = 0
    original_owner = SessionWriteLock._owner

    def owner_then_race(self: SessionWriteLock) -> Any:
        nonlocal calls
        found = original_owner(self)
        if self is breaker:
            calls += 1
            if calls == 2:  # the re-check under the break lock, just before the unlink
                stuck.release()
                proc = subprocess.Popen(
                    [sys.executable, "-c", TRY_ONCE, str(path)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                other.append(proc)
                assert proc.stdout is not None
                said.append(proc.stdout.readline().strip())
        return found

    monkeypatch.setattr(SessionWriteLock, "_owner", owner_then_race)
    try:
        await breaker.acquire()
        assert breaker.held and calls >= 2
        assert said == ["refused"], "a process claimed the lock the breaker then unlinked"
        assert breaker.reclaims == 1
    finally:
        breaker.release()
        for proc in other:
            proc.communicate(input="", timeout=10)
