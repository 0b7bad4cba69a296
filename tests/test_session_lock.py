"""SessionWriteLock against a stuck live holder in another process (real flock, real process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

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
