"""What the observer tests share: a scripted run, the in-memory OTel SDK, span and point lookups."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import model_fallback as mf

CHAIN = ["openai/gpt-4o", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"]
KEY = "sk-proj-Zx81kQ2mN7vB4cT9rW3yH6jL0pF5sD1a"


def http_error(status: int, message: str) -> Exception:
    e = Exception(message)
    e.status_code = status  # type: ignore[attr-defined]
    return e


def script(behaviour: dict[str, Any]) -> Any:
    async def run(c: mf.Candidate) -> str:
        b = behaviour.get(c.model, "ok")
        if isinstance(b, BaseException):
            raise b
        if callable(b):
            return str(await b(c))
        return f"{b} {c}"

    return run


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in exporter.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def long_names(n: int, size: int) -> list[str]:
    """*n* provider/model names of ~*size* characters that differ only at their very end."""
    return [f"{'p' * size}/{'m' * size}-{i}" for i in range(n)]
