"""Session coordination with real files and real processes."""

from __future__ import annotations

import json
import os
import signal
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
from model_fallback.session import (
    SessionFile,
    SessionLockPathError,
    SessionWriteLock,
    fingerprint,
    run_embedded_turn,
)

pytestmark = pytest.mark.anyio

PREAMBLE = (
    "import anyio, json, os, sys, time\nfrom model_fallback.session import SessionFile, SessionWriteLock\n"
)


HOLDER = """
    async def main(path):
        lock = SessionWriteLock(path)
        await lock.acquire()
        print("held", flush=True)
        await anyio.sleep(600)
    anyio.run(main, sys.argv[1])
"""


def spawn(code: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PREAMBLE + textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )  # fmt: skip


def wait_line(proc: subprocess.Popen[str], expected: str, timeout: float = 30) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expected:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never saw {expected!r}; stderr: {proc.stderr.read() if proc.stderr else ''}")


class Events(ev.Observer):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def lock_acquired(self, e: ev.LockAcquired) -> None:
        self.seen.append(("acquired", e))

    def lock_timed_out(self, e: ev.LockTimedOut) -> None:
        self.seen.append(("timeout", e))

    def stale_lock_reclaimed(self, e: ev.StaleLockReclaimed) -> None:
        self.seen.append(("stale", e))

    def fence_checked(self, e: ev.FenceChecked) -> None:
        self.seen.append(("fence", e))

    def kinds(self, name: str) -> list[Any]:
        return [e for n, e in self.seen if n == name]


