"""Grafana dashboards and Prometheus rules, generated from :mod:`model_fallback.telemetry_spec`.

``model-fallback dashboards`` (or ``python -m model_fallback.ops``) writes
``dashboards/model-fallback-overview.json``, ``dashboards/session-coordination.json`` and
``dashboards/prometheus/rules.yml``; ``--check`` exits 1 when the committed files differ
from what the code generates. Metric names come only from the spec, never typed twice.

Every query filters on ``job=~"$job", instance=~"$instance"``, uses ``$__rate_interval``,
wraps counters in ``rate``/``increase``, and **provider failure panels and rules count only
``outcome="provider_failure"`` (and ``aborted``) attempts: coordination aborts are never a
provider's failure.**
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_fallback import telemetry_spec as spec

__all__ = [
    "ALERTS",
    "RECORDING_RULES",
    "RUNBOOK_BASE",
    "SLOTargets",
    "build_overview",
    "build_session",
    "generated_files",
    "main",
    "rules_yaml",
    "slo_rules",
]

RUNS = spec.RUNS.prometheus
ATTEMPTS = spec.ATTEMPTS.prometheus
COORD = spec.COORDINATION_ABORTS.prometheus
AVOIDED = spec.FALLBACKS_AVOIDED.prometheus
SKIPS = spec.COOLDOWN_SKIPS.prometheus
ATTEMPT_DUR = spec.ATTEMPT_DURATION.prometheus
RUN_DUR = spec.RUN_DURATION.prometheus
DEPTH = spec.FALLBACK_DEPTH.prometheus
LOCK_WAIT = spec.SESSION_LOCK_WAIT.prometheus
LOCK_TIMEOUTS = spec.SESSION_LOCK_TIMEOUTS.prometheus
TAKEOVERS = spec.SESSION_TAKEOVERS.prometheus
STALE = spec.SESSION_STALE_RECLAIMED.prometheus
TEL_ERRORS = spec.TELEMETRY_ERRORS.prometheus
TTFT = spec.TIME_TO_FIRST_CHUNK.prometheus
INTERRUPTIONS = spec.STREAM_INTERRUPTIONS.prometheus

SEL = 'job=~"$job", instance=~"$instance"'
RI = "$__rate_interval"
FAILED = 'outcome=~"provider_failure|aborted"'
CALLED = 'outcome=~"success|provider_failure|aborted"'
# prometheus_client writes le="0.0", the Collector le="0": match both.
LE_ZERO = 'le=~"0|0\\\\.0"'
DS = {"type": "prometheus", "uid": "${datasource}"}
RUNBOOK_BASE = "docs/runbooks.md#"
"""Default prefix of every alert's ``runbook_url`` (the alert name, lower-cased, is appended).

