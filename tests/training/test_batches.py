"""In-memory P x K batches: captions aligned with their images, passes chained into longer epochs, rank split."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from reid.config import Config
from reid.data.batching import PKBatchBuilder
from reid.data.tokenize import load_tokenizer
from reid.training.batches import InMemoryBatches, epoch_passes, steps_per_epoch, steps_per_pass, take_steps

from .conftest import COLOURS


def test_epoch_passes_are_consecutive_and_disjoint() -> None:
    assert [list(epoch_passes(e, 6, 6)) for e in range(3)] == [[0], [1], [2]]  # one pass per epoch
    assert [list(epoch_passes(e, 3, 6)) for e in range(2)] == [[0], [1]]  # part of a pass
    assert [list(epoch_passes(e, 10, 4)) for e in range(2)] == [[0, 1, 2], [3, 4, 5]]


def test_steps_per_epoch_default_is_one_pass_and_a_request_wins() -> None:
    assert steps_per_pass([10, 7], 4, 1) == 3 and steps_per_pass([10, 7], 4, 2) == 1
    assert steps_per_epoch([10, 7], 4, 2) == 1 and steps_per_epoch([10, 7], 4, 2, 25) == 25
    with pytest.raises(ValueError, match="no full batch"):
        steps_per_pass([3, 3], 4, 1)


def test_take_steps_takes_non_empty_batches_and_refuses_short_epochs() -> None:
    stream = [{"pids": np.array([i])} if i != 1 else {} for i in range(7)]
    assert [int(b["pids"][0]) for b in take_steps(iter(stream), 3)] == [0, 2, 3]
    with pytest.raises(RuntimeError, match="3 expected"):
        list(take_steps(iter(stream[:3]), 3, rank=1))


def test_ranks_split_the_single_process_stream_without_building_the_others(
        make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config()
    steps = 5
    alone = InMemoryBatches(config.data, config.seed, storage=config.storage, steps=2 * steps)
    whole = [b["image_ids"].tolist() for b in alone.batches(1)]
    built = []
    original = PKBatchBuilder.__call__
    monkeypatch.setattr(PKBatchBuilder, "__call__", lambda self, rows: built.append(1) or original(self, rows))
    for rank in (0, 1):
        built.clear()
        ranked = InMemoryBatches(config.data, config.seed, storage=config.storage, rank=rank, world_size=2,
                                 steps=steps)
        assert [b["image_ids"].tolist() for b in ranked.batches(1)] == whole[rank::2]
        assert len(built) == steps  # only this rank's batches were decoded


def test_each_caption_describes_its_own_image(make_config: Callable[..., Config]) -> None:
    """Row i of a batch: its caption names the colours of image i's person, and image i shows them."""
    config = make_config("data.augment.flip=false", "data.augment.pad_crop=false")
    data = InMemoryBatches(config.data, config.seed, storage=config.storage)
    tokenizer = load_tokenizer(config.data.tokenizer)
    rows = {row["person_id"]: row for row in data.rows}
    checked = 0
    for batch in data.batches(0):
        for i, pid in enumerate(batch["pids"].tolist()):
            caption = tokenizer.decode(batch["caption_ids"][i][batch["caption_mask"][i].astype(bool)])
            assert caption.split()[1:] in [c.split()[1:] for c in _lowered(rows[pid]["captions"])]
            assert batch["image_ids"][i] in rows[pid]["image_ids"]
            upper = caption.split()[5] if caption.startswith("[CLS] a person") else caption.split()[-3]
            block = batch["images"][i][:, 14:28, 12:20].reshape(3, -1).mean(axis=1)
            assert np.abs(block - np.asarray(COLOURS[upper])).max() < 30, (caption, block)
            checked += 1
    assert checked == data.steps * config.data.batch.p * config.data.batch.k


def test_long_epochs_chain_reshuffled_passes(make_config: Callable[..., Config]) -> None:
    config = make_config()
    one = InMemoryBatches(config.data, config.seed, storage=config.storage)
    assert one.steps == one.per_pass == 24 // config.data.batch.p
    long = InMemoryBatches(config.data, config.seed, storage=config.storage, steps=2 * one.per_pass + 3)
    batches = list(long.batches(0))
    assert len(batches) == 2 * one.per_pass + 3
    first_pass = [b["pids"].tolist() for b in batches[:one.per_pass]]
    assert first_pass == [b["pids"].tolist() for b in one.batches(0)]  # the first pass is epoch 0's pass
    for start in (0, one.per_pass):  # every identity once per pass, K images each
        seen = Counter(p for b in batches[start:start + one.per_pass] for p in b["pids"].tolist())
        assert set(seen.values()) == {config.data.batch.k} and len(seen) == 24
    assert [b["pids"].tolist() for b in batches[one.per_pass:2 * one.per_pass]] != first_pass
    next_epoch = [b["pids"].tolist() for b in long.batches(1)][:one.per_pass]
    assert next_epoch not in ([b["pids"].tolist() for b in batches[s:s + one.per_pass]] for s in (0, one.per_pass))


def _lowered(captions: list[list[str]]) -> list[str]:
    return ["[CLS] " + c.lower() + " [SEP]" for per_image in captions for c in per_image]
