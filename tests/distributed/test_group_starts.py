"""The record of a run's worker-group starts: what a search counts as a trial's retries."""

from __future__ import annotations

from pathlib import Path

from reid.distributed.group_starts import clear_starts, group_starts, record_start, restarts


def test_starts_are_read_back_in_order_and_counted_as_restarts(tmp_path: Path) -> None:
    run = str(tmp_path / "run")
    assert group_starts(run) == [] and restarts(run) == 0
    record_start(run, None, 0, 0, [("n1", "127.0.0.1")])
    assert restarts(run) == 0  # a first start is no retry
    record_start(run, None, 2, 60, [("n2", "127.0.0.1")])
    record_start(run, None, 3, 90)
    starts = group_starts(run)
    assert [(s["epoch"], s["step"]) for s in starts] == [(0, 0), (2, 60), (3, 90)]
    assert starts[1]["placement"] == [["n2", "127.0.0.1"]] and starts[0]["time"] <= starts[2]["time"]
    assert restarts(run) == 2
    clear_starts(run, None)
    assert group_starts(run) == [] and restarts(run) == 0
    clear_starts(run, None)  # nothing to clear: no error