Relative, because only the deployer knows where the README is hosted: pass ``runbook_base``
(``--runbook-base``) to generate rules whose links open in Alertmanager and Grafana."""


def _sel(extra: str = "") -> str:
    return "{" + SEL + (", " + extra if extra else "") + "}"


def _target(expr: str, legend: str, ref: str, *, exemplar: bool = False) -> dict[str, Any]:
    return {
        "datasource": DS,
        "editorMode": "code",
        "exemplar": exemplar,
        "expr": expr,
        "instant": False,
        "legendFormat": legend,
        "range": True,
        "refId": ref,
    }


def _panel(
    pid: int,
    title: str,
    description: str,
    unit: str,
    targets: Sequence[tuple[str, str]],
    grid: tuple[int, int, int, int],
    *,
    exemplar: bool = False,
    stack: bool = False,
    kind: str = "timeseries",
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {
            "defaults": {
                "custom": {
                    "drawStyle": "line",
                    "fillOpacity": 10,
                    "stacking": {"mode": "normal" if stack else "none"},
                },
                "unit": unit,
            },
            "overrides": [],
        },
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "id": pid,
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            _target(e, legend, chr(65 + i), exemplar=exemplar) for i, (e, legend) in enumerate(targets)
        ],
        "title": title,
        "type": kind,
    }


def _templating() -> dict[str, Any]:
    def query_var(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "datasource": DS,
            "definition": query,
            "includeAll": True,
            "label": label,
            "multi": True,
            "name": name,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "sort": 1,
            "type": "query",
        }

    return {
        "list": [
            {
                "current": {},
                "hide": 0,
                "includeAll": False,
                "label": "Data source",
                "multi": False,
                "name": "datasource",
                "options": [],
                "query": "prometheus",
                "refresh": 1,
                "regex": "",
                "type": "datasource",
            },
            query_var("job", "Job", f"label_values({RUNS}, job)"),
            query_var("instance", "Instance", f'label_values({RUNS}{{job=~"$job"}}, instance)'),
        ]
    }


def _dashboard(
    uid: str, title: str, description: str, panels: list[dict[str, Any]], tags: list[str]
) -> dict[str, Any]:
    return {
        "annotations": {"list": []},
        "description": description,
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": tags,
        "templating": _templating(),
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
    }


def _quantiles(metric: str, by: str, legend: str, extra: str = "") -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{_sel(extra)}[{RI}])))",
            f"p{int(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def build_overview(slos: SLOTargets | None = None) -> dict[str, Any]:
    """The fallback overview dashboard (the error-budget row uses *slos*, default targets)."""
    slos = slos if slos is not None else SLOTargets()
    p = []
    p.append(_panel(1, "Runs/s by outcome",
        "Fallback runs per second by how they ended: success, exhausted (All models failed), "
        "coordination_abort (a local session error stopped the run), aborted (policy), cancelled, "
        "caller_error (a bug in the application's own code stopped the run; charged to no model), "
        "interrupted (a stream failed after its first chunk).",
        "reqps", [(f"sum by (outcome) (rate({RUNS}{_sel()}[{RI}]))", "{{outcome}}")], (0, 0, 12, 8), stack=True))  # fmt: skip
    p.append(_panel(2, "Attempts/s by outcome",
        "Candidate attempts per second by outcome; skipped = cooling down, caller_error = the "
        "application's own code raised (charged to no model).",
        "reqps", [(f"sum by (outcome) (rate({ATTEMPTS}{_sel()}[{RI}]))", "{{outcome}}")], (12, 0, 12, 8), stack=True))  # fmt: skip
    p.append(_panel(3, "Provider failure rate by model and reason (coordination aborts excluded)",
        "Share of calls to each provider/model that failed, by reason. Only outcome=provider_failure|aborted "
        "counts: coordination aborts (lock contention, takeovers) and caller errors (bugs in the "
        "application's code) are never a model's failure.",
        "percentunit",
        [(f"sum by (provider, model, reason) (rate({ATTEMPTS}{_sel(FAILED)}[{RI}])) / ignoring (reason) group_left "
          f"sum by (provider, model) (rate({ATTEMPTS}{_sel(CALLED)}[{RI}]))", "{{provider}}/{{model}} {{reason}}")],
        (0, 8, 12, 8)))  # fmt: skip
    p.append(_panel(4, "Coordination aborts/s by kind",
        "Runs stopped at once by a local coordination error (session_takeover, write_lock_timeout): "
        "no further model was called and none was blamed.",
        "reqps", [(f"sum by (kind) (rate({COORD}{_sel()}[{RI}]))", "{{kind}}")], (12, 8, 6, 8)))  # fmt: skip
    p.append(_panel(5, "Fallbacks avoided/s",
        "Candidates left untried because a coordination abort stopped the run: provider calls a naive "
        "driver would have wasted against the same local condition.",
        "reqps", [(f"sum by (kind) (rate({AVOIDED}{_sel()}[{RI}]))", "{{kind}}")], (18, 8, 6, 8)))  # fmt: skip
    p.append(_panel(6, "Share of successful runs served by a fallback",
        "Fraction of successful runs whose serving candidate was not the primary (fallback depth > 0).",
        "percentunit",
        [(f"1 - sum(rate({DEPTH}_bucket{_sel(LE_ZERO)}[{RI}])) / sum(rate({DEPTH}_count{_sel()}[{RI}]))",
          "served by a fallback")], (0, 16, 8, 8)))  # fmt: skip
    p.append(_panel(7, "Chains exhausted/s",
        "Runs where every candidate failed or was skipped (All models failed). Local coordination errors "
        "never end up here.",
        "reqps", [(f'sum(rate({RUNS}{_sel("outcome=" + json.dumps("exhausted"))}[{RI}]))', "exhausted")],
        (8, 16, 8, 8)))  # fmt: skip
    p.append(_panel(8, "Cooldown skips/s",
        "Candidates skipped because they were cooling down after rate_limit/overloaded/billing/auth.",
        "reqps", [(f"sum by (provider, model, reason) (rate({SKIPS}{_sel()}[{RI}]))",
                   "{{provider}}/{{model}} {{reason}}")], (16, 16, 8, 8)))  # fmt: skip
    p.append(_panel(9, "Attempt latency p50/p95/p99 by model",
        "Attempt duration quantiles per provider/model; exemplars link to the run's trace.",
        "s", _quantiles(ATTEMPT_DUR, "provider, model", "{{provider}}/{{model}}", 'outcome!="skipped"'),
        (0, 24, 16, 9), exemplar=True))  # fmt: skip
    p.append(_panel(10, "Run latency p95 by outcome",
        "Whole-run duration (all attempts) by outcome; exemplars link to traces.",
        "s", [(f"histogram_quantile(0.95, sum by (le, outcome) (rate({RUN_DUR}_bucket{_sel()}[{RI}])))",
               "p95 {{outcome}}")], (16, 24, 8, 9), exemplar=True))  # fmt: skip
    p.append(_panel(11, "Telemetry errors/s",
        "Observers disabled after raising, by component. Telemetry never breaks a run; a non-zero value "
        "means some telemetry is missing.",
        "reqps", [(f"sum by (component) (rate({TEL_ERRORS}{_sel()}[{RI}]))", "{{component}}")], (0, 33, 12, 7)))  # fmt: skip
    p.append(_panel(12, "Attempts/s by model and outcome",
        "Candidate attempts per provider/model and outcome.",
        "reqps", [(f"sum by (provider, model, outcome) (rate({ATTEMPTS}{_sel()}[{RI}]))",
                   "{{provider}}/{{model}} {{outcome}}")], (12, 33, 12, 7)))  # fmt: skip
    p.append(_panel(13, "Time to first chunk p50/p95/p99 by model",
        "Streams (stream_with_model_fallback): time from the call to the first chunk per provider/model, "
        "for the attempts that delivered one; exemplars link to the attempt's trace.",
        "s", _quantiles(TTFT, "provider, model", "{{provider}}/{{model}}"), (0, 40, 12, 8), exemplar=True))  # fmt: skip
    p.append(_panel(14, "Stream interruptions/s by model and reason",
        "Streams that failed after their first chunk (StreamInterruptedError): the user saw part of an "
        "answer, and no fallback happens mid-stream. By provider/model and failure reason.",
        "reqps", [(f"sum by (provider, model, reason) (rate({INTERRUPTIONS}{_sel()}[{RI}]))",
                   "{{provider}}/{{model}} {{reason}}")], (12, 40, 12, 8)))  # fmt: skip
    # The error-budget row: the budget left over the dashboard's time range (set it to the
    # SLO window, e.g. 30 days), as the burn-rate alerts count it.
    for pid, (title, bad, eligible, target, x) in enumerate(
        (
            ("Provider error budget remaining", PROVIDER_BAD, PROVIDER_ELIGIBLE, slos.provider, 0),
            ("Session error budget remaining", 'outcome="coordination_abort"', "", slos.session, 12),
        ),
        start=15,
    ):
        ratio = (f"sum(increase({RUNS}{_sel(bad)}[$__range]))\n/\n"
                 f"sum(increase({RUNS}{_sel(eligible)}[$__range]))")  # fmt: skip
        p.append(_panel(pid, f"{title} (SLO {target:.2%})",
            f"Share of the error budget left over the dashboard's time range (set it to the SLO window, "
            f"e.g. 30 days): 1 - error ratio / (1 - {target:g}). Below 0: the SLO is missed. "
            + ("Provider SLO: exhausted and interrupted runs against success, exhausted and interrupted; "
               "coordination aborts and caller errors are not the models' budget."
               if x == 0 else "Session SLO: turns stopped by a local coordination error, against all turns."),
            "percentunit", [(f"1 - ({ratio}) / {round(1 - target, 6)}", "remaining")],
            (x, 48, 12, 6), kind="stat"))  # fmt: skip
    return _dashboard(
        "model-fallback-overview",
        "model-fallback: overview",
        "Fallback runs, attempts, provider failures (coordination aborts excluded), latency, cooldowns "
        "and streams (time to first chunk, interruptions).",
        p,
        ["model-fallback", "llm"],
    )


def build_session() -> dict[str, Any]:
    """The session coordination dashboard."""
    p = []
    p.append(_panel(1, "Session lock wait p50/p95/p99",
        "Time turns wait for the session write lock (acquired or timed out).",
        "s", _quantiles(LOCK_WAIT, "job", ""), (0, 0, 12, 8), exemplar=True))  # fmt: skip
    p.append(_panel(2, "Write-lock timeouts/s",
        "Session write-lock acquisitions that timed out (each surfaces as a write_lock_timeout "
        "coordination error, not a model failure).",
        "reqps", [(f"sum(rate({LOCK_TIMEOUTS}{_sel()}[{RI}]))", "lock timeouts")], (12, 0, 12, 8)))  # fmt: skip
    p.append(_panel(3, "Takeovers per turn",
        "Session files changed by someone else while a turn had released its prompt lock, per turn (run).",
        "percentunit", [(f"sum(rate({TAKEOVERS}{_sel()}[{RI}])) / sum(rate({RUNS}{_sel()}[{RI}]))",
                         "takeovers per turn")], (0, 8, 12, 8)))  # fmt: skip
    p.append(_panel(4, "Stale locks reclaimed/s by reason",
        "Locks taken over from dead (dead_pid, recycled_pid) or stuck (too_old) holders.",
        "reqps", [(f"sum by (reason) (rate({STALE}{_sel()}[{RI}]))", "{{reason}}")], (12, 8, 12, 8)))  # fmt: skip
    p.append(_panel(5, "Coordination aborts/s by kind",
        "Runs stopped at once by a local coordination error.",
        "reqps", [(f"sum by (kind) (rate({COORD}{_sel()}[{RI}]))", "{{kind}}")], (0, 16, 12, 8)))  # fmt: skip
    p.append(_panel(6, "Fallbacks avoided per coordination abort",
        "Average number of candidates each coordination abort left untried.",
        "short", [(f"sum(rate({AVOIDED}{_sel()}[{RI}])) / sum(rate({COORD}{_sel()}[{RI}]))",
                   "candidates left untried")], (12, 16, 12, 8)))  # fmt: skip
    return _dashboard(
        "model-fallback-session",
        "model-fallback: session coordination",
        "Session write locks, takeovers and stale locks: the local conditions that must never be blamed on models.",
        p,
        ["model-fallback", "sessions"],
    )


# --- rules -----------------------------------------------------------------------------

RECORDING_RULES: list[tuple[str, str]] = [
    ("job:model_fallback_runs:rate5m", f"sum by (job, outcome) (rate({RUNS}[5m]))"),
    (
        "job_provider_model:model_fallback_attempts:rate5m",
        f"sum by (job, provider, model, outcome, reason) (rate({ATTEMPTS}[5m]))",
    ),
    (
        "job_provider_model:model_fallback_provider_failures_per_calls:ratio_rate5m",
        f"sum by (job, provider, model) (rate({ATTEMPTS}{{{FAILED}}}[5m]))\n/\n"
        f"sum by (job, provider, model) (rate({ATTEMPTS}{{{CALLED}}}[5m]))",
    ),
    ("job:model_fallback_coordination_aborts:rate5m", f"sum by (job, kind) (rate({COORD}[5m]))"),
    (
        "job:model_fallback_session_takeovers_per_runs:ratio_rate5m",
        f"sum by (job) (rate({TAKEOVERS}[5m]))\n/\nsum by (job) (rate({RUNS}[5m]))",
    ),
    ("job:model_fallback_session_lock_timeouts:rate5m", f"sum by (job) (rate({LOCK_TIMEOUTS}[5m]))"),
    (
        "job:model_fallback_runs_exhausted_per_runs:ratio_rate5m",
        f'sum by (job) (rate({RUNS}{{outcome="exhausted"}}[5m]))\n/\nsum by (job) (rate({RUNS}[5m]))',
    ),
    (
        "job:model_fallback_primary_served_per_successes:ratio_rate5m",
        f"sum by (job) (rate({DEPTH}_bucket{{{LE_ZERO}}}[5m]))\n/\nsum by (job) (rate({DEPTH}_count[5m]))",
    ),
    (
        "job:model_fallback_telemetry_errors:increase15m",
        f"sum by (job, component) (increase({TEL_ERRORS}[15m]))",
    ),
    (
        "job_provider_model:model_fallback_streams:rate5m",
        f"sum by (job, provider, model) (rate({TTFT}_count[5m]))",
    ),
    (
        "job_provider_model:model_fallback_stream_interruptions:rate5m",
        f"sum by (job, provider, model, reason) (rate({INTERRUPTIONS}[5m]))",
    ),
    (
        "job_provider_model:model_fallback_stream_interruptions_per_streams:ratio_rate5m",
        f"sum by (job, provider, model) (rate({INTERRUPTIONS}[5m]))\n/\n"
        f"sum by (job, provider, model) (rate({TTFT}_count[5m]))",
    ),
]
"""``(record, expr)`` of every recording rule, named ``level:metric:operations``; the alerts
read these, so the dashboards' 5 m views and the alerts agree."""


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": name.lower(),
        },
    }


