"""The Ray-free loop with the plain context: epochs, checkpoints, selection on validation, test at the end, resume."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from reid.config import Config
from reid.training.context import LocalContext
from reid.training.engine import STATE_FILE
from reid.training.setup import train_local

pytestmark = pytest.mark.slow


def test_loop_checkpoints_selects_on_val_and_scores_test(make_config: Callable[..., Config], tmp_path: Path) -> None:
    config = make_config("train.engine=torch", "train.epochs=4", "train.steps_per_epoch=3",
                         "train.val_every=2", "optim.lr=2e-3")
    result, context = train_local(config, tmp_path / "run")
    epochs = [int(r["epoch"]) for r in context.reports]
    assert epochs == [0, 1, 2, 3]
    assert [int(r["step"]) for r in context.reports] == [3, 6, 9, 12]
    assert sorted(Path(c).name for c in context.checkpoints) == [f"epoch-{e:04d}" for e in range(4)]
    # validation on epochs 1 and 3 only (val_every=2), never on test; the best is the argmax of val R1
    assert [h["epoch"] for h in result.state.history] == [1, 3]
    assert all("val/R1" in r for r in (context.reports[1], context.reports[3]))
    assert "val/R1" not in context.reports[0] and not any(k.startswith("test") for r in context.reports for k in r)
    best = max(result.state.history, key=lambda h: (h["R1"], -h["epoch"]))
    assert result.state.best_epoch == best["epoch"] and result.val_metrics["R1"] == best["R1"]
    assert (tmp_path / "run" / "best" / "config.yaml").is_file()
    pictures = sorted(p.name for p in (tmp_path / "run" / "pictures").iterdir())
    assert pictures == ["gate.png", "modality.png", "ranks.png", "tsne.png"]
    assert set(result.test_metrics) == {"R1", "R5", "R10", "mAP", "mINP"} and result.finished
    first, last = context.reports[0], context.reports[-1]
    assert last["loss/triplet"] < first["loss/triplet"]
    assert first["samples_per_s"] > 0 and {"weight/infonce", "gate/bdam_gate_mean"} <= set(first)


def test_resume_equals_an_uninterrupted_run(make_config: Callable[..., Config], tmp_path: Path) -> None:
    """GradNorm on, dropout on: model, Adam, scheduler, GradNorm and RNG state all have to come back."""
    common = ["train.engine=torch", "train.epochs=4", "train.steps_per_epoch=2", "train.val_every=4",
              "model.dropout=0.2", "model.bdam.dropout=0.2", "train.deterministic=true"]
    whole, _ = train_local(make_config(*common), tmp_path / "whole")
    stopped, _ = train_local(make_config(*common, "train.stop_after_epochs=2"), tmp_path / "part")
    assert not stopped.finished and stopped.state.epoch == 2 and stopped.test_metrics == {}
    resumed, context = train_local(make_config(*common), tmp_path / "part", resume=True)
    assert [int(r["epoch"]) for r in context.reports] == [2, 3] and resumed.state.step == whole.state.step == 8
    a = torch.load(tmp_path / "whole" / "epoch-0003" / STATE_FILE, weights_only=True)
    b = torch.load(tmp_path / "part" / "epoch-0003" / STATE_FILE, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert torch.equal(a["client"]["balancer"]["log_weights"], b["client"]["balancer"]["log_weights"])
    assert resumed.test_metrics == whole.test_metrics


def test_latest_checkpoint_is_the_newest_epoch(tmp_path: Path) -> None:
    for epoch in (0, 2, 1):
        (tmp_path / f"epoch-{epoch:04d}").mkdir()
    assert LocalContext.latest(tmp_path) == str(tmp_path / "epoch-0002")
    assert LocalContext.latest(tmp_path / "missing") is None


class MemoryTracker:
    """Keeps ``(epoch, step)`` of every logged epoch; ``drop`` epochs are lost (a death before the log line)."""

    def __init__(self, drop: tuple[int, ...] = ()) -> None:
        self.logged: list[tuple[int, int]] = []
        self.drop = set(drop)

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        if epoch in self.drop:
            self.drop.discard(epoch)
            return
        self.logged.append((epoch, int(metrics["step"])))

    def last_epoch(self) -> int | None:
        return max(e for e, _ in self.logged) if self.logged else None


def test_a_restart_logs_every_epoch_exactly_once(make_config: Callable[..., Config], tmp_path: Path) -> None:
    common = ["train.engine=torch", "train.epochs=4", "train.steps_per_epoch=2", "train.val_every=4"]
    tracker = MemoryTracker(drop=(1,))  # epoch 1 was checkpointed, then the process died before logging it
    train_local(make_config(*common, "train.stop_after_epochs=2"), tmp_path / "run", tracker=tracker)
    assert tracker.logged == [(0, 2)]
    train_local(make_config(*common), tmp_path / "run", resume=True, tracker=tracker)
    assert tracker.logged == [(0, 2), (1, 4), (2, 6), (3, 8)]
    # an older checkpoint than the log (epoch 2 logged, restart from epoch 1's): epoch 2 is not logged twice
    older = MemoryTracker()
    older.logged = [(0, 2), (1, 4), (2, 6)]
    (tmp_path / "old").mkdir()
    shutil.copytree(tmp_path / "run" / "epoch-0001", tmp_path / "old" / "epoch-0001")
    train_local(make_config(*common), tmp_path / "old", resume=True, tracker=older)
    assert older.logged == [(0, 2), (1, 4), (2, 6), (3, 8)]
