"""The ``model-fallback`` command.

``model-fallback simulate`` runs a realistic workload on an embedded default (no
services needed) and prints a report; ``model-fallback dashboards`` writes or checks the
generated Grafana dashboards and Prometheus rules. Bad options exit with status 2 and a
clear message before any work is done.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad option: reported as ``model-fallback simulate: error: ...``, exit 2."""


def _positive_float(name: str) -> Any:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if math.isnan(v) or v <= 0 or math.isinf(v):
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text!r}")
        return v

    return parse


def _positive_int(name: str) -> Any:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {text!r}")
        return v

    return parse


def _rate(name: str) -> Any:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a number between 0 and 1, got {text!r}"
            ) from None
        if math.isnan(v) or not (0.0 <= v <= 1.0):
            raise argparse.ArgumentTypeError(f"{name} must be between 0 and 1, got {text!r}")
        return v

    return parse


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a whole number, got {text!r}") from None
    if not (0 <= v <= 65535):
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {text!r}")
    return v


def _fault(text: str) -> tuple[str, str, float]:
    """``KIND=RATE`` or ``PROVIDER:KIND=RATE``."""
    from model_fallback.simulate import FAULT_KINDS

    target, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--fault takes KIND=RATE or PROVIDER:KIND=RATE, got {text!r}")
    provider, colon, kind = target.rpartition(":")
    provider = provider if colon else "*"
    kind = kind.strip()
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    rate = _rate(f"--fault {target}")(value)
    return provider.strip() or "*", kind, rate


