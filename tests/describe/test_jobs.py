"""The describe and styles stages through Ray Data and through the ``reid`` command."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from reid.cli.main import main
from reid.describe.config import StylesConfig
from reid.describe.table import load_descriptions, read_descriptions_table


@pytest.mark.slow
def test_ray_describe_job_bounds_concurrency_and_resumes(make_dataset, endpoint, mllm_config, api_key,
                                                         local_ray) -> None:
    from reid.describe.runner import describe_dataset_local
    from reid.distributed.describe_job import describe_dataset

    data = make_dataset(identities=8, per_identity=2)  # 16 images
    endpoint.script.latency_s = 0.2
    endpoint.script.faults[data.key(sorted(data.images)[3])] = ["429", "500"]
    cfg = mllm_config(concurrency=4, actors=2, batch_size=2)
    first = describe_dataset_local(data.uri, cfg, limit=6)  # the same table, so Ray resumes it
    assert (first["images"], first["ok"]) == (6, 6)
    done = set(load_descriptions(data.uri))
    second = describe_dataset(data.uri, cfg)
    assert (second["images"], second["skipped_finished"]) == (10, 6)
    rows = read_descriptions_table(data.uri).to_pylist()
    assert sorted(r["image_id"] for r in rows) == sorted(data.images)
    assert all(endpoint.script.requests[data.key(i)] == 1 for i in done if i != sorted(data.images)[3])
    assert sum(endpoint.script.requests.values()) == 16 + 2
    assert 2 <= endpoint.script.max_in_flight <= 4
    assert second["prompt_tokens"] == 100 * 10


@pytest.mark.slow
def test_ray_styles_job_matches_the_local_stage(make_dataset, local_ray) -> None:
    from reid.describe.styles import run_styles_local
    from reid.distributed.styles_job import compute_styles_dataset

    data = make_dataset(identities=4, per_identity=3)
    cfg = StylesConfig(min_samples=2, merge_threshold=2, batch_size=5)
    ray_summary = compute_styles_dataset(data.uri, cfg)
    ray_labels = pq.read_table(f"{data.uri}/styles/captions.parquet").column("style_id").to_numpy()
    local_summary = run_styles_local(data.uri, cfg)
    local_labels = pq.read_table(f"{data.uri}/styles/captions.parquet").column("style_id").to_numpy()
    assert np.array_equal(ray_labels, local_labels)
    assert ray_summary["styles"] == local_summary["styles"]
    assert ray_summary["num_captions"] == 12


def test_cli_describe_with_rules_then_resume(make_dataset, capsys) -> None:
    data = make_dataset(identities=3, per_identity=2)
    assert main(["describe", "--data", data.uri, "--local", "--limit", "4", "--set", "describe.splits=[train]"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["provenance"], first["images"]) == ("rules", 4)
    assert main(["describe", "--data", data.uri, "--local", "--set", "describe.splits=[train]"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["images"], second["skipped_finished"]) == (2, 4)
    rows = read_descriptions_table(data.uri).to_pylist()
    assert sorted(r["image_id"] for r in rows) == sorted(data.images)
    assert {r["provenance"] for r in rows} == {"rules"}


def test_cli_reports_a_missing_dataset_in_one_line(tmp_path, capsys) -> None:
    assert main(["describe", "--data", str(tmp_path / "nothing"), "--local"]) == 2
    err = capsys.readouterr().err
    assert "no identity shards" in err and "Traceback" not in err
