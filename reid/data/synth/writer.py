"""``generate``: draw a synthetic pedestrian dataset and write it in the CUHK-PEDES format plus ground truth.

Layout under ``out`` (a local path or any URI :func:`reid.storage.resolve` accepts)::

    reid_raw.json          [{"split", "captions", "file_path", "id", "processed_tokens"}, ...]  (ids 1-based)
    imgs/<file_path>       JPEG images, file_path = "synth/<id>/<id>_<k>.jpg"
    masks/<file_path>.png  the exact part label map of each image (:mod:`reid.data.parts`), as drawn
    synth_attributes.json  {file_path: {"person_id", "split", "identity", "clothing", "clothes_id",
                                        "caption_styles", "nuisance"}}
    synth_summary.json     generation parameters, counts per split, caption style names
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
from tqdm import tqdm

from reid.data.parts import encode_labels
from reid.data.synth.attributes import Identity, Outfit, sample_identity, sample_nuisance, sample_outfit
from reid.data.synth.captions import STYLE_NAMES, write_caption
from reid.data.synth.draw import render_person_with_labels
from reid.data.synth.phrases import tokenize
from reid.data.synth.plan import SPLITS, outfit_count, outfit_schedule, split_counts, split_of_ids
from reid.storage import Location, exists, resolve
from reid.storage.config import StorageConfig

log = logging.getLogger(__name__)

ANNOTATION_FILE = "reid_raw.json"
ATTRIBUTES_FILE = "synth_attributes.json"
SUMMARY_FILE = "synth_summary.json"
IMAGE_DIR = "imgs"
MASK_DIR = "masks"
IMAGE_PREFIX = "synth"
JPEG_QUALITY = 92
_STREAM_IDENTITY, _STREAM_IMAGE = 1, 2


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote: counts per split (identities, images, captions) and outfits."""

    uri: str
    identities: dict[str, int]
    images: dict[str, int]
    captions: dict[str, int]
    outfits: int
    styles: dict[str, int] = field(default_factory=dict)

    @property
    def total_images(self) -> int:
        return sum(self.images.values())


def _rng(seed: int, stream: int, a: int = 0, b: int = 0) -> np.random.Generator:
    """An independent generator per (stream, person, image), so each draw depends on the seed only."""
    return np.random.default_rng([seed, stream, a, b])