def _candidate(text: str) -> Any:
    from model_fallback._model import Candidate

    try:
        return Candidate.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (example: --candidate openai/gpt-4o)") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``model-fallback`` command."""
    from model_fallback.simulate import FAULT_KINDS, SCENARIOS

    parser = argparse.ArgumentParser(
        prog="model-fallback",
        description="Observability-first model fallback runner for LLM applications.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sim = sub.add_parser(
        "simulate",
        help="run a realistic workload and report what happened (the main job)",
        description=(
            "Run many concurrent sessions (real JSONL transcripts under real session write locks) "
            "through the fallback driver over simulated providers with fault profiles, a share of "
            "the turns streaming (with streams interrupted or stalled mid-way); a maintenance "
            "writer, a compactor and crashing holders produce real takeovers, lock timeouts and stale "
            "locks. Serves /metrics on 127.0.0.1 while running, exports OTLP when "
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, and ends with a report that sets this driver beside "
            "a naive one that treats coordination errors as model failures."
        ),
        epilog="scenarios: " + "; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values()),
    )
    sim.add_argument("--scenario", choices=sorted(SCENARIOS), default="mixed", help="preset (default: mixed)")
    sim.add_argument(
        "--duration", type=_positive_float("--duration"), default=30.0, help="seconds to run (default: 30)"
    )
    sim.add_argument(
        "--concurrency",
        type=_positive_int("--concurrency"),
        default=16,
        help="concurrent workers (default: 16)",
    )
    sim.add_argument(
        "--sessions",
        type=_positive_int("--sessions"),
        default=64,
        help="session transcripts (default: 64; at least --concurrency)",
    )
    sim.add_argument(
        "--candidate",
        dest="candidates",
        action="append",
        type=_candidate,
        metavar="PROVIDER/MODEL",
        help="a candidate of the chain, in order; repeat (default: openai/gpt-4o, "
        "anthropic/claude-sonnet-4, google/gemini-2.5-pro)",
    )
    sim.add_argument(
        "--seed", type=int, default=1, help="seed: the same seed gives the same outcomes (default: 1)"
    )
    sim.add_argument(
        "--attempt-timeout",
        type=_positive_float("--attempt-timeout"),
        default=1.0,
        help="seconds per attempt before it counts as a provider timeout (default: 1.0)",
    )
    sim.add_argument(
        "--lock-timeout",
        type=_positive_float("--lock-timeout"),
        default=0.5,
        help="session write-lock acquire timeout in seconds (default: 0.5)",
    )
    sim.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="[PROVIDER:]KIND=RATE",
        help="override a provider fault rate (0..1), e.g. rate_limit=0.2 or openai:hang=0.05; "
        f"kinds: {', '.join(FAULT_KINDS)}",
    )
    sim.add_argument(
        "--takeover-rate",
        type=_rate("--takeover-rate"),
        default=None,
        help="share of turns whose session a maintenance job changes mid-prompt",
    )
    sim.add_argument(
        "--contention-rate",
        type=_rate("--contention-rate"),
        default=None,
        help="share of turns whose lock a compactor holds past the lock timeout",
    )
    sim.add_argument(
        "--crash-rate",
        type=_rate("--crash-rate"),
        default=None,
        help="share of turns preceded by a lock holder process killed with SIGKILL",
    )
    sim.add_argument(
        "--stream",
        action="store_true",
        help="every turn streams (stream_embedded_turn); by default a third of the turns do",
    )
    sim.add_argument(
        "--stream-share",
        type=_rate("--stream-share"),
        default=None,
        help="share of turns that stream (0..1; default: the scenario's, a third)",
    )
    sim.add_argument(
        "--interrupt-rate",
        type=_rate("--interrupt-rate"),
        default=None,
        help="share of started streams that fail after a few chunks (overloaded or connection dropped)",
    )
    sim.add_argument(
        "--stall-rate",
        type=_rate("--stall-rate"),
        default=None,
        help="share of started streams that stall past --idle-timeout after a few chunks",
    )
    sim.add_argument(
        "--idle-timeout",
        type=_positive_float("--idle-timeout"),
        default=0.5,
        help="seconds a stream may go without a chunk once started (default: 0.5)",
    )
    sim.add_argument(
        "--metrics-port",
        type=_port,
        default=9464,
        help="serve /metrics on 127.0.0.1:PORT while running (default: 9464; 0 disables)",
    )
    sim.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        help="address for /metrics (default: 127.0.0.1; change only on purpose)",
    )
    sim.add_argument(
        "--hold",
        action="store_true",
        help="keep serving /metrics after the run until Ctrl-C (for Prometheus to scrape)",
    )
    sim.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    sim.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="keep session transcripts in this (new or empty) directory instead of a temp dir",
    )
    sim.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the report as one self-contained HTML page with charts over time "
        "(needs the report extra); with --dir, DIR/report.html unless --html names another file",
    )
    sim.add_argument("--no-progress", action="store_true", help="no live progress even on a terminal")
    sim.add_argument(
        "--replicas",
        type=_positive_int("--replicas"),
        default=1,
        metavar="N",
        help="run the workload as N worker processes (default: 1, in this process), splitting the "
        "sessions and the concurrency; one aggregated /metrics; cooldowns per process on wall-clock "
        "time unless --redis shares them; the report adds the calls made to a candidate already "
        "cooling down in another replica",
    )
    sim.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="share the replicas' cooldowns through this Redis (redis://HOST:PORT/DB; needs "
        "--replicas 2 or more and the redis extra); each run uses a namespace of its own",
    )
    sim.add_argument(
        "--compare",
        action="store_true",
        help="with --redis: run the fleet twice, first with per-process cooldowns, then shared, "
        "and print the calls to candidates cooling down elsewhere side by side (twice the time)",
    )

    dash = sub.add_parser("dashboards", help="write or check the generated Grafana dashboards and rules")
    dash.add_argument("--check", action="store_true", help="exit 1 when the committed files are stale")
    dash.add_argument("--out", type=Path, default=None, help="output directory (default: ./dashboards)")
    dash.add_argument(
        "--runbook-base",
        default=None,
        help="prefix of each alert's runbook_url, the lower-cased alert name appended (default: the "
        "repository's docs/runbooks.md#); use it to point generated rules at your own copy",
    )
    dash.add_argument(
        "--slo-provider",
        type=float,
        default=0.99,
        help="provider availability SLO: share of eligible runs served (default 0.99); coordination "
        "aborts and caller errors are not counted",
    )
    dash.add_argument(
        "--slo-session",
        type=float,
        default=0.995,
        help="session health SLO: share of turns no local coordination error stopped (default 0.995)",
    )
    return parser


