"""Configs that travel to other processes: local relative paths made absolute, the MLflow URI resolved."""

from __future__ import annotations

import os
from typing import Any

from reid.config import Config
from reid.config.loader import with_overrides
from reid.distributed.tracking import tracking_uri

# Local paths that every worker must read or write: made absolute (Ray workers run in their own directories).
LOCAL_PATH_KEYS = ("data.uri", "train.storage_uri", "tune.storage_uri", "tracking.runs_dir", "eval.embedding_cache")
# Values that are local paths only when such a path exists here (else hub names or package references).
MAYBE_PATH_KEYS = ("model.vision_name_or_path", "model.text_name_or_path", "data.tokenizer", "styles.encoder",
                   "styles.vocab_dir", "describe.vocab_dir")


def portable_config(config: Config) -> Config:
    """The config with everything a worker or trial process needs pinned: absolute local paths (Ray Train
    workers and Tune trials run in their own working directories) and the resolved MLflow tracking URI (the
    driver's environment stays here)."""
    overrides: dict[str, Any] = {}
    for key in LOCAL_PATH_KEYS + MAYBE_PATH_KEYS:
        value = _get(config, key)
        if isinstance(value, str) and value and "://" not in value and not value.startswith(("pkg:", "/")):
            if key in LOCAL_PATH_KEYS or os.path.exists(value):
                overrides[key] = os.path.abspath(value)
    if config.tracking.enabled:
        overrides["tracking.uri"] = tracking_uri(config.tracking)
    return with_overrides(config, overrides) if overrides else config


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config
