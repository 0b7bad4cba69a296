"""Former name of :mod:`model_fallback.ops` (it writes the alert rules too), kept so that
existing imports and ``python -m model_fallback.dashboards`` work."""

from model_fallback.ops import *  # noqa: F403
from model_fallback.ops import __all__ as __all__
