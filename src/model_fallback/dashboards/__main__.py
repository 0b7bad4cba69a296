"""``python -m model_fallback.dashboards [--check] [--out DIR]``."""

import argparse
import sys
from pathlib import Path

from model_fallback.dashboards import main

parser = argparse.ArgumentParser(prog="python -m model_fallback.dashboards", description=__doc__)
parser.add_argument("--check", action="store_true", help="exit 1 when the committed files are stale")
parser.add_argument("--out", type=Path, default=None, help="output directory (default: ./dashboards)")
args = parser.parse_args()
sys.exit(main(check=args.check, out=args.out))
