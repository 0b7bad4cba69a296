"""The session lock's holders (issue #12, items 4, 6 and 15c), with real processes, real forks,
real SIGKILLs and a real second PID namespace:

* a holder SIGKILLed while a child it forked lives on (the child shares the locked file
  description): through ``os.fork`` (multiprocessing) and through a raw libc ``fork()`` that
  bypasses Python's at-fork hooks, as a C extension's fork would;
* a lock taken *in* a forked child: its holder is alive and must be reported so;
* a wall-clock step (the clock the code reads, patched in a subprocess) must not break a
  young live lock; a slow holder whose lock was broken must not write any more;
* a holder in another PID namespace (``unshare --pid``) is pid 1 there: alive-unknown here,
  never "dead".
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

import model_fallback as mf
from model_fallback import events as ev
from model_fallback.session import SessionFile, SessionWriteLock
from tests.conftest import IN_CI

pytestmark = pytest.mark.anyio


class Reclaims(ev.Observer):
    def __init__(self) -> None:
        self.seen: list[ev.StaleLockReclaimed] = []

    def stale_lock_reclaimed(self, e: ev.StaleLockReclaimed) -> None:
        self.seen.append(e)


def start(cmd: list[str], first_word: str = "held") -> tuple[subprocess.Popen[str], list[str]]:
    """Start *cmd* and wait (bounded) for its first stdout line, which must start with *first_word*."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != first_word:
        proc.kill()
        raise AssertionError(f"did not start: {line} {proc.communicate(timeout=10)}")
    return proc, line[1:]


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not is_zombie(pid)  # dead, not yet reaped by its (new) parent


# --- item 4: a forked child never keeps a dead holder's lock ----------------------------