def _config(args: argparse.Namespace) -> Any:
    from model_fallback.simulate import DEFAULT_CHAIN, SCENARIOS, SimConfig

    scenario = SCENARIOS[args.scenario]
    chain = tuple(dict.fromkeys(args.candidates or DEFAULT_CHAIN))
    if args.sessions < args.concurrency:
        raise UsageError(f"--sessions ({args.sessions}) must be at least --concurrency ({args.concurrency})")
    overrides: dict[str, dict[str, float]] = {}
    for provider, kind, rate in args.fault:
        if provider != "*" and provider not in {c.provider for c in chain}:
            raise UsageError(f"--fault names provider {provider!r}, which is not in the chain")
        overrides.setdefault(provider, {})[kind] = rate
    if args.stream and args.stream_share is not None:
        raise UsageError("--stream is --stream-share 1: give one of them")
    stream_share = args.stream_share if args.stream_share is not None else scenario.stream_share
    if args.stream:
        stream_share = 1.0
    try:
        profiles = scenario.profiles(
            chain, overrides, interrupt_rate=args.interrupt_rate, stall_rate=args.stall_rate
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.dir is not None:
        d = args.dir
        try:
            if d.exists() and not d.is_dir():
                raise UsageError(f"--dir {d} is a file, not a directory: name a new or empty directory")
            if d.exists() and any(d.iterdir()):
                raise UsageError(f"--dir {d} must be a new or empty directory")
        except OSError as exc:
            raise UsageError(f"--dir {d}: cannot use it: {exc.strerror or exc}") from None
        # Created only once everything else is checked (nothing is written on a usage error);
        # here, only whether it can be: the nearest existing ancestor must be a writable dir.
        parent = d.absolute()
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"--dir {d}: cannot be created ({parent} is not a writable directory)")
    if args.compare and args.redis is None:
        raise UsageError("--compare sets per-process cooldowns beside shared ones: give --redis URL")
    if args.redis is not None and args.replicas < 2:
        raise UsageError("--redis shares cooldowns between replicas: give --replicas 2 or more")
    if args.replicas > args.concurrency:
        raise UsageError(
            f"--replicas ({args.replicas}) must be at most --concurrency ({args.concurrency}): "
            "each replica runs at least one worker"
        )
    if args.redis is not None:
        from model_fallback.simulate._replicas import redis_unreachable, safe_url

        why = redis_unreachable(args.redis)
        if why is not None:
            raise UsageError(f"--redis {safe_url(args.redis)}: {why}")
    if args.metrics_addr not in ("127.0.0.1", "localhost", "::1") and not os.environ.get(
        "MODEL_FALLBACK_ALLOW_PUBLIC_METRICS"
    ):
        print(
            f"model-fallback simulate: warning: serving /metrics on {args.metrics_addr}, not loopback",
            file=sys.stderr,
        )
    return SimConfig(
        scenario=scenario.name,
        duration_s=args.duration,
        concurrency=args.concurrency,
        sessions=args.sessions,
        candidates=chain,
        seed=args.seed,
        attempt_timeout=args.attempt_timeout,
        lock_timeout=args.lock_timeout,
        takeover_rate=scenario.takeover_rate if args.takeover_rate is None else args.takeover_rate,
        contention_rate=scenario.contention_rate if args.contention_rate is None else args.contention_rate,
        crash_rate=scenario.crash_rate if args.crash_rate is None else args.crash_rate,
        profiles=profiles,
        outages=scenario.outages(chain, args.duration),
        directory=args.dir,
        stream_share=stream_share,
        idle_timeout=args.idle_timeout,
        replicas=args.replicas,
        redis_url=args.redis,
    )


class _NoTelemetry:
    observers: tuple[object, ...] = ()

    def shutdown(self) -> None:
        pass


def _start_telemetry(args: argparse.Namespace, config: Any) -> Any:
    try:
        from model_fallback import telemetry
    except ImportError as exc:
        print(
            f"model-fallback simulate: warning: telemetry unavailable ({exc}); "
            "install 'model-fallback[all]' for /metrics and OTLP",
            file=sys.stderr,
        )
        return _NoTelemetry()

    port = args.metrics_port or None
    try:
        return telemetry.configure(
            service_name=os.environ.get("OTEL_SERVICE_NAME", "model-fallback-simulate"),
            prometheus_port=port,
            prometheus_addr=args.metrics_addr,
            candidates=config.candidates,
        )
    except OSError as exc:
        raise UsageError(
            f"cannot serve /metrics on {args.metrics_addr}:{args.metrics_port}: {exc.strerror or exc} "
            "(pass --metrics-port 0 to disable, or another port)"
        ) from None


