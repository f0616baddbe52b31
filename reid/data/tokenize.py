"""Caption tokenisation with a Hugging Face tokenizer into fixed-length id and mask arrays."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from reid.pretrained import resolve_name_or_path


@lru_cache(maxsize=4)
def load_tokenizer(name_or_path: str):  # noqa: ANN201 - a transformers tokenizer
    """``AutoTokenizer.from_pretrained`` of ``name_or_path`` (``pkg:...`` names resolved), cached per process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_name_or_path(name_or_path))


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Token ids and attention masks, both ``int64 [N, max_length]``, padded and truncated."""
    if not texts:
        empty = np.zeros((0, max_length), dtype=np.int64)
        return empty, empty.copy()
    encoded = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="np")
    return encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64)
