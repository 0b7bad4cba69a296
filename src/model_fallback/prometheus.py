"""Prometheus metrics for model-fallback (``pip install 'model-fallback[prometheus]'``).

:class:`PrometheusObserver` turns driver and session events into the series of
:mod:`model_fallback.telemetry_spec`, recorded with ``prometheus_client``'s own
``Counter`` and ``Histogram``. Attempts that ended in a coordination abort are counted with
``outcome="coordination_abort"`` and the kind as ``reason`` — never as a provider failure —
so per-model failure rates stay true.

* ``registry=None`` uses the global ``REGISTRY``; two observers on two registries never
  collide, two on one registry share the same metrics instead of raising.
* provider/model label values come from the configured candidates, capped at
  ``max_label_pairs`` pairs (further pairs are counted as ``_other``) and at 128 characters
  each (a longer value keeps a prefix and a short hash of the whole: distinct stays distinct).
* Counters and histograms carry ``trace_id``/``span_id`` exemplars when an OpenTelemetry
  span is recording (exemplars appear in the OpenMetrics exposition only).
* prometheus_client's multiprocess mode works (``PROMETHEUS_MULTIPROC_DIR`` set before the
  workers start; aggregate with ``prometheus_client.multiprocess.MultiProcessCollector``).
  prometheus_client keeps no exemplars in that mode.

The hot path asks ``.labels(...)`` once per label set: the children are kept in dictionaries
keyed by the raw candidate strings and the outcome, bounded in size. Without an exemplar, an
observation goes straight to the child's value objects (``child._value.inc``, the histogram's
``_sum`` and bucket values): the same storage, locks and multiprocess files as ``inc()`` and
``observe()``, without their per-call argument checks and linear bucket search, which cost
more than the rest of the observer (a 3-candidate run: 171 k instructions with the public
calls, 14x a bare loop; the goal is 12x). :func:`_histogram` checks that shape once per child
and falls back to ``observe()`` when a prometheus_client version stores histograms another way;
``tests/test_prometheus_client_types.py`` compares both paths' expositions.
"""

from __future__ import annotations

import contextvars
import math
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from model_fallback import telemetry_spec as spec
from model_fallback._labels import ENUM_VALUES, LabelPairs
from model_fallback._model import Attempt, Candidate
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
    from opentelemetry import context as _otel_context
    from opentelemetry import trace as _trace
except ImportError:  # exercised by tests/test_prometheus_observer.py::test_prometheus_without_opentelemetry
    _trace = None  # type: ignore[assignment]