ALERTS: list[dict[str, Any]] = [
    _alert(
        "ModelFallbackSessionTakeoverRateHigh",
        "job:model_fallback_session_takeovers_per_runs:ratio_rate5m > 0.05",
        "10m",
        "warning",
        "Session takeovers in {{ $value | humanizePercentage }} of turns for {{ $labels.job }}",
        "Session files are changed by another writer while turns have released their prompt lock. "
        "Turns are interrupted (coordination aborts), not failed over; models are not at fault.",
    ),
    _alert(
        "ModelFallbackWriteLockTimeouts",
        "job:model_fallback_session_lock_timeouts:rate5m > 0.01",
        "10m",
        "warning",
        'Session write-lock timeouts ({{ $value | printf "%.3f" }}/s) for {{ $labels.job }}',
        "Turns cannot take their session write lock in time: something holds session locks too long.",
    ),
    _alert(
        "ModelFallbackChainsExhausted",
        "job:model_fallback_runs_exhausted_per_runs:ratio_rate5m > 0.05",
        "10m",
        "critical",
        "{{ $value | humanizePercentage }} of runs exhausted every model for {{ $labels.job }}",
        "Every candidate failed or was skipped (All models failed). Coordination errors never count here: "
        "this is a real provider problem across the whole chain.",
    ),
    _alert(
        "ModelFallbackProviderFailureRateHigh",
        "job_provider_model:model_fallback_provider_failures_per_calls:ratio_rate5m > 0.2\n"
        "and on (job, provider, model)\n"
        'sum by (job, provider, model) (job_provider_model:model_fallback_attempts:rate5m{outcome=~"success|provider_failure|aborted"}) > 0.05',
        "10m",
        "warning",
        "{{ $labels.provider }}/{{ $labels.model }} fails {{ $value | humanizePercentage }} of calls",
        "Provider failures only (outcome=provider_failure|aborted); coordination aborts are excluded, "
        "so lock contention never fires this alert.",
    ),
    _alert(
        "ModelFallbackPrimaryRarelyServing",
        "job:model_fallback_primary_served_per_successes:ratio_rate5m < 0.5\n"
        'and on (job) sum by (job) (job:model_fallback_runs:rate5m{outcome="success"}) > 0.05',
        "30m",
        "warning",
        "The primary serves only {{ $value | humanizePercentage }} of successful runs for {{ $labels.job }}",
        "Most traffic is served by fallbacks: the primary is failing, cooling down or misconfigured.",
    ),
    _alert(
        "ModelFallbackTelemetryErrors",
        "job:model_fallback_telemetry_errors:increase15m > 0",
        "0m",
        "info",
        "Telemetry observer {{ $labels.component }} was disabled after raising",
        "An observer raised and was disabled; runs are unaffected but its telemetry is missing until restart.",
    ),
    _alert(
        "ModelFallbackStreamInterruptionRateHigh",
        "job_provider_model:model_fallback_stream_interruptions_per_streams:ratio_rate5m > 0.05\n"
        "and on (job, provider, model)\n"
        "job_provider_model:model_fallback_streams:rate5m > 0.05",
        "10m",
        "warning",
        "{{ $labels.provider }}/{{ $labels.model }} streams break after their first chunk "
        "({{ $value | humanizePercentage }} of streams)",
        "Streams fail mid-answer (StreamInterruptedError): users see partial replies and no fallback "
        "happens after the first chunk. The streams/s floor (0.05) keeps a trickle from paging.",
    ),
]
"""Every alerting rule; ``runbook_url`` holds the anchor suffix until :func:`rules_yaml` prefixes it."""


