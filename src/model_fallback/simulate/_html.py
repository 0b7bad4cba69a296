"""The simulator's HTML report: one self-contained page, readable in 30 seconds.

The charts are drawn by matplotlib as SVG and inlined in the page: no JavaScript, no
fonts, no image or style sheet to fetch, so the page works offline, opens as fast as the
browser parses it and prints as it shows. (plotly would inline a 4.8 MB bundle before any
data; vega-lite needs ``vl-convert``'s native wheel just to obtain its runtime, then draws
in JavaScript on every load; matplotlib is the longest-kept plotting library in Python and
its SVG needs nothing at all in the browser.)

:func:`write_html` takes the run's :class:`~model_fallback.simulate._timeline.Timeline`
(the events second by second), its :class:`~model_fallback.simulate.Stats` (the totals
the text report prints) and its :class:`~model_fallback.simulate.SimConfig`.
"""

from __future__ import annotations

import html
import importlib.util
import io
import re
import shlex
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_fallback.simulate._faults import FAULT_KINDS
from model_fallback.simulate._report import Stats, percentile
from model_fallback.simulate._timeline import Second, Timeline

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from model_fallback.simulate._workload import SimConfig

__all__ = ["CHART_IDS", "html_unavailable", "reproduce_command", "write_html"]

#: The id of every chart the page holds, in page order (the browser test checks each).
CHART_IDS: tuple[str, ...] = (
    "chart-blame",
    "chart-runs",
    "chart-blame-time",
    "chart-attempts",
    "chart-coordination",
    "chart-cooldown",
    "chart-streaming",
    "chart-latency",
    "chart-lock",
)

LIBRARY_NOTE = (
    "Charts drawn with matplotlib (SVG, inlined): the page carries no JavaScript and fetches "
    "nothing, so it opens offline and at once, and prints as it shows. plotly would inline a "
    "4.8 MB script before any data; vega-lite needs a native converter to obtain its runtime "
    "and draws in JavaScript on every load."
)

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
_OUTCOME_COLOURS = {
    "success": "#009E73",
    "exhausted": "#D55E00",
    "coordination_abort": "#7B4FA0",
    "aborted": "#E69F00",
    "interrupted": "#B8860B",
    "caller_error": "#56B4E9",
    "cancelled": "#999999",
    "provider_failure": "#D55E00",
    "skipped": "#BBBBBB",
}
_OUTCOME_ORDER = (
    "success",
    "provider_failure",
    "exhausted",
    "coordination_abort",
    "aborted",
    "interrupted",
    "caller_error",
    "skipped",
    "cancelled",
)
_OURS = "#0072B2"
_NAIVE = "#D55E00"
_MODEL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999", "#F0E442")
_KIND_COLOURS = ("#7B4FA0", "#CC79A7", "#332288", "#AA4499", "#882255")
_PCT_STYLES = (("p50", "#0072B2", "-"), ("p95", "#E69F00", "-"), ("p99", "#D55E00", "--"))
_REASON_COLOURS = {
    "none": "#009E73",
    "rate_limit": "#E69F00",
    "overloaded": "#D55E00",
    "server_error": "#A6361C",
    "timeout": "#F0E442",
    "auth": "#56B4E9",
    "auth_permanent": "#3A7CA5",
    "billing": "#0072B2",
    "context_overflow": "#CC79A7",
    "format": "#999999",
    "model_not_found": "#666666",
    "unknown": "#444444",
    "session_takeover": "#7B4FA0",
    "write_lock_timeout": "#B794D4",
}


def html_unavailable() -> str | None:
    """Why the HTML report cannot be written here (matplotlib missing), or None.

    Looks matplotlib up without importing it: a run that writes no page never loads it.
    """
    if importlib.util.find_spec("matplotlib") is None:
        return "the HTML report needs matplotlib: pip install 'model-fallback[report]'"
    return None


# --- the command line that reproduces the run ---------------------------------------------


