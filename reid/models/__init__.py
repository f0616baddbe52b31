"""The model: encoders, BDAM, fusion (no Ray, no MLflow).

Names are imported lazily: ``reid.config`` imports ``reid.models.config``, which must not pull in
torch and transformers (nor ``reid.config`` itself, through the export module).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Bdam": "reid.models.bdam",
    "BdamOutput": "reid.models.bdam",
    "ImageEncoder": "reid.models.encoders",
    "TextEncoder": "reid.models.encoders",
    "build_image_encoder": "reid.models.encoders",
    "build_text_encoder": "reid.models.encoders",
    "ReidModel": "reid.models.reid_model",
    "build_model": "reid.models.factory",
    "create_model": "reid.models.factory",
    "ImageBackbone": "reid.models.image_backbone",
    "create_image_backbone": "reid.models.image_backbone",
    "TextImageEncoder": "reid.models.retrieval",
    "build_tokenizer": "reid.models.retrieval",
    "save_inference_checkpoint": "reid.models.export",
    "load_inference_checkpoint": "reid.models.export",
    "load_checkpoint_tokenizer": "reid.models.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reid.models' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
