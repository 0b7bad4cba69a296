"""OpenTelemetry spans and metrics for model-fallback (``pip install 'model-fallback[otel]'``).

:class:`OTelObserver` uses the OpenTelemetry *API* only; the application chooses the SDK,
exporters and providers (inject them, or let the global ones apply). Per run:

* a run span ``model_fallback.run`` (INTERNAL), child of the caller's current span, current
  around the attempts; status ERROR only when the run ended ``exhausted``,
  ``coordination_abort``, ``aborted``, ``caller_error`` or ``interrupted`` (a stream that
  failed after its first chunk);
* one attempt span ``{operation} {model}`` (CLIENT) per called candidate, current during the
  provider call (so provider SDK spans nest under it), with the GenAI semconv v1.41
  attributes and ``error.type`` = the failure reason. **Status ERROR only when the provider
  failed**: an attempt that hit a coordination error keeps an unset status and carries
  ``model_fallback.coordination.kind``; the run span carries the error. Span-derived
  per-model error rates therefore never count lock contention as a model failure.
  Cancellation ends the spans with outcome ``cancelled`` and no error;
* a stream's attempt span (:func:`~model_fallback.stream_with_model_fallback`) lasts until the
  stream ends and gets, then and once, ``gen_ai.request.stream``,
  ``gen_ai.response.time_to_first_chunk`` and ``model_fallback.stream.chunks``; it is ERROR
  when the stream was interrupted by a provider failure. Nothing is sent per chunk;
* skipped candidates are events on the run span; session lock acquisitions and fence
  verifications are INTERNAL spans (a takeover or lock timeout is an ERROR there).

Metrics go through the meter with the names of :mod:`model_fallback.telemetry_spec`, which
translate to the same Prometheus series as :class:`~model_fallback.prometheus.PrometheusObserver`,
plus ``gen_ai.client.operation.duration`` per attempt and
``gen_ai.client.operation.time_to_first_chunk`` per stream. Error text is redacted and capped.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from model_fallback import telemetry_spec as spec
from model_fallback._labels import ENUM_VALUES, LabelPairs
from model_fallback._model import Candidate, Outcome
from model_fallback._redact import cap_label, redact
from model_fallback.events import (
    AttemptEnded,
    AttemptStarted,
    CandidateSkipped,
    CoordinationAborted,
    FenceChecked,
    LockAcquired,
    LockTimedOut,
    Observer,
    ObserverFailed,
    RunEnded,
    RunOutcome,
    RunStarted,
    StaleLockReclaimed,
)

__all__ = ["OTelObserver"]

ATTR = spec.ATTRIBUTES  # the span attribute names
_ERROR_RUN_OUTCOMES = frozenset(
    {
        RunOutcome.EXHAUSTED,
        RunOutcome.COORDINATION_ABORT,
        RunOutcome.ABORTED,
        RunOutcome.CALLER_ERROR,
        RunOutcome.INTERRUPTED,
    }
)
_FAILED = frozenset({Outcome.PROVIDER_FAILURE, Outcome.ABORTED})
_MAX_OPEN_RUNS = 100_000
# Enum members hash in Python; their plain string values hash in C. Look them up by id().


def _called(attempts: tuple[Any, ...]) -> int:
    n = len(attempts)
    for a in attempts:
        if a.outcome is Outcome.SKIPPED:
            n -= 1
    return n


def _version() -> str:
    from model_fallback import __version__

    return str(__version__)


class _Run:
    __slots__ = ("attempt", "attempt_token", "span", "token")

    def __init__(self, span: Any, token: Any) -> None:
        self.span = span
        self.token = token
        self.attempt: Any = None
        self.attempt_token: Any = None


def _error_class(error: BaseException | None) -> str:
    """The fully qualified class name of *error* (OTel's ``error.type`` for exceptions)."""
    if error is None:
        return "caller_error"
    tp = type(error)
    module = getattr(tp, "__module__", "")
    return tp.__qualname__ if module in ("builtins", "") else f"{module}.{tp.__qualname__}"


class OTelObserver(Observer):
    """Observer that emits spans and metrics through the OpenTelemetry API.

    Args:
        tracer_provider: where spans go (``None``: the global provider).
        meter_provider: where metrics go (``None``: the global provider).
        operation: ``gen_ai.operation.name`` of attempts (default ``chat``).
        max_label_pairs: distinct provider/model pairs that get their own metric attribute
            values; further pairs are recorded as ``_other``. Provider and model values (on
            metrics and spans alike) are capped at 128 characters: a longer one keeps a prefix
            and a short hash of the whole, so two long names stay distinct.
    """

    component = "otel"

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        operation: str = "chat",
        *,
        max_label_pairs: int = 200,
    ) -> None:
        if not isinstance(operation, str) or not operation:
            raise ValueError("operation must be a non-empty string")
        version = _version()
        self._tracer = trace.get_tracer(spec.NAMESPACE, version, tracer_provider, schema_url=spec.SCHEMA_URL)
        meter = metrics.get_meter(spec.NAMESPACE, version, meter_provider, schema_url=spec.SCHEMA_URL)
        self.operation = operation
        self.max_label_pairs = max_label_pairs
        made: dict[str, Any] = {}
        for m in spec.METRICS:
            if m.kind == "counter":
                made[m.otel] = meter.create_counter(m.otel, unit=m.unit, description=m.description)
            else:
                made[m.otel] = meter.create_histogram(
                    m.otel,
                    unit=m.unit,
                    description=m.description,
                    explicit_bucket_boundaries_advisory=list(m.buckets),
                )
        genai = {
            g.otel: meter.create_histogram(
                g.otel,
                unit=g.unit,
                description=g.description,
                explicit_bucket_boundaries_advisory=list(g.buckets),
            )
            for g in spec.GENAI_METRICS
        }
        self._genai = genai[spec.GENAI_OPERATION_DURATION.otel]
        self._genai_ttft = genai[spec.GENAI_TIME_TO_FIRST_CHUNK.otel]
        self._runs_c = made[spec.RUNS.otel]
        self._attempts_c = made[spec.ATTEMPTS.otel]
        self._coord_c = made[spec.COORDINATION_ABORTS.otel]
        self._avoided_c = made[spec.FALLBACKS_AVOIDED.otel]
        self._skips_c = made[spec.COOLDOWN_SKIPS.otel]
        self._attempt_h = made[spec.ATTEMPT_DURATION.otel]
        self._run_h = made[spec.RUN_DURATION.otel]
        self._depth_h = made[spec.FALLBACK_DEPTH.otel]
        self._lock_wait_h = made[spec.SESSION_LOCK_WAIT.otel]
        self._lock_timeouts_c = made[spec.SESSION_LOCK_TIMEOUTS.otel]
        self._takeovers_c = made[spec.SESSION_TAKEOVERS.otel]
        self._stale_c = made[spec.SESSION_STALE_RECLAIMED.otel]
        self._telemetry_c = made[spec.TELEMETRY_ERRORS.otel]
        self._ttft_h = made[spec.TIME_TO_FIRST_CHUNK.otel]
        self._interruptions_c = made[spec.STREAM_INTERRUPTIONS.otel]
        self._open: OrderedDict[int, _Run] = OrderedDict()
        self._pair = LabelPairs(max_label_pairs)
        self._attempt_attrs: dict[tuple[str, str, str, str], tuple[dict[str, Any], ...]] = {}
        self._start_attrs: dict[tuple[str, str, int, bool], tuple[str, dict[str, Any]]] = {}
        self._attrs: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._run_labels: dict[str, dict[str, Any]] = {}
        self._last_chain: object = None
        self._last_names: list[str] = []

    # --- cached attribute dicts (the hot path allocates none the SDK does not need) ---

    def _cached(self, key: tuple[Any, ...], build: Any) -> dict[str, Any]:
        found = self._attrs.get(key)
        if found is None:
            found = build()
            if len(self._attrs) < 50_000:
                self._attrs[key] = found
        return found

    # --- driver hooks --------------------------------------------------------------

    def run_started(self, event: RunStarted) -> None:
        """Start the run span as a child of the caller's current span and make it current."""
        span = self._tracer.start_span(spec.SPAN_RUN, kind=SpanKind.INTERNAL)
        if span.is_recording():
            chain = event.candidates
            if chain is not self._last_chain:  # the driver reuses the tuple of a repeated chain
                self._last_chain = chain
                self._last_names = [f"{cap_label(c.provider)}/{cap_label(c.model)}" for c in chain]
            span.set_attribute(ATTR.CANDIDATES, self._last_names)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._open[event.run_id] = _Run(span, token)
        if len(self._open) > _MAX_OPEN_RUNS:  # a run that never ended: don't grow forever
            _, stale = self._open.popitem(last=False)
            stale.span.end()

    def attempt_started(self, event: AttemptStarted) -> None:
        """Start the attempt span (CLIENT) and make it current for the provider call."""
        run = self._open.get(event.run_id)
        c = event.candidate
        key = (c.provider, c.model, event.index, event.probe)
        found = self._start_attrs.get(key)
        if found is None:
            model = cap_label(c.model)
            attrs: dict[str, Any] = {
                ATTR.GEN_AI_OPERATION_NAME: self.operation,
                ATTR.GEN_AI_PROVIDER_NAME: cap_label(c.provider),
                ATTR.GEN_AI_REQUEST_MODEL: model,
                ATTR.ATTEMPT_INDEX: event.index,
            }
            if event.probe:
                attrs[ATTR.PROBE] = True
            found = (f"{self.operation} {model}", attrs)
            if len(self._start_attrs) < 10_000:
                self._start_attrs[key] = found
        span = self._tracer.start_span(found[0], kind=SpanKind.CLIENT, attributes=found[1])
        token = otel_context.attach(trace.set_span_in_context(span))
        if run is not None:
            run.attempt, run.attempt_token = span, token

    def attempt_ended(self, event: AttemptEnded) -> None:
        """Finish the attempt span and record the attempt metrics (inside it: exemplars).

        A stream's attempt ends when the stream does: its span gets the streaming attributes
        here, once, and the stream's metric points are recorded (nothing per chunk)."""
        a = event.attempt
        run = self._open.get(event.run_id)
        span = run.attempt if run is not None else None
        outcome = a.outcome
        outcome_s = ENUM_VALUES[id(outcome)]
        kind = a.coordination_kind
        reason = kind or (ENUM_VALUES[id(a.reason)] if a.reason is not None else spec.REASON_NONE)
        chunks = event.chunks
        if span is not None and span.is_recording():
            # One set_attributes call: each span mutation takes the span's lock.
            attrs: dict[str, Any] = {ATTR.ATTEMPT_OUTCOME: outcome_s}
            if chunks is not None:
                attrs[ATTR.GEN_AI_REQUEST_STREAM] = True
                attrs[ATTR.STREAM_CHUNKS] = chunks
                if event.time_to_first_chunk_s is not None:
                    attrs[ATTR.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = event.time_to_first_chunk_s
            if kind is not None:
                attrs[ATTR.COORDINATION_KIND] = kind
                span.set_attributes(attrs)
            elif outcome in _FAILED:
                attrs[ATTR.FAILURE_REASON] = attrs[ATTR.ERROR_TYPE] = reason
                if a.status is not None:
                    attrs[ATTR.ERROR_STATUS] = a.status
                span.set_attributes(attrs)
                span.set_status(Status(StatusCode.ERROR, redact(a.error) if a.error is not None else reason))
            elif outcome is Outcome.CALLER_ERROR:
                # The caller's bug, not the model's: the status stays unset (like a
                # coordination abort) and error.type is the exception's class, as OTel does.
                attrs[ATTR.ERROR_TYPE] = _error_class(a.error)
                span.set_attributes(attrs)
            else:
                span.set_attributes(attrs)
        c = a.candidate
        cached = self._attempt_attrs.get((c.provider, c.model, outcome_s, reason))
        if cached is None:
            cached = self._metric_attrs(c, outcome, outcome_s, reason)
        self._attempts_c.add(1, cached[0])
        self._attempt_h.record(a.duration_s, cached[1])
        if len(cached) > 2:
            self._genai.record(a.duration_s, cached[2])
        if chunks is not None:
            self._stream_ended(event, c, reason)
        if run is not None and run.attempt is not None:
            try:
                otel_context.detach(run.attempt_token)
            finally:
                run.attempt.end()
                run.attempt = run.attempt_token = None

    def _stream_ended(self, event: AttemptEnded, c: Candidate, reason: str) -> None:
        """A stream's metric points: time to first chunk, and the interruption if it was one."""
        p, m = self._pair(c)
        ttft = event.time_to_first_chunk_s
        if ttft is not None:
            pair = self._cached(("pm", p, m), lambda: {"provider": p, "model": m})
            self._ttft_h.record(ttft, pair)
            self._genai_ttft.record(
                ttft,
                self._cached(
                    ("genai-ttft", p, m),
                    lambda: {
                        ATTR.GEN_AI_OPERATION_NAME: self.operation,
                        ATTR.GEN_AI_PROVIDER_NAME: p,
                        ATTR.GEN_AI_REQUEST_MODEL: m,
                    },
                ),
            )
        if event.interrupted:
            self._interruptions_c.add(
                1,
                self._cached(
                    ("interrupted", p, m, reason), lambda: {"provider": p, "model": m, "reason": reason}
                ),
            )

    def _metric_attrs(
        self, c: Candidate, outcome: Outcome, outcome_s: str, reason: str
    ) -> tuple[dict[str, Any], ...]:
        """The attribute dicts of one attempt's metric points (built once per combination)."""
        p, m = self._pair(c)
        out: tuple[dict[str, Any], ...] = (
            {"provider": p, "model": m, "outcome": outcome_s, "reason": reason},
            {"provider": p, "model": m, "outcome": outcome_s},
        )
        if outcome is not Outcome.SKIPPED:
            genai: dict[str, Any] = {
                ATTR.GEN_AI_OPERATION_NAME: self.operation,
                ATTR.GEN_AI_PROVIDER_NAME: p,
                ATTR.GEN_AI_REQUEST_MODEL: m,
            }
            if outcome in _FAILED:
                genai[ATTR.ERROR_TYPE] = reason
            out = (*out, genai)
        if len(self._attempt_attrs) < 50_000:
            self._attempt_attrs[(c.provider, c.model, outcome_s, reason)] = out
        return out

    def candidate_skipped(self, event: CandidateSkipped) -> None:
        """An event on the run span; counted as an attempt ``skipped`` and a cooldown skip."""
        a = event.attempt
        reason = a.reason.value if a.reason is not None else spec.REASON_NONE
        run = self._open.get(event.run_id)
        if run is not None and run.span.is_recording():
            run.span.add_event(
                spec.EVENT_SKIPPED,
                {
                    ATTR.GEN_AI_PROVIDER_NAME: cap_label(a.candidate.provider),
                    ATTR.GEN_AI_REQUEST_MODEL: cap_label(a.candidate.model),
                    ATTR.ATTEMPT_INDEX: a.index,
                    ATTR.FAILURE_REASON: reason,
                    ATTR.SKIP_REMAINING: round(event.remaining_s, 3),
                },
            )
        p, m = self._pair(a.candidate)
        self._attempts_c.add(
            1,
            self._cached(
                ("att", p, m, Outcome.SKIPPED, reason),
                lambda: {"provider": p, "model": m, "outcome": "skipped", "reason": reason},
            ),
        )
        self._skips_c.add(
            1, self._cached(("skip", p, m, reason), lambda: {"provider": p, "model": m, "reason": reason})
        )

    def coordination_aborted(self, event: CoordinationAborted) -> None:
        """Record the abort on the run span and in the counters."""
        run = self._open.get(event.run_id)
        if run is not None and run.span.is_recording():
            run.span.set_attribute(ATTR.COORDINATION_KIND, event.kind)
            run.span.set_attribute(ATTR.UNTRIED, event.untried)
        attrs = self._cached(("kind", event.kind), lambda: {"kind": event.kind})
        self._coord_c.add(1, attrs)
        self._avoided_c.add(event.untried, attrs)

    def run_ended(self, event: RunEnded) -> None:
        """Finish the run span and record run metrics."""
        run = self._open.pop(event.run_id, None)
        outcome = event.outcome
        outcome_s = ENUM_VALUES[id(outcome)]
        labels = self._run_labels.get(outcome_s)
        if labels is None:
            labels = self._run_labels[outcome_s] = {"outcome": outcome_s}
        self._runs_c.add(1, labels)
        self._run_h.record(event.duration_s, labels)
        if outcome is RunOutcome.SUCCESS and event.fallback_depth is not None:
            self._depth_h.record(event.fallback_depth)
        if run is None:
            return
        span = run.span
        try:
            if run.attempt is not None:  # defensive: an attempt_ended that never came
                otel_context.detach(run.attempt_token)
                run.attempt.end()
            if span.is_recording():
                # One set_attributes call: each span mutation takes the span's lock.
                attrs: dict[str, Any] = {
                    ATTR.RUN_OUTCOME: outcome_s,
                    ATTR.ATTEMPT_COUNT: _called(event.attempts),
                }
                if event.candidate is not None:
                    attrs[ATTR.FALLBACK_DEPTH] = event.fallback_depth or 0
                    attrs[ATTR.SERVED_PROVIDER] = cap_label(event.candidate.provider)
                    served_model = cap_label(event.candidate.model)
                    attrs[ATTR.SERVED_MODEL] = attrs[ATTR.GEN_AI_RESPONSE_MODEL] = served_model
                if outcome in _ERROR_RUN_OUTCOMES:
                    last = event.attempts[-1] if event.attempts else None
                    err_type = (
                        (last.coordination_kind or (last.reason.value if last.reason else None))
                        if outcome is not RunOutcome.EXHAUSTED and last is not None
                        else "exhausted"
                    )
                    if outcome is RunOutcome.CALLER_ERROR and last is not None:
                        err_type = _error_class(last.error)
                    attrs[ATTR.ERROR_TYPE] = err_type or outcome.value
                    span.set_attributes(attrs)
                    span.set_status(
                        Status(
                            StatusCode.ERROR,
                            redact(event.error) if event.error is not None else outcome.value,
                        )
                    )
                else:
                    span.set_attributes(attrs)
        finally:
            otel_context.detach(run.token)
            span.end()

    # --- session hooks -------------------------------------------------------------

    def _internal_span(
        self, name: str, start_ns: int, end_ns: int, attrs: dict[str, Any], error: str | None
    ) -> None:
        span = self._tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attrs, start_time=start_ns)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, redact(error)))
        span.end(end_time=max(end_ns, start_ns))

    def lock_acquired(self, event: LockAcquired) -> None:
        """A lock-acquire span (INTERNAL) and the wait histogram."""
        self._internal_span(
            spec.SPAN_LOCK_ACQUIRE,
            event.started_ns,
            event.ended_ns,
            {
                ATTR.SESSION_PATH: event.path,
                ATTR.LOCK_WAITED: event.waited_s,
                ATTR.LOCK_REACQUIRE: event.reacquire,
            },
            None,
        )
        self._lock_wait_h.record(event.waited_s)

    def lock_timed_out(self, event: LockTimedOut) -> None:
        """An ERROR lock-acquire span, the wait histogram and the timeout counter."""
        attrs: dict[str, Any] = {
            ATTR.SESSION_PATH: event.path,
            ATTR.LOCK_WAITED: event.waited_s,
            ATTR.LOCK_REACQUIRE: event.reacquire,
            ATTR.ERROR_TYPE: "write_lock_timeout",
        }
        if event.owner_pid is not None:
            attrs[ATTR.LOCK_OWNER_PID] = event.owner_pid
        self._internal_span(
            spec.SPAN_LOCK_ACQUIRE, event.started_ns, event.ended_ns, attrs, "session write lock timed out"
        )
        self._lock_wait_h.record(event.waited_s)
        self._lock_timeouts_c.add(1)

    def stale_lock_reclaimed(self, event: StaleLockReclaimed) -> None:
        """Count the reclaim by reason."""
        self._stale_c.add(1, self._cached(("stale", event.reason), lambda: {"reason": event.reason}))

    def fence_checked(self, event: FenceChecked) -> None:
        """A fence-verify span (INTERNAL; ERROR on a takeover) and the takeover counter."""
        attrs: dict[str, Any] = {ATTR.SESSION_PATH: event.path, ATTR.TAKEOVER: event.takeover}
        if event.takeover:
            attrs[ATTR.ERROR_TYPE] = "session_takeover"
        self._internal_span(
            spec.SPAN_FENCE_VERIFY,
            event.started_ns,
            event.ended_ns,
            attrs,
            "session file changed while the prompt lock was released" if event.takeover else None,
        )
        if event.takeover:
            self._takeovers_c.add(1)

    def observer_failed(self, event: ObserverFailed) -> None:
        """Count another observer's failure."""
        self.count_error(event.component)

    def count_error(self, component: str) -> None:
        """Count a telemetry failure of *component* (e.g. ``cooldown_store``, reported by a
        shared cooldown store given this observer)."""
        self._telemetry_c.add(1, self._cached(("tel", component), lambda: {"component": component}))
