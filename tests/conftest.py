"""Shared fixtures: the anyio backend, the contract data, external-tool lookup, and a
guard that no test reads outside the checkout.

The repository stands alone: the design contract (``docs/contract/DESIGN.md``) and the
conformance cases (``tests/data/conformance/``) the tests need are copies kept in it
(``scripts/sync-contract`` refreshes them from the project's shared folder).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CONTRACT = ROOT / "docs" / "contract"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Paths opened by this process in the checkout's parent folder but outside the checkout.
OUTSIDE_READS: list[str] = []
_PARENT = str(ROOT.parent) + os.sep
_INSIDE = str(ROOT) + os.sep


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not args:
        return
    path = args[0]
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return
    full = os.path.abspath(path) if not os.path.isabs(path) else path
    if full.startswith(_PARENT) and not (full + os.sep).startswith(_INSIDE):
        OUTSIDE_READS.append(full)


sys.addaudithook(_audit)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test opened a file beside the checkout (the project's shared folder)."""
    outside = [p for p in OUTSIDE_READS if not p.endswith("outside-probe")]
    if outside:
        sys.stderr.write(f"\ntests opened files outside the checkout: {sorted(set(outside))[:10]}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the backend the library is exercised on)."""
    return "asyncio"


def require_tool(name: str, env_var: str | None = None) -> str:
    """Return the path of an external tool, or skip (locally) / fail (in CI) when missing.

    ``env_var`` names an environment variable that may point at the binary (for example
    ``MF_OTELCOL`` set by ``scripts/test`` after building the collector).
    """
    if env_var and os.environ.get(env_var):
        path = os.environ[env_var]
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return found
    msg = f"{name} is not installed (scripts/test installs or builds it)"
    if IN_CI:
        pytest.fail(f"CI=true and {msg}")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def contract_dir() -> Path:
    """The folder of the design contract kept in the repository (docs/contract/DESIGN.md)."""
    return CONTRACT


@pytest.fixture
def otel() -> Any:
    """An OTelObserver on an in-memory SDK: ``(observer, span exporter, metric reader, tracer provider)``."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from model_fallback.otel import OTelObserver

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield OTelObserver(tracer_provider=tp, meter_provider=mp), exporter, reader, tp
    tp.shutdown()
    mp.shutdown()
