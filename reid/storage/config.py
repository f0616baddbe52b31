"""Object-storage settings (the S3 endpoint; keys always come from the environment)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageConfig:
    """S3-compatible endpoint. ``None`` fields fall back to ``AWS_ENDPOINT_URL`` / ``AWS_REGION``."""

    endpoint_url: str | None = None
    region: str | None = None
