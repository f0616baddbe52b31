"""Which node each training worker runs on, and the local paths that only the driver's machine holds.

On a cluster whose nodes are separate machines nothing is shared but object storage and servers: a local
path the driver names (the dataset, the checkpoints' directory, a model directory) may not exist where a
worker runs. :func:`check_driver_paths` asks every node on another machine, before any work starts, whether
it sees them, and refuses the run with one line when one does not.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from reid.config import Config

logger = logging.getLogger(__name__)

NODE_BYTES = 128  # a node id (56 hex digits), "@" and an IP address, zero-padded for one all_gather
SHORT_ID = 12  # hex digits of a node id on the console (MLflow's tags hold the whole id)
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
# Config keys naming local paths the workers read (when they are local paths on the driver's machine).
READ_KEYS = ("data.uri", "data.tokenizer", "model.vision_name_or_path", "model.text_name_or_path")
MARKER = ".reid-shared-{}"
PROBE_TIMEOUT_S = 120.0


def this_node() -> tuple[str, str]:
    """``(node id, IP address)`` of the Ray node this process runs on: the address the node registered with
    (``ray start --node-ip-address``), which need not be the one ``ray.util.get_node_ip_address`` guesses."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    address = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node), None)
    return node, address or ray.util.get_node_ip_address()


def gather_placement(world_rank: int, world_size: int, device: torch.device) -> list[tuple[str, str]]:
    """Every rank's ``(node id, IP address)``, indexed by rank (one all_gather over the training group, on
    ``device``: NCCL has no CPU collectives); without a process group only this rank's."""
    import torch.distributed as dist

    mine = this_node()
    if not (dist.is_available() and dist.is_initialized()) or world_size < 2:
        return [mine]
    encoded = f"{mine[0]}@{mine[1]}".encode()[:NODE_BYTES]
    tensor = torch.zeros(NODE_BYTES, dtype=torch.uint8)
    tensor[:len(encoded)] = torch.tensor(list(encoded), dtype=torch.uint8)
    gathered = [torch.zeros_like(tensor, device=device) for _ in range(world_size)]
    dist.all_gather(gathered, tensor.to(device))
    out = []
    for row in gathered:
        node, _, address = bytes(row.cpu().tolist()).rstrip(b"\0").decode().partition("@")
        out.append((node, address))
    return out


def placement_tags(placement: Sequence[tuple[str, str]]) -> dict[str, str]:
    """MLflow tags: ``node/rank_<r>`` (the whole node id) per rank and ``nodes`` (how many distinct ones)."""
    tags = {f"node/rank_{rank}": node for rank, (node, _) in enumerate(placement)}
    tags["nodes"] = str(len({node for node, _ in placement}))
    return tags


def placement_line(placement: Sequence[tuple[str, str]]) -> str:
    """``2 workers on 2 nodes: rank 0 on node 3f2a9c1d2b7e (10.0.0.5), rank 1 on node 77be0c12aa01 (10.0.0.6)``
    (node ids cut to their first 12 hex digits; ranks sharing a node are listed together)."""
    ranks: dict[tuple[str, str], list[int]] = {}
    for rank, where in enumerate(placement):
        ranks.setdefault(where, []).append(rank)
    parts = [f"{_ranks(r)} on node {node[:SHORT_ID]} ({address})" for (node, address), r in ranks.items()]
    nodes = len({node for node, _ in placement})
    return (f"{len(placement)} worker{'s' if len(placement) != 1 else ''} on {nodes} node{'s' if nodes != 1 else ''}: "
            + ", ".join(parts))


def _ranks(ranks: list[int]) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ",".join(map(str, ranks))


class DriverLocalPathError(ValueError):
    """A local path of the config exists on the driver's machine only, and workers on other machines need it."""


def nodes_elsewhere() -> list[tuple[str, str]]:
    """``(node id, IP address)`` of the alive nodes on another machine than the driver's (an address other
    than its node's and not loopback: raylets started on this machine share its files)."""
    import ray

    _, here = this_node()
    return [(n["NodeID"], n["NodeManagerAddress"]) for n in ray.nodes()
            if n.get("Alive") and n["NodeManagerAddress"] != here and n["NodeManagerAddress"] not in LOOPBACK]


