"""Dataset formats, synthetic pedestrians, validation, shards and pure transforms (no Ray here)."""