def _simulate(args: argparse.Namespace) -> int:
    import anyio

    from model_fallback.simulate import Stats, Timeline, Workload, format_report, html_unavailable
    from model_fallback.simulate._report import dumps

    config = _config(args)
    html = _html_path(args, html_unavailable())
    if config.fleet:
        return _simulate_fleet(args, config, html)
    # Stale-lock reclaims and torn lines are counted in the report and the metrics; as log
    # lines they would only scroll the progress away.
    logging.getLogger("model_fallback.session").setLevel(logging.ERROR)
    handle = _start_telemetry(args, config)
    if args.dir is not None:
        try:
            args.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            handle.shutdown()
            raise UsageError(f"--dir {args.dir}: cannot create it: {exc.strerror or exc}") from None
    stats = Stats(chain=config.candidates)
    interrupted = False
    progress = not args.no_progress and sys.stderr.isatty()
    if args.metrics_port:
        print(f"serving metrics at http://{args.metrics_addr}:{args.metrics_port}/metrics", file=sys.stderr)
    timeline = Timeline(config.candidates, started=stats.started)
    workload = Workload(config, stats, [*handle.observers, timeline] if html else handle.observers)

    report: dict[str, Any] | None = None

    def finish_run() -> None:
        """The report (and the HTML page) of the run as it ended: printed at once, so a
        --hold that follows neither delays it nor counts as run time."""
        nonlocal report
        workload.close()
        report = stats.report(
            scenario=config.scenario, seed=config.seed, interrupted=interrupted, config=config.as_dict()
        )
        if args.json:
            sys.stdout.write(dumps(report) + "\n")
        else:
            if progress:
                sys.stderr.write("\n")
            sys.stdout.write(format_report(report) + "\n")
        sys.stdout.flush()
        if html is not None:
            from model_fallback.simulate import write_html

            timeline.finish()
            write_html(html, timeline, stats, config, interrupted=interrupted)
            print(f"wrote {html}", file=sys.stderr)

    async def main() -> None:
        nonlocal interrupted
        async with anyio.create_task_group() as tg:
            holding = False

            async def signals() -> None:
                nonlocal interrupted
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                    async for _ in received:
                        if holding:  # Ctrl-C ends the hold: the run itself finished normally
                            tg.cancel_scope.cancel()
                            return
                        if interrupted:  # a second Ctrl-C: stop waiting for turns in flight
                            tg.cancel_scope.cancel()
                            return
                        interrupted = True
                        workload.stop.set()

            tg.start_soon(signals)
            live = anyio.CancelScope()
            if progress:

                async def show_progress() -> None:
                    with live:
                        await _progress(stats, config)

                tg.start_soon(show_progress)
            await workload.run()
            live.cancel()  # the live line stops with the run
            finish_run()
            if args.hold and not interrupted:
                holding = True
                print("run finished; still serving /metrics — Ctrl-C to exit", file=sys.stderr)
                await anyio.sleep_forever()
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    finally:
        if report is None:  # the run did not get to its end (a second Ctrl-C): report what ran
            finish_run()
    handle.shutdown()
    return EXIT_INTERRUPTED if interrupted else 0


def _fleet_metrics(args: argparse.Namespace, fleet: Any) -> Any:
    """The parent's /metrics: the replicas' multiprocess files, aggregated (None: not served)."""
    if fleet.metrics_dir is None:
        return None
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from model_fallback.telemetry import _MetricsServer

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(fleet.metrics_dir))  # type: ignore[no-untyped-call]
    try:
        server = _MetricsServer(args.metrics_addr, args.metrics_port, registry)
    except OSError as exc:
        raise UsageError(
            f"cannot serve /metrics on {args.metrics_addr}:{args.metrics_port}: {exc.strerror or exc} "
            "(pass --metrics-port 0 to disable, or another port)"
        ) from None
    server.start()
    return server