# --- SLOs: multi-window, multi-burn-rate alerts (the SRE workbook, "Alerting on SLOs") ---------

PROVIDER_BAD = 'outcome=~"exhausted|interrupted"'
PROVIDER_ELIGIBLE = 'outcome=~"success|exhausted|interrupted"'


@dataclass(frozen=True)
class SLOTargets:
    """The two service-level objectives the burn-rate alerts defend.

    Attributes:
        provider: share of eligible runs that the chain serves — the providers' availability
            as the application sees it. Bad: ``exhausted`` (All models failed) and
            ``interrupted`` (a stream broke after its first chunk). Not counted at all:
            coordination aborts and caller errors (they are not the models' budget),
            ``aborted`` (the policy stopped on, e.g., a context overflow: the request's
            fault) and cancellations. Default 99 %.
        session: share of turns that no local coordination error stopped (session
            takeovers, lock timeouts, session I/O) — the health of the session layer. Default
            99.5 %.
    """

    provider: float = 0.99
    session: float = 0.995

    def __post_init__(self) -> None:
        for name in ("provider", "session"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise ValueError(f"SLO target {name} must be between 0 and 1 (exclusive), got {value!r}")


# (window pair, burn-rate factor, severity): page when 2 % of a 30-day budget burns in an
# hour (14.4x), ticket when 5 % burns in six hours (6x); the short window makes the alert
# stop soon after the burn does.
_BURNS = (("1h", "5m", 14.4, "page", "Fast"), ("6h", "30m", 6.0, "ticket", "Slow"))
_SLO_WINDOWS = ("5m", "30m", "1h", "6h")


def slo_rules(targets: SLOTargets = SLOTargets()) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """``(recording rules, alerts)`` of the error-budget burn alerts for *targets*."""
    recording: list[tuple[str, str]] = []
    for w in _SLO_WINDOWS:
        recording.append(
            (
                f"job:model_fallback_slo_provider_errors:ratio_rate{w}",
                f"sum by (job) (rate({RUNS}{{{PROVIDER_BAD}}}[{w}]))\n/\n"
                f"sum by (job) (rate({RUNS}{{{PROVIDER_ELIGIBLE}}}[{w}]))",
            )
        )
        recording.append(
            (
                f"job:model_fallback_slo_session_errors:ratio_rate{w}",
                f'sum by (job) (rate({RUNS}{{outcome="coordination_abort"}}[{w}]))\n/\n'
                f"sum by (job) (rate({RUNS}[{w}]))",
            )
        )
    alerts: list[dict[str, Any]] = []
    for slo, target, what, meaning in (
        ("provider", targets.provider, "Provider availability",
         "Runs end All models failed (or streams break) faster than the provider SLO allows. "
         "Coordination aborts and caller errors are not counted: this is the providers' budget."),
        ("session", targets.session, "Session health",
         "Turns are stopped by local coordination errors (session takeovers, lock timeouts, session "
         "I/O) faster than the session SLO allows. The providers' budget is untouched."),
    ):  # fmt: skip
        budget = round(1 - target, 6)
        for long_w, short_w, factor, severity, speed in _BURNS:
            threshold = round(factor * budget, 6)
            name = f"ModelFallback{slo.capitalize()}ErrorBudgetBurn{speed}"
            expr = (
                f"job:model_fallback_slo_{slo}_errors:ratio_rate{long_w} > {threshold}\n"
                f"and\njob:model_fallback_slo_{slo}_errors:ratio_rate{short_w} > {threshold}"
            )
            alerts.append(
                _alert(
                    name,
                    expr,
                    "2m" if speed == "Fast" else "15m",
                    severity,
                    f"{what} error budget burning {factor:g}x too fast for {{{{ $labels.job }}}} "
                    f"(SLO {target:.2%}, {long_w} and {short_w} windows)",
                    meaning,
                )
            )
    return recording, alerts


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return json.dumps(v)


def _yaml(obj: Any, indent: int = 0) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str) and "\n" in v:
                lines.append(f"{pad}{k}: |-")
                lines.extend(f"{pad}  {line}" for line in v.split("\n"))
            elif isinstance(v, dict | list) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(_yaml(v, indent + 2))
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v) if not isinstance(v, dict | list) else '[]'}")
    elif isinstance(obj, list):
        for item in obj:
            sub = _yaml(item, indent + 2)
            lines.append(f"{pad}- {sub[0].lstrip()}")
            lines.extend(sub[1:])
    else:
        lines.append(pad + _yaml_scalar(obj))
    return lines


