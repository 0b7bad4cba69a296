"""Set up OpenTelemetry and Prometheus for an application or the CLI (never the library).

:func:`configure` reads the standard ``OTEL_*`` environment variables, builds an SDK
``TracerProvider`` (with a ``BatchSpanProcessor``) and ``MeterProvider`` when an exporter
is configured, optionally serves ``/metrics`` on 127.0.0.1, and returns a
:class:`Telemetry` handle whose :attr:`~Telemetry.observers` you pass to
:func:`~model_fallback.run_with_model_fallback`. It installs **no global providers**: the
providers are injected into the observers.

Environment (the OpenTelemetry SDK's names):

==================================  ==========================================================
``OTEL_SDK_DISABLED``               ``true``: no OTel observer at all
``OTEL_SERVICE_NAME``               ``service.name`` (default: the ``service_name`` argument)
``OTEL_RESOURCE_ATTRIBUTES``        extra resource attributes
``OTEL_EXPORTER_OTLP_ENDPOINT``     OTLP endpoint; when set, traces and metrics are exported
``OTEL_EXPORTER_OTLP_PROTOCOL``     ``http/protobuf`` (default here) or ``grpc``
``OTEL_TRACES_EXPORTER``            ``otlp`` (default when an endpoint is set), ``console``, ``none``
``OTEL_METRICS_EXPORTER``           ``otlp`` (default when an endpoint is set), ``console``, ``none``
``OTEL_METRIC_EXPORT_INTERVAL``     milliseconds between metric exports (SDK default 60000)
==================================  ==========================================================

An unreachable OTLP endpoint changes nothing for the caller: spans are queued and exported
by a background thread, and dropped when the queue is full.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from model_fallback._model import Candidate

__all__ = ["Telemetry", "configure"]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class Telemetry:
    """What :func:`configure` set up.

    Attributes:
        observers: pass these to the driver (and to session objects).
        prometheus_url: where ``/metrics`` is served, if it is.
        tracer_provider, meter_provider: the SDK providers, if OTel is on.
        prometheus: the PrometheusObserver, if any.
    """

    observers: tuple[object, ...] = ()
    prometheus_url: str | None = None
    tracer_provider: Any = None
    meter_provider: Any = None
    prometheus: Any = None
    _server: Any = field(default=None, repr=False)

    def shutdown(self) -> None:
        """Flush and stop exporters and the HTTP server (bounded; never raises)."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is None:
                continue
            try:
                provider.shutdown()
            except Exception:
                pass
        if self._server is not None:
            try:
                self._server.shutdown()
                self._server.server_close()
            except Exception:
                pass
            self._server = None


def configure(
    service_name: str = "model-fallback",
    *,
    prometheus_port: int | None = None,
    prometheus_addr: str = "127.0.0.1",
    candidates: Iterable[Candidate | str] = (),
    registry: Any = None,
    otel: bool | None = None,
) -> Telemetry:
    """Set up telemetry from the environment and arguments.

    Args:
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` is set.
        prometheus_port: serve ``/metrics`` on this port (``None``/0: don't serve, but still
            record into *registry* if a Prometheus observer is wanted — see *registry*).
        prometheus_addr: bind address of ``/metrics`` (loopback by default, on purpose).
        candidates: candidates whose metric label sets are created up front.
        registry: a ``prometheus_client`` registry (default: the global one).
        otel: force the OTel observer on/off (default: on when an OTLP endpoint or a
            traces/metrics exporter is configured and ``OTEL_SDK_DISABLED`` is not true).

    Raises:
        OSError: the Prometheus port cannot be bound (e.g. already in use).
    """
    handle = Telemetry()
    observers: list[object] = []
    chain = [c if isinstance(c, Candidate) else Candidate.parse(c) for c in candidates]

    if prometheus_port:
        from prometheus_client import REGISTRY, start_http_server

        from model_fallback.prometheus import PrometheusObserver

        reg = REGISTRY if registry is None else registry
        server, _thread = start_http_server(prometheus_port, addr=prometheus_addr, registry=reg)
        handle._server = server
        handle.prometheus_url = f"http://{prometheus_addr}:{prometheus_port}/metrics"
        handle.prometheus = PrometheusObserver(reg, candidates=chain)
        observers.append(handle.prometheus)

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    traces_exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp" if endpoint else "none").strip().lower()
    metrics_exporter = os.environ.get("OTEL_METRICS_EXPORTER", "otlp" if endpoint else "none").strip().lower()
    if otel is None:
        otel = not _env_flag("OTEL_SDK_DISABLED") and (
            traces_exporter != "none" or metrics_exporter != "none"
        )
    if otel:
        try:
            tp, mp = _sdk(service_name, traces_exporter, metrics_exporter)
        except ImportError as exc:
            raise RuntimeError(f"OpenTelemetry export needs 'model-fallback[otel]': {exc}") from exc
        from model_fallback.otel import OTelObserver

        handle.tracer_provider, handle.meter_provider = tp, mp
        # OTel first: its attempt span is current when the Prometheus observer takes exemplars.
        observers.insert(0, OTelObserver(tracer_provider=tp, meter_provider=mp))
    handle.observers = tuple(observers)
    return handle


def _protocol() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip().lower()


def _sdk(service_name: str, traces_exporter: str, metrics_exporter: str) -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    tp = TracerProvider(resource=resource)
    protocol = _protocol()
    if protocol not in ("http/protobuf", "grpc"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported (http/protobuf or grpc)")
    if traces_exporter == "otlp":
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpan

            tp.add_span_processor(BatchSpanProcessor(GrpcSpan()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpan

            tp.add_span_processor(BatchSpanProcessor(HttpSpan()))
    elif traces_exporter == "console":
        tp.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    readers = []
    if metrics_exporter == "otlp":
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetric,
            )

            readers.append(PeriodicExportingMetricReader(GrpcMetric()))
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetric,
            )

            readers.append(PeriodicExportingMetricReader(HttpMetric()))
    elif metrics_exporter == "console":
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    mp = MeterProvider(resource=resource, metric_readers=readers)
    return tp, mp