def _simulate_fleet(args: argparse.Namespace, config: Any, html: Path | None) -> int:
    """``--replicas N``: N worker processes, one merged report, one aggregated /metrics.

    With ``--compare``, the same fleet first runs with per-process cooldowns (no /metrics, no
    HTML page), then with the shared ones; the report is the shared run's, with the per-process
    run's figures beside its own.
    """
    import dataclasses

    import anyio

    from model_fallback.simulate import format_report
    from model_fallback.simulate._replicas import Fleet, merge
    from model_fallback.simulate._report import dumps

    metrics = bool(args.metrics_port)
    if metrics:
        try:
            import prometheus_client.multiprocess  # noqa: F401
        except ImportError as exc:
            print(
                f"model-fallback simulate: warning: no /metrics ({exc}); "
                "install 'model-fallback[all]' for /metrics",
                file=sys.stderr,
            )
            metrics = False
    fleet = Fleet(config, metrics=metrics, html=html is not None, directory=args.dir)
    baseline: Fleet | None = None
    if args.compare:
        baseline = Fleet(
            dataclasses.replace(config, redis_url=None),
            metrics=False,
            html=False,
            directory=None if args.dir is None else args.dir / "per-process",
        )
    fleets = [f for f in (baseline, fleet) if f is not None]
    server = None
    try:
        server = _fleet_metrics(args, fleet)
        if args.dir is not None:
            try:
                args.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"--dir {args.dir}: cannot create it: {exc.strerror or exc}") from None
    except BaseException:
        for f in fleets:
            f.close()
        raise
    progress = not args.no_progress and sys.stderr.isatty()
    if server is not None:
        print(f"serving metrics at http://{args.metrics_addr}:{args.metrics_port}/metrics", file=sys.stderr)
    interrupted = False
    current = fleets[0]
    per_process: dict[str, Any] | None = None

    def started(pids: list[int]) -> None:
        print(
            f"started {len(pids)} replica processes (pids {', '.join(map(str, pids))}), cooldowns "
            + ("shared through Redis" if current.config.redis_url else "per process"),
            file=sys.stderr,
        )

    def merged(f: Fleet) -> tuple[Any, Any, dict[str, Any]]:
        """The merged stats, timeline and report of fleet *f*'s run."""
        results = f.results()
        begun = time.monotonic() - (time.time() - f.t0) if f.t0 is not None else time.monotonic()
        stats, timeline, section, elapsed = merge(f, results, started=begun)
        report = stats.report(
            scenario=config.scenario,
            seed=config.seed,
            interrupted=interrupted or any(r.get("interrupted") for r in results),
            config=f.config.as_dict(),
            elapsed_s=elapsed,
        )
        report["fleet"] = section
        return stats, timeline, report

    def finish_run(f: Fleet) -> None:
        stats, timeline, report = merged(f)
        if per_process is not None:
            report["fleet"]["per_process"] = per_process
        if args.json:
            sys.stdout.write(dumps(report) + "\n")
        else:
            if progress:
                sys.stderr.write("\n")
            sys.stdout.write(format_report(report) + "\n")
        sys.stdout.flush()
        for failure in f.failures:
            print(f"model-fallback simulate: error: {failure}", file=sys.stderr)
        if f is fleet and html is not None and timeline is not None:
            from model_fallback.simulate import write_html

            write_html(html, timeline, stats, config, interrupted=report["interrupted"])
            print(f"wrote {html}", file=sys.stderr)

    async def run(f: Fleet) -> None:
        nonlocal current
        current = f
        try:
            await f.run(on_started=started)
        finally:
            await f.reap()

    async def main() -> None:
        nonlocal interrupted, per_process
        async with anyio.create_task_group() as tg:
            holding = False

            async def signals() -> None:
                nonlocal interrupted
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                    async for _ in received:
                        if holding:  # Ctrl-C ends the hold: the run itself finished normally
                            tg.cancel_scope.cancel()
                            return
                        interrupted = True
                        await current.stop()

            tg.start_soon(signals)
            live = anyio.CancelScope()
            if progress:

                class Following:
                    """The progress of the fleet that runs now (--compare runs two)."""

                    def __getattr__(self, name: str) -> Any:
                        return getattr(current.progress, name)

                async def show_progress() -> None:
                    with live:
                        await _progress(Following(), config)

                tg.start_soon(show_progress)
            if baseline is not None:
                await run(baseline)
                if interrupted:  # Ctrl-C during the per-process run: its report, no shared run
                    live.cancel()
                    finish_run(baseline)
                    tg.cancel_scope.cancel()
                    return
                section = merged(baseline)[2]["fleet"]
                for failure in baseline.failures:
                    print(f"model-fallback simulate: error: per-process run: {failure}", file=sys.stderr)
                kept = ("cooldowns", "calls", "cooldowns_started", "calls_to_candidate_cooling_elsewhere")
                per_process = {k: section[k] for k in kept}
                print("per-process run done; now the same run with shared cooldowns", file=sys.stderr)
            await run(fleet)
            live.cancel()
            finish_run(fleet)
            if args.hold and not interrupted:
                holding = True
                print("run finished; still serving /metrics — Ctrl-C to exit", file=sys.stderr)
                await anyio.sleep_forever()
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    finally:
        for f in fleets:
            f.kill()
        if server is not None:
            server.shutdown()
            server.server_close()
        for f in fleets:
            f.close()
    if interrupted:
        return EXIT_INTERRUPTED
    return 1 if any(f.failures for f in fleets) else 0


