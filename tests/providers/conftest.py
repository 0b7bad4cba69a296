"""Fixtures for the provider error corpus: the loopback servers, started once per session.

Nothing here reaches beyond 127.0.0.1: litellm is told to use its bundled model cost map
(it would otherwise fetch one from the internet when imported), and every SDK is pointed at
a loopback base URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports litellm: no download of the model cost map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "CRITICAL")

from tests.providers._server import (
    ProviderServer,
    SilentServer,
    TLSServer,
    make_self_signed_cert,
)


@pytest.fixture(scope="session")
def provider_server() -> Iterator[ProviderServer]:
    """The canned-answer HTTP server on 127.0.0.1."""
    server = ProviderServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def silent_server() -> Iterator[SilentServer]:
    """A server that accepts connections and never answers."""
    server = SilentServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    """The canned-answer server behind TLS, with a self-signed certificate made for this run."""
    directory: Path = tmp_path_factory.mktemp("tls")
    cert, key = make_self_signed_cert(directory)
    server = TLSServer(cert, key).start()
    yield server
    server.stop()
