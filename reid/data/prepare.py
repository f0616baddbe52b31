"""Preparation without Ray: raw dataset (local or s3://) -> identity-grouped Parquet shards + manifest.

:func:`prepare_dataset` is the pipeline (parse -> load -> report -> write -> manifest); where images are loaded
and shards written is up to the executors it is given: threads in this process by default, Ray Data from
:mod:`reid.distributed.prepare_job`. Both write the same shards, report and manifest.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from tqdm import tqdm

from reid.data.formats import SPECS, Issue, RawRecord, parse_annotations, split_off_validation
from reid.data.identity_rows import assign_person_ids, identity_row, load_synth_extras
from reid.data.records import IDENTITY_SCHEMA, SCHEMA_VERSION
from reid.data.validation import build_report, check_image_bytes, content_hash, drop_duplicate_paths
from reid.storage import Location, exists, read_bytes, resolve, write_json
from reid.storage.config import StorageConfig

log = logging.getLogger(__name__)
SYNTH_EXTRAS_FILE = "synth_attributes.json"
MASK_DIR = "masks"
PART_MASK_MODES = ("auto", "files", "none")
"""``files``: label maps stored beside the images (``masks/<image path>.png``, as ``reid synth`` writes them);
``none``: no part regions; ``auto``: ``files`` when the raw dataset has a ``masks/`` folder, else ``none``. Any
other value names a segmenter run on each image (:func:`reid.data.part_segmenters.resolve_segmenter`:
``heuristic`` or ``module:function``)."""
CHECK_COLUMNS = ("index", "image_path", "split", "source_id", "captions_json", "reason", "sha256", "mask")
"""The columns of a loaded row the report reads (everything but the image and label bytes)."""
LOAD_BATCH = 64


class PrepareError(RuntimeError):
    """Preparation stopped: the output exists, the input is unusable, or ``--strict`` found bad records."""


@dataclass(frozen=True)
class PrepareResult:
    """Where the dataset went and what the manifest and report say."""

    uri: str
    manifest: dict[str, Any]
    report: dict[str, Any]


class LoadImages:
    """Batch map: read each image's bytes from the raw root and check that it decodes fully; with part masks,
    also its label map (``part_labels``, PNG bytes, empty when there is none) and how that went (``mask``:
    ``ok``, ``missing``, ``unreadable`` or empty when masks are off). A bad mask never rejects its image."""

    def __init__(self, filesystem: pafs.FileSystem, image_root: str, masks: str = "none",
                 mask_root: str | None = None) -> None:
        from reid.data.part_segmenters import resolve_segmenter

        self.filesystem = filesystem
        self.image_root = image_root
        self.masks, self.mask_root = masks, mask_root
        self.segmenter = resolve_segmenter(masks) if masks not in ("files", "none") else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        images, reasons, hashes, labels, states = [], [], [], [], []
        for path in batch["image_path"]:
            data = self._read(posixpath.join(self.image_root, str(path)))
            check = check_image_bytes(data)
            images.append(data if not check.reason else b"")
            reasons.append(check.reason)
            hashes.append(check.sha256)
            label, state = self._labels(str(path), data) if not check.reason else (b"", "")
            labels.append(label)
            states.append(state)
        return {**batch, "image": images, "reason": reasons, "sha256": hashes, "part_labels": labels, "mask": states}

    def _labels(self, path: str, image: bytes | None) -> tuple[bytes, str]:
        from reid.data.parts import PartMaskError, decode_labels, encode_labels

        if self.masks == "none" or image is None:
            return b"", ""
        if self.segmenter is not None:
            from reid.data.part_segmenters import segment
            from reid.data.transforms import decode_rgb

            try:
                return encode_labels(segment(self.segmenter, decode_rgb(image), path)), "ok"
            except PartMaskError as exc:
                log.debug("%s", exc)  # counted; the summary warns once
                return b"", "unreadable"
        data = self._read(posixpath.join(str(self.mask_root), posixpath.splitext(path)[0] + ".png"))
        if data is None:
            return b"", "missing"
        try:
            decode_labels(data, path)
        except PartMaskError:
            return b"", "unreadable"
        return data, "ok"

    def _read(self, path: str) -> bytes | None:
        try:
            with self.filesystem.open_input_stream(path) as stream:
                return stream.read()
        except (FileNotFoundError, OSError):
            return None


def write_shard(
    group: dict[str, np.ndarray], person_ids: dict[str, dict[str, int]], extras: dict[str, dict[str, Any]],
    out: Location,
) -> dict[str, list]:
    """Write the identity rows of one shard key's images (a ``map_groups`` group) to one Parquet file.

    The shard key ``<split>/part-NNNNN`` names the file, so shard names are deterministic.
    """
    shard = str(group["shard"][0])
    split = shard.split("/")[0]
    by_person: dict[str, list[int]] = {}
    for i, source_id in enumerate(group["source_id"]):
        by_person.setdefault(str(source_id), []).append(i)
    rows = []
    for source_id, members in by_person.items():
        keys = ("index", "image_path", "source_id", "split", "image", "part_labels")
        columns = {key: [group[key][i] for i in members] for key in keys if key in group}
        columns["captions"] = [json.loads(group["captions_json"][i]) for i in members]
        rows.append(identity_row(columns, person_ids[split][source_id], extras))
    rows.sort(key=lambda r: r["person_id"])
    table = pa.Table.from_pylist(rows, schema=IDENTITY_SCHEMA)
    target = out.join("identities", f"{shard}.parquet")
    out.filesystem.create_dir(posixpath.dirname(target.path), recursive=True)
    pq.write_table(table, target.path, filesystem=out.filesystem)
    return {"shard": [shard], "identities": [len(rows)]}


def shard_keys(person_ids: dict[str, dict[str, int]], identities_per_shard: int) -> dict[str, str]:
    """``{"<split>\x1f<source_id>": "<split>/part-NNNNN"}``: consecutive person ids share a shard."""
    return {
        f"{split}\x1f{source_id}": f"{split}/part-{pid // identities_per_shard:05d}"
        for split, ids in person_ids.items()
        for source_id, pid in ids.items()
    }


@dataclass(frozen=True)
class ShardOf:
    """Batch -> each row's shard key (``[N]`` strings), from its split and source id."""

    keys: dict[str, str]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        pairs = zip(batch["split"], batch["source_id"], strict=True)
        return np.array([self.keys[f"{split}\x1f{source_id}"] for split, source_id in pairs])


