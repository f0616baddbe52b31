"""Describer (MLLM or rules) and caption-style clustering settings (paper 3.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DescribeConfig:
    """Where identity/clothing descriptions come from. The API key is read from ``api_key_env``."""

    backend: Literal["rules", "oracle", "mllm"] = "rules"
    base_url: str | None = None
    model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.2
    max_tokens: int = 300
    concurrency: int = 8
    max_retries: int = 3
    timeout_s: float = 60.0


@dataclass(frozen=True)
class StylesConfig:
    """Style embeddings of human captions clustered with DBSCAN (or an alternative for paper Table 4)."""

    encoder: str = "openai/clip-vit-base-patch32"
    algorithm: Literal["dbscan", "random", "kmeans", "gmm", "agglomerative", "hdbscan"] = "dbscan"
    eps: float = 0.3
    min_samples: int = 5
    merge_threshold: int = 10
    n_clusters: int = 4
