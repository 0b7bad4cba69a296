"""Former name of :mod:`model_fallback.telemetry_spec` (it holds span names too), kept so
that existing imports work. New code imports ``model_fallback.telemetry_spec``."""

from model_fallback.telemetry_spec import *  # noqa: F403
from model_fallback.telemetry_spec import __all__ as __all__
