"""Turn an inference checkpoint URI into a retrieval encoder (used by ``reid evaluate`` and ``reid search``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from reid.evaluation.encoder import RetrievalEncoder
from reid.storage.config import StorageConfig

if TYPE_CHECKING:
    from reid.config import Config


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device when one is available, else the CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_encoder(
    checkpoint_uri: str, device: str = "auto", batch_size: int = 64, storage: StorageConfig | None = None
) -> tuple[RetrievalEncoder, Config]:
    """The checkpoint's model wrapped as a ``TextImageEncoder`` on ``device``, and the checkpoint's config.

    The config gives the model-side settings (``data.image_size``, ``data.max_text_length``).
    """
    from reid.models.export import load_checkpoint_tokenizer, load_inference_checkpoint
    from reid.models.retrieval import TextImageEncoder

    model, config = load_inference_checkpoint(checkpoint_uri, storage)
    target = resolve_device(device)
    model = model.to(target).eval()
    tokenizer = load_checkpoint_tokenizer(checkpoint_uri, storage)
    encoder = TextImageEncoder(model, tokenizer, config.data.max_text_length, device=target, batch_size=batch_size)
    return encoder, config
