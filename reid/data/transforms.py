"""Pure image transforms on numpy arrays: decode, resize, flip, pad-and-crop, random erasing.

Images travel as ``uint8`` arrays ``[3, H, W]``; normalisation happens in the model, on its device.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageDecodeError(ValueError):
    """The bytes are not a readable image."""


def decode_image(data: bytes) -> Image.Image:
    """Decode JPEG/PNG bytes into an RGB PIL image; raises :class:`ImageDecodeError` on corrupt data."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    return image.convert("RGB")


def resize(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size = (H, W)`` with bicubic filtering; returns ``uint8 [3, H, W]``."""
    height, width = size
    resized = image.resize((width, height), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1))


def hflip(array: np.ndarray) -> np.ndarray:
    """Mirror ``[3, H, W]`` left to right."""
    return np.ascontiguousarray(array[:, :, ::-1])


def pad_crop(array: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad by ``pad`` pixels on each side, then crop back to the original size at a random offset."""
    if pad <= 0:
        return array
    _, height, width = array.shape
    padded = np.pad(array, ((0, 0), (pad, pad), (pad, pad)))
    top = int(rng.integers(0, 2 * pad + 1))
    left = int(rng.integers(0, 2 * pad + 1))
    return np.ascontiguousarray(padded[:, top : top + height, left : left + width])


def random_erasing(
    array: np.ndarray,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 3.3),
    attempts: int = 10,
) -> np.ndarray:
    """Fill one random rectangle (``area`` fraction of the image, aspect in ``ratio``) with random pixels."""
    channels, height, width = array.shape
    for _ in range(attempts):
        target = rng.uniform(*area) * height * width
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        h = int(round(np.sqrt(target * aspect)))
        w = int(round(np.sqrt(target / aspect)))
        if 0 < h < height and 0 < w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            out = array.copy()
            out[:, top : top + h, left : left + w] = rng.integers(0, 256, (channels, h, w), dtype=np.uint8)
            return out
    return array


@dataclass(frozen=True)
class TrainTransform:
    """The training augmentation chain with each step a setting; call with bytes and a generator."""

    size: tuple[int, int]
    flip_prob: float = 0.5
    pad: int = 10
    erasing_prob: float = 0.5

    def __call__(self, data: bytes, rng: np.random.Generator) -> np.ndarray:
        array = resize(decode_image(data), self.size)
        if self.flip_prob > 0 and rng.random() < self.flip_prob:
            array = hflip(array)
        array = pad_crop(array, self.pad, rng)
        if self.erasing_prob > 0 and rng.random() < self.erasing_prob:
            array = random_erasing(array, rng)
        return array


def eval_transform(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Deterministic evaluation transform: decode and resize to ``size = (H, W)``; ``uint8 [3, H, W]``."""
    return resize(decode_image(data), size)
