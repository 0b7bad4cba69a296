"""``python -m model_fallback.dashboards``: the same as ``python -m model_fallback.ops``."""

import runpy

runpy.run_module("model_fallback.ops", run_name="__main__", alter_sys=True)