def reproduce_command(config: SimConfig) -> list[str]:
    """The ``model-fallback simulate`` argument list that runs *config* again.

    Every option is spelled out, fault rates as ``--fault PROVIDER:KIND=RATE`` where they
    differ from the scenario's own, so the line stays right when defaults change.
    """
    from model_fallback.simulate._scenarios import SCENARIOS

    argv = [
        "model-fallback",
        "simulate",
        "--scenario",
        config.scenario,
        "--seed",
        str(config.seed),
        "--duration",
        _num(config.duration_s),
        "--concurrency",
        str(config.concurrency),
        "--sessions",
        str(config.sessions),
    ]
    for c in config.candidates:
        argv += ["--candidate", str(c)]
    if config.replicas > 1:
        argv += ["--replicas", str(config.replicas)]
    if config.redis_url is not None:
        from model_fallback.simulate._replicas import safe_url

        argv += ["--redis", safe_url(config.redis_url)]
    argv += [
        "--attempt-timeout",
        _num(config.attempt_timeout),
        "--lock-timeout",
        _num(config.lock_timeout),
        "--takeover-rate",
        _num(config.takeover_rate),
        "--contention-rate",
        _num(config.contention_rate),
        "--crash-rate",
        _num(config.crash_rate),
    ]
    primary = config.profiles.get(config.candidates[0].provider) if config.candidates else None
    argv += ["--stream-share", _num(config.stream_share), "--idle-timeout", _num(config.idle_timeout)]
    if primary is not None:
        # The command line sets one mid-stream rate for every provider.
        argv += ["--interrupt-rate", _num(primary.interrupt_rate), "--stall-rate", _num(primary.stall_rate)]
    scenario = SCENARIOS.get(config.scenario)
    defaults = scenario.profiles(config.candidates, {}) if scenario is not None else {}
    for provider, profile in sorted(config.profiles.items()):
        base = defaults.get(provider)
        for kind in FAULT_KINDS:
            rate = profile.rates.get(kind, 0.0)
            if base is None or base.rates.get(kind, 0.0) != rate:
                argv += ["--fault", f"{provider}:{kind}={_num(rate)}"]
    return argv


def _fleet_note(config: SimConfig) -> str:
    """`` in N replica processes (cooldowns ...)`` for a fleet's page, else nothing."""
    if not config.fleet:
        return ""
    shared = "shared through Redis" if config.redis_url else "per process"
    return f" in {config.replicas} replica processes (cooldowns {shared})"


def _num(v: float) -> str:
    """*v* as short as it reads back exactly (``0.04``, but all of ``1/3``'s digits)."""
    short = f"{v:g}"
    return short if float(short) == v else repr(v)


# --- matplotlib ------------------------------------------------------------------------------


@contextmanager
def _style(salt: str) -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # real <text>: searchable, small
            "svg.hashsalt": salt,  # ids unique across the page's SVGs, and stable
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "axes.titlelocation": "left",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "axes.axisbelow": True,
            "grid.color": "#e6e6e6",
            "grid.linewidth": 0.6,
            "legend.frameon": False,
            "legend.fontsize": 8,
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
        }
    ):
        yield


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


_SVG_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_SVG_META = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_SVG_SIZE = re.compile(r'<svg([^>]*?) width="[^"]*" height="[^"]*"')


