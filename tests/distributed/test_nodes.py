"""Where training workers run and which local paths they would not see: the placement line and tags, the one-line
refusal of a driver-local path, and the probe that asks a real node (the session's Ray) whether it sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from reid.config import load_config
from reid.distributed.nodes import (
    check_driver_paths,
    local_paths,
    placement_line,
    placement_tags,
    unseen_line,
)

A, B = "3f2a9c1d2b7e" + "0" * 44, "77be0c12aa01" + "1" * 44


def test_placement_line_and_tags_name_each_rank_s_node() -> None:
    two = [(A, "10.0.0.5"), (B, "10.0.0.6")]
    assert placement_line(two) == ("2 workers on 2 nodes: rank 0 on node 3f2a9c1d2b7e (10.0.0.5), "
                                   "rank 1 on node 77be0c12aa01 (10.0.0.6)")
    assert placement_tags(two) == {"node/rank_0": A, "node/rank_1": B, "nodes": "2"}
    four = [(A, "10.0.0.5"), (A, "10.0.0.5"), (B, "10.0.0.6"), (A, "10.0.0.5")]
    assert placement_line(four) == ("4 workers on 2 nodes: ranks 0,1,3 on node 3f2a9c1d2b7e (10.0.0.5), "
                                    "rank 2 on node 77be0c12aa01 (10.0.0.6)")
    assert placement_line([(A, "127.0.0.1")] * 2) == "2 workers on 1 node: ranks 0-1 on node 3f2a9c1d2b7e (127.0.0.1)"
    assert placement_tags([(A, "127.0.0.1")]) == {"node/rank_0": A, "nodes": "1"}


def test_local_paths_are_the_workers_reads_that_exist_here_and_a_local_checkpoint_directory(tmp_path: Path) -> None:
    config = load_config("pkg://tiny", [f"data.uri={tmp_path}", f"train.storage_uri={tmp_path / 'ckpt'}"])
    assert local_paths(config) == ({"data.uri": str(tmp_path)}, str(tmp_path / "ckpt"))  # pkg: tokenizer left out
    remote = load_config("pkg://tiny", ["data.uri=s3://bucket/data", "train.storage_uri=s3://bucket/ckpt"])
    assert local_paths(remote) == ({}, None)


def test_a_path_a_node_does_not_see_is_refused_in_one_line() -> None:
    paths = {"data.uri": "/data/set", "train.storage_uri": "/runs/ckpt/.reid-shared-abc"}
    seen = {(A, "10.0.0.6"): {"data.uri": True, "train.storage_uri": False},
            (B, "10.0.0.7"): {"data.uri": True, "train.storage_uri": False}}
    line = unseen_line(paths, seen, {"train.storage_uri": "/runs/ckpt"})
    assert line is not None and "\n" not in line
    assert line.startswith("train.storage_uri /runs/ckpt is not on nodes 3f2a9c1d2b7e at 10.0.0.6, 77be0c12aa01 at "
                           "10.0.0.7: ")
    assert "data.uri" not in line and "s3://" in line
    assert unseen_line(paths, {(A, "10.0.0.6"): {"data.uri": True, "train.storage_uri": True}}) is None


@pytest.mark.slow
def test_the_probe_asks_a_real_node_and_leaves_no_marker(ray_local: None, tmp_path: Path) -> None:
    import ray

    from reid.distributed.nodes import probe_nodes, this_node

    node = this_node()
    assert node[0] == ray.get_runtime_context().get_node_id()
    assert probe_nodes({"here": str(tmp_path), "nowhere": str(tmp_path / "missing")}, [node]) == \
        {node: {"here": True, "nowhere": False}}
    config = load_config("pkg://tiny", [f"data.uri={tmp_path}", f"train.storage_uri={tmp_path / 'ckpt'}"])
    check_driver_paths(config, [node])  # this machine's node sees the dataset and the marker in the checkpoints' dir
    assert list((tmp_path / "ckpt").iterdir()) == []
    check_driver_paths(config)  # no node elsewhere: nothing to ask
