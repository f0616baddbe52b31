"""Retrieval metrics, the evaluator, checkpoint selection and pictures (no Ray, no MLflow)."""
