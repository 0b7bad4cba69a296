"""Core benchmarks: the classifier, and many concurrent runs in one task group.

Run: ``.venv/bin/python benchmarks/bench_core.py`` (add ``--quick`` for a short run).

Prints µs per classification for a plain error, a 25-deep chain and a message-only error
(with a bare ``isinstance`` check as the baseline in the same process), then wall time and
memory for 10 000 concurrent runs in one anyio task group, five rounds, to show that
memory stays flat from round to round.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import timeit
from typing import Any

import anyio
import anyio.lowlevel

import model_fallback as mf
from model_fallback.classify import analyze
from model_fallback.classify._types import CACHED


def _rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _per_call_us(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def bench_classifier(number: int) -> None:
    plain = Exception("Too Many Requests")
    plain.status = 429  # type: ignore[attr-defined]

    class TooManyRequests(Exception):  # noqa: N818 - named as SDKs name theirs
        status = 429

    leaf = TooManyRequests("Too Many Requests")  # an SDK-style class with its status on the class

    inner: BaseException = mf.SessionWriteLockTimeoutError(path="/s/a.jsonl", waited_s=60, owner_pid=1)
    for i in range(24):
        outer = RuntimeError(f"layer {i}")
        outer.__cause__ = inner
        inner = outer
    deep = inner
    message_only = ValueError("Rate limit reached for gpt-4o in organization org-x on tokens per min")

    def uncached(err: BaseException) -> Any:
        def run() -> Any:
            CACHED.leaves.clear()
            return analyze(err)

        return run

    baseline = _per_call_us(lambda: isinstance(plain, TimeoutError), number)
    rows = [
        ("isinstance() baseline", baseline),
        ("repeated 429, status on the class", _per_call_us(lambda: analyze(leaf), number)),
        ("plain 429 (cached leaf)", _per_call_us(lambda: analyze(plain), number)),
        ("plain 429 (cold)", _per_call_us(uncached(plain), number // 4)),
        ("plain 429, provider hint (cached)", _per_call_us(lambda: analyze(plain, "openai"), number)),
        ("message-only (cached leaf)", _per_call_us(lambda: analyze(message_only), number)),
        ("message-only (cold)", _per_call_us(uncached(message_only), number // 4)),
        ("25-deep chain to a lock timeout", _per_call_us(lambda: analyze(deep), number // 4)),
    ]
    print("classifier                              µs/call   × baseline")
    for name, us in rows:
        print(f"  {name:<36} {us:8.2f}   {us / baseline:8.1f}")


async def _round(n: int) -> tuple[int, int]:
    chain = ["openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"]
    ok = failed = 0

    async def run(c: mf.Candidate) -> str:
        await anyio.lowlevel.checkpoint()
        if c.provider == "openai":
            e = Exception("Too Many Requests")
            e.status = 429  # type: ignore[attr-defined]
            raise e
        return "ok"

    async def one() -> None:
        nonlocal ok, failed
        try:
            await mf.run_with_model_fallback(run, chain)
            ok += 1
        except Exception:
            failed += 1

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return ok, failed


def bench_concurrency(n: int, rounds: int) -> None:
    print(f"\n{n} concurrent runs in one task group (429 then success), {rounds} rounds")
    gc.collect()
    base = _rss_mib()
    print(f"  RSS before: {base:.1f} MiB")
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        ok, failed = anyio.run(_round, n)
        wall = time.perf_counter() - t0
        gc.collect()
        print(
            f"  round {r}: {wall:6.2f} s wall ({n / wall:8.0f} runs/s)  ok={ok} failed={failed}  "
            f"RSS {_rss_mib():7.1f} MiB  peak {_peak_rss_mib():7.1f} MiB"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, model-fallback {mf.__version__}")
    bench_classifier(2_000 if args.quick else 20_000)
    bench_concurrency(2_000 if args.quick else 10_000, 2 if args.quick else 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
