"""Validation and test scoring of a model with the evaluator, and the best-checkpoint rule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from reid.config import Config


class Validator(Protocol):
    """Scores a model on a split: ``{"R1", "R5", "R10", "mAP", "mINP"}`` in percent."""

    def __call__(self, model: nn.Module, split: str) -> dict[str, float]: ...


class SplitValidator:
    """Embeds a split's captions and gallery with the model (batched, eval mode) and ranks them."""

    def __init__(self, config: Config, device: torch.device) -> None:
        from reid.evaluation.evaluator import create_evaluator
        from reid.models.retrieval import build_tokenizer

        self.config, self.device = config, device
        self.evaluator = create_evaluator(config, progress=False)
        self.tokenizer = build_tokenizer(config.data.tokenizer)

    def __call__(self, model: nn.Module, split: str) -> dict[str, float]:
        from reid.models.retrieval import TextImageEncoder

        encoder = TextImageEncoder(model, self.tokenizer, self.config.data.max_text_length, self.device,
                                   batch_size=self.config.data.eval_batch_size)
        return {k: float(v) for k, v in self.evaluator.evaluate(encoder, split).metrics.items()}


def is_better(metrics: Mapping[str, float], metric: str, best: float | None) -> bool:
    """True when ``metrics[metric]`` beats ``best`` (the first finite score always does; NaN never)."""
    if metric not in metrics:
        raise KeyError(f"validation gave no '{metric}' (eval.select_metric); it gave {sorted(metrics)}")
    value = float(metrics[metric])
    return not math.isnan(value) and (best is None or value > best)
