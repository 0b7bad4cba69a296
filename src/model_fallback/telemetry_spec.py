"""Every metric, label, span name and span attribute of model-fallback, in one place.

Standard library only: the Prometheus observer, the OpenTelemetry observer, the dashboards
generator, the alert rules and the tests all read this module. The OTel instrument names
and units are chosen so that the standard OTel→Prometheus translation (the Python
``opentelemetry-exporter-prometheus`` reader and the Collector's Prometheus exporter:
dots to underscores, ``s`` → ``_seconds``, braced units dropped, ``_total`` on counters)
yields exactly the Prometheus names below, with the same label keys; so one set of
dashboards serves both pipelines (the Python OTel Prometheus reader adds ``otel_scope_*``
labels; the Collector config drops them with ``without_scope_info: true``).

Span attribute names follow the OpenTelemetry GenAI semantic conventions v1.41.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ATTEMPT_OUTCOMES",
    "ATTRIBUTES",
    "GENAI_DURATION_BUCKETS",
    "GENAI_METRICS",
    "GENAI_OPERATION_DURATION",
    "GENAI_TIME_TO_FIRST_CHUNK",
    "METRICS",
    "NAMESPACE",
    "OTHER",
    "REASON_NONE",
    "RUN_OUTCOMES",
    "SCHEMA_URL",
    "SPAN_FENCE_VERIFY",
    "SPAN_LOCK_ACQUIRE",
    "SPAN_RUN",
    "MetricSpec",
]

NAMESPACE = "model_fallback"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
OTHER = "_other"
"""Label value for providers/models beyond the cardinality cap."""
REASON_NONE = "none"
"""``reason`` label value when there is no reason (success, cancellation)."""

GENAI_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""The GenAI semconv bucket advice for operation durations, in seconds."""

DEPTH_BUCKETS: tuple[float, ...] = (0, 1, 2, 3, 4, 5, 7, 10)
"""Buckets of the fallback depth histogram (index of the candidate that served)."""

