"""What the console says when Ray Train restarts a lost worker group: the node that died, the epoch it died in, the
checkpoint the new group resumed from, the steps redone and the seconds to recovery."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray.train import UserCallback

SHORT_ID = 12  # hex digits of a node id on the console, as reid.distributed.nodes prints them


class FailureEvents(UserCallback):
    """Runs on Ray Train's controller: each failure of the worker group as an event on the console's queue (the
    time the controller saw it, each failed rank's error on one line)."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def after_exception(self, run_context: Any, worker_exceptions: Mapping[int, Exception]) -> None:
        errors = {int(rank): first_line(exc) for rank, exc in worker_exceptions.items()}
        self._put({"kind": "failure", "time": time.time(), "errors": errors})

    def _put(self, event: dict[str, Any]) -> None:
        try:
            self.events.put_nowait(event)
        except Exception:  # a full or closed queue must never fail the run
            pass


def first_line(error: BaseException | str, limit: int = 160) -> str:
    """An error's type and the first non-empty line of its message, at most ``limit`` characters."""
    text = str(error).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if isinstance(error, BaseException):
        line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


@dataclass
class RestartWatch:
    """The driver's record of the worker groups, fed with rank 0's ``start`` and ``step`` events and the
    controller's ``failure`` events; :meth:`started` gives the console's line about a restarted (or resumed) group.

    ``alive_nodes`` answers the ids of the cluster's live nodes (``ray.nodes()``), asked once a group has
    restarted: the node of the previous group that is no longer among them is the one that died.
    """

    alive_nodes: Callable[[], Collection[str]]
    clock: Callable[[], float] = time.time
    placement: list[tuple[str, str]] | None = None
    reached_step: int | None = None  # the global step the current group reached, as its events told
    reached_epoch: int | None = None  # the (0-based) epoch of its last step event
    failed_at: float | None = None
    last_event_at: float | None = None
    errors: dict[int, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def step(self, event: Mapping[str, Any]) -> None:
        reached = int(event["epoch"]) * int(event["steps"]) + int(event["step"])
        self.reached_step = max(self.reached_step or 0, reached)
        self.reached_epoch = int(event["epoch"])
        self.last_event_at = self.clock()

    def failure(self, event: Mapping[str, Any]) -> None:
        if self.failed_at is None:  # the first report of this group's failure
            self.failed_at = float(event["time"])
            self.errors = {int(k): str(v) for k, v in event.get("errors", {}).items()}

    def started(self, event: Mapping[str, Any]) -> str | None:
        """A group has restored its checkpoint (``epoch``: the next epoch, 0-based; ``step``: steps done before
        it; ``placement``: its ranks' nodes). The line to print: None for a fresh run's first group."""
        previous, self.placement = self.placement, [tuple(p) for p in event.get("placement", ())]
        epoch, step = int(event["epoch"]), int(event["step"])
        if previous is None:
            line = (f"resumed from the checkpoint of epoch {epoch} (step {step}): epoch {epoch + 1} on"
                    if epoch > 0 else None)
        else:
            line = self._restart_line(previous, epoch, step)
        self.reached_step, self.reached_epoch, self.failed_at, self.errors = None, None, None, {}
        self.last_event_at = self.clock()
        if line is not None:
            self.lines.append(line)
        return line

    def _restart_line(self, previous: Sequence[tuple[str, str]], epoch: int, step: int) -> str:
        died_in = (self.reached_epoch if self.reached_epoch is not None else epoch) + 1
        redone = max(0, (self.reached_step if self.reached_step is not None else step) - step)
        since = self.failed_at if self.failed_at is not None else self.last_event_at
        back = f", back in {self.clock() - since:.0f} s" if since is not None else ""
        origin = f"the checkpoint of epoch {epoch}" if epoch > 0 else "the start (no checkpoint yet)"
        return (f"worker group lost ({self._cause(previous)}) in epoch {died_in}: restarted from {origin}, "
                f"{redone} step{'s' if redone != 1 else ''} redone{back}")

    def _cause(self, previous: Sequence[tuple[str, str]]) -> str:
        try:
            alive = set(self.alive_nodes())
        except Exception:  # the cluster's state could not be read: say what the workers said
            alive = {node for node, _ in previous}
        dead = sorted({node for node, _ in previous if node not in alive})
        if dead:
            ids = ", ".join(node[:SHORT_ID] for node in dead)
            return f"node {ids} died" if len(dead) == 1 else f"nodes {ids} died"
        if self.errors:
            rank = min(self.errors)
            return f"rank {rank} failed: {self.errors[rank]}"
        return "a worker failed"
