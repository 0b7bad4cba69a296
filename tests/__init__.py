"""The model-fallback test suite."""