def local_paths(config: Config) -> tuple[dict[str, str], str | None]:
    """The workers' local paths in ``config`` (absolute, as :func:`portable_config` leaves them): the ones
    they read (``READ_KEYS`` that exist here) and the checkpoints' directory they write (``train.storage_uri``
    unless it is ``s3://``)."""
    reads = {}
    for key in READ_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if isinstance(value, str) and value.startswith("file://"):
            value = value[len("file://"):]
        if isinstance(value, str) and value and "://" not in value and not value.startswith("pkg:") \
                and os.path.exists(value):
            reads[key] = os.path.abspath(value)
    storage = config.train.storage_uri
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    return reads, (None if "://" in storage else os.path.abspath(storage))


def _sees(paths: Mapping[str, str]) -> dict[str, bool]:
    return {key: os.path.exists(path) for key, path in paths.items()}


def probe_nodes(paths: Mapping[str, str], nodes: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, bool]]:
    """For each node, whether it sees each path (a zero-CPU task pinned to the node)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_sees)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(dict(paths))
            for node, _ in nodes]
    return dict(zip(nodes, ray.get(refs, timeout=PROBE_TIMEOUT_S), strict=True))


def unseen_line(paths: Mapping[str, str], seen: Mapping[tuple[str, str], Mapping[str, bool]],
                shown: Mapping[str, str] | None = None) -> str | None:
    """One line naming each path some node does not see (and those nodes), or None when every node sees all;
    ``shown`` names a path otherwise than as probed (the checkpoints' directory, not its marker file)."""
    shown = shown or {}
    problems = []
    for key, path in paths.items():
        blind = [f"{node[:SHORT_ID]} at {address}" for (node, address), sees in seen.items() if not sees.get(key)]
        if blind:
            more = f" and {len(blind) - 2} more" if len(blind) > 2 else ""
            problems.append(f"{key} {shown.get(key, path)} is not on node{'s' if len(blind) > 1 else ''} "
                            f"{', '.join(blind[:2])}{more}")
    if not problems:
        return None
    return ("; ".join(problems) + ": a local path exists on the driver's machine only, and training workers run "
            "on those nodes; use s3:// (storage.* or AWS_ENDPOINT_URL for another S3 server) or a file system "
            "mounted at the same path on every node")


def check_driver_paths(config: Config, nodes: Sequence[tuple[str, str]] | None = None) -> None:
    """Refuse, before any work starts, a local path of ``config`` that a node on another machine does not see
    (:class:`DriverLocalPathError`, one line). The checkpoints' directory is created here and a marker file
    written into it, so a directory of the same name on another machine's own disk does not pass for a shared
    one. ``nodes`` defaults to :func:`nodes_elsewhere` (none on a one-machine cluster: nothing to ask)."""
    nodes = nodes_elsewhere() if nodes is None else list(nodes)
    reads, storage = local_paths(config)
    if not nodes or not (reads or storage):
        return
    paths = dict(reads)
    marker = None
    if storage is not None:
        os.makedirs(storage, exist_ok=True)
        marker = os.path.join(storage, MARKER.format(uuid.uuid4().hex[:12]))
        with open(marker, "w") as handle:
            handle.write("written by the driver of a reid train run to see which nodes share this directory\n")
        paths["train.storage_uri"] = marker
    try:
        seen = probe_nodes(paths, nodes)
    except Exception as exc:  # a node that cannot run the probe cannot run a worker either: Ray will say so
        logger.warning("could not ask %d node(s) whether they see %s: %s", len(nodes), ", ".join(paths), exc)
        return
    finally:
        if marker is not None:
            os.remove(marker)
    line = unseen_line(paths, seen, {"train.storage_uri": storage} if storage else None)
    if line:
        raise DriverLocalPathError(line)
    logger.info("%d node(s) on other machines see %s", len(nodes), ", ".join(paths))


def placement_summary(placement: Any) -> str | None:
    """:func:`placement_line` of a placement read back from ``result.json`` (lists), or None."""
    if not placement:
        return None
    return placement_line([tuple(p) for p in placement])
