"""Every convolutional backbone trains through the Ray-free loop, moves its trunk's weights, and exports a best
checkpoint that loads and embeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from reid.config import Config
from reid.training.setup import train_local

pytestmark = pytest.mark.slow

KINDS = {
    "cnn": ["model.vision_config={model_type: cnn, hidden_size: 32, channels: [8, 16, 16, 32]}"],
    "efficientnet-lite0": ["model.vision_name_or_path=pkg:efficientnet-lite0", "model.vision_config={hidden_size: 32}"],
    "mobilenetv2": ["model.vision_name_or_path=pkg:mobilenetv2", "model.vision_config={hidden_size: 32}"],
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_backbone_trains_exports_and_reloads(kind: str, make_config: Callable[..., Config], tmp_path: Path) -> None:
    from reid.models.export import load_inference_checkpoint
    from reid.models.factory import create_model

    config = make_config(*KINDS[kind], "train.engine=torch", "train.epochs=1", "train.steps_per_epoch=2",
                         "train.pictures=false", "eval.probes=false", "optim.pretrained_lr_ratio=0.1")
    torch.manual_seed(config.seed)
    initial = create_model(config).state_dict()
    result, context = train_local(config, tmp_path / "run")
    assert result.finished and result.state.step == 2 and set(result.test_metrics) >= {"R1", "mAP"}
    model, saved = load_inference_checkpoint(str(tmp_path / "run" / "best"))
    assert saved.model.vision_config["model_type"] == kind.removesuffix("0")
    moved = [k for k, v in model.state_dict().items() if k.startswith("image_encoder.")
             and v.is_floating_point() and not torch.equal(v, initial[k])]
    assert any(k.startswith("image_encoder.trunk.") for k in moved), moved[:5]  # the backbone itself learned
    images = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.isfinite(model.encode_gallery(images)).all()