RUN_OUTCOMES: tuple[str, ...] = (
    "success", "exhausted", "coordination_abort", "cancelled", "aborted", "caller_error", "interrupted",
)  # fmt: skip
ATTEMPT_OUTCOMES: tuple[str, ...] = (
    "success", "provider_failure", "coordination_abort", "cancelled", "aborted", "skipped", "caller_error",
)  # fmt: skip
COORDINATION_KINDS: tuple[str, ...] = ("session_takeover", "write_lock_timeout", "session_io")
STALE_REASONS: tuple[str, ...] = (
    "dead_pid", "recycled_pid", "too_old", "kernel_released", "orphan_self", "foreign_host",
    "invalid_metadata",
)  # fmt: skip
TELEMETRY_COMPONENTS: tuple[str, ...] = ("otel", "prometheus", "cooldown_store")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric.

    Attributes:
        prometheus: the series name as Prometheus stores it (counters end in ``_total``,
            histograms are the base of ``_bucket``/``_sum``/``_count``).
        otel: the OpenTelemetry instrument name.
        kind: ``counter`` or ``histogram``.
        unit: the OTel unit (UCUM; braces for dimensionless annotations).
        description: what it counts; also the HELP text.
        labels: label keys (identical on both pipelines).
        buckets: histogram bucket boundaries.
    """

    prometheus: str
    otel: str
    kind: Literal["counter", "histogram"]
    unit: str
    description: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def base(self) -> str:
        """The Prometheus name without ``_total`` (what prometheus_client is given)."""
        return self.prometheus.removesuffix("_total")


def _c(name: str, otel: str, unit: str, description: str, *labels: str) -> MetricSpec:
    return MetricSpec(
        f"{NAMESPACE}_{name}_total", f"{NAMESPACE}.{otel}", "counter", unit, description, labels
    )


def _h(
    name: str, otel: str, unit: str, description: str, buckets: tuple[float, ...], *labels: str
) -> MetricSpec:
    return MetricSpec(
        f"{NAMESPACE}_{name}", f"{NAMESPACE}.{otel}", "histogram", unit, description, labels, buckets
    )


RUNS = _c("runs", "runs", "{run}", "Fallback runs by how they ended.", "outcome")
ATTEMPTS = _c(
    "attempts",
    "attempts",
    "{attempt}",
    "Candidate attempts by provider, model, outcome and reason (a FailoverReason, the coordination "
    "kind for coordination aborts, or none).",
    "provider",
    "model",
    "outcome",
    "reason",
)
COORDINATION_ABORTS = _c(
    "coordination_aborts",
    "coordination_aborts",
    "{run}",
    "Runs stopped at once by a local coordination error (not a model failure), by kind.",
    "kind",
)
FALLBACKS_AVOIDED = _c(
    "fallbacks_avoided",
    "fallbacks_avoided",
    "{candidate}",
    "Candidates left untried because a coordination abort stopped the run, by kind.",
    "kind",
)
COOLDOWN_SKIPS = _c(
    "cooldown_skips",
    "cooldown_skips",
    "{candidate}",
    "Candidates skipped because they were cooling down, by provider, model and cooldown reason.",
    "provider",
    "model",
    "reason",
)
ATTEMPT_DURATION = _h(
    "attempt_duration_seconds",
    "attempt.duration",
    "s",
    "Duration of candidate attempts by provider, model and outcome.",
    GENAI_DURATION_BUCKETS,
    "provider",
    "model",
    "outcome",
)
RUN_DURATION = _h(
    "run_duration_seconds",
    "run.duration",
    "s",
    "Duration of whole fallback runs by outcome.",
    GENAI_DURATION_BUCKETS,
    "outcome",
)
FALLBACK_DEPTH = _h(
    "fallback_depth",
    "fallback_depth",
    "{candidate}",
    "Index in the chain of the candidate that served a successful run (0 = primary).",
    DEPTH_BUCKETS,
)
SESSION_LOCK_WAIT = _h(
    "session_lock_wait_seconds",
    "session.lock_wait",
    "s",
    "Time spent waiting for session write locks (acquired or timed out).",
    (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
SESSION_LOCK_TIMEOUTS = _c(
    "session_lock_timeouts",
    "session.lock_timeouts",
    "{timeout}",
    "Session write-lock acquisitions that timed out.",
)
SESSION_TAKEOVERS = _c(
    "session_takeovers",
    "session.takeovers",
    "{takeover}",
    "Session files changed by someone else while a turn had released its prompt lock.",
)
SESSION_STALE_RECLAIMED = _c(
    "session_stale_locks_reclaimed",
    "session.stale_locks_reclaimed",
    "{lock}",
    "Session locks reclaimed from dead, recycled or stuck holders, by reason.",
    "reason",
)
TELEMETRY_ERRORS = _c(
    "telemetry_errors",
    "telemetry_errors",
    "{error}",
    "Observers disabled after raising (telemetry never breaks a run), by component.",
    "component",
)

# --- streaming (DESIGN §9) ------------------------------------------------------------

TIME_TO_FIRST_CHUNK = _h(
    "time_to_first_chunk_seconds",
    "time_to_first_chunk",
    "s",
    "Time from a streamed attempt's call to its first chunk, by provider and model (streams that "
    "delivered one).",
    GENAI_DURATION_BUCKETS,
    "provider",
    "model",
)
STREAM_INTERRUPTIONS = _c(
    "stream_interruptions",
    "stream.interruptions",
    "{interruption}",
    "Streams that failed after their first chunk (StreamInterruptedError), by provider, model and reason.",
    "provider",
    "model",
    "reason",
)

METRICS: tuple[MetricSpec, ...] = (
    RUNS,
    ATTEMPTS,
    COORDINATION_ABORTS,
    FALLBACKS_AVOIDED,
    COOLDOWN_SKIPS,
    ATTEMPT_DURATION,
    RUN_DURATION,
    FALLBACK_DEPTH,
    SESSION_LOCK_WAIT,
    SESSION_LOCK_TIMEOUTS,
    SESSION_TAKEOVERS,
    SESSION_STALE_RECLAIMED,
    TELEMETRY_ERRORS,
    TIME_TO_FIRST_CHUNK,
    STREAM_INTERRUPTIONS,
)
"""Every series of both observers: DESIGN §6's table, in order, then §9's streaming series."""

GENAI_OPERATION_DURATION = MetricSpec(
    "gen_ai_client_operation_duration_seconds",
    "gen_ai.client.operation.duration",
    "histogram",
    "s",
    "GenAI operation duration (semconv v1.41.0), one per attempt; OTel pipeline only.",
    ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "error.type"),
    GENAI_DURATION_BUCKETS,
)
GENAI_TIME_TO_FIRST_CHUNK = MetricSpec(
    "gen_ai_client_operation_time_to_first_chunk_seconds",
    "gen_ai.client.operation.time_to_first_chunk",
    "histogram",
    "s",
    "Time to receive the first chunk of a streamed attempt (semconv v1.41.0), from the call; OTel "
    "pipeline only.",
    ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model"),
    GENAI_DURATION_BUCKETS,
)
GENAI_METRICS: tuple[MetricSpec, ...] = (GENAI_OPERATION_DURATION, GENAI_TIME_TO_FIRST_CHUNK)
"""The GenAI semconv histograms the OTel observer records besides :data:`METRICS`."""


# --- spans ---------------------------------------------------------------------------

SPAN_RUN = "model_fallback.run"
"""The run span (INTERNAL)."""
SPAN_LOCK_ACQUIRE = "model_fallback.session.lock_acquire"
"""The session lock acquisition span (INTERNAL)."""
SPAN_FENCE_VERIFY = "model_fallback.session.fence_verify"
"""The prompt-release fence verification span (INTERNAL)."""
EVENT_SKIPPED = "model_fallback.candidate_skipped"
"""Event on the run span for a candidate skipped while cooling down."""


class ATTRIBUTES:
    """Span attribute keys (GenAI semconv v1.41.0 and model_fallback.*)."""

    GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
    GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
    GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
    GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
    GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
    ERROR_TYPE = "error.type"
    CANDIDATES = "model_fallback.candidates"
    RUN_OUTCOME = "model_fallback.outcome"
    ATTEMPT_COUNT = "model_fallback.attempt_count"
    FALLBACK_DEPTH = "model_fallback.fallback_depth"
    SERVED_PROVIDER = "model_fallback.served.provider"
    SERVED_MODEL = "model_fallback.served.model"
    ATTEMPT_INDEX = "model_fallback.attempt.index"
    ATTEMPT_OUTCOME = "model_fallback.attempt.outcome"
    FAILURE_REASON = "model_fallback.failure.reason"
    COORDINATION_KIND = "model_fallback.coordination.kind"
    UNTRIED = "model_fallback.coordination.untried"
    PROBE = "model_fallback.attempt.cooldown_probe"
    ERROR_STATUS = "model_fallback.error.status"
    SESSION_PATH = "model_fallback.session.path"
    LOCK_WAITED = "model_fallback.session.lock_waited_s"
    LOCK_OWNER_PID = "model_fallback.session.lock_owner_pid"
    LOCK_REACQUIRE = "model_fallback.session.reacquire"
    TAKEOVER = "model_fallback.session.takeover"
    SKIP_REMAINING = "model_fallback.cooldown.remaining_s"
    STREAM_CHUNKS = "model_fallback.stream.chunks"
    """Chunks a stream delivered (GenAI semconv v1.41 names no chunk count)."""
