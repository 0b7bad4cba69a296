"""Shared fixtures: the anyio backend, conformance data, and external-tool lookup."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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
def shared_dir() -> Path:
    """The project's shared/ folder (DESIGN.md, conformance cases)."""
    if not SHARED.is_dir():
        pytest.fail(f"shared/ not found next to the repository at {SHARED}")
    return SHARED
