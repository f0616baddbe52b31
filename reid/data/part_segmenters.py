"""Where part label maps of real images come from: a segmenter is any function ``uint8 [H, W, 3] -> uint8 [H, W]``
of fine labels (:data:`reid.data.parts.FINE_LABELS`); ``reid prepare --part-masks NAME`` runs one per image.

``heuristic`` is the download-free stand-in (:mod:`reid.data.part_heuristic`). A human-parsing or SAM model
plugs in by its import path, ``--part-masks package.module:function`` (the function is imported once per
loader process and called on each decoded image; map its classes to the fine labels, merging nothing: the
Table 1 merges happen later, in :func:`reid.data.parts.part_masks`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from reid.data.parts import FINE_LABELS, PartMaskError

Segmenter = Callable[[np.ndarray], np.ndarray]
BUILTIN = ("heuristic",)


def resolve_segmenter(spec: str) -> Segmenter:
    """The segmenter named ``spec``: a built-in name or ``module:function``; a clear error when it cannot load."""
    if spec == "heuristic":
        from reid.data.part_heuristic import heuristic_labels

        return heuristic_labels
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"part segmenter '{spec}': give a built-in ({', '.join(BUILTIN)}) or 'module:function'")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"part segmenter '{spec}' cannot be loaded: {exc}") from exc
    if not callable(function):
        raise ValueError(f"part segmenter '{spec}' is not a function")
    return function


def segment(segmenter: Segmenter, rgb: np.ndarray, where: str) -> np.ndarray:
    """``segmenter(rgb)`` checked: ``uint8 [H, W]`` of the image's size with labels below ``len(FINE_LABELS)``."""
    labels = np.asarray(segmenter(rgb))
    if labels.shape != rgb.shape[:2]:
        raise PartMaskError(f"{where}: the segmenter gave a {labels.shape} map for a {rgb.shape[:2]} image")
    if labels.size and (labels.min() < 0 or labels.max() >= len(FINE_LABELS)):
        raise PartMaskError(f"{where}: the segmenter gave labels outside 0..{len(FINE_LABELS) - 1}")
    return labels.astype(np.uint8)
