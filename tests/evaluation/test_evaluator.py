"""The evaluator on a tiny dataset with a stand-in encoder, and the no-leakage rule for descriptions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reid.data.transforms import eval_transform
from reid.describe.schema import Description
from reid.describe.table import append_descriptions
from reid.evaluation.descriptions import admissible_description, select_gallery_descriptions
from reid.evaluation.evaluator import Evaluator
from reid.evaluation.ranking import query_ranks_from_embeddings, rank_embeddings
from reid.evaluation.split_reader import read_images, read_split_index


def test_evaluator_scores_the_split_like_rank_on_independent_embeddings(dataset: Path, encoder,
                                                                         encoder_cls) -> None:
    evaluator = Evaluator(str(dataset), (16, 8), batch_size=5, chunk_size=7, image_to_text=True, progress=False)
    result = evaluator.evaluate(encoder, "test")
    # 24 captions; the one caption per person naming the next person's colour misses at rank 1.
    assert result.metrics["R1"] == pytest.approx(100 * 20 / 24)
    assert result.num_queries == 24 and result.num_gallery == 12
    # The same numbers from embeddings computed here, image by image, in the index order.
    index = read_split_index(str(dataset), "test")
    blobs = read_images(str(dataset), "test", index.image_ids)
    images = torch.from_numpy(np.stack([eval_transform(blobs[i], (16, 8)) for i in index.image_ids]))
    reference = encoder_cls()
    q, g = reference.encode_text(index.captions), reference.encode_gallery(images, None)
    expected = rank_embeddings(q, g, index.caption_pids, index.person_ids)
    assert result.metrics == pytest.approx(expected)
    ranks = query_ranks_from_embeddings(q, g, index.caption_pids, index.person_ids)
    np.testing.assert_array_equal(result.first_ranks, ranks.first)
    np.testing.assert_array_equal(result.last_ranks, ranks.last)
    assert result.first_ranks[5] >= 3  # caption 5 (red person, "green clothes") ranks green images first
    assert result.image_to_text == pytest.approx(rank_embeddings(g, q, index.person_ids, index.caption_pids))
    assert set(result.to_dict()) == {"split", "num_queries", "num_gallery", "t2i", "i2t", "per_query"}


def test_gallery_uses_only_image_grounded_descriptions(dataset: Path, encoder) -> None:
    append_descriptions(str(dataset), [
        Description("test/p0_a", "oracle: short red figure", "red", "oracle"),
        Description("test/p0_b", "rules: from the captions", "red", "rules"),
        Description("test/p1_a", "mllm: a green figure", "green", "mllm"),
        Description("test/p1_b", "mllm: failed validation", "", "mllm", quarantined=True, reason="empty"),
    ])
    Evaluator(str(dataset), (16, 8), batch_size=4, progress=False).evaluate(encoder, "test")
    seen = dict(zip(read_split_index(str(dataset), "test").image_ids, encoder.seen_descriptions, strict=True))
    assert seen["test/p0_a"] == "oracle: short red figure"
    assert seen["test/p1_a"] == "mllm: a green figure"
    assert seen["test/p0_b"] is None  # caption-derived: never given to the gallery
    assert seen["test/p1_b"] is None  # quarantined
    assert all(v is None for k, v in seen.items() if k not in ("test/p0_a", "test/p1_a"))
    assert encoder.seen_none == 0


def test_only_rules_descriptions_means_image_only_and_switch_off_passes_none(dataset: Path, encoder_cls) -> None:
    append_descriptions(str(dataset), [Description("test/p0_a", "from captions", "red", "rules")])
    first = encoder_cls()
    Evaluator(str(dataset), (16, 8), batch_size=4, progress=False).evaluate(first, "test")
    assert first.seen_none == first.gallery_calls == 3 and first.seen_descriptions == []
    second = encoder_cls()
    Evaluator(str(dataset), (16, 8), batch_size=4, use_descriptions=False, progress=False).evaluate(second, "test")
    assert second.seen_none == 3


def test_admissible_description_rule() -> None:
    assert admissible_description("x", "tall man", "mllm") == "tall man"
    assert admissible_description("x", "tall man", "oracle") == "tall man"
    assert admissible_description("x", "tall man", "rules") is None
    assert admissible_description("x", "  ", "mllm") is None
    with pytest.raises(ValueError, match="image 'x' has unknown provenance 'human'"):
        admissible_description("x", "tall man", "human")
    rows = {"a": {"identity": "t", "provenance": "rules"}, "b": {"identity": "u", "provenance": "oracle"}}
    assert select_gallery_descriptions(["a", "b", "c"], rows) == [None, "u", None]


def test_encoder_returning_wrong_rows_is_named(dataset: Path, encoder_cls) -> None:
    class Broken(encoder_cls):
        def encode_gallery(self, images, descriptions):
            return super().encode_gallery(images, descriptions)[:-1]

    with pytest.raises(ValueError, match=r"encode_gallery returned shape \(3, 3\) for 4 inputs"):
        Evaluator(str(dataset), (16, 8), batch_size=4, progress=False).evaluate(Broken(), "test")
