"""``reid index``: gallery embeddings by Ray Data batch inference (an actor pool holding the model), written as
a gallery index (:mod:`reid.evaluation.gallery_index`) shard by shard, resumable."""

from __future__ import annotations

import io
import logging
import posixpath
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import ray
from PIL import Image
from tqdm import tqdm

from reid.data.records import explode_identity
from reid.data.transforms import decode_image, eval_transform, resize
from reid.distributed.runtime import NO_RESTARTS, ensure_ray, remote_args_allowed
from reid.evaluation.descriptions import load_gallery_descriptions
from reid.evaluation.gallery_index import (
    MANIFEST_FILE,
    checkpoint_identity,
    count_described,
    finished_shards,
    gallery_identity,
    index_key,
    write_manifest,
    write_shard,
)
from reid.evaluation.split_reader import read_split_index, split_shards
from reid.storage import exists, read_json, resolve
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)

THUMB_QUALITY = 85
PER_NODE_CPUS = 0.25  # an embedding actor's reservation when one is placed on each node (``actors=0``)


def nodes_with_cpus(nodes: list[dict[str, Any]], cpus: float) -> list[str]:
    """The ids of the alive nodes (``ray.nodes()`` rows) with at least ``cpus`` CPUs in all."""
    return [n["NodeID"] for n in nodes if n.get("Alive") and n.get("Resources", {}).get("CPU", 0.0) >= cpus]


def placement_summary(images: dict[str, int]) -> str:
    """``embedded on 2 nodes: 3f2a9c1d2b7e 40 images, 77be0c12aa01 32 images`` (node ids cut to 12 hex digits)."""
    parts = [f"{node[:12]} {count} image{'s' if count != 1 else ''}" for node, count in sorted(images.items())]
    return f"embedded on {len(images)} node{'s' if len(images) != 1 else ''}: " + ", ".join(parts)


class Embedder:
    """Ray Data actor: loads the checkpoint once, embeds image batches (with their descriptions) and makes
    the thumbnails the service shows."""

    def __init__(self, checkpoint: str, batch_size: int, thumb_size: tuple[int, int],
                 storage: StorageConfig | None) -> None:
        from reid.evaluation.loading import load_encoder

        self.encoder, config = load_encoder(checkpoint, "auto", batch_size, storage)
        self.image_size = tuple(config.data.image_size)
        self.thumb_size = thumb_size
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        images = torch.from_numpy(np.stack([eval_transform(b, self.image_size) for b in batch["image"]]))
        texts = [description_or_none(t) for t in batch["description"]]
        with torch.no_grad():
            embeddings = self.encoder.encode_gallery(images, texts if any(texts) else None).numpy()
        return {"shard": batch["shard"], "image_id": batch["image_id"], "person_id": batch["person_id"],
                "embedding": list(embeddings.astype(np.float32)),
                "description": np.array([t or "" for t in texts], dtype=object),
                "thumbnail": np.array([_thumbnail(b, self.thumb_size) for b in batch["image"]], dtype=object),
                "node": np.array([self.node] * len(batch["image"]), dtype=object)}


def description_or_none(value: Any) -> str | None:
    """A description cell as the stream hands it back: a non-empty string, or None for an image embedded alone
    (Ray Data turns a column of Nones into float NaNs, and an empty string is no description)."""
    return value if isinstance(value, str) and value.strip() else None