WriteShard = Callable[[dict[str, np.ndarray]], dict[str, list]]
LoadExecutor = Callable[[list[dict[str, Any]], LoadImages], Iterable[dict[str, Any]]]
"""Runs :class:`LoadImages` over every item and returns the loaded rows: iterating them yields at least
:data:`CHECK_COLUMNS` of each (the report), and the same object goes to the :data:`WriteExecutor`."""
WriteExecutor = Callable[[Any, ShardOf, WriteShard], list[dict[str, Any]]]
"""Groups the loaded rows that decoded (``reason == ""``) by :class:`ShardOf` and calls the writer once per
shard key; returns one ``{"shard", "identities"}`` per shard written."""


def load_on_threads(items: list[dict[str, Any]], load: LoadImages, workers: int = 4) -> list[dict[str, Any]]:
    """:class:`LoadImages` over every item in this process, ``LOAD_BATCH`` at a time on a few threads."""
    chunks = [items[i:i + LOAD_BATCH] for i in range(0, len(items), LOAD_BATCH)]

    def one(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        loaded = load({key: np.array([item[key] for item in chunk], dtype=object) for key in chunk[0]})
        return [{key: loaded[key][i] for key in loaded} for i in range(len(chunk))]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [row for rows in pool.map(one, chunks) for row in rows]


def write_in_process(rows: list[dict[str, Any]], shard_of: ShardOf, write: WriteShard) -> list[dict[str, Any]]:
    """``write`` for each shard key, from rows held in memory (the same files the Ray path writes)."""
    rows = [row for row in rows if not row["reason"]]
    if not rows:
        return []
    keys = shard_of({column: np.array([r[column] for r in rows]) for column in ("split", "source_id")})
    by_shard: dict[str, list[dict[str, Any]]] = {}
    for row, key in zip(rows, keys, strict=True):
        by_shard.setdefault(str(key), []).append({**row, "shard": str(key)})
    written = []
    for key in sorted(by_shard):
        members = by_shard[key]
        result = write({column: np.array([m[column] for m in members], dtype=object) for column in members[0]})
        written.append({"shard": result["shard"][0], "identities": result["identities"][0]})
    return written


@dataclass(frozen=True)
class Parsed:
    """What parsing found: the records to load, those already rejected, and how to load them."""

    root: Location
    records: list[RawRecord]
    issues: list[Issue]
    extras: dict[str, dict[str, Any]]
    load: LoadImages


@dataclass(frozen=True)
class Checked:
    """What loading kept, and what the manifest needs of it."""

    accepted: list[RawRecord]
    digest: str
    mask_counts: dict[str, int]


def prepare_dataset(
    fmt: str,
    root_uri: str,
    out_uri: str,
    strict: bool = False,
    overwrite: bool = False,
    val_identities: int = 0,
    seed: int = 0,
    identities_per_shard: int = 64,
    annotation: str | None = None,
    image_dir: str | None = None,
    storage: StorageConfig | None = None,
    part_masks: str = "auto",
    load_images: LoadExecutor = load_on_threads,
    write_shards: WriteExecutor = write_in_process,
) -> PrepareResult:
    """Read a raw dataset and write the prepared, versioned dataset at ``out_uri``.

    Bad records (unparseable, duplicate, escaping paths, unknown split, missing/corrupt images, empty
    captions) are listed in ``validation_report.json`` with their place and reason and never take a valid
    neighbour with them. With ``strict`` any bad record raises :class:`PrepareError` after the report is
    written. ``val_identities`` moves that many train identities to a ``val`` split (for ICFG-PEDES, which
    has none, so selection never touches test). ``part_masks`` (:data:`PART_MASK_MODES`) says where each
    image's part label map comes from; a missing or unreadable one leaves that image without regions (counted
    in the manifest's ``part_masks``, and a warning), never drops the image. ``load_images`` and
    ``write_shards`` say where the work runs (threads in this process by default).
    """
    out = resolve(out_uri, storage)
    parsed = parse_raw(fmt, root_uri, out, overwrite, val_identities, seed, annotation, image_dir, storage,
                       part_masks)
    loaded = load_images(_items(parsed.records), parsed.load)
    issues = list(parsed.issues)
    checked = check_loaded(loaded, len(parsed.records), issues)
    report = write_report(out, issues, len(parsed.records) + len(parsed.issues), strict)
    person_ids = assign_person_ids(checked.accepted)
    write = functools.partial(write_shard, person_ids=person_ids, extras=parsed.extras, out=out)
    written = write_shards(loaded, ShardOf(shard_keys(person_ids, identities_per_shard)), write)
    log.info("wrote %d shards", len(written))
    write_json(out.join("id_map.json"), person_ids)
    manifest = _manifest(fmt, parsed.root.uri, checked.accepted, report, checked.digest)
    manifest["part_masks"] = _mask_summary(parsed.load.masks, checked.mask_counts)
    write_json(out.join("manifest.json"), manifest)
    log.info("prepared %s: %s", out.uri, manifest["counts"])
    return PrepareResult(out.uri, manifest, report)


def parse_raw(fmt: str, root_uri: str, out: Location, overwrite: bool, val_identities: int, seed: int,
              annotation: str | None, image_dir: str | None, storage: StorageConfig | None,
              part_masks: str) -> Parsed:
    """Check the options and the output, parse the annotations and say how each image will be loaded."""
    if part_masks not in PART_MASK_MODES:
        from reid.data.part_segmenters import resolve_segmenter

        try:
            resolve_segmenter(part_masks)
        except ValueError as exc:
            raise PrepareError(f"--part-masks: {exc} (or one of {', '.join(PART_MASK_MODES)})") from exc
    root = resolve(root_uri, storage)
    _check_output(out, overwrite)
    records, issues = read_raw_annotations(fmt, root, annotation)
    if val_identities:
        records = split_off_validation(records, val_identities, seed)
    extras_file = root.join(SYNTH_EXTRAS_FILE)
    extras = load_synth_extras(read_bytes(extras_file).decode() if exists(extras_file) else None)
    image_root = root.join(image_dir or SPECS[fmt].image_dir).path
    mask_root = root.join(MASK_DIR)
    masks = ("files" if exists(mask_root) else "none") if part_masks == "auto" else part_masks
    if masks == "files" and not exists(mask_root):
        raise PrepareError(f"--part-masks files: {mask_root.uri} does not exist")
    log.info("%d records parsed, %d rejected before opening images", len(records), len(issues))
    return Parsed(root, records, issues, extras, LoadImages(root.filesystem, image_root, masks, mask_root.path))


def read_raw_annotations(fmt: str, root: Location, annotation: str | None) -> tuple[list[RawRecord], list[Issue]]:
    """Parse the annotation file of ``fmt`` under ``root`` (or at ``annotation``, relative to root)."""
    spec = SPECS[fmt]
    file = root.join(annotation or spec.annotation_file)
    if not exists(file):
        raise PrepareError(f"annotation file not found: {file.uri} (a {fmt} dataset has {spec.annotation_file})")
    result = parse_annotations(read_bytes(file).decode("utf-8"), fmt, file.uri)
    records, duplicates = drop_duplicate_paths(result.records)
    return records, result.issues + duplicates


def check_loaded(loaded: Iterable[dict[str, Any]], total: int, issues: list[Issue]) -> Checked:
    """Each loaded row either accepted or appended to ``issues`` with its reason; the mask outcomes counted."""
    accepted: list[RawRecord] = []
    hashes: list[tuple[str, str, str, tuple[str, ...]]] = []
    mask_counts: dict[str, int] = defaultdict(int)
    # A bar over the images as they are opened and checked (tqdm draws only on a terminal).
    for row in tqdm(loaded, total=total, desc="prepare", unit="img", disable=None):
        mask_counts[str(row["mask"])] += 1
        if row["reason"]:
            issues.append(Issue(f"record {row['index']} ({row['image_path']})", row["reason"], int(row["index"])))
            continue
        captions = tuple(json.loads(row["captions_json"]))
        accepted.append(RawRecord(row["image_path"], row["source_id"], row["split"], captions, int(row["index"])))
        hashes.append((row["split"], row["image_path"], row["sha256"], captions))
    return Checked(accepted, content_hash(hashes), mask_counts)


def write_report(out: Location, issues: list[Issue], total: int, strict: bool) -> dict[str, Any]:
    """``validation_report.json``; with ``strict`` and any bad record, :class:`PrepareError` once it is written."""
    report = build_report(issues, total, strict)
    write_json(out.join("validation_report.json"), report)
    if strict and issues:
        raise PrepareError(f"{len(issues)} bad record(s); see {out.join('validation_report.json').uri}")
    return report


def _mask_summary(source: str, counts: dict[str, int]) -> dict[str, Any]:
    """The manifest's ``part_masks`` entry; a warning when some images of a masked dataset have none."""
    summary = {"source": source, "images_with_masks": counts.get("ok", 0), "missing": counts.get("missing", 0),
               "unreadable": counts.get("unreadable", 0)}
    if summary["missing"] or summary["unreadable"]:
        log.warning("part masks (%s): %d image(s) have no label map and %d an unreadable or invalid one (each "
                    "named in the log with --verbose); those images train without part regions", source,
                    summary["missing"], summary["unreadable"])
    return summary


def _items(records: list[RawRecord]) -> list[dict[str, Any]]:
    items = [
        {"index": r.index, "image_path": r.image_path, "source_id": r.source_id, "split": r.split,
         "captions_json": json.dumps(list(r.captions))}
        for r in records
    ]
    if not items:
        raise PrepareError("no usable record in the annotation file")
    return items


def _check_output(out: Location, overwrite: bool) -> None:
    if not exists(out.join("manifest.json")) and not exists(out.join("identities")):
        return
    if not overwrite:
        raise PrepareError(f"{out.uri} already holds a dataset (pass --overwrite to replace it)")
    for name in ("identities", "manifest.json", "validation_report.json", "id_map.json"):
        loc = out.join(name)
        info = loc.filesystem.get_file_info(loc.path)
        if info.type == pafs.FileType.Directory:
            loc.filesystem.delete_dir(loc.path)
        elif info.type == pafs.FileType.File:
            loc.filesystem.delete_file(loc.path)


def _manifest(fmt: str, source: str, accepted: list[RawRecord], report: dict, digest: str) -> dict[str, Any]:
    counts: dict[str, dict[str, Any]] = defaultdict(lambda: {"identities": set(), "images": 0, "captions": 0})
    for record in accepted:
        entry = counts[record.split]
        entry["identities"].add(record.source_id)
        entry["images"] += 1
        entry["captions"] += len(record.captions)
    return {
        "schema_version": SCHEMA_VERSION,
        "format": fmt,
        "source": source,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "content_hash": digest,
        "counts": {s: {**c, "identities": len(c["identities"])} for s, c in sorted(counts.items())},
        "rejected": report["rejected"],
    }
