"""The console's line after a lost worker group (no Ray): which node died, in which epoch, from which checkpoint the
new group resumed, how many steps it redoes and how long recovery took; epochs printed once; the controller's
failure events."""

from __future__ import annotations

import io
import queue

from reid.distributed.progress import run_with_progress
from reid.distributed.restarts import FailureEvents, RestartWatch, first_line

NODE_A, NODE_B, NODE_C = "a" * 56, "b" * 56, "c" * 56


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def steps(watch: RestartWatch, epoch: int, upto: int, per_epoch: int = 10) -> None:
    for step in range(1, upto + 1):
        watch.step({"epoch": epoch, "step": step, "steps": per_epoch})


def test_restart_line_names_the_dead_node_the_epoch_the_checkpoint_and_the_steps_redone() -> None:
    clock, alive = Clock(), {NODE_A, NODE_B, NODE_C}
    watch = RestartWatch(lambda: alive, clock=clock)
    assert watch.started({"epoch": 0, "step": 0, "placement": [[NODE_A, "h"], [NODE_B, "h"]]}) is None
    steps(watch, 0, 10)
    steps(watch, 1, 4)  # epoch 2 (1-based), 4 steps past the checkpoint of epoch 1 (step 10)
    watch.failure({"time": 1010.0, "errors": {0: "RuntimeError: gloo connection closed"}})
    watch.failure({"time": 1012.0, "errors": {}})  # later polls of the same failure do not move its time
    alive.discard(NODE_B)
    clock.now = 1033.4
    line = watch.started({"epoch": 1, "step": 10, "placement": [[NODE_A, "h"], [NODE_C, "h"]]})
    assert line == (f"worker group lost (node {NODE_B[:12]} died) in epoch 2: restarted from the checkpoint of "
                    "epoch 1, 4 steps redone, back in 23 s")
    assert watch.lines == [line]
    steps(watch, 1, 1)  # the new group's own steps count from its checkpoint
    assert watch.reached_step == 11


def test_restart_without_a_dead_node_says_which_rank_failed_and_a_fresh_group_from_scratch() -> None:
    watch = RestartWatch(lambda: {NODE_A, NODE_B}, clock=Clock())
    watch.started({"epoch": 0, "step": 0, "placement": [[NODE_A, "h"], [NODE_B, "h"]]})
    steps(watch, 0, 3)
    watch.failure({"time": 999.0, "errors": {1: "ActorDiedError: the actor died", 0: "RuntimeError: peer gone"}})
    line = watch.started({"epoch": 0, "step": 0, "placement": [[NODE_A, "h"], [NODE_B, "h"]]})
    assert line == ("worker group lost (rank 0 failed: RuntimeError: peer gone) in epoch 1: restarted from the start "
                    "(no checkpoint yet), 3 steps redone, back in 1 s")


def test_a_resumed_run_says_where_it_continues() -> None:
    watch = RestartWatch(lambda: {NODE_A}, clock=Clock())
    line = watch.started({"epoch": 2, "step": 40, "placement": [[NODE_A, "h"]]})
    assert line == "resumed from the checkpoint of epoch 2 (step 40): epoch 3 on"


class ListQueue:
    """The Ray queue's surface that run_with_progress uses."""

    def __init__(self, events: list[dict]) -> None:
        self.items = list(events)

    def get(self, timeout: float) -> dict:
        if not self.items:
            raise queue.Empty
        return self.items.pop(0)

    def empty(self) -> bool:
        return not self.items

    def put_nowait(self, event: dict) -> None:
        self.items.append(event)


def test_console_prints_the_restart_line_before_the_new_placement_and_each_epoch_once() -> None:
    metrics = {"loss/total": 1.0, "epoch_seconds": 2.0}
    first = [[NODE_A, "10.0.0.1"], [NODE_B, "10.0.0.2"]]
    second = [[NODE_A, "10.0.0.1"], [NODE_C, "10.0.0.3"]]
    events = ListQueue([
        {"kind": "start", "epoch": 0, "step": 0, "placement": first},
        {"kind": "step", "epoch": 0, "step": 2, "steps": 2, "samples_per_s": 1.0},
        {"kind": "epoch", "epoch": 0, "metrics": metrics},
        {"kind": "step", "epoch": 1, "step": 1, "steps": 2, "samples_per_s": 1.0},
        {"kind": "failure", "time": 0.0, "errors": {1: "x"}},
        {"kind": "start", "epoch": 0, "step": 0, "placement": second},  # restored an older checkpoint: none
        {"kind": "epoch", "epoch": 0, "metrics": metrics},  # epoch 1 again: not printed twice
        {"kind": "epoch", "epoch": 1, "metrics": metrics},
    ])
    out = io.StringIO()
    watch = RestartWatch(lambda: {NODE_A, NODE_C})
    run_with_progress(lambda: None, events, 2, "R1", out=out, watch=watch)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert lines[0] == (f"2 workers on 2 nodes: rank 0 on node {NODE_A[:12]} (10.0.0.1), rank 1 on node "
                        f"{NODE_B[:12]} (10.0.0.2)")
    assert lines[1] == "epoch 1/2  loss 1.000  2 s"
    assert lines[2].startswith(f"worker group lost (node {NODE_B[:12]} died) in epoch 2: restarted from the start "
                               "(no checkpoint yet), 3 steps redone")
    assert lines[3].startswith("2 workers on 2 nodes: ") and NODE_C[:12] in lines[3]
    assert lines[4:] == ["epoch 2/2  loss 1.000  2 s"]


def test_failure_events_put_each_ranks_error_on_one_line_and_never_raise() -> None:
    events = ListQueue([])
    FailureEvents(events).after_exception(None, {1: RuntimeError("peer closed\nat gloo.cc:42"), 0: ValueError()})
    (event,) = events.items
    assert event["kind"] == "failure" and event["errors"] == {1: "RuntimeError: peer closed", 0: "ValueError"}

    class Closed:
        def put_nowait(self, event: dict) -> None:
            raise RuntimeError("queue actor died")

    FailureEvents(Closed()).after_exception(None, {0: RuntimeError("x")})  # no exception
    assert first_line("x" * 300).endswith("...") and len(first_line("x" * 300)) == 160
