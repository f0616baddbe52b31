"""Validation and test scoring of a model with the evaluator, and the best-checkpoint rule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from reid.config import Config


IMAGE_PREFIX = "image_"


class Validator(Protocol):
    """Scores a model on a split: ``{"R1", "R5", "R10", "mAP", "mINP"}`` in percent (and the same with the
    ``image_`` prefix for the gallery embedded from the images alone, when the split's gallery is described)."""

    def __call__(self, model: nn.Module, split: str) -> dict[str, float]: ...


class SplitValidator:
    """Embeds a split's captions and gallery with the model (batched, eval mode) and ranks them.

    With ``eval.image_only`` and a gallery that has image-grounded descriptions, the gallery is ranked twice:
    fused with each image's description (``R1`` ...) and from the images alone (``image_R1`` ...), the way a
    gallery nobody described is searched.
    """

    def __init__(self, config: Config, device: torch.device) -> None:
        from dataclasses import replace

        from reid.evaluation.evaluator import create_evaluator
        from reid.models.retrieval import build_tokenizer

        self.config, self.device = config, device
        self.evaluator = create_evaluator(config, progress=False)
        self.image_evaluator = None
        if config.eval.image_only and config.data.use_descriptions:
            alone = replace(config, data=replace(config.data, use_descriptions=False))
            self.image_evaluator = create_evaluator(alone, progress=False)
        self.tokenizer = build_tokenizer(config.data.tokenizer)
        self._described: dict[str, bool] = {}

    def __call__(self, model: nn.Module, split: str) -> dict[str, float]:
        from reid.models.retrieval import TextImageEncoder

        encoder = TextImageEncoder(model, self.tokenizer, self.config.data.max_text_length, self.device,
                                   batch_size=self.config.data.eval_batch_size)
        scores = {k: float(v) for k, v in self.evaluator.evaluate(encoder, split).metrics.items()}
        if self.image_evaluator is not None and self.described(split):
            alone = self.image_evaluator.evaluate(encoder, split).metrics
            scores.update({IMAGE_PREFIX + k: float(v) for k, v in alone.items()})
        return scores

    def described(self, split: str) -> bool:
        """Whether any gallery image of ``split`` has a description evaluation may read (cached per split)."""
        if split not in self._described:
            from reid.evaluation.descriptions import load_gallery_descriptions
            from reid.evaluation.split_reader import read_split_index

            uri, storage = self.config.data.uri, self.config.storage
            ids = read_split_index(uri, split, storage).image_ids
            texts = load_gallery_descriptions(uri, ids, storage) or []
            self._described[split] = any(texts)
        return self._described[split]


def selected_value(metrics: Mapping[str, float], metric: str) -> float:
    """``metrics[metric]``, where an ``image_*`` metric of a gallery without descriptions is its plain metric (the
    gallery is images alone then)."""
    if metric not in metrics and metric.startswith(IMAGE_PREFIX):
        metric = metric[len(IMAGE_PREFIX):]
    if metric not in metrics:
        raise KeyError(f"validation gave no '{metric}' (eval.select_metric); it gave {sorted(metrics)}")
    return float(metrics[metric])


def is_better(metrics: Mapping[str, float], metric: str, best: float | None) -> bool:
    """True when the selected value (:func:`selected_value`) beats ``best`` (the first finite score always does;
    NaN never)."""
    value = selected_value(metrics, metric)
    return not math.isnan(value) and (best is None or value > best)
