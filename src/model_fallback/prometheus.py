"""Prometheus metrics for model-fallback (``pip install 'model-fallback[prometheus]'``).

:class:`PrometheusObserver` turns driver and session events into the series of
:mod:`model_fallback.metrics_spec` on a ``prometheus_client`` registry. Attempts that ended
in a coordination abort are counted with ``outcome="coordination_abort"`` and the kind as
``reason`` — never as a provider failure — so per-model failure rates stay true.

* ``registry=None`` uses the global ``REGISTRY``; two observers on two registries never
  collide, two on one registry share the same metric objects instead of raising.
* provider/model label values come from the configured candidates, capped at
  ``max_label_pairs`` pairs; further pairs are counted as ``_other``.
* Counters and histograms carry ``trace_id``/``span_id`` exemplars when an OpenTelemetry
  span is recording (exemplars appear in the OpenMetrics exposition only).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from model_fallback import metrics_spec as spec
from model_fallback._model import Candidate
from model_fallback.events import (
    AttemptEnded,
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

__all__ = ["PrometheusObserver"]

try:  # exemplars need the OpenTelemetry API; without it there are simply none
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised by the no-otel test matrix
    _trace = None  # type: ignore[assignment]


def _exemplar() -> dict[str, str] | None:
    if _trace is None:
        return None
    ctx = _trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


class _Metrics:
    """The metric objects of one namespace on one registry."""

    def __init__(self, registry: CollectorRegistry | None, namespace: str) -> None:
        def name(m: spec.MetricSpec) -> str:
            return namespace + m.base.removeprefix(spec.NAMESPACE)

        made: dict[str, Any] = {}
        for m in spec.METRICS:
            try:
                if m.kind == "counter":
                    made[m.otel] = Counter(name(m), m.description, m.labels, registry=registry)
                else:
                    made[m.otel] = Histogram(
                        name(m), m.description, m.labels, buckets=m.buckets, registry=registry
                    )
            except ValueError as exc:
                raise ValueError(
                    f"cannot register {name(m)} on this registry: {exc} (another collector already uses "
                    "the name; pass a different registry= or namespace=)"
                ) from None
        self.runs: Counter = made[spec.RUNS.otel]
        self.attempts: Counter = made[spec.ATTEMPTS.otel]
        self.coordination_aborts: Counter = made[spec.COORDINATION_ABORTS.otel]
        self.fallbacks_avoided: Counter = made[spec.FALLBACKS_AVOIDED.otel]
        self.cooldown_skips: Counter = made[spec.COOLDOWN_SKIPS.otel]
        self.attempt_duration: Histogram = made[spec.ATTEMPT_DURATION.otel]
        self.run_duration: Histogram = made[spec.RUN_DURATION.otel]
        self.fallback_depth: Histogram = made[spec.FALLBACK_DEPTH.otel]
        self.lock_wait: Histogram = made[spec.SESSION_LOCK_WAIT.otel]
        self.lock_timeouts: Counter = made[spec.SESSION_LOCK_TIMEOUTS.otel]
        self.takeovers: Counter = made[spec.SESSION_TAKEOVERS.otel]
        self.stale_reclaimed: Counter = made[spec.SESSION_STALE_RECLAIMED.otel]
        self.telemetry_errors: Counter = made[spec.TELEMETRY_ERRORS.otel]
        for outcome in spec.RUN_OUTCOMES:
            self.runs.labels(outcome)
            self.run_duration.labels(outcome)
        for kind in spec.COORDINATION_KINDS:
            self.coordination_aborts.labels(kind)
            self.fallbacks_avoided.labels(kind)
        for reason in spec.STALE_REASONS:
            self.stale_reclaimed.labels(reason)
        for component in spec.TELEMETRY_COMPONENTS:
            self.telemetry_errors.labels(component)


_shared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = weakref.WeakKeyDictionary()
_unregistered: dict[str, _Metrics] = {}
_shared_lock = threading.Lock()


def _metrics_for(registry: CollectorRegistry | None, namespace: str) -> _Metrics:
    with _shared_lock:
        if registry is None:
            found = _unregistered.get(namespace)
            if found is None:
                found = _unregistered[namespace] = _Metrics(None, namespace)
            return found
        per = _shared.setdefault(registry, {})
        found = per.get(namespace)
        if found is None:
            found = per[namespace] = _Metrics(registry, namespace)
        return found


class PrometheusObserver(Observer):
    """Observer that records the DESIGN §6 series with ``prometheus_client``.

    Args:
        registry: where to register (``None``: the global ``REGISTRY``).
        namespace: metric name prefix (default ``model_fallback``; dashboards expect it).
        max_label_pairs: how many distinct provider/model pairs get their own labels;
            further pairs are counted as ``_other``.
        candidates: candidates whose label sets are created up front (so dashboards show
            zeros instead of gaps); candidates of each run are added as they come.
    """

    component = "prometheus"

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = spec.NAMESPACE,
        max_label_pairs: int = 200,
        *,
        candidates: Iterable[Candidate | str] = (),
    ) -> None:
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise ValueError(f"namespace must be a Prometheus-safe identifier, got {namespace!r}")
        if isinstance(max_label_pairs, bool) or not isinstance(max_label_pairs, int) or max_label_pairs < 1:
            raise ValueError("max_label_pairs must be a positive integer")
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self.max_label_pairs = max_label_pairs
        self._m = _metrics_for(self.registry, namespace)
        self._pairs: dict[Candidate, tuple[str, str]] = {}
        self._children: dict[tuple[Candidate, str, str], tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        for c in candidates:
            self._labels(c if isinstance(c, Candidate) else Candidate.parse(c))

    # --- labels ----------------------------------------------------------------------

    def _labels(self, candidate: Candidate) -> tuple[str, str]:
        pair = self._pairs.get(candidate)
        if pair is not None:
            return pair
        with self._lock:
            pair = self._pairs.get(candidate)
            if pair is None:
                if len(self._pairs) < self.max_label_pairs:
                    pair = (candidate.provider, candidate.model)
                else:
                    pair = (spec.OTHER, spec.OTHER)
                if len(self._pairs) < self.max_label_pairs * 4:
                    self._pairs[candidate] = pair
                # Pre-initialise the common series of a new pair: zeros, not gaps.
                p, m = pair
                self._m.attempts.labels(p, m, "success", spec.REASON_NONE)
                self._m.attempt_duration.labels(p, m, "success")
            return pair

    def _attempt_children(self, candidate: Candidate, outcome: str, reason: str) -> tuple[Any, Any]:
        key = (candidate, outcome, reason)
        found = self._children.get(key)
        if found is None:
            p, m = self._labels(candidate)
            found = (
                self._m.attempts.labels(p, m, outcome, reason),
                self._m.attempt_duration.labels(p, m, outcome),
            )
            if len(self._children) < 20_000:
                self._children[key] = found
        return found

    # --- hooks -----------------------------------------------------------------------

    def run_started(self, event: RunStarted) -> None:
        """Make sure the run's candidates have label sets."""
        for c in event.candidates:
            if c not in self._pairs:
                self._labels(c)

    def attempt_ended(self, event: AttemptEnded) -> None:
        """Count the attempt and observe its duration."""
        a = event.attempt
        outcome = a.outcome.value
        if a.coordination_kind is not None:
            reason = a.coordination_kind
        elif a.reason is not None:
            reason = a.reason.value
        else:
            reason = spec.REASON_NONE
        counter, histogram = self._attempt_children(a.candidate, outcome, reason)
        ex = _exemplar()
        counter.inc(1, ex)
        histogram.observe(a.duration_s, ex)

    def candidate_skipped(self, event: CandidateSkipped) -> None:
        """Count the skip (as an attempt with outcome ``skipped`` and as a cooldown skip)."""
        a = event.attempt
        reason = a.reason.value if a.reason is not None else spec.REASON_NONE
        counter, _ = self._attempt_children(a.candidate, "skipped", reason)
        counter.inc()
        p, m = self._labels(a.candidate)
        self._m.cooldown_skips.labels(p, m, reason).inc()

    def coordination_aborted(self, event: CoordinationAborted) -> None:
        """Count the abort and the candidates it left untried."""
        ex = _exemplar()
        self._m.coordination_aborts.labels(event.kind).inc(1, ex)
        self._m.fallbacks_avoided.labels(event.kind).inc(event.untried)

    def run_ended(self, event: RunEnded) -> None:
        """Count the run by outcome; observe its duration and fallback depth."""
        ex = _exemplar()
        outcome = event.outcome.value
        self._m.runs.labels(outcome).inc(1, ex)
        self._m.run_duration.labels(outcome).observe(event.duration_s, ex)
        if event.outcome is RunOutcome.SUCCESS and event.fallback_depth is not None:
            self._m.fallback_depth.observe(event.fallback_depth, ex)

    def lock_acquired(self, event: LockAcquired) -> None:
        """Observe the lock wait."""
        self._m.lock_wait.observe(event.waited_s)

    def lock_timed_out(self, event: LockTimedOut) -> None:
        """Observe the wait and count the timeout."""
        self._m.lock_wait.observe(event.waited_s)
        self._m.lock_timeouts.inc(1, _exemplar())

    def stale_lock_reclaimed(self, event: StaleLockReclaimed) -> None:
        """Count the reclaim by reason."""
        self._m.stale_reclaimed.labels(event.reason).inc()

    def fence_checked(self, event: FenceChecked) -> None:
        """Count takeovers."""
        if event.takeover:
            self._m.takeovers.inc(1, _exemplar())

    def observer_failed(self, event: ObserverFailed) -> None:
        """Count another observer's failure."""
        self._m.telemetry_errors.labels(event.component).inc()

    def count_error(self, component: str) -> None:
        """Count a telemetry failure of *component* (e.g. an exporter)."""
        self._m.telemetry_errors.labels(component).inc()
