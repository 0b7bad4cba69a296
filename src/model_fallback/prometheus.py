"""Prometheus metrics for model-fallback (``pip install 'model-fallback[prometheus]'``).

:class:`PrometheusObserver` turns driver and session events into the series of
:mod:`model_fallback.telemetry_spec` on a ``prometheus_client`` registry. Attempts that ended
in a coordination abort are counted with ``outcome="coordination_abort"`` and the kind as
``reason`` — never as a provider failure — so per-model failure rates stay true.

* ``registry=None`` uses the global ``REGISTRY``; two observers on two registries never
  collide, two on one registry share the same series instead of raising.
* provider/model label values come from the configured candidates, capped at
  ``max_label_pairs`` pairs (further pairs are counted as ``_other``) and at 128 characters
  each (a longer value keeps a prefix and a short hash of the whole: distinct stays distinct).
* Counters and histograms carry ``trace_id``/``span_id`` exemplars when an OpenTelemetry
  span is recording (exemplars appear in the OpenMetrics exposition only).

The series are kept by one registered *collector* per registry and namespace: an
observation is a dictionary update under one lock, and the families are built when
Prometheus scrapes. (``prometheus_client``'s own ``Counter``/``Histogram`` take a lock per
value and walk the buckets on every observation, which cost more than the whole fallback
driver.) Custom collectors do not work in ``prometheus_client``'s multiprocess mode: run one
registry per process, or export through OpenTelemetry.
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar

from model_fallback import telemetry_spec as spec
from model_fallback._model import Candidate, FailoverReason, Outcome
from model_fallback._redact import cap_label
from model_fallback.events import (
    AttemptEnded,
    CandidateSkipped,
    CoordinationAborted,
    FenceChecked,
    LockAcquired,
    LockTimedOut,
    ObserverFailed,
    RunEnded,
    RunOutcome,
    RunStarted,
    StaleLockReclaimed,
)

__all__ = ["PrometheusObserver"]

try:  # exemplars need the OpenTelemetry API; without it there are simply none
    from opentelemetry import trace as _trace
    from opentelemetry.context import get_current as _current_context
except ImportError:  # exercised by tests/test_telemetry.py::test_prometheus_without_opentelemetry
    _trace = None  # type: ignore[assignment]

# Enum members hash in Python; their plain string values hash in C. Look them up by id().
_STR: dict[int, str] = {id(m): m._value_ for m in (*Outcome, *FailoverReason, *RunOutcome)}
_SUCCESS = RunOutcome.SUCCESS


def _exemplar() -> dict[str, str] | None:
    # An empty context (no OTel in use, the common case without tracing) has no span: one
    # context-variable read instead of the four calls of get_current_span().
    if _trace is None or not _current_context():
        return None
    ctx = _trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


class _Counter:
    __slots__ = ("doc", "exemplars", "labels", "name", "values")

    def __init__(self, name: str, m: spec.MetricSpec) -> None:
        self.name = name.removesuffix("_total")
        self.doc = m.description
        self.labels = list(m.labels)
        self.values: dict[tuple[str, ...], float] = {}
        self.exemplars: dict[tuple[str, ...], Exemplar] = {}

    def family(self) -> Metric:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            fam.add_metric(key, value, exemplar=self.exemplars.get(key))
        return fam


class _Histogram:
    __slots__ = ("bounds", "data", "doc", "labels", "le", "name")

    def __init__(self, name: str, m: spec.MetricSpec) -> None:
        self.name = name
        self.doc = m.description
        self.labels = list(m.labels)
        self.bounds = tuple(float(b) for b in m.buckets)
        self.le = [*(repr(float(b)) for b in self.bounds), "+Inf"]
        # labels -> [per-bucket counts (not cumulative), sum, {bucket index: exemplar}]
        self.data: dict[tuple[str, ...], list[Any]] = {}

    def slot(self, key: tuple[str, ...]) -> list[Any]:
        found = self.data.get(key)
        if found is None:
            found = self.data[key] = [[0] * (len(self.bounds) + 1), 0.0, {}]
        return found

    def family(self) -> Metric:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, (counts, total, exemplars) in self.data.items():
            acc = 0
            buckets: list[Any] = []
            for i, n in enumerate(counts):
                acc += n
                ex = exemplars.get(i)
                buckets.append((self.le[i], acc, ex) if ex is not None else (self.le[i], acc))
            fam.add_metric(key, buckets, total)
        return fam


class _Series:
    """Every series of one namespace on one registry: a registered collector."""

    def __init__(self, namespace: str) -> None:
        def name(m: spec.MetricSpec) -> str:
            return namespace + m.prometheus.removeprefix(spec.NAMESPACE)

        self.lock = threading.Lock()
        self.metrics: dict[str, _Counter | _Histogram] = {
            m.otel: (_Counter(name(m), m) if m.kind == "counter" else _Histogram(name(m), m))
            for m in spec.METRICS
        }
        c, h = self.counter, self.histogram
        self.runs, self.attempts = c(spec.RUNS), c(spec.ATTEMPTS)
        self.coordination_aborts, self.fallbacks_avoided = (
            c(spec.COORDINATION_ABORTS),
            c(spec.FALLBACKS_AVOIDED),
        )
        self.cooldown_skips, self.lock_timeouts = c(spec.COOLDOWN_SKIPS), c(spec.SESSION_LOCK_TIMEOUTS)
        self.takeovers, self.stale = c(spec.SESSION_TAKEOVERS), c(spec.SESSION_STALE_RECLAIMED)
        self.telemetry_errors = c(spec.TELEMETRY_ERRORS)
        self.attempt_duration, self.run_duration = h(spec.ATTEMPT_DURATION), h(spec.RUN_DURATION)
        self.fallback_depth, self.lock_wait = h(spec.FALLBACK_DEPTH), h(spec.SESSION_LOCK_WAIT)
        # Zeros, not gaps: the label sets every dashboard and rule expects exist from the start.
        for outcome in spec.RUN_OUTCOMES:
            self.runs.values[(outcome,)] = 0.0
            self.run_duration.slot((outcome,))
        for kind in spec.COORDINATION_KINDS:
            self.coordination_aborts.values[(kind,)] = 0.0
            self.fallbacks_avoided.values[(kind,)] = 0.0
        for reason in spec.STALE_REASONS:
            self.stale.values[(reason,)] = 0.0
        for component in spec.TELEMETRY_COMPONENTS:
            self.telemetry_errors.values[(component,)] = 0.0
        for unlabelled in (self.lock_timeouts, self.takeovers):
            unlabelled.values[()] = 0.0
        self.fallback_depth.slot(())
        self.lock_wait.slot(())

    def counter(self, m: spec.MetricSpec) -> _Counter:
        found = self.metrics[m.otel]
        assert isinstance(found, _Counter)
        return found

    def histogram(self, m: spec.MetricSpec) -> _Histogram:
        found = self.metrics[m.otel]
        assert isinstance(found, _Histogram)
        return found

    def collect(self) -> Iterator[Metric]:
        """Build the families (under the lock, so a scrape sees a consistent set)."""
        with self.lock:
            families = [m.family() for m in self.metrics.values()]
        yield from families

    def describe(self) -> Iterator[Metric]:
        """Names only, so that the registry detects duplicates at registration."""
        for m in self.metrics.values():
            if isinstance(m, _Counter):
                yield CounterMetricFamily(m.name, m.doc, labels=m.labels)
            else:
                yield HistogramMetricFamily(m.name, m.doc, labels=m.labels)


_shared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Series]] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def _series_for(registry: CollectorRegistry, namespace: str) -> _Series:
    with _shared_lock:
        per = _shared.setdefault(registry, {})
        found = per.get(namespace)
        if found is None:
            found = _Series(namespace)
            try:
                registry.register(found)
            except ValueError as exc:
                raise ValueError(
                    f"cannot register model-fallback metrics ({namespace}_*) on this registry: {exc} "
                    "(another collector already uses these names; pass a different registry= or namespace=)"
                ) from None
            per[namespace] = found
        return found


class PrometheusObserver:
    """Observer that records the DESIGN §6 series with ``prometheus_client``.

    It has every hook of :class:`~model_fallback.events.Observer` except ``attempt_started``
    (nothing to record there); it does not inherit the base class so that the driver skips
    that hook instead of calling a no-op.

    Args:
        registry: where to register (``None``: the global ``REGISTRY``).
        namespace: metric name prefix (default ``model_fallback``; dashboards expect it).
        max_label_pairs: how many distinct provider/model pairs get their own labels;
            further pairs are counted as ``_other``. Each value is also capped at 128
            characters (prefix + short hash), so the pairs bound the scrape's size too.
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
        self._s = _series_for(self.registry, namespace)
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self._last_chain: object = None
        self._attempt_slots: dict[tuple[str, str, str, str], tuple[tuple[str, ...], list[Any]]] = {}
        self._attempt_bounds = self._s.attempt_duration.bounds
        # RunOutcome members are singletons: keyed by id(), a C-level hash.
        self._run_slots: dict[int, tuple[tuple[str, ...], list[Any]]] = {}
        self._run_bounds = self._s.run_duration.bounds
        self._depth_bounds = self._s.fallback_depth.bounds
        self._depth_slot = self._s.fallback_depth.data[()]
        for c in candidates:
            self._pair(c if isinstance(c, Candidate) else Candidate.parse(c))

    def _pair(self, c: Candidate) -> tuple[str, str]:
        key = (c.provider, c.model)
        pair = self._pairs.get(key)
        if pair is None:
            pair = (
                (cap_label(c.provider), cap_label(c.model))
                if len(self._pairs) < self.max_label_pairs
                else (spec.OTHER, spec.OTHER)
            )
            if len(self._pairs) < self.max_label_pairs * 4:
                self._pairs[key] = pair
            s = self._s
            with s.lock:
                s.attempts.values.setdefault((*pair, "success", spec.REASON_NONE), 0.0)
                s.attempt_duration.slot((*pair, "success"))
        return pair

    @staticmethod
    def _ex(value: float) -> Exemplar | None:
        labels = _exemplar()
        return Exemplar(labels, value, time.time()) if labels is not None else None

    # --- hooks -----------------------------------------------------------------------

    def run_started(self, event: RunStarted) -> None:
        """Make sure the run's candidates have label sets."""
        chain = event.candidates
        if chain is self._last_chain:  # the driver reuses the tuple of a repeated chain
            return
        for c in chain:
            if (c.provider, c.model) not in self._pairs:
                self._pair(c)
        self._last_chain = chain

    def attempt_ended(self, event: AttemptEnded) -> None:
        """Count the attempt and observe its duration."""
        a = event.attempt
        c = a.candidate
        outcome = _STR[id(a.outcome)]
        kind = a.coordination_kind
        if kind is not None:
            reason = kind
        elif a.reason is not None:
            reason = _STR[id(a.reason)]
        else:
            reason = spec.REASON_NONE
        found = self._attempt_slots.get((c.provider, c.model, outcome, reason))
        if found is None:
            found = self._attempt_slot(c, outcome, reason)
        key, slot = found
        d = a.duration_s
        i = bisect.bisect_left(self._attempt_bounds, d)
        labels = _exemplar()
        s = self._s
        with s.lock:
            s.attempts.values[key] += 1.0
            slot[0][i] += 1
            slot[1] += d
            if labels is not None:
                now = time.time()
                s.attempts.exemplars[key] = Exemplar(labels, 1.0, now)
                slot[2][i] = Exemplar(labels, d, now)

    def _attempt_slot(self, c: Candidate, outcome: str, reason: str) -> tuple[tuple[str, ...], list[Any]]:
        """The counter key and histogram slot of one attempt combination (made once)."""
        p, m = self._pair(c)
        key = (p, m, outcome, reason)
        s = self._s
        with s.lock:
            s.attempts.values.setdefault(key, 0.0)
            slot = s.attempt_duration.slot((p, m, outcome))
        found = (key, slot)
        if len(self._attempt_slots) < 50_000:
            self._attempt_slots[(c.provider, c.model, outcome, reason)] = found
        return found

    def candidate_skipped(self, event: CandidateSkipped) -> None:
        """Count the skip (as an attempt with outcome ``skipped`` and as a cooldown skip)."""
        a = event.attempt
        p, m = self._pair(a.candidate)
        reason = _STR[id(a.reason)] if a.reason is not None else spec.REASON_NONE
        s = self._s
        key, skey = (p, m, "skipped", reason), (p, m, reason)
        with s.lock:
            s.attempts.values[key] = s.attempts.values.get(key, 0.0) + 1.0
            s.cooldown_skips.values[skey] = s.cooldown_skips.values.get(skey, 0.0) + 1.0

    def coordination_aborted(self, event: CoordinationAborted) -> None:
        """Count the abort and the candidates it left untried."""
        ex = self._ex(1.0)
        key = (event.kind,)
        s = self._s
        with s.lock:
            s.coordination_aborts.values[key] = s.coordination_aborts.values.get(key, 0.0) + 1.0
            s.fallbacks_avoided.values[key] = s.fallbacks_avoided.values.get(key, 0.0) + event.untried
            if ex is not None:
                s.coordination_aborts.exemplars[key] = ex

    def run_ended(self, event: RunEnded) -> None:
        """Count the run by outcome; observe its duration and fallback depth."""
        outcome = event.outcome
        found = self._run_slots.get(id(outcome))
        if found is None:
            found = self._run_slot(outcome)
        key, slot = found
        d = event.duration_s
        i = bisect.bisect_left(self._run_bounds, d)
        depth = event.fallback_depth if outcome is _SUCCESS else None
        depth_i = bisect.bisect_left(self._depth_bounds, depth) if depth is not None else -1
        labels = _exemplar()
        s = self._s
        with s.lock:
            s.runs.values[key] += 1.0
            slot[0][i] += 1
            slot[1] += d
            if depth is not None:
                dslot = self._depth_slot
                dslot[0][depth_i] += 1
                dslot[1] += depth
            if labels is not None:
                now = time.time()
                s.runs.exemplars[key] = Exemplar(labels, 1.0, now)
                slot[2][i] = Exemplar(labels, d, now)
                if depth is not None:
                    self._depth_slot[2][depth_i] = Exemplar(labels, float(depth), now)

    def _run_slot(self, outcome: RunOutcome) -> tuple[tuple[str, ...], list[Any]]:
        """The counter key and duration slot of a run outcome (made once)."""
        key = (str(outcome.value),)
        s = self._s
        with s.lock:
            s.runs.values.setdefault(key, 0.0)
            slot = s.run_duration.slot(key)
        found = self._run_slots[id(outcome)] = (key, slot)
        return found

    def _observe_wait(self, waited: float, labels: dict[str, str] | None) -> None:
        h = self._s.lock_wait
        slot = h.data[()]
        i = bisect.bisect_left(h.bounds, waited)
        slot[0][i] += 1
        slot[1] += waited
        if labels is not None:  # the lock-wait panel links to the turn's trace
            slot[2][i] = Exemplar(labels, waited, time.time())

    def lock_acquired(self, event: LockAcquired) -> None:
        """Observe the lock wait."""
        labels = _exemplar()
        with self._s.lock:
            self._observe_wait(event.waited_s, labels)

    def lock_timed_out(self, event: LockTimedOut) -> None:
        """Observe the wait and count the timeout."""
        labels = _exemplar()
        ex = Exemplar(labels, 1.0, time.time()) if labels is not None else None
        s = self._s
        with s.lock:
            self._observe_wait(event.waited_s, labels)
            s.lock_timeouts.values[()] += 1.0
            if ex is not None:
                s.lock_timeouts.exemplars[()] = ex

    def stale_lock_reclaimed(self, event: StaleLockReclaimed) -> None:
        """Count the reclaim by reason."""
        key = (event.reason,)
        s = self._s
        with s.lock:
            s.stale.values[key] = s.stale.values.get(key, 0.0) + 1.0

    def fence_checked(self, event: FenceChecked) -> None:
        """Count takeovers."""
        if event.takeover:
            ex = self._ex(1.0)
            s = self._s
            with s.lock:
                s.takeovers.values[()] += 1.0
                if ex is not None:
                    s.takeovers.exemplars[()] = ex

    def observer_failed(self, event: ObserverFailed) -> None:
        """Count another observer's failure."""
        self.count_error(event.component)

    def count_error(self, component: str) -> None:
        """Count a telemetry failure of *component* (e.g. an exporter)."""
        key = (component,)
        s = self._s
        with s.lock:
            s.telemetry_errors.values[key] = s.telemetry_errors.values.get(key, 0.0) + 1.0
