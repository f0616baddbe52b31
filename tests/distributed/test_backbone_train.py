"""The demo's convolutional backbone trains through ``reid train`` on Ray Train with DeepSpeed (2 workers, ZeRO-1)
and the checkpoint it exports is what ``reid evaluate`` and ``reid index`` load."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_demo_backbone_trains_on_ray_and_its_checkpoint_evaluates_and_indexes(
        ray_local: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from reid.cli.main import main
    from reid.config import load_config
    from reid.evaluation.gallery_index import read_index
    from reid.models.backbone_spec import CNN_FAMILIES, backbone_spec
    from reid.models.export import read_checkpoint_config

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("REID_LOG_DIR", str(tmp_path / "logs"))
    demo = load_config("pkg://demo")
    dataset = write_colour_dataset(tmp_path / "dataset")
    overrides = [f"data.uri={dataset}", "data.use_descriptions=false", "data.image_size=[64, 32]",
                 "data.batch.p=4", "data.batch.k=2", "train.epochs=1", "train.steps_per_epoch=2",
                 "train.engine=deepspeed", "train.zero_stage=1", "train.workers=2", "train.pictures=false",
                 "eval.probes=false", f"train.storage_uri={tmp_path / 'ckpt'}", "train.name=cnn",
                 f"tracking.runs_dir={tmp_path / 'runs'}"]
    argv = ["train", "--config", "pkg://demo", "--json"]
    for item in overrides:
        argv += ["--set", item]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    best = result["best_checkpoint"]
    saved = read_checkpoint_config(best).model
    family = backbone_spec(demo.model.vision_name_or_path, demo.model.vision_config).family
    assert family in CNN_FAMILIES and saved.vision_config["model_type"] == family
    assert saved.vision_name_or_path is None  # the architecture is in the checkpoint; no wheel needed to load

    assert main(["evaluate", "--checkpoint", best, "--no-progress", "--output", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())["t2i"]
    assert set(metrics) >= {"R1", "mAP"} and 0 <= metrics["R1"] <= 100
    assert main(["index", "--checkpoint", best, "--gallery", str(dataset), "--out", str(tmp_path / "index"),
                 "--thumb", "32x16"]) == 0
    index = read_index(str(tmp_path / "index"))
    assert index.embeddings.shape == (36, demo.model.embed_dim) and index.manifest["image_only"] == 36
