"""Sentence embeddings from any Hugging Face text encoder: masked mean pooling, L2-normalised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from reid.pretrained import resolve_name_or_path


class TextEmbedder:
    """``encode(texts) -> [N, D]`` float32 unit vectors: the mean of the last hidden states over real tokens.

    ``name_or_path`` is a hub name, a directory or ``pkg:NAME``; a CLIP checkpoint uses its text tower.
    """

    def __init__(self, name_or_path: str, max_length: int = 64, batch_size: int = 64,
                 device: str | torch.device = "cpu") -> None:
        path = resolve_name_or_path(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
        self.model = getattr(model, "text_model", model).to(device).eval()
        self.device, self.max_length, self.batch_size = torch.device(device), max_length, batch_size

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings ``[N, D]`` of ``texts`` (in order)."""
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # [B, D]
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        if not chunks:
            width = int(getattr(self.model.config, "hidden_size", 0))
            return np.zeros((0, width), dtype=np.float32)
        return np.concatenate(chunks)