def _svg(fig: Figure, label: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = _SVG_PROLOG.sub("", buf.getvalue(), count=1)
    text = _SVG_META.sub("", text, count=1)
    # Sized by the page (CSS), not in points; a title for screen readers.
    return _SVG_SIZE.sub(r'<svg\1 role="img" aria-label="' + html.escape(label) + '"', text, count=1)


@dataclass(frozen=True)
class _Marks:
    """What every time axis shows: outage windows as observed, and the drain after the end."""

    outages: Sequence[tuple[str, float, float]]
    duration_s: float


def _time_axis(
    ax: Axes,
    bins: Sequence[Second],
    marks: _Marks,
    *,
    label: bool = True,
    legend: bool = True,
    name_marks: bool = True,
) -> None:
    """The x axis in seconds, the outage windows and the drain shaded, the legend on the right
    (naming the shaded spans too when *name_marks*)."""
    end = bins[-1].start_s + bins[-1].width_s if bins else 1.0
    ax.set_xlim(0, max(end, 1.0))
    if label:
        ax.set_xlabel("seconds since the run started")
    named: set[str] = set()
    for provider, a, b in marks.outages:
        name = f"{provider} outage" if name_marks and provider not in named else None
        named.add(provider)
        ax.axvspan(a, b, color="#F0E442", alpha=0.3, lw=0, label=name)
    if end > marks.duration_s:
        name = "drain (turns finishing)" if name_marks else None
        ax.axvspan(marks.duration_s, end, color="#888888", alpha=0.15, lw=0, label=name)
    if legend:
        _legend_right(ax)


def _legend_right(ax: Axes, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def _mid(bins: Sequence[Second]) -> list[float]:
    return [b.start_s + b.width_s / 2 for b in bins]


def _pct_series(bins: Sequence[Second], values: Callable[[Second], list[float]], q: float) -> list[float]:
    out = []
    for b in bins:
        v = percentile(values(b), q)
        out.append(float("nan") if v is None else v * 1000)
    return out


def _pct_lines(ax: Axes, bins: Sequence[Second], values: Callable[[Second], list[float]]) -> None:
    x = _mid(bins)
    for name, colour, ls in _PCT_STYLES:
        ax.plot(x, _pct_series(bins, values, float(name[1:])), color=colour, ls=ls, lw=1.4, label=name)
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)


def _stacked_bars(
    ax: Axes, bins: Sequence[Second], series: dict[str, list[float]], colours: dict[str, str]
) -> None:
    x = [b.start_s for b in bins]
    w = [b.width_s * 0.9 for b in bins]
    bottom = [0.0] * len(bins)
    for name, ys in series.items():
        ax.bar(x, ys, width=w, bottom=bottom, align="edge", color=colours[name], label=name, lw=0)
        bottom = [a + b for a, b in zip(bottom, ys, strict=True)]


# --- the charts ------------------------------------------------------------------------------


def _chart_blame(report: dict[str, Any]) -> Figure:
    ours = report["provider_failure_rate"]
    naive = report["naive"]["provider_failure_rate"]
    models = list(ours)
    fig = _figure(6.4, 1.2 + 0.85 * max(1, len(models)))
    ax = fig.subplots()
    h = 0.4
    ys = list(range(len(models)))
    o = [(ours[m] or 0.0) * 100 for m in models]
    n = [(naive[m] or 0.0) * 100 for m in models]
    ax.barh([y - h / 2 for y in ys], o, height=h, color=_OURS, label="this driver: provider failures only")
    ax.barh(
        [y + h / 2 for y in ys],
        n,
        height=h,
        color=_NAIVE,
        label="naive driver: coordination errors counted as model failures",
    )
    top = max([*o, *n, 1.0])
    for y, a, b in zip(ys, o, n, strict=True):
        ax.text(a + top * 0.01, y - h / 2, f"{a:.1f}%", va="center", fontsize=9, color=_OURS, weight="bold")
        extra = f"  \N{MULTIPLICATION SIGN}{b / a:.1f}" if a > 0 and b > a * 1.05 else ""
        ax.text(
            b + top * 0.01,
            y + h / 2,
            f"{b:.1f}%{extra}",
            va="center",
            fontsize=9,
            color=_NAIVE,
            weight="bold",
        )
    ax.set_yticks(ys, models)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel("share of the model's calls that failed (%)")
    ax.grid(axis="y", visible=False)
    ax.set_title("Failure rate per model: this driver vs a naive driver")
    fig.legend(loc="outside lower center", ncols=1)
    return fig


def _blamed_table(report: dict[str, Any]) -> str:
    blamed = report["naive"]["blamed"]
    if not blamed:
        return '<p class="small">No coordination abort in this run: both drivers agree.</p>'
    rows = []
    for cand, reasons in blamed.items():
        detail = ", ".join(f"{html.escape(r)} {n:,}" for r, n in reasons.items())
        rows.append(
            f"<tr><th>{html.escape(cand)}</th><td>{sum(reasons.values()):,}</td><td>{detail}</td></tr>"
        )
    return (
        '<table class="blamed"><tr><th>failures a naive driver charges to</th><th>local errors</th>'
        f"<th>as reason</th></tr>{''.join(rows)}</table>"
    )


def _chart_runs(bins: Sequence[Second], config: SimConfig, marks: _Marks) -> Figure:
    fig = _figure(6.4, 4.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    outcomes = [o for o in _OUTCOME_ORDER if any(b.stats.runs.get(o) for b in bins)]
    x = _mid(bins)
    ys = [[b.stats.runs.get(o, 0) / b.width_s for b in bins] for o in outcomes]
    if outcomes:
        top.stackplot(
            x, ys, labels=outcomes, colors=[_OUTCOME_COLOURS.get(o, "#777777") for o in outcomes], lw=0
        )
    top.set_ylabel("runs/s")
    top.set_title("Runs per second by outcome")
    _time_axis(top, bins, marks, label=False)
    chain = [str(c) for c in config.candidates]
    depth = [[b.stats.fallback_depths.get(i, 0) / b.width_s for b in bins] for i in range(len(chain))]
    bottom.stackplot(x, depth, labels=chain, colors=_MODEL_COLOURS[: len(chain)], lw=0)
    bottom.set_ylabel("runs/s")
    bottom.set_title("Successful runs by the model that served them")
    _time_axis(bottom, bins, marks, name_marks=False)
    return fig


def _chart_blame_time(bins: Sequence[Second], config: SimConfig, marks: _Marks) -> Figure:
    chain = [str(c) for c in config.candidates]
    fig = _figure(6.4, 0.5 + 1.35 * len(chain))
    axes = fig.subplots(len(chain), 1, sharex=True, squeeze=False)[:, 0]
    reports = [b.report() for b in bins]
    x = _mid(bins)
    for i, (ax, model) in enumerate(zip(axes, chain, strict=True)):
        ours = [_pct_or_nan(r["provider_failure_rate"].get(model)) for r in reports]
        naive = [_pct_or_nan(r["naive"]["provider_failure_rate"].get(model)) for r in reports]
        ax.fill_between(x, ours, naive, color=_NAIVE, alpha=0.15, lw=0, label="blamed for local errors")
        ax.plot(x, naive, color=_NAIVE, lw=1.2, ls="--", label="naive driver")
        ax.plot(x, ours, color=_OURS, lw=1.6, label="this driver")
        ax.set_ylim(0, 100)
        ax.set_ylabel("% failed")
        ax.set_title(model, fontsize=9)
        _time_axis(ax, bins, marks, legend=i == 0, name_marks=i == 0)
        if i < len(chain) - 1:
            ax.set_xlabel("")
    fig.suptitle("Failure rate per model, second by second", x=0.01, ha="left", fontsize=10, weight="bold")
    return fig


def _pct_or_nan(v: float | None) -> float:
    return float("nan") if v is None else v * 100


def _chart_attempts(stats: Stats, config: SimConfig) -> Figure:
    chain = [str(c) for c in config.candidates]
    by: dict[str, dict[str, Counter[str]]] = {m: {} for m in chain}
    for (cand, outcome, reason), n in stats.attempts.items():
        by.setdefault(cand, {}).setdefault(outcome, Counter())[reason] += n
    models = [m for m in by if by[m]] or chain
    rows = [[o for o in _OUTCOME_ORDER if o in by.get(m, {})] for m in models]
    heights = [max(1, len(r)) for r in rows]
    fig = _figure(6.4, 0.9 + 0.24 * sum(heights) + 0.35 * len(models))
    axes = fig.subplots(len(models), 1, sharex=True, squeeze=False, height_ratios=heights)[:, 0]
    seen: dict[str, str] = {}
    top = max([sum(c.values()) for m in models for c in by.get(m, {}).values()] + [1])
    for ax, model, outcomes in zip(axes, models, rows, strict=True):
        for y, outcome in enumerate(outcomes):
            left = 0
            reasons = by[model][outcome]
            for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
                colour = _REASON_COLOURS.get(reason, "#777777")
                label = reason if reason not in seen else None
                seen.setdefault(reason, colour)
                ax.barh(y, n, left=left, height=0.7, color=colour, label=label, lw=0.4, edgecolor="white")
                left += n
            ax.text(left + top * 0.01, y, str(left), va="center", fontsize=8)
        ax.set_yticks(range(len(outcomes)), outcomes)
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        ax.set_title(model, fontsize=9)
    axes[-1].set_xlabel("attempts (coloured by reason)")
    axes[-1].set_xlim(0, top * 1.12)
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="outside lower center", ncols=min(6, max(1, len(labels))), fontsize=7)
    fig.suptitle(
        "Attempts by model \N{MULTIPLICATION SIGN} outcome \N{MULTIPLICATION SIGN} reason (whole run)",
        x=0.01,
        ha="left",
        fontsize=10,
        weight="bold",
    )
    return fig


def _chart_coordination(bins: Sequence[Second], marks: _Marks) -> Figure:
    fig = _figure(6.4, 2.8)
    ax = fig.subplots()
    kinds = sorted({k for b in bins for k in b.stats.coordination_aborts})
    series = {k: [b.stats.coordination_aborts.get(k, 0) / b.width_s for b in bins] for k in kinds}
    colours = {k: _KIND_COLOURS[i % len(_KIND_COLOURS)] for i, k in enumerate(kinds)}
    _stacked_bars(ax, bins, series, colours)
    avoided = [sum(b.stats.fallbacks_avoided.values()) / b.width_s for b in bins]
    marker = "." if len(bins) <= 60 else None
    ax.plot(_mid(bins), avoided, color="#222222", lw=1.4, marker=marker, ms=4, label="fallbacks avoided")
    ax.set_ylabel("per second")
    ax.set_title("Coordination aborts by kind, and the fallbacks they avoided")
    if not kinds:
        ax.text(0.5, 0.5, "no coordination aborts in this run", transform=ax.transAxes, ha="center")
    _time_axis(ax, bins, marks)
    ax.set_ylim(bottom=0)
    return fig


def _chart_cooldown(bins: Sequence[Second], config: SimConfig, marks: _Marks) -> Figure:
    fig = _figure(6.4, 2.8)
    ax = fig.subplots()
    chain = [str(c) for c in config.candidates]
    series = {m: [b.stats.cooldown_skips.get(m, 0) / b.width_s for b in bins] for m in chain}
    _stacked_bars(ax, bins, series, dict(zip(chain, _MODEL_COLOURS, strict=False)))
    ax.set_ylabel("skips/s")
    ax.set_title("Cooldown skips: candidates not called because they were cooling down")
    _time_axis(ax, bins, marks)
    return fig


def _chart_streaming(bins: Sequence[Second], marks: _Marks) -> Figure:
    fig = _figure(6.4, 3.6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    _pct_lines(top, bins, _first_chunks)
    top.set_title("Time to first chunk of streamed attempts")
    _time_axis(top, bins, marks, label=False)
    inter = [sum(b.stats.interruptions.values()) / b.width_s for b in bins]
    runs_inter = [b.stats.runs.get("interrupted", 0) / b.width_s for b in bins]
    _stacked_bars(bottom, bins, {"streams interrupted": inter}, {"streams interrupted": "#B8860B"})
    bottom.plot(_mid(bins), runs_inter, color="#222222", lw=1.2, label="runs ended interrupted")
    bottom.set_ylabel("per second")
    bottom.set_title("Streams that failed after their first chunk")
    _time_axis(bottom, bins, marks, name_marks=False)
    return fig


def _chart_latency(bins: Sequence[Second], marks: _Marks) -> Figure:
    fig = _figure(6.4, 4.2)
    top, bottom = fig.subplots(2, 1, sharex=True)
    _pct_lines(top, bins, lambda b: b.stats.run_durations)
    top.set_title("Run latency (the whole fallback chain)")
    _time_axis(top, bins, marks, label=False)
    _pct_lines(bottom, bins, lambda b: [v for vs in b.stats.attempt_durations.values() for v in vs])
    bottom.set_title("Attempt latency (one provider call, every model)")
    _time_axis(bottom, bins, marks, name_marks=False)
    return fig


def _chart_lock(bins: Sequence[Second], marks: _Marks) -> Figure:
    fig = _figure(6.4, 4.2)
    top, bottom = fig.subplots(2, 1, sharex=True)
    _pct_lines(top, bins, lambda b: b.stats.lock_waits)
    top.set_title("Session write-lock wait")
    _time_axis(top, bins, marks, label=False)
    series = {
        "lock timeouts": [b.stats.lock_timeouts / b.width_s for b in bins],
        "takeovers": [b.stats.takeovers / b.width_s for b in bins],
        "stale locks reclaimed": [sum(b.stats.stale_reclaims.values()) / b.width_s for b in bins],
    }
    colours = {"lock timeouts": "#B794D4", "takeovers": "#7B4FA0", "stale locks reclaimed": "#999999"}
    _stacked_bars(bottom, bins, series, colours)
    bottom.set_ylabel("per second")
    bottom.set_title("What the session layer saw")
    _time_axis(bottom, bins, marks, name_marks=False)
    return fig


# --- the page --------------------------------------------------------------------------------


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _card(label: str, value: str, note: str = "", cls: str = "") -> str:
    return (
        f'<div class="card {cls}"><div class="label">{html.escape(label)}</div>'
        f'<div class="value">{value}</div><div class="note">{note}</div></div>'
    )


def _first_chunks(b: Second | Stats) -> list[float]:
    stats = b.stats if isinstance(b, Second) else b
    return [v for vs in stats.first_chunk.values() for v in vs]


def _cards(report: dict[str, Any], stats: Stats) -> str:
    runs = report["runs"]
    total = runs["total"]
    success = runs.get("success", 0)
    naive = report["naive"]
    aborts = sum(report["coordination_aborts"].values())
    avoided = sum(report["fallbacks_avoided"].values())
    calls = report["provider_calls"]
    extra = naive["extra_provider_calls"]
    cards = [
        _card(
            "runs",
            f"{total:,}",
            f"{report['runs_per_s']}/s · {success / total:.1%} served" if total else "none",
        ),
        _card(
            "“All models failed”",
            f'<span class="ours">{naive["all_models_failed_ours"]:,}</span>'
            f' <span class="vs">vs</span> <span class="naive">{naive["all_models_failed"]:,}</span>',
            "this driver vs a naive driver",
            "wide",
        ),
        _card(
            "coordination aborts",
            f"{aborts:,}",
            f"local errors, no model blamed · {avoided:,} fallbacks avoided",
        ),
        _card(
            "provider calls",
            f'<span class="ours">{calls:,}</span> <span class="vs">vs</span> '
            f'<span class="naive">{calls + extra:,}</span>',
            f"{extra:,} calls a naive driver would waste",
            "wide",
        ),
        _card(
            "run latency p95",
            _ms(report["latency_s"]["run"]["p95"]),
            f"p50 {_ms(report['latency_s']['run']['p50'])} · p99 {_ms(report['latency_s']['run']['p99'])}",
        ),
        _card(
            "lock wait p99",
            _ms(report["session"]["lock_wait_s"]["p99"]),
            f"{report['session']['lock_timeouts']} timeouts · {report['session']['takeovers']} takeovers",
        ),
    ]
    streamed = sum(stats.streams.values())
    if streamed:
        cards.append(
            _card(
                "time to first chunk p95",
                _ms(percentile(_first_chunks(stats), 95)),
                f"{streamed:,} streams served · {sum(stats.interruptions.values()):,} interrupted",
            )
        )
    return '<section class="cards">' + "".join(cards) + "</section>"


def _config_section(config: SimConfig, report: dict[str, Any]) -> str:
    rows = []
    columns: dict[str, None] = {}
    per_provider: dict[str, dict[str, Any]] = {}
    for key, value in report["config"].items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            # Per-provider rates (fault_rates, and any other such table): one table for all.
            prefix = "" if key == "fault_rates" else key.removesuffix("_rates").removesuffix("_fault") + " "
            for provider, rates in value.items():
                for k, v in rates.items():
                    if v:
                        columns[prefix + k] = None
                    per_provider.setdefault(provider, {})[prefix + k] = v
            continue
        if key == "outages":
            key = "planned outages (simulated clock)"
            value = (
                ", ".join(f"{o['provider']} {o['start_s']:g} to {o['end_s']:g} s" for o in value) or "none"
            )
        elif isinstance(value, list):
            value = " → ".join(map(str, value))
        rows.append(f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>")
    providers = sorted(per_provider)
    head = "".join(f"<th>{html.escape(p)}</th>" for p in providers)
    faults = [
        f"<tr><th>{html.escape(c)}</th>"
        + "".join(f"<td>{html.escape(f'{per_provider[p].get(c, 0):g}')}</td>" for p in providers)
        + "</tr>"
        for c in columns
    ]
    return (
        '<section class="config" id="config"><h2>Configuration and seed</h2>'
        "<p>Run it again with (the same seed gives the same outcomes turn by turn; how many turns "
        "fit in the duration depends on the machine):</p>"
        f'<pre id="command">{html.escape(shlex.join(reproduce_command(config)))}</pre>'
        f"<table>{''.join(rows)}</table>"
        f'<table class="faults"><tr><th>fault rate per call</th>{head}</tr>{"".join(faults)}</table>'
        "</section>"
    )


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#1d1d1f;background:#f4f5f7}
header{background:#1f2937;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px;font-weight:600}
header p{margin:4px 0 0;color:#cbd5e1;font-size:13px}
main{padding:16px 24px;max-width:1500px;margin:0 auto}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:10px;margin-bottom:14px}
.card{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .label{font-size:12px;color:#555;text-transform:uppercase;letter-spacing:.03em}
.card .value{font-size:26px;font-weight:650;margin:2px 0}
.card .note{font-size:12px;color:#666}
.ours{color:#0072B2}.naive{color:#D55E00}.vs{font-size:14px;color:#888;font-weight:400}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px}
figure{margin:0;background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
figure.mission{border:2px solid #0072B2}
figure svg{width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#444;margin-top:6px}
.empty{padding:40px 12px;text-align:center;color:#666;font-size:15px;background:#fafafa;border-radius:6px}
h2{font-size:16px;margin:18px 0 8px}
.config{background:#fff;border-radius:8px;padding:4px 16px 12px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.config h2{margin-top:8px}.config table{margin-top:10px}
pre{background:#f1f3f5;padding:8px 10px;border-radius:6px;white-space:pre-wrap;word-break:break-all;
 font-size:12px}
.small{font-size:12px;color:#555}
table{border-collapse:collapse;font-size:12px}
th,td{text-align:left;padding:2px 8px;border-bottom:1px solid #eee}
.faults td{text-align:right}
.blamed{margin-top:8px}.blamed td:nth-child(2){text-align:right}
footer{color:#666;font-size:12px;padding:12px 24px 24px;max-width:1500px;margin:0 auto}
"""


def _figure_html(chart_id: str, body: str, caption: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<figure id="{chart_id}"{klass}>{body}<figcaption>{caption}</figcaption></figure>'


def write_html(
    path: str | Path,
    timeline: Timeline,
    stats: Stats,
    config: SimConfig,
    *,
    interrupted: bool = False,
) -> None:
    """Write the run's report as one self-contained HTML page to *path*.

    Args:
        path: the file to write (replaced if it exists).
        timeline: the run's events second by second.
        stats: the run's totals (what the text report prints).
        config: the run's configuration (printed, with the command line that reproduces it).
        interrupted: whether the run was stopped before its end (Ctrl-C).

    Raises:
        ImportError: matplotlib is not installed (the ``report`` extra).
    """
    report = stats.report(
        scenario=config.scenario, seed=config.seed, interrupted=interrupted, config=config.as_dict()
    )
    bins = timeline.binned()
    marks = _Marks(timeline.outage_windows(), config.duration_s)
    width = bins[0].width_s if bins else 1.0
    step = "every second" if width == 1 else f"every {width:g} seconds"

    def chart(chart_id: str, label: str, draw: Callable[[], Figure]) -> str:
        with _style(chart_id):
            fig = draw()
            return _svg(fig, label)

    figures = [
        _figure_html(
            "chart-blame",
            chart(
                "chart-blame",
                "failure rate per model, this driver vs a naive driver",
                lambda: _chart_blame(report),
            ),
            "<b>The point of this library.</b> Blue: how often each model's calls really failed "
            "(provider errors only). Orange: what a driver that counts session takeovers and lock "
            "timeouts as model failures would report for the same run, calling every remaining "
            "candidate into the same local error. The gap is blame for lock contention that the "
            "models never earned: a lock timeout looks like a <i>timeout</i>, a takeover like "
            "<i>unknown</i>." + _blamed_table(report),
            "mission",
        ),
        _figure_html(
            "chart-runs",
            chart("chart-runs", "runs per second by outcome", lambda: _chart_runs(bins, config, marks)),
            "Purple <i>coordination_abort</i>: runs stopped at once on a local error (the lock storm); "
            "red <i>exhausted</i>: real “All models failed”. Below: which model served — the primary "
            "drops out during its outage and the chain carries the load.",
        ),
        _figure_html(
            "chart-blame-time",
            chart(
                "chart-blame-time",
                "failure rate per model over time",
                lambda: _chart_blame_time(bins, config, marks),
            ),
            "The same comparison second by second: the primary's outage raises both lines "
            "(a real provider failure); the shaded gap is local errors a naive driver charges to the model.",
        ),
        _figure_html(
            "chart-attempts",
            chart(
                "chart-attempts",
                "attempts by model, outcome and reason",
                lambda: _chart_attempts(stats, config),
            ),
            "Every attempt, by outcome and reason. Coordination aborts are an outcome of their own "
            "(kind as reason), never a provider_failure; skipped = cooling down, not called.",
        ),
        _figure_html(
            "chart-coordination",
            chart(
                "chart-coordination",
                "coordination aborts over time",
                lambda: _chart_coordination(bins, marks),
            ),
            "Bars: runs stopped by a session takeover or a lock timeout. Line: the candidates "
            "left untried — calls a naive driver would have made into the same local condition.",
        ),
        _figure_html(
            "chart-cooldown",
            chart("chart-cooldown", "cooldown skips over time", lambda: _chart_cooldown(bins, config, marks)),
            "Candidates skipped because a recent rate limit or overload put them in cooldown "
            "(no call made); the outage shows as the primary being skipped.",
        ),
    ]
    if any(b.stats.streams for b in bins):
        figures.append(
            _figure_html(
                "chart-streaming",
                chart("chart-streaming", "streaming over time", lambda: _chart_streaming(bins, marks)),
                "Time to first chunk of every stream that delivered one, and streams cut after it "
                "(never switched to another model: the run ends <i>interrupted</i>).",
            )
        )
    else:
        figures.append(
            _figure_html(
                "chart-streaming",
                '<div class="empty">no streaming turns in this run</div>',
                "Time to first chunk and stream interruptions are drawn when the run streams.",
            )
        )
    figures += [
        _figure_html(
            "chart-latency",
            chart(
                "chart-latency", "run and attempt latency percentiles", lambda: _chart_latency(bins, marks)
            ),
            f"Percentiles of the runs and attempts that ended in each bin ({step}).",
        ),
        _figure_html(
            "chart-lock",
            chart("chart-lock", "session lock wait percentiles", lambda: _chart_lock(bins, marks)),
            "How long turns waited for their session's write lock, and what the session layer "
            "counted: lock timeouts, takeovers (the fence saw another writer), stale locks of "
            "crashed holders reclaimed.",
        ),
    ]
    state = "interrupted: report so far" if interrupted else "done"
    title = f"model-fallback simulate — {config.scenario}, seed {config.seed}"
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1>"
        f"<p>{report['elapsed_s']:.1f} s ({state}) · {config.concurrency} workers &times; "
        f"{config.sessions} sessions{_fleet_note(config)} · chain "
        f"{html.escape(' → '.join(str(c) for c in config.candidates))}"
        f" · sampled {step}. This driver stops a run at once on a local coordination error; a naive "
        "driver counts it as a model failure and falls back into it. Same run, both views.</p></header>"
        f"<main>{_cards(report, stats)}"
        f'<div class="grid">{"".join(figures)}{_config_section(config, report)}</div></main>'
        f"<footer>{html.escape(LIBRARY_NOTE)} Generated by model-fallback simulate; "
        "no script, font or image is loaded from anywhere.</footer>"
        "</body></html>\n"
    )
    Path(path).write_text(page, encoding="utf-8")