FORKING_HOLDER = textwrap.dedent(
    """
    import ctypes, multiprocessing, os, sys, time
    import anyio
    from model_fallback.session import SessionWriteLock

    path, how = sys.argv[1], sys.argv[2]
    lock = SessionWriteLock(path)
    anyio.run(lock.acquire)
    sys.stdout.flush()
    if how == "multiprocessing":
        ctx = multiprocessing.get_context("fork")
        running = ctx.Event()

        def work():
            running.set()  # the at-fork hooks ran before this: start() returns before they do
            time.sleep(30)

        child = ctx.Process(target=work)
        child.start()
        running.wait(20)
        pid = child.pid
    else:
        # libc's fork(): no Python at-fork hooks run, as with a fork made by a C extension
        pid = ctypes.CDLL(None, use_errno=True).fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
    print("held", pid, flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
@pytest.mark.parametrize("how", ["multiprocessing", "libc-fork"])
async def test_sigkilled_holder_with_a_forked_child_never_blocks(
    tmp_path: Path, how: str, reaped: bool
) -> None:
    """The holder forks a worker (which inherits the locked descriptor) and is SIGKILLed while
    the worker lives on. The next acquirer gets the lock at once (not after timing out on
    "pid=N (dead)") and reports a dead_pid reclaim. With os.fork the inherited descriptor is
    closed in the child at fork; with a raw fork the waiter breaks the lock of the dead holder,
    also while the dead holder is a zombie its parent has not reaped yet (it answers kill 0)."""
    path = tmp_path / "s.jsonl"
    holder, (child,) = start([sys.executable, "-c", FORKING_HOLDER, str(path), how])
    child_pid = int(child)
    lock_inode = os.stat(f"{path}.lock").st_ino
    try:
        holder.kill()
        if reaped:
            holder.wait(timeout=10)
        else:
            deadline = time.monotonic() + 10
            while not is_zombie(holder.pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert is_zombie(holder.pid)
        assert alive(child_pid), "the forked child must outlive the holder for this test"
        reclaims = Reclaims()
        t0 = time.monotonic()
        async with SessionWriteLock(path, acquire_timeout=3, stale_after=1800, observers=[reclaims]) as lock:
            assert lock.held
            waited = time.monotonic() - t0
        assert waited < 1.0, f"a dead holder's lock blocked the next acquirer for {waited:.2f}s"
        assert [(e.reason, e.owner_pid) for e in reclaims.seen] == [("dead_pid", holder.pid)]
        assert alive(child_pid)
        # which defence worked: the kernel released the lock (the child had closed its copy at
        # fork), or the waiter broke the dead holder's lock (a fresh lock file)
        relocked = os.stat(f"{path}.lock").st_ino == lock_inode
        assert relocked == (how == "multiprocessing")
    finally:
        kill_pid(child_pid)
        holder.kill()
        holder.wait(timeout=10)


CHILD_HOLDER = textwrap.dedent(
    """
    import multiprocessing, sys, time
    import anyio
    from model_fallback.session import SessionWriteLock

    def hold(path, ready):
        lock = SessionWriteLock(path)
        anyio.run(lock.acquire)
        ready.put("ok")
        time.sleep(30)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Queue()
        child = ctx.Process(target=hold, args=(sys.argv[1], ready))
        child.start()
        ready.get(timeout=20)
        print("held", child.pid, flush=True)
        child.join()
    """
)


async def test_lock_taken_in_a_forked_child_is_alive_and_never_broken(tmp_path: Path) -> None:
    """A multiprocessing worker (forked after the library was imported) takes the lock and
    holds it. Its metadata must carry its own start time, not its parent's: a waiter reports the
    holder alive and does not break it (a "recycled pid" verdict would have broken a live lock)."""
    path = tmp_path / "s.jsonl"
    parent, (child,) = start([sys.executable, "-c", CHILD_HOLDER, str(path)])
    child_pid = int(child)
    try:
        reclaims = Reclaims()
        with pytest.raises(mf.SessionWriteLockTimeoutError) as info:
            await SessionWriteLock(
                path, acquire_timeout=0.3, stale_after=1800, observers=[reclaims]
            ).acquire()
        assert (info.value.owner_pid, info.value.owner_alive) == (child_pid, True)
        assert reclaims.seen == []
    finally:
        kill_pid(child_pid)
        parent.kill()
        parent.wait(timeout=10)


# --- item 6: stale breaking never makes two holders --------------------------------------

SKEWED = textwrap.dedent(
    """
    import sys, time
    skew = float(sys.argv[3])
    # The wall clock has stepped by `skew` seconds (NTP, a VM resumed): every reader sees it.
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + skew
    time.time_ns = lambda: _time_ns() + int(skew * 1e9)
    import anyio
    import model_fallback as mf
    from model_fallback.session import SessionWriteLock

    async def main(path, role):
        if role == "holder":
            lock = SessionWriteLock(path)
            await lock.acquire()
            print("held", flush=True)
            await anyio.sleep(60)
        else:
            try:
                await SessionWriteLock(path, acquire_timeout=0.5, stale_after=60).acquire()
                print("acquired", flush=True)
            except mf.SessionWriteLockTimeoutError as exc:
                print("refused", exc.owner_alive, flush=True)

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


@pytest.mark.parametrize(("holder_skew", "waiter_skew"), [(0, 3600), (-3600, 0)])
def test_wall_clock_step_does_not_break_a_young_live_lock(
    tmp_path: Path, holder_skew: int, waiter_skew: int
) -> None:
    """A live holder took the lock a moment ago; between its clock and the waiter's, the wall
    clock stepped by an hour. With stale_after=60 the waiter must still see a young holder and
    time out: lock age is measured on a clock that cannot step (CLOCK_BOOTTIME)."""
    path = tmp_path / "s.jsonl"
    holder, _ = start([sys.executable, "-c", SKEWED, str(path), "holder", str(holder_skew)])
    try:
        waiter = subprocess.run(
            [sys.executable, "-c", SKEWED, str(path), "waiter", str(waiter_skew)],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert waiter.returncode == 0, waiter.stderr
        assert waiter.stdout.split() == ["refused", "True"], "a young live lock was broken"
    finally:
        holder.kill()
        holder.wait(timeout=10)


BREAKER = textwrap.dedent(
    """
    import sys
    import anyio
    from model_fallback.session import SessionFile
    anyio.run(SessionFile(sys.argv[1], lock_timeout=5, stale_after=0.3).append, {"by": "breaker"})
    """
)


async def test_holder_whose_lock_was_broken_cannot_write(tmp_path: Path) -> None:
    """A slow live holder is broken by another process (older than its stale_after=0.3). The slow
    holder's next append, read and prompt release raise a takeover (its lock is lost) instead of
    writing as a second holder; the transcript holds only the breaker's entry after its own."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=2)
    async with sf.locked() as held:
        await held.append({"by": "slow"})
        await anyio.sleep(0.5)
        breaker = await anyio.run_process([sys.executable, "-c", BREAKER, str(path)], check=False)
        assert breaker.returncode == 0, breaker.stderr
        with pytest.raises(mf.SessionTakeoverError, match="broken") as info:
            await held.append({"by": "slow", "late": True})
        assert mf.coordination_kind(info.value) == "session_takeover"
        with pytest.raises(mf.SessionTakeoverError):
            await held.read()
        with pytest.raises(mf.SessionTakeoverError):
            async with held.released_for_prompt():
                pass
    assert [e["by"] for e in await sf.read()] == ["slow", "breaker"]


async def test_holder_broken_before_its_prompt_release_raises(tmp_path: Path) -> None:
    """The same, discovered at the release for the prompt: the fence would otherwise be taken
    over a file the breaker already changed, hiding that change."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=2)
    calls: list[str] = []

    async def run(c: mf.Candidate) -> str:
        calls.append(str(c))
        return "answer"

    async with sf.locked() as held:
        await held.append({"by": "slow"})
        await anyio.sleep(0.5)
        breaker = await anyio.run_process([sys.executable, "-c", BREAKER, str(path)], check=False)
        assert breaker.returncode == 0, breaker.stderr

        async def attempt(c: mf.Candidate) -> str:
            async with held.released_for_prompt():
                return await run(c)

        with pytest.raises(mf.SessionTakeoverError, match="broken"):
            await mf.run_with_model_fallback(attempt, ["a/x", "b/y"])
    assert calls == []


# --- item 15c: a holder in another PID namespace ------------------------------------------


def pid_namespace_prefix() -> list[str]:
    """The command prefix that runs a program as pid 1 of a new PID namespace; skipped (failed
    in CI) where that is impossible."""
    unshare = shutil.which("unshare")
    prefix = [str(unshare), "--pid", "--fork", "--mount-proc", "--kill-child"]
    if os.geteuid() != 0:
        prefix.insert(1, "-r")
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=10) if unshare else None
    if probe is None or probe.returncode != 0:
        msg = f"cannot create a PID namespace: {probe.stderr if probe else 'no unshare'}"
        if IN_CI:
            pytest.fail(f"CI=true and {msg}")
        pytest.skip(msg)
    return prefix


NS_HOLDER = textwrap.dedent(
    """
    import os, sys, time
    import anyio
    from model_fallback.session import SessionWriteLock
    lock = SessionWriteLock(sys.argv[1])
    anyio.run(lock.acquire)
    print("held", os.getpid(), flush=True)
    time.sleep(60)
    """
)


async def test_holder_in_another_pid_namespace_is_alive_unknown_not_dead(tmp_path: Path) -> None:
    """A holder in its own PID namespace is pid 1 there. Here pid 1 is another process (with
    another start time), so the old check called the holder dead (or recycled). It must be
    reported as alive-unknown (owner_alive=None), and its lock never broken for being "dead"."""
    prefix = pid_namespace_prefix()
    path = tmp_path / "s.jsonl"
    holder, (pid,) = start([*prefix, sys.executable, "-c", NS_HOLDER, str(path)])
    try:
        assert pid == "1"
        reclaims = Reclaims()
        with pytest.raises(mf.SessionWriteLockTimeoutError) as info:
            await SessionWriteLock(
                path, acquire_timeout=0.5, stale_after=1800, observers=[reclaims]
            ).acquire()
        assert (info.value.owner_pid, info.value.owner_alive) == (1, None)
        assert "another pid namespace" in str(info.value)
        assert reclaims.seen == []
    finally:
        holder.kill()  # unshare; --kill-child takes its child (pid 1 there) with it
        holder.wait(timeout=10)
