"""``python -m model_fallback.ops [--check] [--out DIR] [--runbook-base URL] [--slo-provider X] [--slo-session X]``.

Writes (or, with ``--check``, verifies) the generated Grafana dashboards and Prometheus rules.
``--runbook-base`` makes the alerts' ``runbook_url`` absolute for a deployment, e.g.
``--out ./ops --runbook-base https://git.example.com/acme/model-fallback/blob/main/docs/runbooks.md#``;
the committed files use the default relative prefix.
"""

import argparse
import sys
from pathlib import Path

from model_fallback.ops import RUNBOOK_BASE, SLOTargets, main

parser = argparse.ArgumentParser(prog="python -m model_fallback.ops", description=__doc__)
parser.add_argument("--check", action="store_true", help="exit 1 when the committed files are stale")
parser.add_argument("--out", type=Path, default=None, help="output directory (default: ./dashboards)")
parser.add_argument(
    "--runbook-base",
    default=RUNBOOK_BASE,
    help=f"prefix of each alert's runbook_url; the lower-cased alert name is appended (default: {RUNBOOK_BASE})",
)
parser.add_argument(
    "--slo-provider", type=float, default=SLOTargets.provider, help="provider availability SLO"
)
parser.add_argument("--slo-session", type=float, default=SLOTargets.session, help="session health SLO")
args = parser.parse_args()
try:
    slos = SLOTargets(provider=args.slo_provider, session=args.slo_session)
except ValueError as exc:
    parser.error(str(exc))
sys.exit(main(check=args.check, out=args.out, runbook_base=args.runbook_base, slos=slos))
