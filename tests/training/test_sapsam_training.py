"""SAP-SAM's pieces in the real model and trainer, on synthetic data prepared with part masks and described by the
oracle: each alignment kind and decoding strategy trains two steps through the loop (its term logged, finite),
lowers its own loss on a fixed batch over 20 steps, and an image without a part adds no term for that part."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.config import Config, load_config
from reid.data.parts import PARTS
from reid.data.synth import generate
from reid.describe.runner import describe_dataset_local
from reid.distributed.prepare_job import prepare_dataset
from reid.losses import compute_losses
from reid.models.factory import create_model
from reid.training.batches import InMemoryBatches
from reid.training.loop import to_tensors
from reid.training.setup import load_training_descriptions, train_local

KINDS = ("avgpool", "conv1d", "mhsa", "elca")
STRATEGIES = ("after_pe", "after_vit")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("sapsam")
    generate(root / "raw", identities=24, images_per_identity=4, seed=2, image_size=(64, 32), progress=False)
    prepare_dataset("cuhk-pedes", str(root / "raw"), str(root / "ds"), local=True)
    config = load_config("pkg://tiny", ["describe.backend=oracle"])
    describe_dataset_local(str(root / "ds"), config.describe)
    return str(root / "ds")


def config_for(dataset: str, *sets: str) -> Config:
    return load_config("pkg://tiny", [f"data.uri={dataset}", "train.engine=torch", "train.pictures=false",
                                      "train.epochs=1", "train.steps_per_epoch=2", "optim.warmup_epochs=0", *sets])


class Epochs:
    def __init__(self) -> None:
        self.metrics: list[Mapping[str, float]] = []

    def log_epoch(self, metrics: Mapping[str, float], epoch: int) -> None:
        self.metrics.append(dict(metrics))

    def last_epoch(self) -> int | None:
        return None


@pytest.mark.parametrize("sets", [[f"model.local_align.kind={k}"] for k in KINDS]
                         + [[f"model.image_decoding.strategy={s}"] for s in STRATEGIES]
                         + [["model.local_align.kind=elca", "model.image_decoding.strategy=after_pe",
                             "model.bdam.enabled=false", "model.fusion.kind=none"]],
                         ids=[*KINDS, *STRATEGIES, "sapsam_alone"])
def test_each_piece_trains_two_steps_through_the_loop(dataset: str, tmp_path: Path, sets: list[str]) -> None:
    tracker = Epochs()
    result, _ = train_local(config_for(dataset, *sets), tmp_path / "run", tracker=tracker)
    assert result.finished and result.state.step == 2
    logged = tracker.metrics[0]
    for term, key in (("local_align", "model.local_align.kind"), ("image_decoding", "model.image_decoding")):
        if any(s.startswith(key) for s in sets):
            assert math.isfinite(logged[f"loss/{term}"]) and logged[f"loss/{term}"] > 0
            assert f"weight/{term}" in logged  # a GradNorm task of its own
        else:
            assert f"loss/{term}" not in logged


def fixed_batch(config: Config) -> dict[str, torch.Tensor]:
    descriptions = load_training_descriptions(config)
    data = InMemoryBatches(config.data, config.seed, descriptions, parts=True, steps=1)
    return to_tensors(next(iter(data.batches(0))), torch.device("cpu"))


def own_loss_curve(config: Config, batch: dict[str, torch.Tensor], term: str, steps: int = 20) -> list[float]:
    torch.manual_seed(0)
    model = create_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    curve = []
    for step in range(steps):
        torch.manual_seed(step % 2)  # the same two decoding masks alternate: a fixed task
        loss = compute_losses(model(batch), batch, config.loss)[term]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.append(float(loss.detach()))
    return curve


@pytest.mark.parametrize("kind", KINDS)
def test_each_alignment_kind_lowers_its_own_loss_on_a_fixed_batch(dataset: str, kind: str) -> None:
    config = config_for(dataset, f"model.local_align.kind={kind}")
    curve = own_loss_curve(config, fixed_batch(config), "local_align")
    assert np.mean(curve[-3:]) < 0.8 * np.mean(curve[:3]), curve


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_decoding_strategy_lowers_its_own_loss_on_a_fixed_batch(dataset: str, strategy: str) -> None:
    config = config_for(dataset, f"model.image_decoding.strategy={strategy}", "model.local_align.kind=avgpool")
    curve = own_loss_curve(config, fixed_batch(config), "image_decoding")
    assert np.mean(curve[-3:]) < 0.9 * np.mean(curve[:3]), curve


def test_an_image_without_a_part_adds_no_term_for_it(dataset: str) -> None:
    config = config_for(dataset, "model.local_align.kind=elca")
    batch = fixed_batch(config)
    model = create_model(config).eval()
    clothes = PARTS.index("clothes")
    with torch.no_grad():
        before = model(batch)["local_parts"]
        assert 0 in before.rows[clothes].tolist()  # every drawn person wears a top
        hidden = dict(batch)
        labels = batch["part_labels"].clone()
        labels[0][labels[0] == 4] = 0  # erase image 0's clothes region (fine label 4)
        hidden["part_labels"] = labels
        after = model(hidden)["local_parts"]
        assert 0 not in after.rows[clothes].tolist()
        assert after.rows[clothes].tolist() == [r for r in before.rows[clothes].tolist() if r != 0]
        # the other images' clothes scores are those of the full batch without row/column 0
        keep = [i for i, r in enumerate(before.rows[clothes].tolist()) if r != 0]
        assert torch.allclose(after.scores[clothes], before.scores[clothes][keep][:, keep], atol=1e-5)
        dropped = dict(batch)
        mask = batch["part_mask"].clone()
        mask[1, clothes] = 0  # no phrase for image 1's clothes: no term either
        dropped["part_mask"] = mask
        assert 1 not in model(dropped)["local_parts"].rows[clothes].tolist()


def test_local_alignment_on_a_dataset_without_masks_is_a_clear_error(dataset: str, tmp_path: Path) -> None:
    raw = Path(dataset).parent / "raw"
    prepare_dataset("cuhk-pedes", str(raw), str(tmp_path / "plain"), local=True, part_masks="none")
    config = config_for(str(tmp_path / "plain"), "model.local_align.kind=elca", "data.use_descriptions=false")
    with pytest.raises(ValueError, match="no part masks.*reid prepare"):
        train_local(config, tmp_path / "run")
