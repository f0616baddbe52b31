"""Identity and clothing descriptions (MLLM or rules) and caption-style clustering (no Ray)."""
