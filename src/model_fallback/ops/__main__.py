"""``python -m model_fallback.ops [--check] [--out DIR] [--runbook-base URL]``.

Writes (or, with ``--check``, verifies) the generated Grafana dashboards and Prometheus rules.
``--runbook-base`` makes the alerts' ``runbook_url`` absolute for a deployment, e.g.
``--out ./ops --runbook-base https://git.example.com/acme/model-fallback/blob/main/docs/runbooks.md#``;
the committed files use the default relative prefix.
"""

import argparse
import sys
from pathlib import Path

from model_fallback.ops import RUNBOOK_BASE, main

parser = argparse.ArgumentParser(prog="python -m model_fallback.ops", description=__doc__)
parser.add_argument("--check", action="store_true", help="exit 1 when the committed files are stale")
parser.add_argument("--out", type=Path, default=None, help="output directory (default: ./dashboards)")
parser.add_argument(
    "--runbook-base",
    default=RUNBOOK_BASE,
    help=f"prefix of each alert's runbook_url; the lower-cased alert name is appended (default: {RUNBOOK_BASE})",
)
args = parser.parse_args()
sys.exit(main(check=args.check, out=args.out, runbook_base=args.runbook_base))
