"""Caption tokenisation with a Hugging Face tokenizer into fixed-length id and mask arrays."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from reid.pretrained import resolve_name_or_path


@lru_cache(maxsize=4)
def load_tokenizer(name_or_path: str):  # noqa: ANN201 - a transformers tokenizer
    """``AutoTokenizer.from_pretrained`` of ``name_or_path`` (``pkg:...`` names resolved), cached per process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_name_or_path(name_or_path))


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Token ids and attention masks, both ``int64 [N, max_length]``, padded and truncated.

    Fast (Rust-backed) tokenizers encode through a padded, truncating copy of their backend (the same ids as
    ``tokenizer(texts, padding="max_length", truncation=True)`` without its per-call tensor conversion, which
    cost as much as the encoding itself); others go through the tokenizer's ``__call__``.
    """
    if not texts:
        empty = np.zeros((0, max_length), dtype=np.int64)
        return empty, empty.copy()
    backend = _padded_backend(tokenizer, max_length)
    if backend is not None:
        encodings = backend.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask
    encoded = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="np")
    return encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64)


_BACKENDS: dict[tuple[int, int], Any] = {}


def _padded_backend(tokenizer, max_length: int):  # noqa: ANN001, ANN202 - tokenizers.Tokenizer or None
    """A copy of a fast tokenizer's backend that truncates and pads to ``max_length`` (cached per tokenizer)."""
    key = (id(tokenizer), max_length)
    if key not in _BACKENDS:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or tokenizer.pad_token_id is None or tokenizer.padding_side != "right" \
                or tokenizer.truncation_side != "right":
            _BACKENDS[key] = None
        else:
            from tokenizers import Tokenizer

            copy = Tokenizer.from_str(backend.to_str())
            copy.enable_truncation(max_length=max_length)
            copy.enable_padding(length=max_length, pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token,
                                pad_type_id=tokenizer.pad_token_type_id)
            _BACKENDS[key] = (tokenizer, copy)  # holding the tokenizer keeps its id from being reused
    entry = _BACKENDS[key]
    return entry[1] if entry is not None else None
