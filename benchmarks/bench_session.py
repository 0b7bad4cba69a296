"""Session lock and fence benchmarks.

Uncontended acquire+release of a SessionWriteLock; one append through ``SessionFile.append``
(its own lock) and through a held session; contended throughput with 4 processes doing
acquire/append/release; fingerprint time versus file size (1 KB ... 1 GB sparse: it is one
stat, so it must stay flat); a whole turn's session work. A bare ``os.stat`` and a bare
``flock`` pair are the baselines measured in the same process.

Run: ``.venv/bin/python benchmarks/bench_session.py``.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from pathlib import Path

import anyio

from model_fallback.session import SessionFile, SessionWriteLock, fingerprint


def us(fn: object, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


async def acquire_release(lock: SessionWriteLock, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await lock.acquire()
        lock.release()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    d = Path(tempfile.mkdtemp(prefix="mf-bench-"))
    path = d / "s.jsonl"
    lock = SessionWriteLock(path, acquire_timeout=10)
    fd = os.open(d / "raw.lock", os.O_RDWR | os.O_CREAT)

    def raw() -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)

    base = us(raw, 20000)
    ours = min(anyio.run(acquire_release, lock, 5000) for _ in range(3))
    print("uncontended lock                          µs/op    × bare flock")
    print(f"  bare flock LOCK_EX|LOCK_NB + LOCK_UN   {base:8.2f}    1.0")
    print(f"  SessionWriteLock acquire + release     {ours:8.2f}    {ours / base:.1f}")

    async def appends() -> tuple[float, float]:
        sf = SessionFile(d / "append.jsonl", lock_timeout=10)
        n = 3000
        entry = {"role": "assistant", "content": "x" * 200}
        t0 = time.perf_counter()
        for _ in range(n):
            await sf.append(entry)
        own = (time.perf_counter() - t0) / n * 1e6
        async with sf.locked() as held:
            t0 = time.perf_counter()
            for _ in range(n):
                await held.append(entry)
            in_held = (time.perf_counter() - t0) / n * 1e6
        return own, in_held

    own, in_held = min(anyio.run(appends) for _ in range(3))
    print("\none ~230-byte append                    µs/op")
    print(f"  SessionFile.append (lock + write)      {own:8.2f}")
    print(f"  held.append (lock already held)        {in_held:8.2f}")

    code = textwrap.dedent(
        """
        import anyio, sys, time
        from model_fallback.session import SessionFile
        async def main(path):
            sf = SessionFile(path, lock_timeout=60)
            for i in range(300):
                await sf.append({"i": i, "pad": "x" * 200})
        anyio.run(main, sys.argv[1])
        """
    )
    contended = d / "contended.jsonl"
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code, str(contended)]) for _ in range(4)]
    for p in procs:
        p.wait()
    wall = time.perf_counter() - t0
    lines = len(contended.read_text().splitlines())
    print(
        f"\ncontended: 4 processes x 300 locked appends = {lines} lines in {wall:.2f} s "
        f"({lines / wall:.0f} appends/s, including interpreter start-up)"
    )

    print("\nfingerprint (one lstat) vs file size        µs/call    × bare os.stat")
    for size, label in ((1 << 10, "1 KB"), (1 << 20, "1 MB"), (1 << 30, "1 GB sparse")):
        f = d / f"f{size}"
        with open(f, "wb") as fh:
            fh.truncate(size)
        bare = us(lambda f=f: os.stat(f, follow_symlinks=False), 50000)
        t = us(lambda f=f: fingerprint(f), 50000)
        print(f"  {label:<12} bare {bare:6.2f}   fingerprint {t:6.2f}   {t / bare:5.1f}")

    async def turn_cost() -> float:
        sf = SessionFile(d / "turn.jsonl", lock_timeout=10)
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            async with sf.locked() as held:
                await held.append({"role": "user", "content": "hi"})
                async with held.released_for_prompt():
                    pass
                await held.append({"role": "assistant", "content": "hello"})
        return (time.perf_counter() - t0) / n * 1e6

    turn = min(anyio.run(turn_cost) for _ in range(3))
    print(f"\nlock + append + release-for-prompt + re-acquire/verify + append: {turn:.1f} µs per turn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