def _thumbnail(data: bytes, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    chw = resize(decode_image(data), size)  # uint8 [3, H, W]
    Image.fromarray(chw.transpose(1, 2, 0)).save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def build_index(checkpoint: str, gallery: str, split: str, out: str, storage: StorageConfig | None = None,
                use_descriptions: bool = True, actors: int = 1, gpus_per_actor: float = 0.0, batch_size: int = 64,
                thumb_size: tuple[int, int] = (128, 64), progress: bool = True,
                placement: dict[str, int] | None = None) -> dict[str, Any]:
    """Index the ``split`` gallery of ``gallery`` with ``checkpoint`` into ``out``; returns the manifest.

    ``actors`` model replicas embed the images; ``actors=0`` starts one per alive node with CPUs, spread over
    them. ``placement``, when given, is filled with the images each node embedded (node id -> count), which is
    also logged.

    Shards already written under the same key (same checkpoint and gallery files, same settings) are kept;
    an index at ``out`` made with another key is refused. Descriptions are those evaluation reads: image-grounded
    identity descriptions; caption-derived ones are left out (those images are indexed image-only).
    """
    identity = {**checkpoint_identity(checkpoint, storage), **gallery_identity(gallery, split, storage),
                "use_descriptions": use_descriptions, "thumb_size": list(thumb_size)}
    if not identity["checkpoint_fingerprint"]:
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    key = index_key(identity)
    root = resolve(out, storage)
    if exists(root.join(MANIFEST_FILE)):
        manifest = read_json(root.join(MANIFEST_FILE))
        if manifest.get("key") == key:
            logger.info("the index at %s is complete and current", root.uri)
            return manifest
        raise FileExistsError(f"{root.uri} holds an index of {manifest.get('checkpoint')} / {manifest.get('gallery')}"
                              " built with other files or settings; index into another URI or delete it")
    shards = {posixpath.join(split, posixpath.basename(s.path).removesuffix(".parquet")): s
              for s in split_shards(gallery, split, storage)}
    done = finished_shards(out, key, storage)
    pending = {name: loc for name, loc in shards.items() if name not in done}
    counts = {name: sum(len(ids) for ids in pq.read_table(loc.path, columns=["image_ids"],
                                                           filesystem=loc.filesystem).column("image_ids").to_pylist())
              for name, loc in pending.items()}
    index = read_split_index(gallery, split, storage)
    texts = (load_gallery_descriptions(gallery, index.image_ids, storage) if use_descriptions else None) or []
    descriptions = dict(zip(index.image_ids, texts, strict=False))
    logger.info("indexing %d images of %d shards (%d already written)", sum(counts.values()), len(pending), len(done))
    dim = 0
    if pending:
        embedded: dict[str, int] = {}
        dim = _embed_pending(checkpoint, pending, counts, descriptions, out, key, storage, actors, gpus_per_actor,
                             batch_size, thumb_size, progress, embedded)
        logger.info("%s", placement_summary(embedded))
        if placement is not None:
            placement.update(embedded)
    if not dim:
        dim = int(pq.read_table(root.join("shards", f"{next(iter(shards))}.parquet").path,
                                filesystem=root.filesystem).schema.field("embedding").type.list_size)
    return write_manifest(out, identity, shards, len(index.image_ids), dim, storage,
                          described=count_described(out, shards, storage))


def _embed_pending(checkpoint: str, pending: dict[str, Any], counts: dict[str, int], descriptions: dict[str, Any],
                   out: str, key: str, storage: StorageConfig | None, actors: int, gpus: float, batch_size: int,
                   thumb_size: tuple[int, int], progress: bool, embedded: dict[str, int]) -> int:
    """Stream the pending shards' images through the actor pool and write each shard once it is complete;
    counts in ``embedded`` the images each node embedded."""
    ensure_ray()
    tasks: dict[str, float] = {}
    pool: dict[str, Any] = {"compute": ray.data.ActorPoolStrategy(size=max(1, actors))}
    if actors == 0:  # each node keeps room beside its actor for the read and explode tasks
        pool, tasks = _actor_per_node(), {"num_cpus": PER_NODE_CPUS}
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    first = next(iter(pending.values()))
    names = {loc.path: name for name, loc in pending.items()}
    filesystem = first.filesystem
    # One item per shard, read by the explode task itself: Ray Data's read_parquet lists files in a task asking a
    # whole CPU, which a node with an embedding actor (actors=0: every node) no longer has.
    ds = ray.data.from_items([{"path": loc.path} for loc in pending.values()], override_num_blocks=len(pending))
    ds = ds.flat_map(lambda item: [{"shard": names[item["path"]], "image_id": r["image_id"],
                                    "person_id": r["person_id"], "image": r["image"],
                                    "description": descriptions.get(r["image_id"]) or ""}
                                   for row in pq.read_table(item["path"], filesystem=filesystem).to_pylist()
                                   for r in explode_identity(row)], **tasks)
    with remote_args_allowed():  # a lost actor fails the build; a rerun embeds only the shards not yet written
        ds = ds.map_batches(Embedder, fn_constructor_kwargs={"checkpoint": checkpoint, "batch_size": batch_size,
                                                            "thumb_size": tuple(thumb_size), "storage": storage},
                            batch_size=batch_size, batch_format="numpy", num_gpus=gpus or None, **pool,
                            **NO_RESTARTS)
    return _write_stream(ds, counts, out, key, storage, progress, embedded)


def _actor_per_node() -> dict[str, Any]:
    """The ``map_batches`` arguments of a pool with one embedding actor per alive node with CPUs, spread over them
    (Ray's ``SPREAD``: each actor to a node that holds none yet while one has room)."""
    nodes = nodes_with_cpus(ray.nodes(), PER_NODE_CPUS)
    if not nodes:
        raise RuntimeError(f"no alive Ray node has {PER_NODE_CPUS} CPU for an embedding actor")
    logger.info("one embedding actor for each of %d nodes", len(nodes))
    return {"compute": ray.data.ActorPoolStrategy(size=len(nodes)), "num_cpus": PER_NODE_CPUS,
            "scheduling_strategy": "SPREAD"}


def _write_stream(ds: Any, counts: dict[str, int], out: str, key: str, storage: StorageConfig | None,
                  progress: bool, embedded: dict[str, int]) -> int:
    """Consume the embedded stream, writing each shard once all its rows are in; returns the embedding size."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    dim = 0
    with tqdm(total=sum(counts.values()), desc="index", unit="img", disable=None if progress else True) as bar:
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            for i, shard in enumerate(batch["shard"]):
                embedded[str(batch["node"][i])] = embedded.get(str(batch["node"][i]), 0) + 1
                embedding = np.asarray(batch["embedding"][i], dtype=np.float32)
                dim = len(embedding)
                rows[str(shard)].append({"image_id": str(batch["image_id"][i]), "person_id": int(batch["person_id"][i]),
                                         "embedding": embedding.tolist(), "thumbnail": batch["thumbnail"][i],
                                         "description": description_or_none(batch["description"][i])})
                if len(rows[str(shard)]) == counts[str(shard)]:
                    write_shard(out, str(shard), rows.pop(str(shard)), dim, key, storage)
            bar.update(len(batch["shard"]))
    if rows:
        raise RuntimeError(f"shards {sorted(rows)} came back incomplete from the index stream")
    return dim

