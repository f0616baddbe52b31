"""Search on a tiny gallery with a stand-in encoder: top hit, ground truth, contact sheet, cache, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid.cli import evaluate as evaluate_cli
from reid.cli import search as search_cli
from reid.config import load_config
from reid.describe.schema import Description
from reid.describe.table import append_descriptions
from reid.evaluation import loading
from reid.evaluation.contact_sheet import CORRECT, UNKNOWN, WRONG, render_contact_sheet
from reid.evaluation.embedding_cache import EmbeddingCache
from reid.evaluation.search import search_gallery, top_hits

# Sheet of 4 thumbnails of 32x16 in one row with a one-line query: width max(320, 4*24 + 5*8) = 320,
# height 8 + 16 + (32 + 8 + 30 + 8) + 8 = 110 (labels of two lines); frame i starts at x = 8 + 32 * i,
# y = 8 + 16 + 8 = 32.
SHEET_SIZE = (320, 110)


def frame_colour(sheet: Image.Image, i: int) -> tuple[int, int, int]:
    return sheet.getpixel((8 + 32 * i, 32))


def test_search_ranks_the_pure_red_image_first_and_draws_the_sheet(dataset: Path, encoder, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    result = search_gallery(encoder, "a person in red", str(dataset), "test", (16, 8), "ckpt", top=4,
                            query_pid=0, sheet_uri=str(sheet), thumb_size=(32, 16), progress=False)
    assert result.hits[0].image_id == "test/p0_a"
    assert [h.person_id for h in result.hits] == [0, 0, 0, 3]  # then yellow, half red
    assert [h.correct for h in result.hits] == [True, True, True, False]
    assert [h.rank for h in result.hits] == [1, 2, 3, 4]
    assert result.hits[0].score == pytest.approx(1.0, abs=1e-4) and result.hits[3].score == pytest.approx(
        2 ** -0.5, abs=1e-2)
    image = Image.open(sheet)
    assert image.size == SHEET_SIZE
    assert [frame_colour(image, i) for i in range(4)] == [CORRECT, CORRECT, CORRECT, WRONG]


def test_a_query_equal_to_a_gallery_caption_knows_its_person(dataset: Path, encoder) -> None:
    result = search_gallery(encoder, "  a person in a GREEN shirt 1", str(dataset), "test", (16, 8), "ckpt",
                            top=3, progress=False)
    assert result.truth_pid == 1
    assert [h.correct for h in result.hits] == [True, True, True]
    unknown = search_gallery(encoder, "someone in green", str(dataset), "test", (16, 8), "ckpt", top=2,
                             progress=False)
    assert unknown.truth_pid is None and [h.correct for h in unknown.hits] == [None, None]


def test_second_search_reads_the_gallery_from_the_cache(dataset: Path, encoder_cls, tmp_path: Path) -> None:
    cache = EmbeddingCache(str(tmp_path / "cache"))
    args = dict(gallery_uri=str(dataset), split="test", image_size=(16, 8), top=5, cache=cache, batch_size=4,
                progress=False)
    first_encoder = encoder_cls()
    first = search_gallery(first_encoder, "blue", checkpoint_id="ckpt-1", **args)
    assert not first.from_cache and first_encoder.gallery_calls == 3  # 12 images, 4 a batch
    second_encoder = encoder_cls()
    second = search_gallery(second_encoder, "blue", checkpoint_id="ckpt-1", **args)
    assert second.from_cache and second_encoder.gallery_calls == 0
    assert second.hits == first.hits
    other_checkpoint = encoder_cls()
    assert not search_gallery(other_checkpoint, "blue", checkpoint_id="ckpt-2", **args).from_cache
    assert other_checkpoint.gallery_calls > 0
    append_descriptions(str(dataset), [Description("test/p2_a", "a blue figure", "blue", "oracle")])
    changed = encoder_cls()  # new descriptions change the gallery embeddings: the key must change
    assert not search_gallery(changed, "blue", checkpoint_id="ckpt-1", **args).from_cache


def test_top_hits_keep_gallery_order_on_ties() -> None:
    gallery = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    indices, scores = top_hits(torch.tensor([1.0, 0.0]), gallery, 3)
    assert indices.tolist() == [1, 2, 3]
    np.testing.assert_allclose(scores, [1.0, 1.0, 0.5])


def test_contact_sheet_layout_and_errors() -> None:
    thumbs = [np.full((3, 20, 10), 50 * i, dtype=np.uint8) for i in range(5)]
    query = "a very long query " * 30
    sheet = render_contact_sheet(query, thumbs, [str(i) for i in range(5)], [None] * 5, (20, 10), columns=2)
    # 3 rows, the query cut to 3 lines: width 320, height 8 + 3*16 + 3*(20 + 8 + 30 + 8) + 8 = 262
    assert sheet.size == (320, 262)
    assert sheet.getpixel((8, 8 + 48 + 8)) == UNKNOWN
    assert sheet.getpixel((8 + 4, 8 + 48 + 8 + 4)) == (0, 0, 0)  # first thumbnail's top-left pixel
    with pytest.raises(ValueError, match="thumbnail 0 must be uint8"):
        render_contact_sheet("q", [np.zeros((3, 5, 5), np.uint8)], ["x"], [None], (20, 10))
    with pytest.raises(ValueError, match="as many labels"):
        render_contact_sheet("q", thumbs, ["x"], [None], (20, 10))


@pytest.fixture()
def stand_in_checkpoint(monkeypatch, encoder_cls):
    """Replace checkpoint loading by the stand-in encoder with a 16x8 image size; count loads."""
    encoders = []

    def load(uri, device="auto", batch_size=64, storage=None):
        encoders.append(encoder_cls())
        return encoders[-1], load_config(None, ["data.image_size=[16, 8]", "model.vision_config={patch_size: 8}"])

    monkeypatch.setattr(loading, "load_encoder", load)
    return encoders


def run_cli(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reid")
    sub = parser.add_subparsers(dest="command", required=True)
    module.add_parser(sub)
    for choice in sub.choices.values():  # the options reid.cli.main adds to every sub-command
        choice.add_argument("--config", default=None)
        choice.add_argument("--set", action="append", default=[])
        choice.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    return args.func(args)


def test_reid_search_cli_prints_hits_writes_sheet_and_caches(dataset: Path, tmp_path: Path, capsys,
                                                             stand_in_checkpoint) -> None:
    argv = ["search", "a person in red", "--checkpoint", str(tmp_path / "ckpt"), "--gallery", str(dataset),
            "--top", "4", "--query-pid", "0", "--sheet", str(tmp_path / "s.png"), "--thumb", "32x16",
            "--cache", str(tmp_path / "cache"), "--json", str(tmp_path / "hits.json"), "--no-progress"]
    assert run_cli(search_cli, argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert "computed" in out[0]
    assert out[2].split() == ["1", "1.0000", "0", "right", "test/p0_a"]
    assert out[5].split()[2:4] == ["3", "wrong"]
    assert Image.open(tmp_path / "s.png").size == SHEET_SIZE
    assert json.loads((tmp_path / "hits.json").read_text())["hits"][0]["image_id"] == "test/p0_a"
    assert run_cli(search_cli, argv) == 0
    assert "from cache" in capsys.readouterr().out.splitlines()[0]
    assert stand_in_checkpoint[1].gallery_calls == 0 and stand_in_checkpoint[1].text_calls == 1


def test_reid_evaluate_cli_prints_table_and_writes_json(dataset: Path, tmp_path: Path, capsys,
                                                         stand_in_checkpoint) -> None:
    out_json = tmp_path / "out" / "metrics.json"
    argv = ["evaluate", "--checkpoint", "ckpt", "--data", str(dataset), "--split", "test", "--output",
            str(out_json), "--image-to-text", "--no-progress", "--set", "eval.chunk_size=5"]
    assert run_cli(evaluate_cli, argv) == 0
    printed = capsys.readouterr().out
    assert "| t2i " in printed and "| i2t " in printed and "83.33" in printed
    payload = json.loads(out_json.read_text())
    assert payload["t2i"]["R1"] == pytest.approx(100 * 20 / 24)
    assert len(payload["per_query"]["first_rank"]) == 24 and payload["checkpoint"] == "ckpt"


def test_cli_reports_a_missing_split_without_a_traceback(dataset: Path, stand_in_checkpoint) -> None:
    from reid.cli.main import UserFacingError

    with pytest.raises(UserFacingError, match="split 'val'"):
        run_cli(evaluate_cli, ["evaluate", "--checkpoint", "c", "--data", str(dataset), "--split", "val"])