def _context_reader() -> Callable[[], Any]:
    """``opentelemetry.context.get_current``, or the ``get`` of the ContextVar it reads.

    Four hooks per run ask whether any OpenTelemetry context exists (none: no exemplar); the
    API function reaches the variable through two Python calls. The default runtime context
    (``ContextVarsRuntimeContext``) keeps the context in one ``ContextVar``: read it directly
    when that is what the API has loaded, else go through the API."""
    get_current: Callable[[], Any] = _otel_context.get_current
    var = getattr(getattr(_otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    return var.get if isinstance(var, contextvars.ContextVar) else get_current


if _trace is not None:
    _current_context = _context_reader()

_SUCCESS = RunOutcome.SUCCESS

MAX_CACHED_CHILDREN = 50_000
"""Bound of each per-observer cache of label children (keys are raw candidate strings, which
an application could vary without limit; past the bound, ``.labels()`` is asked each time)."""


def _exemplar() -> dict[str, str] | None:
    # An empty context (no OTel in use, the common case without tracing) has no span: one
    # context-variable read instead of the four calls of get_current_span().
    if _trace is None or not _current_context():
        return None
    ctx = _trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


# (child, add): the counter child and the cheapest callable adding to it.
CounterRef = tuple[Any, Callable[[float], None]]
# (child, add_sum, add_bucket, bounds): add_sum is None when only child.observe() may be used.
HistogramRef = tuple[Any, Any, Any, Any]


def _counter(child: Any) -> CounterRef:
    """*child* (a labelled ``Counter``) and its value's ``inc``, or the child's own ``inc``."""
    inc = getattr(getattr(child, "_value", None), "inc", None)
    return (child, inc if callable(inc) else child.inc)


def _histogram(child: Any) -> HistogramRef:
    """*child* (a labelled ``Histogram``) and, when it stores what ``observe()`` updates as this
    module expects (a ``_sum`` value, one non-cumulative value per bound of ``_upper_bounds``,
    ending in +Inf), the ``inc`` of those values; else ``(child, None, None, None)``."""
    try:
        bounds = tuple(float(b) for b in child._upper_bounds)
        add_bucket = tuple(b.inc for b in child._buckets)
        add_sum = child._sum.inc
    except (AttributeError, TypeError, ValueError):
        return (child, None, None, None)
    if (
        not bounds
        or len(bounds) != len(add_bucket)
        or bounds[-1] != math.inf
        or list(bounds) != sorted(bounds)
    ):
        return (child, None, None, None)
    return (child, add_sum, add_bucket, bounds)


def _observe(h: HistogramRef, value: float, exemplar: dict[str, str] | None) -> None:
    """Observe *value* in a histogram reference (see :func:`_histogram`)."""
    child, add_sum, add_bucket, bounds = h
    # bisect_left = the first bound >= value: the bucket observe() picks (`value <= bound`).
    if exemplar is None and add_sum is not None and value == value:
        add_sum(value)
        add_bucket[bisect_left(bounds, value)](1.0)
    else:
        child.observe(value, exemplar)


def _inc(c: CounterRef, amount: float, exemplar: dict[str, str] | None) -> None:
    """Add *amount* to a counter reference (see :func:`_counter`)."""
    if exemplar is None:
        c[1](amount)
    else:
        c[0].inc(amount, exemplar)


class _Metrics:
    """The prometheus_client metrics of one namespace on one registry (shared by observers)."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        made: dict[str, Counter | Histogram] = {}
        for m in spec.METRICS:
            name = namespace + m.base.removeprefix(spec.NAMESPACE)
            if m.kind == "counter":
                made[m.otel] = Counter(name, m.description, m.labels, registry=None)
            else:
                made[m.otel] = Histogram(name, m.description, m.labels, registry=None, buckets=m.buckets)
        # Register all or nothing: a collision on the fifth name must not leave four behind.
        registered: list[Counter | Histogram] = []
        try:
            for metric in made.values():
                registry.register(metric)
                registered.append(metric)
        except ValueError as exc:
            for metric in registered:
                registry.unregister(metric)
            raise ValueError(
                f"cannot register model-fallback metrics ({namespace}_*) on this registry: {exc} "
                "(another collector already uses these names; pass a different registry= or namespace=)"
            ) from None

        def c(m: spec.MetricSpec) -> Counter:
            found = made[m.otel]
            assert isinstance(found, Counter)
            return found

        def h(m: spec.MetricSpec) -> Histogram:
            found = made[m.otel]
            assert isinstance(found, Histogram)
            return found

        self.runs, self.attempts = c(spec.RUNS), c(spec.ATTEMPTS)
        self.coordination_aborts = c(spec.COORDINATION_ABORTS)
        self.fallbacks_avoided = c(spec.FALLBACKS_AVOIDED)
        self.cooldown_skips = c(spec.COOLDOWN_SKIPS)
        self.lock_timeouts, self.takeovers = c(spec.SESSION_LOCK_TIMEOUTS), c(spec.SESSION_TAKEOVERS)
        self.stale, self.telemetry_errors = c(spec.SESSION_STALE_RECLAIMED), c(spec.TELEMETRY_ERRORS)
        self.attempt_duration, self.run_duration = h(spec.ATTEMPT_DURATION), h(spec.RUN_DURATION)
        self.fallback_depth, self.lock_wait = h(spec.FALLBACK_DEPTH), h(spec.SESSION_LOCK_WAIT)
        self.ttft, self.interruptions = h(spec.TIME_TO_FIRST_CHUNK), c(spec.STREAM_INTERRUPTIONS)
        # the unlabelled metrics are their own children
        self.depth_ref, self.lock_wait_ref = _histogram(self.fallback_depth), _histogram(self.lock_wait)
        self.lock_timeouts_ref, self.takeovers_ref = _counter(self.lock_timeouts), _counter(self.takeovers)
        # Zeros, not gaps: the label sets every dashboard and rule expects exist from the start.
        for outcome in spec.RUN_OUTCOMES:
            self.runs.labels(outcome)
            self.run_duration.labels(outcome)
        for kind in spec.COORDINATION_KINDS:
            self.coordination_aborts.labels(kind)
            self.fallbacks_avoided.labels(kind)
        for reason in spec.STALE_REASONS:
            self.stale.labels(reason)
        for component in spec.TELEMETRY_COMPONENTS:
            self.telemetry_errors.labels(component)


_shared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def _metrics_for(registry: CollectorRegistry, namespace: str) -> _Metrics:
    with _shared_lock:
        per = _shared.setdefault(registry, {})
        found = per.get(namespace)
        if found is None:
            found = per[namespace] = _Metrics(registry, namespace)
        return found


class PrometheusObserver:
    """Observer that records the DESIGN §6 and §9 series with ``prometheus_client``.

    A stream's attempt (:func:`~model_fallback.stream_with_model_fallback`) is reported when
    the stream ends: its time to first chunk goes to ``model_fallback_time_to_first_chunk_seconds``
    and, when a provider failure interrupted it after its first chunk,
    ``model_fallback_stream_interruptions_total`` counts it by reason.

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
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self.max_label_pairs = max_label_pairs
        self._m = _metrics_for(self.registry, namespace)
        self._labels = LabelPairs(max_label_pairs)
        self._last_chain: object = None
        # (provider, model, id(outcome), id(reason), kind) as the event has them -> counter and histogram
        # references, flattened: (counter, add, histogram, add_sum, add_bucket, bounds)
        self._attempt_refs: dict[tuple[str, str, int, int, str | None], tuple[Any, ...]] = {}
        # RunOutcome members are singletons: keyed by id(), a C-level hash. Same layout.
        self._run_refs: dict[int, tuple[Any, ...]] = {}
        # the rarer label sets: (metric tag, *raw key) -> references
        self._refs: dict[tuple[Any, ...], Any] = {}
        self._depth = self._m.depth_ref
        for c in candidates:
            self._pair(c if isinstance(c, Candidate) else Candidate.parse(c))

    def _pair(self, c: Candidate) -> tuple[str, str]:
        """The label values of *c*; a pair seen for the first time gets its zero series."""
        if c in self._labels:
            return self._labels(c)
        pair = self._labels(c)
        m = self._m
        m.attempts.labels(*pair, "success", spec.REASON_NONE)
        m.attempt_duration.labels(*pair, "success")
        return pair

    def _remember(self, key: tuple[Any, ...], refs: Any) -> Any:
        """Keep *refs* under *key* (within the cache bound) and return them."""
        if len(self._refs) < MAX_CACHED_CHILDREN:
            self._refs[key] = refs
        return refs

    # --- hooks -----------------------------------------------------------------------

    def run_started(self, event: RunStarted) -> None:
        """Make sure the run's candidates have label sets."""
        chain = event.candidates
        if chain is self._last_chain:  # the driver reuses the tuple of a repeated chain
            return
        for c in chain:
            if c not in self._labels:
                self._pair(c)
        self._last_chain = chain

    def attempt_ended(self, event: AttemptEnded) -> None:
        """Count the attempt and observe its duration."""
        a = event.attempt
        c = a.candidate
        # ids of enum members: C-level hashing (an enum member hashes in Python)
        key = (c.provider, c.model, id(a.outcome), id(a.reason), a.coordination_kind)
        found = self._attempt_refs.get(key)
        if found is None:
            found = self._attempt_ref(a, key)
        counter, add, hist, add_sum, add_bucket, bounds = found
        d = a.duration_s
        # _exemplar() inlined for the common case: no OpenTelemetry context at all
        ex = None if _trace is None or not _current_context() else _exemplar()
        if ex is None and add_sum is not None:
            add(1.0)
            add_sum(d)
            add_bucket[bisect_left(bounds, d)](1.0)
        else:
            counter.inc(1.0, ex)
            hist.observe(d, ex)
        if event.chunks is not None:
            self._stream_ended(event, ex)

    def _stream_ended(self, event: AttemptEnded, ex: dict[str, str] | None) -> None:
        """A stream's end: its time to first chunk, and the interruption if it was one."""
        a = event.attempt
        c = a.candidate
        ttft = event.time_to_first_chunk_s
        if ttft is not None:
            key: tuple[Any, ...] = ("ttft", c.provider, c.model)
            ref = self._refs.get(key)
            if ref is None:
                ref = self._remember(key, _histogram(self._m.ttft.labels(*self._pair(c))))
            _observe(ref, ttft, ex)
        if event.interrupted:
            reason = ENUM_VALUES[id(a.reason)] if a.reason is not None else spec.REASON_NONE
            key = ("interrupted", c.provider, c.model, reason)
            ref = self._refs.get(key)
            if ref is None:
                ref = self._remember(key, _counter(self._m.interruptions.labels(*self._pair(c), reason)))
            _inc(ref, 1.0, ex)

    def _attempt_ref(self, a: Attempt, key: tuple[str, str, int, int, str | None]) -> tuple[Any, ...]:
        """The references of one attempt combination (made once)."""
        c = a.candidate
        outcome = ENUM_VALUES[id(a.outcome)]
        if a.coordination_kind is not None:
            reason = a.coordination_kind
        elif a.reason is not None:
            reason = ENUM_VALUES[id(a.reason)]
        else:
            reason = spec.REASON_NONE
        p, m = self._pair(c)
        found = (
            *_counter(self._m.attempts.labels(p, m, outcome, reason)),
            *_histogram(self._m.attempt_duration.labels(p, m, outcome)),
        )
        if len(self._attempt_refs) < MAX_CACHED_CHILDREN:
            self._attempt_refs[key] = found
        return found

    def candidate_skipped(self, event: CandidateSkipped) -> None:
        """Count the skip (as an attempt with outcome ``skipped`` and as a cooldown skip)."""
        a = event.attempt
        c = a.candidate
        reason = ENUM_VALUES[id(a.reason)] if a.reason is not None else spec.REASON_NONE
        key = ("skip", c.provider, c.model, reason)
        found = self._refs.get(key)
        if found is None:
            p, m = self._pair(c)
            found = self._remember(
                key,
                (
                    _counter(self._m.attempts.labels(p, m, "skipped", reason)),
                    _counter(self._m.cooldown_skips.labels(p, m, reason)),
                ),
            )
        found[0][1](1.0)
        found[1][1](1.0)

    def coordination_aborted(self, event: CoordinationAborted) -> None:
        """Count the abort and the candidates it left untried."""
        key = ("coord", event.kind)
        found = self._refs.get(key)
        if found is None:
            m = self._m
            found = self._remember(
                key,
                (
                    _counter(m.coordination_aborts.labels(event.kind)),
                    _counter(m.fallbacks_avoided.labels(event.kind)),
                ),
            )
        _inc(found[0], 1.0, _exemplar())
        if event.untried:
            found[1][1](float(event.untried))

    def run_ended(self, event: RunEnded) -> None:
        """Count the run by outcome; observe its duration and fallback depth."""
        outcome = event.outcome
        found = self._run_refs.get(id(outcome))
        if found is None:
            value = str(outcome.value)
            found = self._run_refs[id(outcome)] = (
                *_counter(self._m.runs.labels(value)),
                *_histogram(self._m.run_duration.labels(value)),
            )
        counter, add, hist, add_sum, add_bucket, bounds = found
        d = event.duration_s
        ex = None if _trace is None or not _current_context() else _exemplar()
        if ex is None and add_sum is not None:
            add(1.0)
            add_sum(d)
            add_bucket[bisect_left(bounds, d)](1.0)
        else:
            counter.inc(1.0, ex)
            hist.observe(d, ex)
        depth = event.fallback_depth
        if outcome is _SUCCESS and depth is not None:
            hist, add_sum, add_bucket, bounds = self._depth
            if ex is None and add_sum is not None:
                add_sum(depth)
                add_bucket[bisect_left(bounds, depth)](1.0)
            else:
                hist.observe(depth, ex)

    def lock_acquired(self, event: LockAcquired) -> None:
        """Observe the lock wait (the lock-wait panel links to the turn's trace)."""
        _observe(self._m.lock_wait_ref, event.waited_s, _exemplar())

    def lock_timed_out(self, event: LockTimedOut) -> None:
        """Observe the wait and count the timeout."""
        ex = _exemplar()
        _observe(self._m.lock_wait_ref, event.waited_s, ex)
        _inc(self._m.lock_timeouts_ref, 1.0, ex)

    def stale_lock_reclaimed(self, event: StaleLockReclaimed) -> None:
        """Count the reclaim by reason."""
        key = ("stale", event.reason)
        ref = self._refs.get(key)
        if ref is None:
            ref = self._remember(key, _counter(self._m.stale.labels(event.reason)))
        ref[1](1.0)

    def fence_checked(self, event: FenceChecked) -> None:
        """Count takeovers."""
        if event.takeover:
            _inc(self._m.takeovers_ref, 1.0, _exemplar())

    def observer_failed(self, event: ObserverFailed) -> None:
        """Count another observer's failure."""
        self.count_error(event.component)

    def count_error(self, component: str) -> None:
        """Count a telemetry failure of *component* (e.g. an exporter)."""
        key = ("tel", component)
        ref = self._refs.get(key)
        if ref is None:
            ref = self._remember(key, _counter(self._m.telemetry_errors.labels(component)))
        ref[1](1.0)
