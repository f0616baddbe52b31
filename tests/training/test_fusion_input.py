"""A run says, once and at start, when its fusion will read images only (and why)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from reid.config import Config
from reid.describe.schema import Description
from reid.describe.table import append_descriptions
from reid.training.setup import IMAGE_AND_DESCRIPTION, IMAGE_ONLY, fusion_input, warn_if_image_only

IMAGES = ["train/p000_0.png", "train/p000_1.png", "train/p001_0.png"]


def _with_descriptions(colour_dataset: Path, tmp_path: Path, provenance: str) -> Path:
    root = tmp_path / provenance
    shutil.copytree(colour_dataset, root)
    rows = [Description(i, "A tall man with short black hair.", "A red shirt and blue trousers.", provenance)
            for i in IMAGES]
    append_descriptions(str(root), rows)
    return root


def test_caption_derived_descriptions_make_the_fusion_image_only(colour_dataset: Path, tmp_path: Path,
                                                                 make_config: Callable[..., Config],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    rules = _with_descriptions(colour_dataset, tmp_path, "rules")
    config = make_config(f"data.uri={rules}", "data.use_descriptions=true", "model.fusion.kind=mamba")
    with caplog.at_level(logging.WARNING, logger="reid.training.setup"):
        kind, why = warn_if_image_only(config)
    assert kind == IMAGE_ONLY and "caption-derived" in why and "3 identity descriptions" in why
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("fusion will be image-only: all 3")


def test_image_grounded_descriptions_feed_the_fusion(colour_dataset: Path, tmp_path: Path,
                                                     make_config: Callable[..., Config]) -> None:
    oracle = _with_descriptions(colour_dataset, tmp_path, "oracle")
    config = make_config(f"data.uri={oracle}", "data.use_descriptions=true", "model.fusion.kind=mamba")
    assert fusion_input(config) == (IMAGE_AND_DESCRIPTION, "3 of 3 images have an image-grounded identity description")
    none = make_config(f"data.uri={oracle}", "data.use_descriptions=true", "model.fusion.kind=none")
    assert fusion_input(none)[0] == IMAGE_ONLY
    off = make_config(f"data.uri={oracle}", "model.fusion.kind=mamba")  # make_config switches descriptions off
    assert fusion_input(off) == (IMAGE_ONLY, "data.use_descriptions is false")
    bare = make_config("data.use_descriptions=true", "model.fusion.kind=mamba")
    assert fusion_input(bare)[0] == IMAGE_ONLY and "no identity descriptions" in fusion_input(bare)[1]


def test_the_modality_picture_reads_each_images_description(colour_dataset: Path, tmp_path: Path,
                                                            make_config: Callable[..., Config]) -> None:
    """The fusion weights drawn in modality.png are those of the gallery with its descriptions (they were the
    image-only path's, all w_img = 1)."""
    import torch

    from reid.models.factory import create_model
    from reid.models.retrieval import TextImageEncoder, build_tokenizer
    from reid.training.evaluation_figures import _gallery_features

    oracle = _with_descriptions(colour_dataset, tmp_path, "oracle")
    shutil.rmtree(oracle / "identities" / "train")  # keep the gallery split small
    config = make_config(f"data.uri={oracle}", "data.use_descriptions=true", "model.fusion.kind=mamba")
    model = create_model(config).eval()
    encoder = TextImageEncoder(model, build_tokenizer(config.data.tokenizer), config.data.max_text_length, "cpu")
    features = _gallery_features(model, config, "test", torch.device("cpu"), encoder)
    assert not features.has_description.any()  # the descriptions written above are of train images only
    rows = [Description(f"test/p{p:03d}_{k}.png", "A tall man.", "A red shirt.", "oracle") for p in range(2)
            for k in range(3)]
    append_descriptions(str(oracle), rows)
    features = _gallery_features(model, config, "test", torch.device("cpu"), encoder)
    assert features.has_description.sum() == 6 and (features.w_img[features.has_description] < 1).all()
    assert (features.w_img[~features.has_description] == 1).all()
