"""``reid evaluate`` and ``reid search`` through the real command line on a tiny saved checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid.cli.main import main
from reid.config import load_config
from reid.data.transforms import eval_transform
from reid.evaluation.loading import load_encoder
from reid.evaluation.ranking import rank_embeddings
from reid.evaluation.split_reader import read_images, read_split_index
from reid.models.export import save_inference_checkpoint
from reid.models.factory import create_model


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    config = load_config("pkg://tiny")  # random-init tiny encoders, 64x32 images
    torch.manual_seed(0)
    model = create_model(config)
    save_inference_checkpoint(model, config, str(tmp_path / "ckpt"))
    return tmp_path / "ckpt"


def test_evaluate_and_search_on_a_saved_checkpoint(dataset: Path, checkpoint: Path, tmp_path: Path,
                                                   capsys) -> None:
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(dataset), "--output", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    metrics = json.loads(out.read_text())["t2i"]
    # The same numbers from the checkpoint's encoder applied here, at the checkpoint's image size.
    encoder, config = load_encoder(str(checkpoint), "cpu")
    index = read_split_index(str(dataset), "test")
    blobs = read_images(str(dataset), "test", index.image_ids)
    images = torch.from_numpy(np.stack([eval_transform(blobs[i], config.data.image_size) for i in index.image_ids]))
    expected = rank_embeddings(encoder.encode_text(index.captions), encoder.encode_gallery(images, None),
                               index.caption_pids, index.person_ids)
    assert metrics == pytest.approx(expected, abs=1e-6)
    capsys.readouterr()

    argv = ["search", "A person in a red shirt 0", "--checkpoint", str(checkpoint), "--gallery", str(dataset),
            "--top", "5", "--sheet", str(tmp_path / "s.png"), "--thumb", "32x16", "--cache",
            str(tmp_path / "cache"), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    assert main(argv) == 0
    second = capsys.readouterr().out.splitlines()
    assert "computed" in first[0] and "from cache" in second[0]
    assert first[1:] == second[1:] and len(first) == 2 + 5 + 1  # header, 5 hits, sheet line
    assert all(line.split()[3] in ("right", "wrong") for line in first[2:7])  # the text is a gallery caption
    assert Image.open(tmp_path / "s.png").size == (320, 110)  # two label lines: rank and score, person


def test_evaluate_defaults_to_the_checkpoints_dataset(dataset: Path, tmp_path: Path) -> None:
    config = load_config("pkg://tiny", [f"data.uri={dataset}"])
    torch.manual_seed(0)
    model = create_model(config)
    save_inference_checkpoint(model, config, str(tmp_path / "ckpt"))
    common = ["evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--no-progress", "--device", "cpu"]
    assert main([*common, "--output", str(tmp_path / "a.json")]) == 0
    assert main([*common, "--data", str(dataset), "--output", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["data"] == str(dataset) and a["t2i"] == b["t2i"]


def test_an_empty_search_is_refused_before_any_model_loads(capsys) -> None:
    assert main(["search", "  ", "--checkpoint", "/nonexistent/ckpt", "--gallery", "/nonexistent/ds"]) == 2
    assert capsys.readouterr().err.strip() == ('reid search: the search text is empty; give a description, e.g. '
                                              '"a woman in a red coat"')


def test_help_shows_defaults_and_small_models_count_in_thousands() -> None:
    from reid.cli.main import build_parser
    from reid.models.factory import human_count

    commands = build_parser()._subparsers._group_actions[0].choices
    help_text = commands["evaluate"].format_help()
    assert help_text.count("(default: test)") == 1 and "(default: auto)" in help_text
    assert "(default: 1)" in commands["index"].format_help()  # --actors: a default nobody wrote by hand
    for name, command in commands.items():  # each default said once; none for a required option or a None
        assert "(default: None)" not in command.format_help(), name
        for action in command._actions:
            said = command._get_formatter()._expand_help(action) if action.help else ""
            assert said.count("default") <= 1, (name, action.dest, said)
            assert not (action.required and "(default:" in said), (name, action.dest)
    assert [human_count(n) for n in (512, 84_210, 275_419_906)] == ["512", "84.2K", "275.4M"]
