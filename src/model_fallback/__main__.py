"""``python -m model_fallback``: the model-fallback command."""

import sys

from model_fallback.cli import main

sys.exit(main())
