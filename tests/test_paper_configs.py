"""The paper configs of the three datasets load, and every setting that would otherwise fall back to a CPU
demo default (workers, GPUs, precision, ZeRO stage, epochs, storage) is written in the file itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reid.config import load_config

CONFIGS = Path(__file__).parents[1] / "jobs" / "configs"
DATASETS = ("cuhk-pedes", "icfg-pedes", "rstpreid")
EXPLICIT = (
    "seed", "data.uri", "data.image_size", "data.tokenizer", "data.max_text_length", "data.batch.p", "data.batch.k",
    "model.vision_name_or_path", "model.text_name_or_path", "model.bdam.blocks", "model.fusion.kind",
    "model.fusion.layers", "model.fusion.width", "model.fusion.d_state", "model.fusion.d_conv", "loss.infonce",
    "gradnorm.enabled", "gradnorm.alpha", "gradnorm.lr", "optim.lr", "optim.weight_decay", "optim.lr_scaling",
    "train.epochs", "train.workers", "train.cpus_per_worker", "train.gpus_per_worker", "train.engine",
    "train.zero_stage", "train.precision", "train.storage_uri", "train.name",
)


def _keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, dict):
            out |= _keys(value, f"{prefix}{key}.")
    return out


@pytest.mark.parametrize("name", DATASETS)
def test_paper_config_sets_every_cluster_setting_itself(name: str) -> None:
    path = CONFIGS / f"{name}.yaml"
    written = _keys(yaml.safe_load(path.read_text()))
    missing = [k for k in EXPLICIT if k not in written]
    assert not missing, f"{path.name} leaves {missing} to defaults"
    config = load_config(str(path))
    assert config.train.gpus_per_worker >= 1 and config.train.precision == "bf16" and config.train.workers >= 2
    assert config.train.engine == "deepspeed" and config.train.zero_stage in (1, 2)  # GradNorm needs ZeRO 0-2
    assert config.data.uri.startswith("s3://") and config.train.storage_uri.startswith("s3://")
    assert config.tracking.uri is None  # the tracking server comes from MLFLOW_TRACKING_URI
    assert tuple(config.data.image_size) == (224, 224) and config.model.bdam.blocks == 4
    assert (config.model.fusion.layers, config.model.fusion.width, config.model.fusion.d_state) == (2, 256, 16)
    assert (config.optim.lr, config.optim.weight_decay) == (1e-4, 1e-3) and config.gradnorm.alpha == 1.5
    assert config.train.name == name and name in config.data.uri


def test_the_paper_smoke_run_builds_the_papers_architecture() -> None:
    """jobs/paper_smoke.py's overrides give ViT-B/16 + BERT-base + 4-block BDAM + 2-layer Mamba of width 256."""
    import sys

    sys.path.insert(0, str(CONFIGS.parent))
    from paper_smoke import overrides, parameter_counts

    for size in ((224, 224), (384, 128)):
        config = load_config("pkg://demo", overrides("/tmp/data", size, "/tmp/root"))
        assert (config.train.zero_stage, config.train.precision, config.train.workers) == (2, "bf16", 2)
        assert config.gradnorm.enabled and tuple(config.data.image_size) == size
        counts = parameter_counts(config)
        assert 85 < counts["vision"] < 87 and 108 < counts["text"] < 110 and 250 < counts["total"] < 300


@pytest.mark.parametrize("backbone", ["vit", "efficientnet-lite0"])
def test_the_gpu_check_script_runs_its_code_on_a_cpu(backbone: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(CONFIGS.parent / "gpu_check.py"), "--device", "cpu", "--small",
                           "--batch", "8", "--steps", "1", "--size", "64x32", "--backbone", backbone],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gpu check passed" in done.stdout and "Mamba path cpu-kernel" in done.stdout
    assert f"{backbone} backbone" in done.stdout
