"""Scene nuisance around a drawn pedestrian: background, clutter and lighting."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from reid.data.synth.attributes import Nuisance


def draw_background(draw: ImageDraw.ImageDraw, nuisance: Nuisance, canvas: tuple[int, int]) -> None:
    """Wall colour, a ground plane and ``nuisance.clutter`` buildings, poles and bushes."""
    width, height = canvas
    rng = np.random.default_rng(nuisance.clutter_seed)
    horizon = height * float(rng.uniform(0.55, 0.8))
    draw.rectangle((0, 0, width, height), fill=nuisance.background_rgb)
    for _ in range(nuisance.clutter):
        kind = int(rng.integers(0, 3))
        colour = tuple(int(v) for v in rng.integers(40, 220, size=3))
        x = float(rng.uniform(-0.2, 1.0)) * width
        if kind == 0:
            w, top = float(rng.uniform(0.2, 0.6)) * width, float(rng.uniform(0.05, 0.5)) * horizon
            draw.rectangle((x, top, x + w, horizon), fill=colour)
            window = tuple(min(255, c + 50) for c in colour)
            step = max(4.0, w / 4)
            for wx in np.arange(x + step / 3, x + w - step / 3, step):
                for wy in np.arange(top + step / 3, horizon - step / 2, step):
                    draw.rectangle((wx, wy, wx + step / 3, wy + step / 3), fill=window)
        elif kind == 1:
            draw.line((x, horizon * float(rng.uniform(0.0, 0.4)), x, horizon), fill=colour,
                      width=max(1, width // 40))
        else:
            r = float(rng.uniform(0.05, 0.15)) * width
            draw.ellipse((x - r, horizon - 1.4 * r, x + r, horizon + 0.2 * r), fill=colour)
    draw.rectangle((0, horizon, width, height), fill=nuisance.ground_rgb)


def apply_light(image: Image.Image, brightness: float, contrast: float) -> Image.Image:
    """``clip((x - 128) * contrast + 128) * brightness`` per channel, uint8 in and out."""
    array = np.asarray(image, dtype=np.float32)
    array = ((array - 128.0) * contrast + 128.0) * brightness
    return Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8))
