"""Loss functions as pure functions, the objective and GradNorm (no Ray, no MLflow)."""
