"""MLflow tracking of training runs: redacted params, per-epoch metrics, resolved config and best checkpoint."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from reid.config import Config, flatten_config
from reid.config.loader import config_to_dict
from reid.training.config import TrackingConfig

logger = logging.getLogger(__name__)

REDACTED = "<redacted>"
# Environment variable names that hold secrets (AWS_SECRET_ACCESS_KEY, HF_TOKEN, OPENAI_API_KEY, ...).
SECRET_NAME = re.compile(r"secret|passw|token|api[_-]?key|access[_-]?key|credential|private|auth", re.IGNORECASE)
# Config key names that hold a secret value: the whole last segment is a secret word, optionally prefixed
# (``api_key``, ``s3_secret_key``, ``password``); ``tokenizer``, ``max_tokens`` and ``api_key_env`` (the *name* of a
# variable) are not secrets and stay, so the redacted resolved config still loads.
SECRET_KEY = re.compile(r"^(?:\w+_)?(?:secret|secret_key|secret_access_key|password|passwd|token|api_key|"
                        r"access_key|access_key_id|credentials?|private_key|auth|auth_token)$", re.IGNORECASE)
MIN_SECRET_LENGTH = 6
URI_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]+:)[^@/\s]+@")  # scheme://user:PASSWORD@host
EPOCH_MARKER = "step"  # a metric every epoch of the training loop logs (optimiser steps so far)


def tracking_uri(cfg: TrackingConfig) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<runs_dir>/mlflow.db`` (made absolute)."""
    if cfg.uri:
        return cfg.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    runs = Path(cfg.runs_dir).absolute()
    runs.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs / 'mlflow.db'}"


class TrackingStoreError(RuntimeError):
    """The tracking store cannot be reached by every process that logs to it."""


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


def node_local(uri: str) -> bool:
    """True when ``uri`` names a store only this machine can reach: a file or SQLite store, or a server on a
    loopback address."""
    from urllib.parse import urlparse

    if uri == "databricks" or uri.startswith("databricks://"):  # a hosted store, named without a URL
        return False
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file", "sqlite"):
        return True
    return parsed.scheme in ("http", "https") and (parsed.hostname or "") in LOOPBACK_HOSTS


def check_tracking_store(uri: str, node_addresses: Collection[str], here: str) -> None:
    """Refuse a node-local tracking store when some node of the cluster runs on another machine: rank 0, which
    logs every epoch, may run there and would write to (or fail to reach) a store the driver never sees.

    ``node_addresses`` are the alive nodes' IP addresses (:func:`alive_node_addresses`), ``here`` the driver's
    node's. Nodes at ``here`` or at a loopback address (a cluster started with ``--node-ip-address 127.0.0.1``)
    share this machine, its files and its loopback servers, so any store works for them."""
    away = [a for a in node_addresses if a != here and a not in LOOPBACK_HOSTS]
    if away and node_local(uri):
        nodes, elsewhere = len(node_addresses), sorted(set(away))
        raise TrackingStoreError(
            f"the MLflow tracking store {uri} is local to this machine ({here}), but {len(away)} "
            f"of the Ray cluster's {nodes} nodes run elsewhere ({', '.join(elsewhere[:3])}"
            f"{', ...' if len(elsewhere) > 3 else ''}) and training workers may run there: set tracking.uri "
            "(or MLFLOW_TRACKING_URI) to an `mlflow server` that every node reaches, e.g. http://<head-ip>:5000 "
            "(cluster/aws-gpu.yaml starts one on the head)")


