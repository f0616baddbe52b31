"""The encoder interface evaluation and search are written against (a trained model or a stand-in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class RetrievalEncoder(Protocol):
    """Turns captions and gallery images into comparable, L2-normalised embeddings.

    ``reid.models.retrieval.TextImageEncoder`` implements it for a trained model.
    """

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """Query embeddings ``[N, E]`` of ``N`` captions."""
        ...

    def encode_gallery(
        self, images: torch.Tensor, descriptions: Sequence[str | None] | None
    ) -> torch.Tensor:
        """Gallery embeddings ``[N, E]`` of uint8 images ``[N, 3, H, W]``.

        ``descriptions[i]`` is image ``i``'s identity description or None (image-only for that image);
        ``None`` for the whole argument means no descriptions at all.
        """
        ...