def _html_path(args: argparse.Namespace, unavailable: str | None) -> Path | None:
    """Where the HTML report goes: --html, else DIR/report.html with --dir, else nowhere."""
    if args.html is None:
        if args.dir is None:
            return None
        if unavailable:
            print(f"model-fallback simulate: warning: no report.html: {unavailable}", file=sys.stderr)
            return None
        return Path(args.dir) / "report.html"
    if unavailable:
        raise UsageError(f"--html: {unavailable}")
    parent = args.html.absolute().parent
    if args.html.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"--html {args.html}: cannot write a file there")
    return Path(args.html)


async def _progress(stats: Any, config: Any) -> None:
    import anyio

    try:
        from rich.console import Console
        from rich.live import Live
        from rich.table import Table
    except ImportError:  # pragma: no cover - the cli extra brings rich
        return

    def table() -> Any:
        elapsed = time.monotonic() - stats.started
        total = sum(stats.runs.values())
        t = Table(title=f"model-fallback simulate — {config.scenario}", expand=False)
        t.add_column("elapsed")
        t.add_column("runs")
        t.add_column("runs/s")
        outcomes = ("success", "exhausted", "coordination_abort", "interrupted", "aborted", "cancelled")
        for name in outcomes:
            t.add_column(name)
        t.add_column("takeovers")
        t.add_column("lock timeouts")
        t.add_row(
            f"{elapsed:4.1f}/{config.duration_s:g}s",
            str(total),
            f"{total / elapsed:.0f}" if elapsed > 0 else "-",
            *(str(stats.runs.get(n, 0)) for n in outcomes),
            str(stats.takeovers),
            str(stats.lock_timeouts),
        )
        return t

    console = Console(stderr=True)
    with Live(table(), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            await anyio.sleep(0.25)
            live.update(table())


def _dashboards(args: argparse.Namespace) -> int:
    try:
        from model_fallback.ops import main as dashboards_main
    except ImportError as exc:  # pragma: no cover
        print(f"model-fallback dashboards: unavailable: {exc}", file=sys.stderr)
        return 1
    from model_fallback.ops import SLOTargets

    kwargs: dict[str, Any] = {} if args.runbook_base is None else {"runbook_base": args.runbook_base}
    try:
        kwargs["slos"] = SLOTargets(provider=args.slo_provider, session=args.slo_session)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result: int = dashboards_main(check=args.check, out=args.out, **kwargs)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``model-fallback`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import model_fallback

        print(f"model-fallback {model_fallback.__version__}")
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "simulate":
            return _simulate(args)
        return _dashboards(args)
    except UsageError as exc:
        print(f"model-fallback {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
