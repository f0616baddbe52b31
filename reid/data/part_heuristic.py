"""A download-free stand-in for Person-SAM: part label maps of real pedestrian crops from colour and position.

SAP-SAM segments parts with Person-SAM (SAM-Base fine-tuned on ATR at 1024x1024, prompted by the part's
phrase). Neither those weights nor ATR can be fetched here, so :func:`heuristic_labels` fills the same
interface (a fine label map, :mod:`reid.data.parts`) from two assumptions about a pedestrian crop: the person
stands in the middle and the background is what the left and right borders show; and the body's parts lie in
fixed bands of the person's height (head, upper body, legs, feet), with skin-coloured pixels in a band read as
face, arms or legs. It is crude (no hats, bags, skirts or dresses; a coat reads as clothes and pants) and meant
for trying the local-alignment pipeline on real data, not for results. A real segmenter plugs in as any
function ``uint8 [H, W, 3] -> uint8 [H, W]`` of fine labels passed to ``reid prepare`` (see ``docs/sapsam.md``).
"""

from __future__ import annotations

import numpy as np

from reid.data.parts import LABEL

BANDS = ((0.0, 0.14, "hair", "face"), (0.14, 0.52, "clothes", "body"), (0.52, 0.9, "pants", "legs"),
         (0.9, 1.01, "shoes", "legs"))
"""(top, bottom) fractions of the person's height, the label of the band and that of its skin pixels."""

BACKGROUND_DISTANCE = 40.0


def skin_like(rgb: np.ndarray) -> np.ndarray:
    """``bool [H, W]``: the classic RGB skin rule (R > 95, G > 40, B > 20, R > G, R > B, R - min(G, B) > 15)."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    return (r > 95) & (g > 40) & (b > 20) & (r > g) & (r > b) & (r - np.minimum(g, b) > 15)


def foreground(rgb: np.ndarray) -> np.ndarray:
    """``bool [H, W]``: pixels farther than :data:`BACKGROUND_DISTANCE` from every row's border colour (the
    mean of the row's outer eighth on each side)."""
    height, width = rgb.shape[:2]
    edge = max(1, width // 8)
    pixels = rgb.astype(np.float32)
    border = np.concatenate([pixels[:, :edge], pixels[:, -edge:]], axis=1)  # [H, 2 e, 3]
    mean = border.mean(axis=1, keepdims=True)
    return np.linalg.norm(pixels - mean, axis=-1) > BACKGROUND_DISTANCE


def heuristic_labels(rgb: np.ndarray) -> np.ndarray:
    """Fine labels ``uint8 [H, W]`` of an RGB crop ``uint8 [H, W, 3]`` (module docstring); all background when no
    foreground is found."""
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"heuristic_labels needs an RGB image [H, W, 3], got {rgb.shape}")
    fg = foreground(rgb)
    labels = np.zeros(rgb.shape[:2], dtype=np.uint8)
    rows = np.nonzero(fg.any(axis=1))[0]
    if len(rows) == 0:
        return labels
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    skin = skin_like(rgb)
    for start, stop, part, bare in BANDS:
        y0, y1 = top + int(start * (bottom - top)), min(bottom, top + int(stop * (bottom - top)))
        band = fg[y0:y1]
        labels[y0:y1][band] = LABEL[part]
        labels[y0:y1][band & skin[y0:y1]] = LABEL[bare]
    return labels
