"""Pure image transforms on numpy arrays: decode, resize, flip, pad-and-crop, random erasing.

Images travel as ``uint8`` arrays ``[3, H, W]``; normalisation happens in the model, on its device.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

_JPEG_MAGIC = b"\xff\xd8\xff"


class ImageDecodeError(ValueError):
    """The bytes are not a readable image."""


def decode_image(data: bytes) -> Image.Image:
    """Decode JPEG/PNG bytes into an RGB PIL image; raises :class:`ImageDecodeError` on corrupt data."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError as exc:  # its message names a memory address; say it without one
        raise ImageDecodeError("cannot decode image: not a known image format") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_rgb_pil(data: bytes) -> np.ndarray:
    """:func:`decode_image` as ``uint8 [H, W, 3]``: the plain PIL decode."""
    return np.asarray(decode_image(data), dtype=np.uint8)


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode image bytes into ``uint8 [H, W, 3]`` RGB; raises :class:`ImageDecodeError` on corrupt data.

    YCbCr and greyscale JPEGs go straight to libjpeg-turbo through ``simplejpeg`` (the pixels of PIL's decode in
    ~40 % of its time: no PIL image object, no copy out of it). Anything else (PNG, CMYK JPEGs, whose colour
    conversion differs from PIL's) and any JPEG it refuses (a recoverable error, in strict mode) goes through
    :func:`decode_image`.
    """
    if data[:3] == _JPEG_MAGIC:
        try:
            if simplejpeg.decode_jpeg_header(data)[2] in ("YCbCr", "Gray"):
                return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError:
            pass
    return decode_rgb_pil(data)


def resize(image: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image (PIL, or ``uint8 [h, w, 3]``) to ``size = (H, W)`` with bicubic filtering; returns
    ``uint8 [3, H, W]``."""
    return np.ascontiguousarray(_resized_hwc(np.asarray(image, dtype=np.uint8), size).transpose(2, 0, 1))


def _resized_hwc(hwc: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [h, w, 3]`` at ``size = (H, W)`` (bicubic, skipped when it already is) as ``uint8 [H, W, 3]``."""
    height, width = size
    if hwc.shape[:2] == (height, width):
        return hwc
    return np.asarray(Image.fromarray(hwc).resize((width, height), Image.Resampling.BICUBIC), dtype=np.uint8)


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
    rect = _erasing_rectangle(array.shape, rng, area, ratio, attempts)
    if rect is None:
        return array
    out = array.copy()
    top, left, fill = rect
    out[:, top : top + fill.shape[1], left : left + fill.shape[2]] = fill
    return out


def _erasing_rectangle(
    shape: tuple[int, ...], rng: np.random.Generator, area: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 3.3), attempts: int = 10,
) -> tuple[int, int, np.ndarray] | None:
    """The rectangle :func:`random_erasing` fills: ``(top, left, pixels uint8 [C, h, w])``, or None."""
    channels, height, width = shape
    for _ in range(attempts):
        target = rng.uniform(*area) * height * width
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        h = int(round(np.sqrt(target * aspect)))
        w = int(round(np.sqrt(target / aspect)))
        if 0 < h < height and 0 < w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, rng.integers(0, 256, (channels, h, w), dtype=np.uint8)
    return None


@dataclass(frozen=True)
class TrainTransform:
    """The training augmentation chain with each step a setting; call with bytes and a generator.

    ``decode`` turns the bytes into ``uint8 [h, w, 3]`` (:func:`decode_rgb`; :func:`decode_rgb_pil` is the plain
    PIL decode, with the same pixels).
    """

    size: tuple[int, int]
    flip_prob: float = 0.5
    pad: int = 10
    erasing_prob: float = 0.5
    decode: Callable[[bytes], np.ndarray] = decode_rgb

    def __call__(self, data: bytes, rng: np.random.Generator) -> np.ndarray:
        """``uint8 [3, H, W]``: the same pixels and draws from ``rng`` as ``resize`` -> ``hflip`` -> ``pad_crop``
        -> ``random_erasing`` one after the other, written with one copy instead of one per step."""
        return self.apply(data, rng)[0]

    def apply(self, data: bytes, rng: np.random.Generator, labels: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`__call__` and, when given, a part label map ``uint8 [h, w]`` moved alike: resized by nearest
        neighbour, flipped and shifted with the image (the zero border is background), erased pixels set to
        background (the part is not visible there). Same draws from ``rng`` with or without labels."""
        height, width = self.size
        hwc = _resized_hwc(self.decode(data), self.size)
        if labels is not None:
            from reid.data.parts import resize_labels

            labels = resize_labels(labels, self.size)
        if self.flip_prob > 0 and rng.random() < self.flip_prob:
            hwc = hwc[:, ::-1]
            labels = labels[:, ::-1] if labels is not None else None
        label_out = None
        if self.pad > 0:  # the crop of the zero-padded image: a shifted copy with a zero border
            dy = int(rng.integers(0, 2 * self.pad + 1)) - self.pad
            dx = int(rng.integers(0, 2 * self.pad + 1)) - self.pad
            out = np.zeros((3, height, width), dtype=np.uint8)
            label_out = np.zeros((height, width), dtype=np.uint8) if labels is not None else None
            if abs(dy) < height and abs(dx) < width:
                rows, cols = slice(max(dy, 0), height + min(dy, 0)), slice(max(dx, 0), width + min(dx, 0))
                to_rows, to_cols = slice(max(-dy, 0), height + min(-dy, 0)), slice(max(-dx, 0), width + min(-dx, 0))
                out[:, to_rows, to_cols] = hwc[rows, cols].transpose(2, 0, 1)
                if labels is not None and label_out is not None:
                    label_out[to_rows, to_cols] = labels[rows, cols]
        else:
            out = np.ascontiguousarray(hwc.transpose(2, 0, 1))
            label_out = np.ascontiguousarray(labels) if labels is not None else None
        if self.erasing_prob > 0 and rng.random() < self.erasing_prob:
            rect = _erasing_rectangle(out.shape, rng)
            if rect is not None:
                top, left, fill = rect
                out[:, top : top + fill.shape[1], left : left + fill.shape[2]] = fill
                if label_out is not None:
                    label_out[top : top + fill.shape[1], left : left + fill.shape[2]] = 0
        return out, label_out


def eval_transform(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Deterministic evaluation transform: decode and resize to ``size = (H, W)``; ``uint8 [3, H, W]``."""
    return resize(decode_rgb(data), size)
