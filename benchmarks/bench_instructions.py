"""Overhead in CPU instructions (valgrind callgrind): a measure the machine's noise cannot move.

Each row runs the same scenario as ``bench_overhead.py`` (429, 503, success) N times under
``valgrind --tool=callgrind`` and once with N = 0; the difference divided by N is the
instruction count of one request, and rows are compared as ratios, like the wall-clock
benchmark. Instructions are not time (cache misses and branch mispredictions are not
counted), but they repeat within ~1 % from run to run, so they show whether a change really made the
hot path cheaper.

Run: ``.venv/bin/python benchmarks/bench_instructions.py`` (needs valgrind; a few minutes).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HARNESS = """
import asyncio, sys
sys.path.insert(0, {bench!r})
import bench_overhead as b
import model_fallback as mf
from prometheus_client import CollectorRegistry
try:  # observers built once and shared by every run, as the docs recommend
    from model_fallback.events import ObserverSet
except ImportError:  # an older tree (before ObserverSet): a tuple, resolved once by identity
    ObserverSet = tuple

which, n = sys.argv[1], int(sys.argv[2])
if which == "bare":
    fn = b.bare
elif which == "driver":
    fn = lambda: mf.run_with_model_fallback(b.run, b.CHAIN)
elif which == "prometheus":
    obs = ObserverSet([b.PrometheusObserver(CollectorRegistry(), candidates=b.CHAIN)])
    fn = lambda: mf.run_with_model_fallback(b.run, b.CHAIN, observers=obs)
elif which == "floor":
    tp, mp = b.sdk()
    fn = b.floor_fn(tp, mp)
else:
    tp, mp = b.sdk()
    obs = ObserverSet([b.OTelObserver(tracer_provider=tp, meter_provider=mp)])
    fn = lambda: mf.run_with_model_fallback(b.run, b.CHAIN, observers=obs)

async def main():
    for _ in range(50):  # warm the caches the same way in the N = 0 run
        await fn()
    for _ in range(n):
        await fn()

asyncio.run(main())
"""


def count(harness: Path, which: str, n: int, tmp: Path) -> int:
    out = tmp / f"cg.{which}.{n}"
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(harness), which, str(n)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    m = re.search(r"refs:\s+([\d,]+)", proc.stderr)
    if not m:
        raise RuntimeError(f"callgrind failed for {which}: {proc.stderr[-2000:]}")
    return int(m.group(1).replace(",", ""))


def main() -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)")
        return 1
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        harness = tmp / "harness.py"
        harness.write_text(HARNESS.format(bench=str(Path(__file__).resolve().parent)))
        rows = [("bare", 3000), ("driver", 3000), ("prometheus", 2000), ("floor", 300), ("otel", 300)]
        per: dict[str, float] = {}
        for which, n in rows:
            per[which] = (count(harness, which, n, tmp) - count(harness, which, 0, tmp)) / n
            print(f"  measured {which}", file=sys.stderr)
    bare, floor = per["bare"], per["floor"]
    print(f"{'instructions per request (429, 503, success)':<46} {'instr':>10} {'× bare':>8} {'× floor':>8}")
    for name, label in (("bare", "bare for/try loop"), ("driver", "driver, no observers"),
                        ("prometheus", "driver + Prometheus"), ("floor", "SDK floor (no driver)"),
                        ("otel", "driver + OTel")):  # fmt: skip
        print(f"  {label:<44} {per[name]:10.0f} {per[name] / bare:8.2f} {per[name] / floor:8.3f}")
    print()
    print(f"  driver / bare        {per['driver'] / bare:6.2f}  (target <= 5)")
    print(f"  + Prometheus / bare  {per['prometheus'] / bare:6.2f}  (target <= 12)")
    print(f"  + OTel / floor       {per['otel'] / floor:6.3f}  (target <= 1.15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
