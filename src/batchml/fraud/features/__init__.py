"""Model inputs: the engineered features, and the per-day feature tables cached on the root."""
