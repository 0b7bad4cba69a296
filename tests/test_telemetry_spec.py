"""telemetry_spec against the contract: DESIGN §6 (and §9's streaming series) are parsed, not
copied, so neither can drift."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from model_fallback import FailoverReason, Outcome
from model_fallback import telemetry_spec as spec
from model_fallback.events import RunOutcome


def _section(design: str, number: int) -> str:
    start = design.index(f"\n## {number}.")
    end = design.find("\n## ", start + 1)
    return design[start : end if end > 0 else None]


@pytest.fixture(scope="module")
def telemetry_contract(contract_dir: Path) -> str:
    return _section((contract_dir / "DESIGN.md").read_text(encoding="utf-8"), 6)


@pytest.fixture(scope="module")
def streaming_contract(contract_dir: Path) -> str:
    return _section((contract_dir / "DESIGN.md").read_text(encoding="utf-8"), 9)


def streaming_series(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """§9 names its series in prose: `name{label,label}` followed by (histogram) or (counter),
    possibly across a line break."""
    found = re.findall(r"`(model_fallback_\w+)\{([\w,\s]*)\}`\s*\((counter|histogram)\)", text)
    return [
        (name, kind, tuple(k.strip() for k in labels.split(",") if k.strip())) for name, labels, kind in found
    ]


def test_every_series_of_the_contract_with_its_type_and_labels(
    telemetry_contract: str, streaming_contract: str
) -> None:
    """The §6 table, then §9's streaming series, and telemetry_spec list the same series, types
    and label keys, in order."""
    rows = re.findall(
        r"^\| `(model_fallback_\w+)` \| (counter|histogram) \| ([^|]*)\|", telemetry_contract, re.M
    )
    assert len(rows) == 13, rows
    contract = []
    for name, kind, labels in rows:
        # "kind (candidates left untried ...)", "(index of ...)", "—": keep the label words only.
        keys = tuple(k.strip() for k in re.sub(r"\(.*?\)|—", "", labels).split(",") if k.strip())
        contract.append((name, kind, keys))
    streaming = streaming_series(streaming_contract)
    assert [name for name, _, _ in streaming] == [
        "model_fallback_time_to_first_chunk_seconds",
        "model_fallback_stream_interruptions_total",
    ]
    assert [(m.prometheus, m.kind, m.labels) for m in spec.METRICS] == contract + streaming


def test_streaming_series_parser_reads_the_prose() -> None:
    """The §9 parser takes the type after a line break and ignores names without labels or type."""
    text = "series `model_fallback_a_seconds{provider,\n model}`\n  (histogram) and `model_fallback_b`."
    assert streaming_series(text) == [("model_fallback_a_seconds", "histogram", ("provider", "model"))]


def test_otel_names_translate_to_the_prometheus_names() -> None:
    """The standard translation rule (dots to underscores, ``s`` to ``_seconds``, braced units
    dropped, ``_total`` on counters) maps every OTel instrument onto its series."""
    for m in (*spec.METRICS, *spec.GENAI_METRICS):
        base = m.otel.replace(".", "_")
        if m.unit == "s":
            base += "_seconds"
        else:
            assert m.unit.startswith("{") and m.unit.endswith("}"), m
        assert (base + "_total" if m.kind == "counter" else base) == m.prometheus, m
        assert m.description.endswith("."), m


def test_span_names_attributes_and_vocabulary(telemetry_contract: str) -> None:
    """Every span name and attribute key the contract names is in the spec; values match the enums."""
    names = set(re.findall(r"`((?:gen_ai|model_fallback|error)\.[\w.]+)`", telemetry_contract))
    keys = {v for k, v in vars(spec.ATTRIBUTES).items() if k.isupper()}
    spans = {spec.SPAN_RUN, spec.SPAN_LOCK_ACQUIRE, spec.SPAN_FENCE_VERIFY}
    assert names - keys - spans == set()
    assert "model_fallback.run" in names
    assert set(spec.RUN_OUTCOMES) == {o.value for o in RunOutcome}
    assert set(spec.ATTEMPT_OUTCOMES) == {o.value for o in Outcome}
    assert spec.REASON_NONE not in {r.value for r in FailoverReason}
    assert spec.GENAI_DURATION_BUCKETS[0] == 0.01 and spec.GENAI_DURATION_BUCKETS[-1] == 81.92
    assert all(
        b == a * 2 for a, b in zip(spec.GENAI_DURATION_BUCKETS, spec.GENAI_DURATION_BUCKETS[1:], strict=False)
    )
    for m in spec.METRICS:
        assert list(m.buckets) == sorted(set(m.buckets)) and (m.kind == "histogram") == bool(m.buckets), m


def test_stdlib_only() -> None:
    """Importing the spec loads neither OpenTelemetry nor prometheus_client (dashboards/rules read it)."""
    code = (
        "import sys, model_fallback.telemetry_spec, model_fallback._redact\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'prometheus_client'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_genai_names_are_the_semantic_conventions() -> None:
    """The gen_ai.* names of the spec are the ones the OpenTelemetry semantic-conventions package
    defines (v1.41 is the last release with the GenAI conventions in the main repository), the
    streaming ones included; the chunk count, which semconv does not name, is model_fallback.*."""
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as g
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm

    a = spec.ATTRIBUTES
    assert a.GEN_AI_OPERATION_NAME == g.GEN_AI_OPERATION_NAME
    assert a.GEN_AI_PROVIDER_NAME == g.GEN_AI_PROVIDER_NAME
    assert a.GEN_AI_REQUEST_MODEL == g.GEN_AI_REQUEST_MODEL
    assert a.GEN_AI_RESPONSE_MODEL == g.GEN_AI_RESPONSE_MODEL
    assert a.GEN_AI_REQUEST_STREAM == g.GEN_AI_REQUEST_STREAM
    assert a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK == g.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
    assert spec.GENAI_OPERATION_DURATION.otel == gm.GEN_AI_CLIENT_OPERATION_DURATION
    assert spec.GENAI_TIME_TO_FIRST_CHUNK.otel == gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK
    assert a.STREAM_CHUNKS.startswith("model_fallback.")
    assert not [n for n in dir(g) if "CHUNK" in n and "COUNT" in n]
