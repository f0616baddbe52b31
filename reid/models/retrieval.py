"""String-level retrieval encoder: captions and (image, description) pairs -> L2-normalised embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from reid.models.reid_model import ReidModel
from reid.pretrained import resolve_name_or_path


def build_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer at ``name_or_path`` (a hub name, a directory, or ``pkg:NAME``)."""
    return AutoTokenizer.from_pretrained(resolve_name_or_path(name_or_path))


class TextImageEncoder:
    """Wraps a :class:`ReidModel` and its tokenizer for the evaluator and search (DESIGN 3.4).

    Every call runs batched under ``torch.no_grad`` in eval mode (the model's mode is restored after)
    and returns float32 embeddings ``[N, E]`` on the CPU.
    """

    def __init__(
        self,
        model: ReidModel,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        device: torch.device | str | None = None,
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1 or max_length < 1:
            raise ValueError(f"batch_size ({batch_size}) and max_length ({max_length}) must be >= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.batch_size = batch_size

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` ``[N, max_length]``, padded and truncated."""
        out = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return out["input_ids"], out["attention_mask"]

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """Query embeddings ``[N, E]`` of ``captions``."""
        _check_strings(captions, "captions")
        chunks = []
        with _inference(self.model):
            for start in range(0, len(captions), self.batch_size):
                ids, mask = self.tokenize(captions[start:start + self.batch_size])
                chunks.append(self.model.encode_text(ids.to(self.device), mask.to(self.device)))
        return _concat(chunks, self.embed_dim)

    def encode_gallery(
        self, images: torch.Tensor, descriptions: Sequence[str | None] | None = None
    ) -> torch.Tensor:
        """Gallery embeddings ``[N, E]`` of uint8 images ``[N, 3, H, W]``; ``descriptions[i]`` is image i's
        identity description or None (image-only for that row); ``descriptions=None`` means none at all."""
        if descriptions is not None and len(descriptions) != len(images):
            raise ValueError(f"encode_gallery: {len(descriptions)} descriptions for {len(images)} images")
        chunks = []
        with _inference(self.model):
            for start in range(0, len(images), self.batch_size):
                batch = images[start:start + self.batch_size].to(self.device)
                if descriptions is None:
                    chunks.append(self.model.encode_gallery(batch))
                    continue
                texts = descriptions[start:start + self.batch_size]
                has = torch.tensor([d is not None and d.strip() != "" for d in texts], dtype=torch.bool)
                ids, mask = self.tokenize([d if d is not None else "" for d in texts])
                mask = mask * has.unsqueeze(1)
                chunks.append(
                    self.model.encode_gallery(batch, ids.to(self.device), mask.to(self.device), has.to(self.device))
                )
        return _concat(chunks, self.embed_dim)


class _inference:
    """Context: ``no_grad`` and eval mode, restoring the model's training flag on exit."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.was_training = model.training
        self.no_grad = torch.no_grad()

    def __enter__(self) -> None:
        self.was_training = self.model.training
        self.model.eval()
        self.no_grad.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


def _concat(chunks: list[torch.Tensor], dim: int) -> torch.Tensor:
    if not chunks:
        return torch.zeros(0, dim)
    return torch.cat(chunks).float().cpu()


def _check_strings(texts: Sequence[object], what: str) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] must be a string, got {type(text).__name__}")
