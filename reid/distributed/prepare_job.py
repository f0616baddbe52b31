"""``reid prepare`` on Ray Data: raw dataset (local or s3://) -> identity-grouped Parquet shards + manifest."""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data.context import ShuffleStrategy
from ray.data.expressions import col
from tqdm import tqdm

from reid.data.formats import SPECS, Issue, RawRecord, parse_annotations, split_off_validation
from reid.data.identity_rows import assign_person_ids, identity_row, load_synth_extras
from reid.data.records import IDENTITY_SCHEMA, SCHEMA_VERSION
from reid.data.validation import build_report, check_image_bytes, content_hash, drop_duplicate_paths
from reid.distributed.runtime import ensure_ray
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


class PrepareError(RuntimeError):
    """Preparation stopped: the output exists, the input is unusable, or ``--strict`` found bad records."""


@dataclass(frozen=True)
class PrepareResult:
    """Where the dataset went and what the manifest and report say."""

    uri: str
    manifest: dict[str, Any]
    report: dict[str, Any]


class LoadImages:
    """Ray Data map: read each image's bytes from the raw root and check that it decodes fully; with part masks,
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
    """Ray Data ``map_groups`` over one shard key: write its identity rows to one Parquet file.

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


def read_raw_annotations(fmt: str, root: Location, annotation: str | None) -> tuple[list[RawRecord], list[Issue]]:
    """Parse the annotation file of ``fmt`` under ``root`` (or at ``annotation``, relative to root)."""
    spec = SPECS[fmt]
    file = root.join(annotation or spec.annotation_file)
    if not exists(file):
        raise PrepareError(f"annotation file not found: {file.uri} (a {fmt} dataset has {spec.annotation_file})")
    result = parse_annotations(read_bytes(file).decode("utf-8"), fmt, file.uri)
    records, duplicates = drop_duplicate_paths(result.records)
    return records, result.issues + duplicates


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
    local: bool = False,
    part_masks: str = "auto",
) -> PrepareResult:
    """Read a raw dataset and write the prepared, versioned dataset at ``out_uri``.

    Bad records (unparseable, duplicate, escaping paths, unknown split, missing/corrupt images, empty
    captions) are listed in ``validation_report.json`` with their place and reason and never take a valid
    neighbour with them. With ``strict`` any bad record raises :class:`PrepareError` after the report is
    written. ``val_identities`` moves that many train identities to a ``val`` split (for ICFG-PEDES, which
    has none, so selection never touches test). ``local`` does the same work in this process (threads, no
    Ray) and writes the same shards. ``part_masks`` (:data:`PART_MASK_MODES`) says where each image's part
    label map comes from; a missing or unreadable one leaves that image without regions (counted in the
    manifest's ``part_masks``, and a warning), never drops the image.
    """
    if part_masks not in PART_MASK_MODES:
        from reid.data.part_segmenters import resolve_segmenter

        try:
            resolve_segmenter(part_masks)
        except ValueError as exc:
            raise PrepareError(f"--part-masks: {exc} (or one of {', '.join(PART_MASK_MODES)})") from exc
    root, out = resolve(root_uri, storage), resolve(out_uri, storage)
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
    total = len(records) + len(issues)
    log.info("%d records parsed, %d rejected before opening images", len(records), len(issues))

    if local:
        loaded_rows = _load_images_local(records, root.filesystem, image_root, masks, mask_root.path)
        check_rows = loaded_rows
    else:
        ensure_ray()
        loaded = _load_images(records, root.filesystem, image_root, masks, mask_root.path)
        check_rows = loaded.select_columns(["index", "image_path", "split", "source_id", "captions_json", "reason",
                                            "sha256", "mask"]).iter_rows()
    accepted: list[RawRecord] = []
    hashes: list[tuple[str, str, str, tuple[str, ...]]] = []
    mask_counts: dict[str, int] = defaultdict(int)
    # A bar over the images as they are opened and checked (tqdm draws only on a terminal).
    for row in tqdm(check_rows, total=len(records), desc="prepare", unit="img", disable=None):
        mask_counts[str(row["mask"])] += 1
        if row["reason"]:
            where = f"record {row['index']} ({row['image_path']})"
            issues.append(Issue(where, row["reason"], int(row["index"])))
            continue
        captions = tuple(json.loads(row["captions_json"]))
        accepted.append(RawRecord(row["image_path"], row["source_id"], row["split"], captions, int(row["index"])))
        hashes.append((row["split"], row["image_path"], row["sha256"], captions))

    report = build_report(issues, total, strict)
    write_json(out.join("validation_report.json"), report)
    if strict and issues:
        raise PrepareError(f"{len(issues)} bad record(s); see {out.join('validation_report.json').uri}")

    person_ids = assign_person_ids(accepted)
    keys = shard_keys(person_ids, identities_per_shard)
    def shard_of(batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.array([keys[f"{sp}\x1f{sid}"] for sp, sid in zip(batch["split"], batch["source_id"], strict=True)])

    if local:
        written = _write_shards_local([r for r in loaded_rows if not r["reason"]], shard_of, person_ids, extras, out)
    else:
        good = loaded.filter(expr=col("reason") == "").add_column("shard", shard_of, batch_format="numpy")
        # The sort-based shuffle: Ray 2.60's default hash shuffle (aggregator actors) was seen to abort with a
        # corrupt-mutex SIGABRT in HashShuffleMap workers on this kind of machine (Ray retried the task).
        good.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        written = good.groupby("shard").map_groups(
            write_shard, batch_format="numpy", fn_kwargs={"person_ids": person_ids, "extras": extras, "out": out}
        ).take_all()
    log.info("wrote %d shards", len(written))
    write_json(out.join("id_map.json"), person_ids)
    manifest = _manifest(fmt, root.uri, accepted, report, content_hash(hashes))
    manifest["part_masks"] = _mask_summary(masks, mask_counts)
    write_json(out.join("manifest.json"), manifest)
    log.info("prepared %s: %s", out.uri, manifest["counts"])
    return PrepareResult(out.uri, manifest, report)


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


LOCAL_BATCH = 64


def _load_images_local(records: list[RawRecord], filesystem: pafs.FileSystem, image_root: str,
                       masks: str = "none", mask_root: str | None = None) -> list[dict[str, Any]]:
    """:class:`LoadImages` over every record in this process, ``LOCAL_BATCH`` at a time on a few threads."""
    from concurrent.futures import ThreadPoolExecutor

    items = _items(records)
    load = LoadImages(filesystem, image_root, masks, mask_root)
    chunks = [items[i:i + LOCAL_BATCH] for i in range(0, len(items), LOCAL_BATCH)]

    def one(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        batch = {key: np.array([item[key] for item in chunk], dtype=object) for key in chunk[0]}
        out = load(batch)
        return [{key: out[key][i] for key in out} for i in range(len(chunk))]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [row for rows in pool.map(one, chunks) for row in rows]


def _write_shards_local(rows: list[dict[str, Any]], shard_of: Any, person_ids: dict[str, dict[str, int]],
                        extras: dict[str, dict[str, Any]], out: Location) -> list[dict[str, Any]]:
    """:func:`write_shard` for each shard key, from rows held in memory (the same files the Ray path writes)."""
    if not rows:
        return []
    keys = shard_of({column: np.array([r[column] for r in rows]) for column in ("split", "source_id")})
    by_shard: dict[str, list[dict[str, Any]]] = {}
    for row, key in zip(rows, keys, strict=True):
        by_shard.setdefault(str(key), []).append({**row, "shard": str(key)})
    written = []
    for key in sorted(by_shard):
        members = by_shard[key]
        group = {column: np.array([m[column] for m in members], dtype=object) for column in members[0]}
        result = write_shard(group, person_ids, extras, out)
        written.append({"shard": result["shard"][0], "identities": result["identities"][0]})
    return written


def _load_images(records: list[RawRecord], filesystem: pafs.FileSystem, image_root: str, masks: str = "none",
                 mask_root: str | None = None) -> ray.data.Dataset:
    items = _items(records)
    blocks = max(1, min(64, len(items) // 200))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    return ds.map_batches(LoadImages(filesystem, image_root, masks, mask_root), batch_size=64,
                          batch_format="numpy").materialize()


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
