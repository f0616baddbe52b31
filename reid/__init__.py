"""reid: text-to-image person re-identification on Ray, DeepSpeed and MLflow."""
