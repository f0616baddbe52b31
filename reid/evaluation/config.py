"""Evaluation settings: chunk size of the ranking, selection metric, image-to-text direction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class EvalConfig:
    """How retrieval is scored and which validation metric picks the best checkpoint."""

    chunk_size: int = 1024
    select_metric: Literal["R1", "mAP"] = "R1"
    image_to_text: bool = False
