"""The image path retrieves by itself: a model trained with image-grounded descriptions (which its fused gallery
reads) also ranks held-out people from their pixels alone, the way a gallery nobody described is searched."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from reid.training.setup import train_local

sys.path.insert(0, str(Path(__file__).parent))
from conftest import describe_colours, tiny_config  # noqa: E402

pytestmark = pytest.mark.slow

CHANCE_R1 = 100.0 / 12  # 12 test identities, 3 images each


def test_held_out_people_are_found_from_their_images_alone(colour_dataset: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "described"
    shutil.copytree(colour_dataset, dataset)
    describe_colours(dataset)
    config = tiny_config(dataset, "data.use_descriptions=true", "loss.image_only=1.0",
                         "model.vision_config={model_type: cnn, hidden_size: 32, channels: [16, 32, 32, 64]}",
                         "train.engine=torch", "train.epochs=2", "train.steps_per_epoch=30", "train.pictures=false",
                         "eval.probes=false", "optim.lr=2e-3")
    result, context = train_local(config, tmp_path / "run")
    test = result.test_metrics
    assert {"R1", "image_R1", "image_mAP"} <= set(test)  # both gallery modes scored
    assert test["image_R1"] >= 2 * CHANCE_R1, test
    assert all("val/image_R1" in report for report in context.reports)  # and every validation
