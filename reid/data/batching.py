"""Build identity-balanced P x K training batches from identity rows (pure; Ray Data calls it per block)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from reid.data.config import AugmentConfig
from reid.data.parts import PARTS, decode_labels
from reid.data.tokenize import CaptionTokenizer, caption_tokenizer
from reid.data.transforms import TrainTransform


def train_transform(size: tuple[int, int], augment: AugmentConfig) -> TrainTransform:
    """The training transform with the configured steps switched on or off."""
    return TrainTransform(
        size=tuple(size),
        flip_prob=augment.flip_prob if augment.flip else 0.0,
        pad=augment.pad if augment.pad_crop else 0,
        erasing_prob=augment.erasing_prob if augment.random_erasing else 0.0,
    )


def sample_k(count: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` image positions out of ``count``: without replacement when possible, else with replacement."""
    return rng.choice(count, size=k, replace=count < k)


class PKBatchBuilder:
    """Turn a block of exactly P identity rows into one batch of P x K images with captions and descriptions.

    Output (numpy): ``images`` uint8 [P*K, 3, H, W]; ``pids`` int64 [P*K]; ``caption_ids``/``caption_mask``
    int64 [P*K, T] (one caption drawn per image); ``id_desc_ids``/``id_desc_mask``/``clo_desc_ids``/
    ``clo_desc_mask`` [P*K, T] with ``has_id_desc``/``has_clo_desc`` bool [P*K]; ``image_ids`` str [P*K].
    A block with fewer than P rows (the end of an epoch) yields an empty batch. :meth:`batches` cuts a
    larger block of identity rows into shuffled groups of P, one batch each.

    With a ``phrase_tokenizer`` (local alignment) the rows must carry ``part_labels`` and the batch adds
    ``part_labels`` uint8 [P*K, H, W] (fine labels, :mod:`reid.data.parts`, moved with the image's flip and
    crop; all background for an image without a label map) and each part class's phrase from the image's
    description, ``part_ids``/``part_mask`` int64 [P*K, C, Tp] (all zero where the image has no phrase for it).
    """

    def __init__(
        self, p: int, k: int, image_size: tuple[int, int], augment: AugmentConfig, tokenizer: str | CaptionTokenizer,
        max_length: int, descriptions: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0,
        phrase_tokenizer: CaptionTokenizer | None = None,
    ) -> None:
        self.p, self.k = p, k
        self.transform = train_transform(image_size, augment)
        if isinstance(tokenizer, str) or tokenizer.max_length != max_length:
            tokenizer = caption_tokenizer(tokenizer if isinstance(tokenizer, str) else tokenizer.name, max_length)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.descriptions = descriptions or {}
        self.seed = seed
        self.phrase_tokenizer = phrase_tokenizer

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(rows["person_id"]) != self.p:
            return {}
        rng = np.random.default_rng([self.seed, zlib.crc32(np.asarray(rows["person_id"], dtype=np.int64).tobytes())])
        images, pids, ids, captions, labels = [], [], [], [], []
        parts = self.phrase_tokenizer is not None
        if parts and "part_labels" not in rows:
            raise KeyError("local alignment needs the shards' part_labels column (prepare the dataset with part masks)")
        for r in range(self.p):
            chosen = sample_k(len(rows["image_ids"][r]), self.k, rng)
            for i in chosen:
                label_map = None
                if parts:
                    data = bytes(rows["part_labels"][r][i] or b"")
                    label_map = decode_labels(data, str(rows["image_ids"][r][i])) if data else None
                image, label_map = self.transform.apply(bytes(rows["images"][r][i]), rng, label_map)
                images.append(image)
                if parts:
                    labels.append(label_map if label_map is not None else np.zeros(image.shape[1:], dtype=np.uint8))
                pids.append(int(rows["person_id"][r]))
                ids.append(str(rows["image_ids"][r][i]))
                texts = rows["captions"][r][i]
                captions.append(str(texts[int(rng.integers(len(texts)))]))
        batch = {"images": np.stack(images), "pids": np.asarray(pids, dtype=np.int64), "image_ids": np.asarray(ids),
                 **self.encode_texts(captions, ids)}
        if parts:
            batch["part_labels"] = np.stack(labels)
            batch["part_ids"], batch["part_mask"] = self.encode_phrases(ids)
        return batch

    def encode_phrases(self, image_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each image's part phrases (descriptions' ``parts``) as ``int64 [N, C, Tp]`` ids and mask, C =
        :data:`reid.data.parts.PARTS`; zeros where an image has no phrase for a class."""
        assert self.phrase_tokenizer is not None
        length = self.phrase_tokenizer.max_length
        ids = np.zeros((len(image_ids), len(PARTS), length), dtype=np.int64)
        mask = np.zeros_like(ids)
        where, texts = [], []
        for n, image_id in enumerate(image_ids):
            phrases = self.descriptions.get(image_id, {}).get("parts") or {}
            for c, part in enumerate(PARTS):
                text = str(phrases.get(part) or "").strip()
                if text:
                    where.append((n, c))
                    texts.append(text)
        if texts:
            token_ids, token_mask = self.phrase_tokenizer(texts)
            rows, cols = (np.asarray(axis) for axis in zip(*where, strict=True))
            ids[rows, cols], mask[rows, cols] = token_ids, token_mask
        return ids, mask

    def batches(self, rows: dict[str, np.ndarray],
                keep: Callable[[int], bool] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Shuffle the identities of ``rows`` (by the seed and their ids) and yield one batch per full group of P.

        The last ``len(rows) % P`` identities of the shuffled block wait for another epoch. ``keep(g)``, when
        given, says whether the g-th group is built at all (another rank's groups are skipped undecoded); the
        shuffle and every kept batch are the same as without it.
        """
        pids = np.asarray(rows["person_id"], dtype=np.int64)
        order = np.random.default_rng([self.seed, zlib.crc32(pids.tobytes())]).permutation(len(pids))
        for g, start in enumerate(range(0, len(order) - self.p + 1, self.p)):
            if keep is not None and not keep(g):
                continue
            group = order[start : start + self.p]
            yield self({key: np.asarray(column, dtype=object)[group] if key != "person_id" else pids[group]
                        for key, column in rows.items()})

    def encode_texts(self, captions: list[str], image_ids: list[str]) -> dict[str, np.ndarray]:
        """Tokenised captions and identity/clothing descriptions (empty where an image has none)."""
        caption_ids, caption_mask = self.tokenizer(captions)
        out = {"caption_ids": caption_ids, "caption_mask": caption_mask}
        for key, column in (("id_desc", "identity"), ("clo_desc", "clothing")):
            texts = [str(self.descriptions.get(i, {}).get(column) or "") for i in image_ids]
            has = np.asarray([bool(t.strip()) for t in texts])
            if has.any():
                token_ids, mask = self.tokenizer(texts)
            else:  # nothing to encode: skip the tokenizer
                token_ids = np.zeros((len(texts), self.max_length), dtype=np.int64)
                mask = np.zeros_like(token_ids)
            out[f"{key}_ids"], out[f"{key}_mask"], out[f"has_{key}"] = token_ids, mask, has
        return out
