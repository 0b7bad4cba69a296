"""``model-fallback simulate``: a realistic workload that exercises the whole library.

Many concurrent sessions, each a real JSONL transcript under real session write locks,
run turns through the embedded-turn helpers and the fallback driver over a chain of
simulated providers with configurable fault profiles (a share of the turns streaming, with
streams interrupted or stalled mid-way); a maintenance writer, a compactor and crashing
holders produce real takeovers, lock timeouts and stale locks. The report
sets what this driver did beside what a naive driver would have reported for the same run.
"""

from __future__ import annotations

from model_fallback.simulate._faults import FAULT_KINDS, FaultProfile, Outage, SimulatedProvider
from model_fallback.simulate._html import html_unavailable, write_html
from model_fallback.simulate._report import Stats, format_report
from model_fallback.simulate._scenarios import DEFAULT_CHAIN, SCENARIOS, Scenario
from model_fallback.simulate._timeline import Timeline
from model_fallback.simulate._workload import SimConfig, Workload

__all__ = [
    "DEFAULT_CHAIN",
    "FAULT_KINDS",
    "SCENARIOS",
    "FaultProfile",
    "Outage",
    "Scenario",
    "SimConfig",
    "SimulatedProvider",
    "Stats",
    "Timeline",
    "Workload",
    "format_report",
    "html_unavailable",
    "write_html",
]