@pytest.mark.slow
def test_four_processes_append_600_whole_lines(tmp_path: Path) -> None:
    """4 processes × 150 appends of ~3 KB: exactly 600 valid lines, none lost, duplicated or torn."""
    path = tmp_path / "s.jsonl"
    code = """
        async def main(path, w):
            sf = SessionFile(path, lock_timeout=60)
            for i in range(150):
                await sf.append({"w": int(w), "i": i, "pad": chr(65 + int(w)) * 3000})
        anyio.run(main, sys.argv[1], sys.argv[2])
    """
    procs = [spawn(code, str(path), str(w)) for w in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    raw = path.read_bytes().split(b"\n")
    assert raw[-1] == b""
    entries = [json.loads(line) for line in raw[:-1]]
    assert len(entries) == 600
    assert sorted((e["w"], e["i"]) for e in entries) == [(w, i) for w in range(4) for i in range(150)]
    assert all(e["pad"] == chr(65 + e["w"]) * 3000 for e in entries)
    for w in range(4):  # each writer's own appends stay in order
        assert [e["i"] for e in entries if e["w"] == w] == list(range(150))


@pytest.mark.slow
def test_four_processes_increment_a_counter_to_400(tmp_path: Path) -> None:
    """Read-modify-write under the lock from 4 processes: mutual exclusion, not just atomic appends."""
    path = tmp_path / "counter.jsonl"
    counter = tmp_path / "counter.txt"
    counter.write_text("0")
    code = """
        async def main(path, counter):
            for _ in range(100):
                async with SessionWriteLock(path, acquire_timeout=60):
                    n = int(open(counter).read())
                    await anyio.sleep(0)
                    with open(counter, "w") as f:
                        f.write(str(n + 1))
        anyio.run(main, sys.argv[1], sys.argv[2])
    """
    procs = [spawn(code, str(path), str(counter)) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert counter.read_text() == "400"


async def test_tasks_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    """Many tasks in one process: never two holders at once."""
    path = tmp_path / "s.jsonl"
    holders = 0
    peak = 0

    async def task() -> None:
        nonlocal holders, peak
        for _ in range(20):
            async with SessionWriteLock(path, acquire_timeout=30):
                holders += 1
                peak = max(peak, holders)
                await anyio.sleep(0.001)
                holders -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(task)
    assert peak == 1


async def test_sigkilled_holder_never_blocks_and_is_reported(tmp_path: Path) -> None:
    """A holder killed with SIGKILL: the next acquirer gets the lock at once, reclaim reported."""
    path = tmp_path / "s.jsonl"
    holder = spawn(
        HOLDER,
        str(path),
    )
    try:
        wait_line(holder, "held")
        pid = holder.pid
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
    events = Events()
    t0 = time.monotonic()
    async with SessionWriteLock(path, acquire_timeout=5, observers=[events]) as lock:
        assert time.monotonic() - t0 < 1.0
        assert lock.held
    stale = events.kinds("stale")
    assert len(stale) == 1 and stale[0].reason == "dead_pid" and stale[0].owner_pid == pid
    # a normal release leaves nothing to reclaim
    events2 = Events()
    async with SessionWriteLock(path, acquire_timeout=5, observers=[events2]):
        pass
    assert events2.kinds("stale") == []


async def test_live_holder_times_out_a_short_acquire_without_blocking_the_loop(tmp_path: Path) -> None:
    """A live holder: a 0.3 s acquire fails within a second naming path and pid; the loop keeps running."""
    path = tmp_path / "s.jsonl"
    holder = spawn(
        HOLDER,
        str(path),
    )
    try:
        wait_line(holder, "held")
        ticks = 0
        events = Events()

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.01)
                ticks += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            t0 = time.monotonic()
            with pytest.raises(mf.SessionWriteLockTimeoutError) as info:
                await SessionWriteLock(path, acquire_timeout=0.3, observers=[events]).acquire()
            elapsed = time.monotonic() - t0
            tg.cancel_scope.cancel()
        err = info.value
        assert 0.3 <= elapsed < 1.0
        assert ticks >= 10, "the event loop was blocked while waiting"
        assert err.path == str(path) and err.owner_pid == holder.pid and err.owner_alive is True
        assert str(path) in str(err) and f"pid={holder.pid}" in str(err)
        assert err.waited_s is not None and err.waited_s >= 0.3
        assert mf.coordination_kind(err) == "write_lock_timeout"
        assert len(events.kinds("timeout")) == 1
    finally:
        holder.kill()
        holder.wait(timeout=10)


async def test_stuck_live_holder_is_broken_after_stale_after(tmp_path: Path) -> None:
    """stale_after bounds a live holder that is stuck: its lock is broken and reported."""
    path = tmp_path / "s.jsonl"
    holder = spawn(
        HOLDER,
        str(path),
    )
    try:
        wait_line(holder, "held")
        events = Events()
        await anyio.sleep(0.6)
        async with SessionWriteLock(path, acquire_timeout=5, stale_after=0.5, observers=[events]) as lock:
            assert lock.held
        assert [e.reason for e in events.kinds("stale")] == ["too_old"]
    finally:
        holder.kill()
        holder.wait(timeout=10)


async def test_symlinked_lock_path_is_refused(tmp_path: Path) -> None:
    """A symlink at the lock path (or the session path) is refused, not followed."""
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    path = tmp_path / "s.jsonl"
    Path(f"{path}.lock").symlink_to(target)
    with pytest.raises(SessionLockPathError, match="symlink"):
        await SessionWriteLock(path, acquire_timeout=1).acquire()
    assert target.read_text() == "precious"
    path2 = tmp_path / "t.jsonl"
    path2.symlink_to(target)
    with pytest.raises(SessionLockPathError, match="symlink"):
        await SessionFile(path2, lock_timeout=1).append({"x": 1})
    assert target.read_text() == "precious"


async def test_unwritable_directory_is_a_clear_permission_error(tmp_path: Path) -> None:
    """A directory that cannot be written: PermissionError at once, naming it; no hang."""
    if os.geteuid() == 0:
        path = Path("/sys/model-fallback-test/s.jsonl")  # sysfs: not writable even by root
        parent_missing = not path.parent.exists()
        if parent_missing:
            path = Path("/sys/s.jsonl")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        path = ro / "s.jsonl"
    t0 = time.monotonic()
    with pytest.raises(PermissionError, match="not writable"):
        await SessionWriteLock(path, acquire_timeout=30).acquire()
    assert time.monotonic() - t0 < 1


async def test_read_reports_a_torn_last_line(tmp_path: Path) -> None:
    """read() returns the entries and reports a torn tail; the next append starts a fresh line."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=5)
    await sf.append({"a": 1})
    with open(path, "ab") as f:
        f.write(b'{"b": 2, "trunc')
    t = await sf.read()
    assert t == [{"a": 1}] and t.torn_tail == '{"b": 2, "trunc' and not t.clean
    await sf.append({"c": 3})
    t2 = await sf.read()
    assert t2 == [{"a": 1}, {"c": 3}]
    assert t2.invalid_lines == (2,) and t2.torn_tail is None


async def test_takeover_by_another_process(tmp_path: Path) -> None:
    """Another process appending while the prompt lock is released raises SessionTakeoverError."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=5)
    events = Events()
    sf.observers = ev.ObserverSet([events])
    with pytest.raises(mf.SessionTakeoverError) as info:
        async with sf.locked() as held:
            await held.append({"role": "user", "content": "hi"})
            async with held.released_for_prompt():
                writer = await anyio.run_process(
                    [sys.executable, "-c", PREAMBLE + "anyio.run(SessionFile(sys.argv[1]).append, {'by': 'other'})", str(path)]
                )  # fmt: skip
                assert writer.returncode == 0
    err = info.value
    assert err.path == str(path) and err.before != err.after
    assert err.after.size > err.before.size
    fences = events.kinds("fence")
    assert len(fences) == 1 and fences[0].takeover


async def test_takeover_by_another_session_file_in_process(tmp_path: Path) -> None:
    """A different SessionFile object in the same process is 'someone else' too."""
    path = tmp_path / "s.jsonl"
    sf, other = SessionFile(path, lock_timeout=5), SessionFile(path, lock_timeout=5)
    with pytest.raises(mf.SessionTakeoverError):
        async with sf.locked() as held, held.released_for_prompt():
            await other.append({"by": "other"})


async def test_untouched_and_own_writes_are_not_takeovers(tmp_path: Path) -> None:
    """An untouched file, and this holder's own writes before, during and after, pass the fence."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=5)
    async with sf.locked() as held:
        await held.append({"n": 1})
        async with held.released_for_prompt():
            await anyio.sleep(0.01)
        await held.append({"n": 2})
        async with held.released_for_prompt():
            await held.append({"n": 3})
            await held.append({"n": 4})
        await held.append({"n": 5})
        assert held.holding
    assert [e["n"] for e in await sf.read()] == [1, 2, 3, 4, 5]


async def test_body_error_keeps_the_takeover_in_its_chain(tmp_path: Path) -> None:
    """If the prompt raised, that error propagates with the takeover in its chain; later use is poisoned."""
    path = tmp_path / "s.jsonl"
    sf, other = SessionFile(path, lock_timeout=5), SessionFile(path, lock_timeout=5)
    provider_error = RuntimeError("upstream said no")
    async with sf.locked() as held:
        with pytest.raises(RuntimeError) as info:
            async with held.released_for_prompt():
                await other.append({"by": "other"})
                raise provider_error
        assert info.value is provider_error
        assert mf.coordination_kind(info.value) == "session_takeover"
        with pytest.raises(mf.SessionTakeoverError):
            async with held.released_for_prompt():
                pass
        with pytest.raises(mf.SessionTakeoverError):
            await held.append({"late": True})


async def test_reacquire_timeout_is_a_coordination_error(tmp_path: Path) -> None:
    """Losing the lock to a long holder while released: SessionWriteLockTimeoutError on re-acquire."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=0.2)
    async with sf.locked() as held:
        with pytest.raises(mf.SessionWriteLockTimeoutError):
            async with held.released_for_prompt():
                intruder = SessionWriteLock(path, acquire_timeout=1)
                await intruder.acquire()
        assert not held.holding
        intruder.release()
        with pytest.raises(mf.SessionWriteLockTimeoutError):
            await held.append({"late": True})


async def test_embedded_turn_stops_on_a_mid_prompt_change(tmp_path: Path) -> None:
    """The turn helper, with the session changed mid-prompt, calls the first candidate only and raises the takeover."""
    path = tmp_path / "s.jsonl"
    sf, other = SessionFile(path, lock_timeout=5), SessionFile(path, lock_timeout=5)
    calls: list[mf.Candidate] = []

    async def run(c: mf.Candidate) -> str:
        calls.append(c)
        await other.append({"role": "system", "content": "compacted"})
        return "reply"

    with pytest.raises(mf.SessionTakeoverError) as info:
        await run_embedded_turn(
            sf, {"role": "user", "content": "hi"}, run, ["openai/gpt-4o", "anthropic/claude", "google/gemini"]
        )
    assert [str(c) for c in calls] == ["openai/gpt-4o"]
    assert "All models failed" not in str(info.value)
    entries = await sf.read()
    assert [e.get("role") for e in entries] == ["user", "system"]  # no reply appended


async def test_embedded_turn_happy_path_and_fallback(tmp_path: Path) -> None:
    """Without interference: user entry, fallback over a 429, reply entry with the serving model."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=5)

    async def run(c: mf.Candidate) -> str:
        if c.provider == "openai":
            e = Exception("Too Many Requests")
            e.status = 429  # type: ignore[attr-defined]
            raise e
        return f"hello from {c}"

    result = await run_embedded_turn(
        sf, {"role": "user", "content": "hi"}, run, ["openai/gpt-4o", "anthropic/claude"]
    )
    assert result.fallback_depth == 1
    entries = await sf.read()
    assert entries == [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "hello from anthropic/claude",
            "model": "anthropic/claude",
            "fallback_depth": 1,
        },
    ]


@pytest.mark.slow
def test_lock_chaos_sigkill_during_appends(tmp_path: Path) -> None:
    """Writers killed with SIGKILL at random points: every acknowledged append is present, no
    torn line is returned as valid, and the next writer proceeds."""
    path = tmp_path / "s.jsonl"
    code = """
        async def main(path, w):
            sf = SessionFile(path, lock_timeout=60)
            i = 0
            while True:
                await sf.append({"w": w, "i": i, "pad": "z" * 2000})
                print(f"ack {i}", flush=True)
                i += 1
        anyio.run(main, sys.argv[1], sys.argv[2])
    """
    import random

    rng = random.Random(5)
    acked: dict[str, int] = {}
    for round_ in range(6):
        procs = {f"{round_}-{k}": spawn(code, str(path), f"{round_}-{k}") for k in range(3)}
        time.sleep(0.2 + rng.random() * 0.3)
        for p in procs.values():
            p.send_signal(signal.SIGKILL)
        for w, p in procs.items():
            out, _ = p.communicate(timeout=30)
            acks = [int(line.split()[1]) for line in out.splitlines() if line.startswith("ack ")]
            acked[w] = max(acks) if acks else -1
    final = SessionFile(path, lock_timeout=10)
    anyio.run(final.append, {"w": "final", "i": 0})
    entries = anyio.run(final.read)
    seen: dict[str, set[int]] = {}
    for e in entries:
        seen.setdefault(str(e["w"]), set()).add(int(e["i"]))
        if e["w"] != "final":
            assert e["pad"] == "z" * 2000
    for w, last in acked.items():
        assert set(range(last + 1)) <= seen.get(w, set()), f"acknowledged appends of {w} are missing"
    assert seen["final"] == {0}


def test_fingerprint_is_one_stat(tmp_path: Path) -> None:
    """The fingerprint comes from one stat: a 1 GB sparse file costs the same as an empty one."""
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    fp = fingerprint(big)
    assert fp.exists and fp.size == 1 << 30
    assert not fingerprint(tmp_path / "missing").exists
