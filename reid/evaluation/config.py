"""Evaluation settings: chunk size of the ranking, selection metric, image-to-text direction, search cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class EvalConfig:
    """How retrieval is scored and which validation metric picks the best checkpoint.

    ``chunk_size`` queries are ranked at a time (memory ``chunk_size x gallery`` scores);
    ``rank_backend`` ``auto`` uses the numba kernel on CPU data and torch on accelerators;
    ``embedding_cache`` is the URI under which ``reid search`` keeps gallery embeddings. ``protocol``:
    ``standard`` ranks the whole gallery; ``cc`` (clothes-changing) leaves out, for each query, the gallery
    images of its person in the outfit its caption describes (needs outfit ids, as synthetic data has).
    ``probes``: at every validation, fit linear attribute probes on the training images' BDAM features and
    score them on the validation images (datasets with ground-truth attributes only; ``probe/*`` metrics).
    ``image_only``: validation and test of a described gallery also rank it embedded from the images alone
    (``image_R1`` ...), the way a gallery nobody described is searched; ``select_metric`` may pick either.
    """

    chunk_size: int = 1024
    select_metric: Literal["R1", "R5", "R10", "mAP", "mINP", "image_R1", "image_R5", "image_R10", "image_mAP",
                           "image_mINP"] = "R1"
    image_to_text: bool = False
    rank_backend: Literal["auto", "numba", "torch"] = "auto"
    embedding_cache: str = "runs/cache/embeddings"
    search_top: int = 10
    protocol: Literal["standard", "cc"] = "standard"
    probes: bool = True
    image_only: bool = True

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"eval.chunk_size must be >= 1, got {self.chunk_size}")
        if self.search_top < 1:
            raise ValueError(f"eval.search_top must be >= 1, got {self.search_top}")
