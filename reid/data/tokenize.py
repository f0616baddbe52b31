"""Caption tokenisation with a Hugging Face tokenizer into fixed-length id and mask arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class CaptionTokenizer:
    """A picklable caption encoder for loader processes: ``texts -> (ids, mask)``, both ``int64 [N, max_length]``.

    Built where the tokenizer is loaded anyway (:func:`caption_tokenizer`). A fast tokenizer travels as the JSON of
    its padded, truncating backend, which a loader process rebuilds with the ``tokenizers`` library alone (~0.1 s)
    instead of importing transformers and torch (~3.5 s of CPU in every new Ray worker process); the ids are
    those of :func:`tokenize`. A tokenizer without a fast backend travels by name and is loaded in the process.
    """

    name: str
    max_length: int
    backend_json: str | None = field(default=None, repr=False)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if not texts:
            empty = np.zeros((0, self.max_length), dtype=np.int64)
            return empty, empty.copy()
        if self.backend_json is None:
            return tokenize(load_tokenizer(self.name), texts, self.max_length)
        return _cached_backend(self.backend_json, self.max_length).encode(texts)


class _CachedBackend:
    """A padded, truncating ``tokenizers.Tokenizer`` with a per-process memo of the captions it has encoded.

    Training draws the same captions every epoch, and encoding one costs ~0.1-0.15 ms (about a sixth of
    decoding and augmenting its image), so each caption is encoded once per process: its unpadded ids are kept
    (``int32``, ~0.3 KB per caption; at most ``limit`` captions, later ones are encoded every time). Padding is on
    the right, so row ``i`` is its ids then ``pad_id``, and its mask is ones over the ids then zeros.
    """

    def __init__(self, backend_json: str, max_length: int, limit: int = 1 << 18) -> None:
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_str(backend_json)
        self.max_length, self.limit = max_length, limit
        self.pad_id = int(self.backend.padding["pad_id"])
        self.ids: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        fresh: dict[str, np.ndarray] = {}
        missing = [text for text in dict.fromkeys(texts) if text not in self.ids]
        if missing:
            encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)  # no character offsets
            fresh = {text: np.asarray(e.ids[: sum(e.attention_mask)], dtype=np.int32)
                     for text, e in zip(missing, encode(missing), strict=True)}
            for text, row in fresh.items():
                if len(self.ids) < self.limit:
                    self.ids[text] = row
        ids = np.full((len(texts), self.max_length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), self.max_length), dtype=np.int64)
        for i, text in enumerate(texts):
            row = fresh[text] if text in fresh else self.ids[text]
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


@lru_cache(maxsize=8)
def caption_tokenizer(name_or_path: str, max_length: int) -> CaptionTokenizer:
    """The :class:`CaptionTokenizer` of ``name_or_path`` (loaded here once) for ``max_length`` tokens."""
    backend = _padded_backend(load_tokenizer(name_or_path), max_length)
    return CaptionTokenizer(name_or_path, max_length, backend.to_str() if backend is not None else None)


@lru_cache(maxsize=4)
def _cached_backend(backend_json: str, max_length: int) -> _CachedBackend:
    return _CachedBackend(backend_json, max_length)
