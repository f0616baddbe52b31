"""The model: encoders, BDAM, fusion (no Ray, no MLflow)."""