def rules_yaml(runbook_base: str = RUNBOOK_BASE, slos: SLOTargets = SLOTargets()) -> str:
    """The Prometheus rules file (recording + alerting rules, SLO burn-rate rules included).

    Args:
        runbook_base: prefix of each alert's ``runbook_url``; the lower-cased alert name is
            appended (docs/runbooks.md's ``## <AlertName>`` headings have these anchors).
        slos: the SLO targets of the burn-rate alerts.
    """
    slo_recording, slo_alerts = slo_rules(slos)
    alerts = [
        {
            **a,
            "annotations": {
                **a["annotations"],
                "runbook_url": runbook_base + a["annotations"]["runbook_url"],
            },
        }
        for a in (*ALERTS, *slo_alerts)
    ]
    doc = {
        "groups": [
            {
                "name": "model_fallback.recording",
                "rules": [{"record": r, "expr": e} for r, e in (*RECORDING_RULES, *slo_recording)],
            },
            {"name": "model_fallback.alerts", "rules": alerts},
        ]
    }
    header = "# GENERATED by `model-fallback dashboards` from model_fallback.telemetry_spec: do not edit.\n"
    return header + "\n".join(_yaml(doc)) + "\n"


def generated_files(runbook_base: str = RUNBOOK_BASE, slos: SLOTargets = SLOTargets()) -> dict[str, str]:
    """Relative path -> content of every generated file (see :func:`rules_yaml`)."""

    def dump(d: dict[str, Any]) -> str:
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    return {
        "model-fallback-overview.json": dump(build_overview(slos)),
        "session-coordination.json": dump(build_session()),
        "prometheus/rules.yml": rules_yaml(runbook_base, slos),
    }


def main(
    check: bool = False,
    out: Path | None = None,
    *,
    runbook_base: str = RUNBOOK_BASE,
    slos: SLOTargets = SLOTargets(),
) -> int:
    """Write the generated files into *out*, or check that the files there are current.

    Args:
        check: write nothing; return 1 (and name the files on stderr) when any file in *out*
            is missing or differs from what this code generates.
        out: the output directory (default ``./dashboards``).
        runbook_base: prefix of the alerts' ``runbook_url`` (see :func:`rules_yaml`).
        slos: the SLO targets of the burn-rate alerts and the error-budget panels.

    Returns:
        The process exit status: 0, or 1 when *check* found stale files.
    """
    root = Path("dashboards") if out is None else Path(out)
    stale = []
    for rel, content in generated_files(runbook_base, slos).items():
        path = root / rel
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        if check:
            stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            print(f"wrote {path}")
    if stale:
        print("stale generated files (run `model-fallback dashboards`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
