"""Placement across nodes, as pure choices: which nodes get an embedding actor, when the service puts one replica
of each deployment per node, where Serve's HTTP proxies run, and the line that says where the index was embedded."""

from __future__ import annotations

from reid.distributed.index_job import nodes_with_cpus, placement_summary
from reid.distributed.serve_app import proxy_location, replica_spread, serving_nodes

A, B, C = "3f2a9c1d2b7e" + "0" * 44, "77be0c12aa01" + "1" * 44, "0c0c0c0c0c0c" + "2" * 44


def node(node_id: str, cpus: float, alive: bool = True, address: str = "10.0.0.5") -> dict:
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": cpus} if cpus else {},
            "NodeManagerAddress": address}


def test_an_embedding_actor_goes_to_each_alive_node_with_cpus() -> None:
    nodes = [node(A, 1.0), node(B, 0.0), node(C, 4.0, alive=False)]
    assert nodes_with_cpus(nodes, 0.25) == [A]
    assert nodes_with_cpus([node(A, 1.0), node(B, 2.0)], 0.25) == [A, B]
    assert nodes_with_cpus([node(A, 0.2)], 0.25) == []


def test_the_placement_line_counts_each_nodes_images() -> None:
    assert placement_summary({B: 32, A: 40}) == "embedded on 2 nodes: 3f2a9c1d2b7e 40 images, 77be0c12aa01 32 images"
    assert placement_summary({A: 1}) == "embedded on 1 node: 3f2a9c1d2b7e 1 image"


def test_replicas_go_one_per_node_only_when_the_cluster_has_enough_nodes() -> None:
    assert replica_spread(2, 2) == ({"max_replicas_per_node": 1},
                                    "2 replicas of each deployment, one per node (2 nodes)")
    assert replica_spread(2, 3)[0] == {"max_replicas_per_node": 1}
    spread, line = replica_spread(3, 2)
    assert spread == {} and "the cluster has 2 nodes with room for one, fewer than 3" in line
    assert replica_spread(1, 5) == ({}, "1 replica of each deployment")
    # a node serves when it is alive and holds a replica of each deployment (2 x 0.5 CPU)
    nodes = [node(A, 1.0), node(B, 0.5), node(C, 2.0, alive=False)]
    assert [n["NodeID"] for n in serving_nodes(nodes)] == [A]


def test_proxies_run_on_every_node_only_when_the_nodes_have_addresses_of_their_own() -> None:
    assert proxy_location(["10.0.0.5", "10.0.0.6"]) == "EveryNode"
    assert proxy_location(["10.0.0.5"]) == "EveryNode"
    assert proxy_location(["192.0.2.2", "192.0.2.2", "192.0.2.2"]) == "HeadOnly"  # nodes of one machine
