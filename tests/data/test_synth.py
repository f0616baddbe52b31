"""The synthetic generator: determinism, exact counts, CUHK-PEDES layout, identities vs outfits, clothes-changing."""

from __future__ import annotations

import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from reid.data.formats import parse_annotations
from reid.data.synth import generate
from reid.data.synth.plan import split_counts


def _load(root: Path) -> tuple[list[dict], dict[str, dict]]:
    records = json.loads((root / "reid_raw.json").read_text())
    truth = json.loads((root / "synth_attributes.json").read_text())
    return records, truth


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def normal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("normal")
    generate(root, identities=12, images_per_identity=6, seed=7, progress=False)
    return root


@pytest.fixture(scope="module")
def changing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("changing")
    generate(root, identities=15, images_per_identity=5, seed=3, clothes_changing=True, splits=(0.4, 0.0, 0.6),
             progress=False)
    return root


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        generate(tmp_path / name, identities=4, images_per_identity=3, seed=seed, progress=False)
    a, b, c = (_all_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["reid_raw.json"] != c["reid_raw.json"]
    images = [k for k in a if k.endswith(".jpg")]
    assert len(images) == 12
    assert all(a[k] != c[k] for k in images)


def test_exact_counts_contiguous_one_based_ids(normal: Path) -> None:
    records, truth = _load(normal)
    assert len(records) == 12 * 6
    assert sorted({r["id"] for r in records}) == list(range(1, 13))
    per_id = defaultdict(list)
    for r in records:
        per_id[r["id"]].append(r)
    assert all(len(v) == 6 for v in per_id.values())
    assert all(len({r["split"] for r in v}) == 1 for v in per_id.values())
    expected = split_counts(12, (0.7, 0.1, 0.2))
    for split, n in expected.items():
        assert len({r["id"] for r in records if r["split"] == split}) == n
    assert set(truth) == {r["file_path"] for r in records}
    summary = json.loads((normal / "synth_summary.json").read_text())
    assert summary["identities"] == expected
    assert summary["images"] == {s: 6 * n for s, n in expected.items()}
    assert sum(summary["captions"].values()) == sum(len(r["captions"]) for r in records)


def test_split_counts_largest_remainder_and_errors() -> None:
    assert split_counts(12, (0.7, 0.1, 0.2)) == {"train": 9, "val": 1, "test": 2}
    assert split_counts(10, (0.7, 0.1, 0.2)) == {"train": 7, "val": 1, "test": 2}
    assert split_counts(3, (0.7, 0.1, 0.2)) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(5, (1.0, 0.0, 0.0)) == {"train": 5, "val": 0, "test": 0}
    with pytest.raises(ValueError, match="sum to 1"):
        split_counts(5, (0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="non-negative"):
        split_counts(5, (1.2, -0.2, 0.0))


def test_cuhk_pedes_layout_is_read_by_the_real_reader(normal: Path) -> None:
    text = (normal / "reid_raw.json").read_text()
    result = parse_annotations(text, "cuhk-pedes", str(normal / "reid_raw.json"))
    assert result.issues == []
    assert len(result.records) == 72
    records, _ = _load(normal)
    for r in records:
        assert set(r) == {"split", "captions", "file_path", "id", "processed_tokens"}
        assert len(r["processed_tokens"]) == len(r["captions"]) and 1 <= len(r["captions"]) <= 2
        for caption, tokens in zip(r["captions"], r["processed_tokens"], strict=True):
            assert len(tokens) >= 5
            assert all(re.fullmatch(r"[a-z0-9][a-z0-9'-]*", tok) and tok in caption.lower() for tok in tokens)


def test_every_image_exists_and_decodes_to_the_requested_size(tmp_path: Path, normal: Path) -> None:
    for root, size in ((normal, (128, 64)), (tmp_path / "big", (96, 80))):
        if root != normal:
            generate(root, identities=3, images_per_identity=2, seed=0, image_size=size, progress=False)
        records, _ = _load(root)
        for r in records:
            with Image.open(io.BytesIO((root / "imgs" / r["file_path"]).read_bytes())) as image:
                assert image.format == "JPEG" and image.mode == "RGB"
                assert (image.height, image.width) == size


def test_identity_is_fixed_per_person_and_outfits_are_per_person_and_distinct(normal: Path) -> None:
    records, truth = _load(normal)
    identity, outfits_of, clothes = {}, defaultdict(set), {}
    for r in records:
        t = truth[r["file_path"]]
        assert t["person_id"] == r["id"] and t["split"] == r["split"]
        assert identity.setdefault(r["id"], t["identity"]) == t["identity"]
        assert clothes.setdefault(t["clothes_id"], (r["id"], t["clothing"])) == (r["id"], t["clothing"])
        outfits_of[r["id"]].add(t["clothes_id"])
    assert len({json.dumps(v, sort_keys=True) for v in identity.values()}) == 12
    assert any(len(v) > 1 for v in outfits_of.values())
    for ids in outfits_of.values():
        worn = [clothes[i][1] for i in ids]
        assert len({w["upper_colour"] for w in worn}) == len(worn)
        assert len({w["lower_colour"] for w in worn}) == len(worn)
        assert all(w["upper_colour"] != w["lower_colour"] for w in worn)


def test_normal_mode_each_outfit_is_worn_on_at_least_two_images(normal: Path) -> None:
    records, truth = _load(normal)
    uses = defaultdict(int)
    for r in records:
        uses[truth[r["file_path"]]["clothes_id"]] += 1
    assert min(uses.values()) >= 2


def test_clothes_changing_every_test_caption_has_a_positive_in_other_clothes(changing: Path) -> None:
    records, truth = _load(changing)
    per_person = defaultdict(list)
    for r in records:
        per_person[r["id"]].append(truth[r["file_path"]]["clothes_id"])
    test_ids = {r["id"] for r in records if r["split"] == "test"}
    assert len(test_ids) == 9
    for pid in test_ids:
        worn = per_person[pid]
        assert len(set(worn)) >= 2
        assert max(worn.count(c) for c in set(worn)) <= math.ceil(len(worn) / 2)
    for r in records:
        if r["split"] == "test":
            own = truth[r["file_path"]]["clothes_id"]
            assert any(c != own for c in per_person[r["id"]])


def test_regenerating_replaces_an_earlier_synthetic_dataset_but_not_a_foreign_one(tmp_path: Path) -> None:
    root = tmp_path / "out"
    generate(root, identities=5, images_per_identity=2, seed=0, progress=False)
    generate(root, identities=2, images_per_identity=2, seed=0, progress=False)
    assert len(list((root / "imgs").rglob("*.jpg"))) == 4
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "reid_raw.json").write_text("[]")
    with pytest.raises(FileExistsError, match="did not write"):
        generate(foreign, identities=2, images_per_identity=2, seed=0, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"identities": 0}, "identities must be >= 1"),
        ({"images_per_identity": 0}, "images_per_identity must be >= 1"),
        ({"clothes_changing": True, "images_per_identity": 1}, "clothes-changing mode needs images_per_identity"),
        ({"splits": (0.5, 0.5, 0.5)}, "sum to 1"),
        ({"image_size": (8, 8)}, "image_size"),
        ({"clothes_changing": True, "splits": (1.0, 0.0, 0.0)}, "at least one test identity"),
    ],
)
def test_bad_arguments_fail_before_writing(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"identities": 3, "images_per_identity": 2, "seed": 0, "progress": False} | kwargs
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_cli_writes_the_dataset_and_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reid.cli.main import main

    out = tmp_path / "cli"
    code = main(["synth", "--out", str(out), "--identities", "5", "--images-per-identity", "2", "--seed", "1",
                 "--clothes-changing", "--image-size", "64", "32"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "10 images" in printed and "test" in printed
    records, _ = _load(out)
    assert len(records) == 10
    with Image.open(out / "imgs" / records[0]["file_path"]) as image:
        assert image.size == (32, 64)
    assert main(["synth", "--out", str(tmp_path / "bad"), "--identities", "0", "--images-per-identity", "2"]) == 2


def test_s3_output_holds_the_same_bytes_as_a_local_run(tmp_path: Path, s3_bucket: str) -> None:
    from reid.storage import list_files, read_bytes, resolve

    generate(tmp_path / "local", identities=3, images_per_identity=2, seed=4, progress=False)
    generate(f"{s3_bucket}/synth", identities=3, images_per_identity=2, seed=4, progress=False)
    local = _all_bytes(tmp_path / "local")
    remote = resolve(f"{s3_bucket}/synth")
    paths = list_files(remote)
    prefix = remote.path + "/"
    assert sorted(p.removeprefix(prefix) for p in paths) == sorted(local)
    for path in paths:
        loc = resolve(f"s3://{path}")
        assert read_bytes(loc) == local[path.removeprefix(prefix)]