def alive_node_addresses() -> list[str]:
    """The IP addresses of the alive nodes of the connected Ray cluster (one per node)."""
    import ray

    return [node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")]


def driver_address() -> str:
    """The IP address of the node this process runs on, as Ray knows it."""
    import ray

    return ray.util.get_node_ip_address()


def check_cluster_tracking_store(uri: str) -> None:
    """:func:`check_tracking_store` against the connected Ray cluster."""
    check_tracking_store(uri, alive_node_addresses(), driver_address())


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"  # the MLflow UI then opens on runs and charts, not GenAI traces


def experiment_id(client: MlflowClient, cfg: TrackingConfig, uri: str) -> str:
    """The id of ``tracking.experiment``, created when missing: with a file or SQLite store its artifacts go
    to ``<tracking.runs_dir>/mlartifacts`` (MLflow's default is ``./mlruns`` of whatever directory the process
    runs in); every experiment is tagged as model training, so the UI opens on its runs."""
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        location = None
        if node_local(uri) and not uri.startswith(("http://", "https://")):
            location = (Path(cfg.runs_dir).absolute() / "mlartifacts").as_uri()
        exp_id = client.create_experiment(cfg.experiment, artifact_location=location)
    else:
        exp_id = experiment.experiment_id
    if (experiment is None or experiment.tags.get(EXPERIMENT_KIND_TAG) is None):
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return exp_id


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (``*_TOKEN``, ``*_SECRET*``, ``*API_KEY``...)."""
    env = os.environ if environ is None else environ
    return sorted({v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH})


def redact(key: str, value: Any, secrets: list[str]) -> Any:
    """``value`` unless its key looks secret or it contains a secret environment value."""
    if SECRET_KEY.match(key.rsplit(".", 1)[-1]) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str) and any(s in value for s in secrets):
        return REDACTED
    if isinstance(value, str) and URI_PASSWORD.search(value):
        return URI_PASSWORD.sub(rf"\1{REDACTED}@", value)
    if isinstance(value, (list, tuple)):
        return [redact(key, v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: redact(f"{key}.{k}", v, secrets) for k, v in value.items()}
    return value


def safe_params(config: Config) -> dict[str, str]:
    """The flattened resolved config with secrets redacted, as MLflow param strings (500 chars max)."""
    secrets = secret_values()
    return {k: str(redact(k, v, secrets))[:500] for k, v in flatten_config(config).items()}


def safe_config_yaml(config: Config) -> str:
    """The resolved config as YAML, secrets redacted."""
    return yaml.safe_dump(redact("", config_to_dict(config), secret_values()), sort_keys=False)


class RunTracker:
    """One MLflow run, addressed by id so any process (the driver, a Ray Train rank 0) can log to it."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id = uri, run_id
        self.client = MlflowClient(tracking_uri=uri)

    @classmethod
    def create(cls, config: Config, run_name: str, parent_run_id: str | None = None) -> RunTracker:
        """A new run in ``tracking.experiment`` with the redacted params and the resolved config artifact."""
        uri = tracking_uri(config.tracking)
        client = MlflowClient(tracking_uri=uri)
        exp_id = experiment_id(client, config.tracking, uri)
        tags = {"mlflow.runName": run_name}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(exp_id, run_name=run_name, tags=tags)
        tracker = cls(uri, run.info.run_id)
        params = [Param(k, v) for k, v in sorted(safe_params(config).items())]
        for start in range(0, len(params), 100):
            client.log_batch(tracker.run_id, params=params[start:start + 100])
        client.log_text(tracker.run_id, safe_config_yaml(config), "config/resolved.yaml")
        logger.info("MLflow run %s (%s) at %s", tracker.run_id, run_name, uri)
        return tracker

    def log_epoch(self, metrics: Mapping[str, float], epoch: int) -> None:
        """Every finite metric of an epoch at ``step=epoch``."""
        now = int(time.time() * 1000)
        rows = [Metric(_key(k), float(v), now, epoch) for k, v in metrics.items() if _is_number(v)]
        for start in range(0, len(rows), 500):
            self.client.log_batch(self.run_id, metrics=rows[start:start + 500])

    def last_epoch(self) -> int | None:
        """The newest epoch :meth:`log_epoch` wrote (its ``step`` metric), or None."""
        history = self.client.get_metric_history(self.run_id, EPOCH_MARKER)
        return max(m.step for m in history) if history else None

    def log_metrics(self, metrics: Mapping[str, float], prefix: str = "") -> None:
        self.log_epoch({f"{prefix}{k}": v for k, v in metrics.items()}, 0)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        secrets = secret_values()
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(redact(k, v, secrets))) for k, v in tags.items()])

    def log_artifacts(self, directory: str, path: str) -> None:
        self.client.log_artifacts(self.run_id, directory, path)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
