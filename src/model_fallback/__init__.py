"""model_fallback."""
