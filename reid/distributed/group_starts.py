"""Each start of a run's worker group, recorded in the run's storage: how often a run (a search's trial) went on
from a checkpoint after an interruption, whoever restarted it (Ray Train, Ray Tune or ``--resume``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from reid.storage import exists, list_files, read_json, resolve, write_json
from reid.storage.config import StorageConfig

STARTS_DIR = "starts"


def record_start(run_uri: str, storage: StorageConfig | None, epoch: int, step: int,
                 placement: Sequence[Sequence[str]] = ()) -> None:
    """Rank 0, once its group restored its checkpoint: ``<run>/starts/<unix ns>-<random>.json`` with where the group
    begins (``epoch``: the next epoch, 0-based; ``step``: optimiser steps done before it) and its ranks' nodes."""
    now = time.time_ns()
    name = f"{now:020d}-{uuid.uuid4().hex[:8]}.json"  # in time order; two processes' starts both kept
    write_json(resolve(run_uri, storage).join(STARTS_DIR, name),
               {"time": now / 1e9, "epoch": int(epoch), "step": int(step), "placement": [list(p) for p in placement]})


def group_starts(run_uri: str, storage: StorageConfig | None = None) -> list[dict[str, Any]]:
    """The run's recorded group starts, oldest first (empty for a run that never started)."""
    starts = resolve(run_uri, storage).join(STARTS_DIR)
    found = [read_json(starts.join(path.rsplit("/", 1)[1])) for path in list_files(starts, ".json")]
    return sorted(found, key=lambda start: float(start["time"]))  # stable: names are in time order too


def restarts(run_uri: str, storage: StorageConfig | None = None) -> int:
    """How many times the run's worker group started again after its first start."""
    return max(0, len(group_starts(run_uri, storage)) - 1)


def clear_starts(run_uri: str, storage: StorageConfig | None = None) -> None:
    """Forget the group starts of an earlier attempt under this run's name (a fresh run that reuses the name of
    one that never wrote a checkpoint)."""
    starts = resolve(run_uri, storage).join(STARTS_DIR)
    if exists(starts):
        starts.filesystem.delete_dir(starts.path)