def _check_arguments(identities: int, images_per_identity: int, seed: int, image_size: Sequence[int],
                     clothes_changing: bool) -> None:
    if identities < 1:
        raise ValueError(f"identities must be >= 1, got {identities}")
    if images_per_identity < 1:
        raise ValueError(f"images_per_identity must be >= 1, got {images_per_identity}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if len(image_size) != 2 or min(image_size) < 16:
        raise ValueError(f"image_size must be (H, W) with both >= 16, got {tuple(image_size)}")
    if clothes_changing and images_per_identity < 2:
        raise ValueError("clothes-changing mode needs images_per_identity >= 2 (two outfits per test person)")


def _prepare_output(out: Location) -> None:
    """Refuse to write over something that is not an earlier synthetic dataset; clear an earlier one's images."""
    if exists(out.join(SUMMARY_FILE)):
        for directory in (IMAGE_DIR, MASK_DIR):
            old = out.join(directory, IMAGE_PREFIX)
            if exists(old):
                out.filesystem.delete_dir(old.path)
        log.info("replacing the synthetic dataset at %s", out.uri)
    elif exists(out.join(ANNOTATION_FILE)) or exists(out.join(IMAGE_DIR)):
        raise FileExistsError(f"{out.uri} already holds a dataset that `reid synth` did not write "
                              f"({ANNOTATION_FILE} or {IMAGE_DIR}/ present); choose another --out")


def _write(out: Location, relative: str, data: bytes, made: set[str]) -> None:
    path = posixpath.join(out.path, relative)
    parent = posixpath.dirname(path)
    if isinstance(out.filesystem, pafs.LocalFileSystem) and parent not in made:
        out.filesystem.create_dir(parent, recursive=True)
        made.add(parent)
    with out.filesystem.open_output_stream(path) as stream:
        stream.write(data)


def _sample_person(seed: int, pid: int, seen: set[tuple[str | None, ...]]) -> tuple[Identity, np.random.Generator]:
    """A new identity whose categorical attributes differ from those already ``seen`` when possible."""
    rng = _rng(seed, _STREAM_IDENTITY, pid)
    identity = sample_identity(rng)
    for _ in range(30):
        if identity.categories() not in seen:
            break
        identity = sample_identity(rng)
    seen.add(identity.categories())
    return identity, rng


def _encode_jpeg(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def generate(
    out_dir: str | Path,
    identities: int,
    images_per_identity: int,
    seed: int,
    clothes_changing: bool = False,
    image_size: tuple[int, int] = (128, 64),
    splits: Sequence[float] = (0.7, 0.1, 0.2),
    progress: bool | None = None,
    storage: StorageConfig | None = None,
) -> SynthSummary:
    """Draw ``identities x images_per_identity`` pedestrians and write them as a CUHK-PEDES dataset.

    ``image_size`` is ``(H, W)``; ``splits`` are train/val/test fractions of identities (ids 1.. in that
    order). Every file is a function of the arguments alone: the same seed gives byte-identical files.
    ``clothes_changing`` builds the test split so that every test person wears >= 2 outfits (see
    :mod:`reid.data.synth.plan` for the exact guarantee). ``progress=None`` shows a bar on a terminal only;
    ``storage`` sets the S3 endpoint for ``s3://`` outputs.
    """
    _check_arguments(identities, images_per_identity, seed, image_size, clothes_changing)
    counts = split_counts(identities, splits)
    if clothes_changing and counts["test"] == 0:
        raise ValueError("clothes-changing mode needs at least one test identity (raise identities or splits[2])")
    out = resolve(str(out_dir), storage)
    _prepare_output(out)
    size = (int(image_size[0]), int(image_size[1]))
    records: list[dict[str, Any]] = []
    truth: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str | None, ...]] = set()
    made: set[str] = set()
    next_clothes_id = 0
    bar = tqdm(total=identities * images_per_identity, unit="img", desc="synth",
               disable=(None if progress is None else not progress))
    for pid, split in enumerate(split_of_ids(counts), start=1):
        identity, rng = _sample_person(seed, pid, seen)
        outfits: list[Outfit] = []
        for _ in range(outfit_count(rng, split, images_per_identity, clothes_changing)):
            outfits.append(sample_outfit(rng, identity, next_clothes_id, tuple(outfits)))
            next_clothes_id += 1
        for k, which in enumerate(outfit_schedule(rng, images_per_identity, len(outfits))):
            record, attrs = _make_image(out, made, seed, pid, k, split, identity, outfits[which], size)
            records.append(record)
            truth[record["file_path"]] = attrs
            bar.update(1)
    bar.close()
    _write(out, ANNOTATION_FILE, json.dumps(records, ensure_ascii=False).encode("utf-8"), made)
    _write(out, ATTRIBUTES_FILE, json.dumps(truth, sort_keys=True, indent=1).encode("utf-8"), made)
    summary = _summary(out.uri, records, truth, next_clothes_id)
    meta = {"identities": identities, "images_per_identity": images_per_identity, "seed": seed,
            "clothes_changing": clothes_changing, "image_size": list(size), "splits": list(splits), "part_masks": True,
            "style_names": list(STYLE_NAMES), **{k: v for k, v in asdict(summary).items() if k != "uri"}}
    _write(out, SUMMARY_FILE, json.dumps(meta, sort_keys=True, indent=2).encode("utf-8"), made)
    log.info("wrote %d images of %d identities to %s", summary.total_images, identities, out.uri)
    return summary


def _make_image(out: Location, made: set[str], seed: int, pid: int, k: int, split: str, identity: Identity,
                outfit: Outfit, size: tuple[int, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Draw, encode and write image ``k`` of person ``pid``; return its annotation and ground truth."""
    rng = _rng(seed, _STREAM_IMAGE, pid, k)
    nuisance = sample_nuisance(rng)
    file_path = f"{IMAGE_PREFIX}/{pid:05d}/{pid:05d}_{k:03d}.jpg"
    image, labels = render_person_with_labels(identity, outfit, nuisance, size)
    _write(out, posixpath.join(IMAGE_DIR, file_path), _encode_jpeg(image), made)
    _write(out, mask_path(file_path), encode_labels(labels), made)
    styles = [int(s) for s in rng.choice(len(STYLE_NAMES), size=int(rng.integers(1, 3)), replace=False)]
    captions = [write_caption(rng, s, identity, outfit, nuisance) for s in styles]
    record = {"split": split, "captions": captions, "file_path": file_path, "id": pid,
              "processed_tokens": [tokenize(c) for c in captions]}
    attrs = {"person_id": pid, "split": split, "identity": identity.to_json(), "clothing": outfit.to_json(),
             "clothes_id": outfit.clothes_id, "caption_styles": styles, "nuisance": nuisance.to_json()}
    return record, attrs


def mask_path(file_path: str) -> str:
    """Where the label map of image ``file_path`` lies, relative to the dataset root."""
    return posixpath.join(MASK_DIR, posixpath.splitext(file_path)[0] + ".png")


def _summary(uri: str, records: list[dict[str, Any]], truth: dict[str, dict[str, Any]], outfits: int) -> SynthSummary:
    ids = {s: len({r["id"] for r in records if r["split"] == s}) for s in SPLITS}
    images = {s: sum(1 for r in records if r["split"] == s) for s in SPLITS}
    captions = {s: sum(len(r["captions"]) for r in records if r["split"] == s) for s in SPLITS}
    styles = Counter(STYLE_NAMES[i] for t in truth.values() for i in t["caption_styles"])
    return SynthSummary(uri, ids, images, captions, outfits, {n: styles.get(n, 0) for n in STYLE_NAMES})
