"""A describe job killed halfway and re-run: every image described once, no finished image asked again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from reid.describe.runner import describe_dataset_local
from reid.describe.table import read_descriptions_table


def _wait_for(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def test_killed_job_resumes_without_repeating_finished_images(make_dataset, endpoint, mllm_config, api_key,
                                                              tmp_path) -> None:
    data = make_dataset(identities=12, per_identity=2)  # 24 images, 12 batches of 2
    endpoint.script.latency_s = 0.15
    command = [sys.executable, "-m", "reid.cli.main", "describe", "--data", data.uri, "--local",
               "--set", "describe.backend=mllm", "--set", f"describe.base_url={endpoint.base_url}",
               "--set", f"describe.api_key_env={api_key.name}", "--set", "describe.concurrency=2",
               "--set", "describe.batch_size=2", "--set", "describe.splits=[train]"]
    log = (tmp_path / "job.log").open("wb")
    job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        _wait_for(lambda: sum(endpoint.script.answered.values()) >= 9, timeout_s=60)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    first = {r["image_id"] for r in read_descriptions_table(data.uri).to_pylist()}
    assert 0 < len(first) < len(data.images)

    summary = describe_dataset_local(data.uri, mllm_config(concurrency=2, batch_size=2))
    rows = read_descriptions_table(data.uri).to_pylist()
    assert sorted(r["image_id"] for r in rows) == sorted(data.images)  # each image exactly once
    assert all(endpoint.script.requests[data.key(i)] == 1 for i in first)  # finished ones never asked again
    assert summary["skipped_finished"] == len(first)
    assert summary["images"] == len(data.images) - len(first)
    repeated = sum(endpoint.script.requests.values()) - len(data.images)
    assert 0 <= repeated <= 2 + 1  # at most the requests in flight and the unwritten part of a batch


def test_a_rules_rerun_in_another_process_skips_every_finished_image(make_dataset) -> None:
    """The rules describer's version is the same in every process (string hashing differs between them), so a
    rerun with the same settings describes nothing and the table does not grow; no run aborts at exit."""
    data = make_dataset(identities=4, per_identity=2)
    command = [sys.executable, "-m", "reid.cli.main", "describe", "--data", data.uri, "--local",
               "--set", "describe.backend=rules", "--set", "describe.splits=[train]"]
    summaries = []
    for seed in ("1", "2", "3", "4"):
        done = subprocess.run(command, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        summaries.append(json.loads(done.stdout[done.stdout.index("{"):]))
    assert summaries[0]["skipped_finished"] == 0
    assert all(s["skipped_finished"] == len(data.images) and s["images"] == 0 for s in summaries[1:])
    assert len({s["prompt_version"] for s in summaries}) == 1
    assert len(read_descriptions_table(data.uri)) == len(data.images)
