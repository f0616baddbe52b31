"""Part regions (SAP-SAM supplementary Table 1): fine label maps, their merge into the nine part classes, and
the PNG encoding stored with a prepared dataset.

A *label map* holds one fine label per pixel (:data:`FINE_LABELS`, ATR-like: left/right already joined). The
part classes are :data:`PARTS`, in that order; three of them merge fine labels as Table 1
does: ``hair`` is hair and face, ``glasses`` is glasses and face, ``shoes`` is shoes and legs. A merged class
is present only when its origin label (hair, glasses, shoes) is: a bald, glasses-less person has no glasses
region even though the face is visible.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PARTS = ("hat", "hair", "glasses", "clothes", "skirt", "pants", "dress", "shoes", "bag")
"""The part classes (SAP-SAM Table 3), in this order everywhere: the describers' part phrases, the label maps'
regions, the batches' part tensors; a part absent from the image is left out."""

FINE_LABELS = ("background", "hat", "hair", "glasses", "clothes", "skirt", "pants", "dress", "shoes", "bag",
               "face", "legs", "body")
"""Fine labels of a label map (value = index). ``body`` is visible skin that no part class takes (arms, neck)."""

LABEL = {name: value for value, name in enumerate(FINE_LABELS)}
PART_MERGES: dict[str, tuple[str, ...]] = {"hair": ("hair", "face"), "glasses": ("glasses", "face"),
                                           "shoes": ("shoes", "legs")}
"""Table 1: origin class -> the fine labels its region covers (the others cover their own label only)."""


class PartMaskError(ValueError):
    """A stored label map cannot be read or holds labels outside :data:`FINE_LABELS`."""


def part_masks(labels: np.ndarray) -> np.ndarray:
    """``bool [C, H, W]`` region of each part class of :data:`PARTS` in a label map ``uint8 [H, W]``."""
    out = np.zeros((len(PARTS), *labels.shape), dtype=bool)
    for c, part in enumerate(PARTS):
        if not (labels == LABEL[part]).any():
            continue
        out[c] = np.isin(labels, [LABEL[name] for name in PART_MERGES.get(part, (part,))])
    return out


def merge_table() -> np.ndarray:
    """``float32 [len(FINE_LABELS), C]``: 1 where a fine label belongs to part class c (Table 1 merges)."""
    table = np.zeros((len(FINE_LABELS), len(PARTS)), dtype=np.float32)
    for c, part in enumerate(PARTS):
        for name in PART_MERGES.get(part, (part,)):
            table[LABEL[name], c] = 1.0
    return table


def origin_labels() -> np.ndarray:
    """``int64 [C]``: the fine label whose presence makes part class c present."""
    return np.asarray([LABEL[part] for part in PARTS], dtype=np.int64)


def encode_labels(labels: np.ndarray) -> bytes:
    """A label map ``uint8 [H, W]`` as PNG bytes (greyscale, lossless)."""
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError(f"a label map must be uint8 [H, W], got {labels.dtype} {labels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(labels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_labels(data: bytes, where: str = "label map") -> np.ndarray:
    """``uint8 [H, W]`` from :func:`encode_labels` bytes; :class:`PartMaskError` names ``where`` on bad data."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise PartMaskError(f"{where}: cannot decode the part label map ({exc})") from exc
    if image.mode != "L":
        raise PartMaskError(f"{where}: a part label map must be a greyscale PNG, got mode {image.mode}")
    labels = np.asarray(image, dtype=np.uint8)
    if labels.max(initial=0) >= len(FINE_LABELS):
        raise PartMaskError(f"{where}: label {int(labels.max())} is outside the {len(FINE_LABELS)} fine labels")
    return labels


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label map at ``size = (H, W)`` by nearest neighbour (labels are never blended)."""
    if labels.shape == tuple(size):
        return labels
    return np.asarray(Image.fromarray(labels, mode="L").resize((size[1], size[0]), Image.Resampling.NEAREST))
