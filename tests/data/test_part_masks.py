"""Part regions: the generator's label maps are exactly the drawn parts (recolouring a part changes exactly its
labelled pixels), Table 1's merges, the PNG round trip, ``reid prepare`` carrying the maps (local, no Ray), a
bad map costing its image nothing, the heuristic stand-in, and the batch's labels following the image."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from reid.data.part_heuristic import heuristic_labels
from reid.data.parts import FINE_LABELS, LABEL, PARTS, PartMaskError, decode_labels, encode_labels, part_masks
from reid.data.prepare import PrepareError, prepare_dataset
from reid.data.synth import generate
from reid.data.synth.attributes import sample_identity, sample_nuisance, sample_outfit
from reid.data.synth.draw import SUPERSAMPLE, draw_canvas, render_person, render_person_with_labels
from reid.data.transforms import TrainTransform
from reid.storage import list_files, resolve

SIZE = (128, 64)


def person(seed: int, **outfit_changes: object) -> tuple:
    rng = np.random.default_rng(seed)
    identity = sample_identity(rng)
    outfit = sample_outfit(rng, identity, 0)
    nuisance = sample_nuisance(rng)
    return identity, dataclasses.replace(outfit, **outfit_changes), nuisance


def changed_pixels(a: tuple, b: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Canvas pixels that differ between two renders, and the first render's label canvas."""
    (rgb_a, labels), (rgb_b, _) = draw_canvas(*a, SIZE), draw_canvas(*b, SIZE)
    return (np.asarray(rgb_a) != np.asarray(rgb_b)).any(-1), np.asarray(labels)


# Recolour one part of a person (plain top, so no pattern colour depends on it) and compare the two renders.
RECOLOURINGS = {
    "clothes": (("clothes",), {}, lambda o: {"upper_colour": "red" if o.upper_colour != "red" else "green"}),
    "lower": (("pants", "skirt"), {}, lambda o: {"lower_colour": "yellow" if o.lower_colour != "yellow" else "purple"}),
    "shoes": (("shoes",), {}, lambda o: {"shoes_colour": "white" if o.shoes_colour != "white" else "black"}),
    "backpack": (("bag",), {"bag": "backpack", "bag_colour": "blue"}, lambda o: {"bag_colour": "orange"}),
    "handbag": (("bag",), {"bag": "handbag", "bag_colour": "blue"}, lambda o: {"bag_colour": "orange"}),
    "cap": (("hat",), {"hat": "cap", "hat_colour": "blue"}, lambda o: {"hat_colour": "orange"}),
    "beanie": (("hat",), {"hat": "beanie", "hat_colour": "blue"}, lambda o: {"hat_colour": "orange"}),
}


@pytest.mark.parametrize("name", sorted(RECOLOURINGS))
@pytest.mark.parametrize("seed", range(6))
def test_recolouring_a_part_changes_exactly_its_labelled_pixels(seed: int, name: str) -> None:
    labels, accessory, change = RECOLOURINGS[name]
    identity, outfit, nuisance = person(seed, upper_pattern="plain", **accessory)
    other = dataclasses.replace(outfit, **change(outfit))
    changed, label_canvas = changed_pixels((identity, outfit, nuisance), (identity, other, nuisance))
    assert changed.any()
    np.testing.assert_array_equal(changed, np.isin(label_canvas, [LABEL[n] for n in labels]))


def test_recolouring_hair_or_skin_changes_exactly_their_labels() -> None:
    for seed in range(6):
        identity, outfit, nuisance = person(seed, upper_pattern="plain")
        hair = dataclasses.replace(identity, hair_rgb=(1, 2, 3))
        changed, labels = changed_pixels((identity, outfit, nuisance), (hair, outfit, nuisance))
        if identity.hair_style == "bald":
            assert not (labels == LABEL["hair"]).any()
        np.testing.assert_array_equal(changed, labels == LABEL["hair"])
        skin = dataclasses.replace(identity, skin_rgb=(3, 2, 1))
        changed, labels = changed_pixels((identity, outfit, nuisance), (skin, outfit, nuisance))
        bare = np.isin(labels, [LABEL["face"], LABEL["legs"], LABEL["body"]])
        eyes = changed != bare  # the eyes are face pixels drawn in a fixed dark colour
        assert eyes.sum() < 0.002 * labels.size and not (changed & ~bare).any()


def test_the_image_label_map_names_a_part_drawn_in_each_pixel_and_the_image_is_unchanged() -> None:
    identity, outfit, nuisance = person(3)
    image, labels = render_person_with_labels(identity, outfit, nuisance, SIZE)
    assert labels is not None and labels.shape == SIZE and labels.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(image), np.asarray(render_person(identity, outfit, nuisance, SIZE)))
    _, canvas = draw_canvas(identity, outfit, nuisance, SIZE)
    blocks = np.asarray(canvas).reshape(SIZE[0], SUPERSAMPLE, SIZE[1], SUPERSAMPLE).transpose(0, 2, 1, 3)
    for y, x in [(r, c) for r in range(0, SIZE[0], 7) for c in range(0, SIZE[1], 5)]:
        values, counts = np.unique(blocks[y, x], return_counts=True)
        assert labels[y, x] == values[counts == counts.max()].min()


def test_part_masks_follow_table_1_merges() -> None:
    labels = np.zeros((4, 6), dtype=np.uint8)
    labels[0, :2] = LABEL["hair"]
    labels[1, :2] = LABEL["face"]
    labels[3, :2] = LABEL["legs"]  # legs but no shoes: no shoes region
    masks = part_masks(labels)
    hair, glasses, shoes = (masks[PARTS.index(n)] for n in ("hair", "glasses", "shoes"))
    assert hair.sum() == 4 and hair[1, :2].all()  # hair = hair + face
    assert not glasses.any() and not shoes.any()  # no glasses, no shoes: face and legs alone make no region
    labels[3, 2] = LABEL["shoes"]
    assert part_masks(labels)[PARTS.index("shoes")].sum() == 3  # shoes = shoes + legs


def test_label_png_round_trip_and_bad_maps_are_named() -> None:
    labels = np.random.default_rng(0).integers(0, len(FINE_LABELS), (9, 5)).astype(np.uint8)
    np.testing.assert_array_equal(decode_labels(encode_labels(labels)), labels)
    with pytest.raises(PartMaskError, match="img_7: cannot decode"):
        decode_labels(b"garbage", "img_7")
    with pytest.raises(PartMaskError, match="outside the 13 fine labels"):
        decode_labels(encode_labels(np.full((2, 2), 200, dtype=np.uint8)), "img_8")


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    generate(root, identities=8, images_per_identity=3, seed=5, image_size=(64, 32), progress=False)
    return root


def _rows(uri: str) -> list[dict]:
    loc = resolve(uri)
    return [row for f in list_files(loc.join("identities"), ".parquet")
            for row in pq.read_table(f, filesystem=loc.filesystem).to_pylist()]


def test_synth_writes_masks_and_prepare_carries_them(raw: Path, tmp_path: Path) -> None:
    truth = json.loads((raw / "synth_attributes.json").read_text())
    result = prepare_dataset("cuhk-pedes", str(raw), str(tmp_path / "ds"))
    assert result.manifest["part_masks"] == {"source": "files", "images_with_masks": 24, "missing": 0,
                                             "unreadable": 0}
    rows = _rows(str(tmp_path / "ds"))
    for row in rows:
        for image_id, data in zip(row["image_ids"], row["part_labels"], strict=True):
            assert data == (raw / "masks" / image_id.replace(".jpg", ".png")).read_bytes()
            labels = decode_labels(data)
            clothing = truth[image_id]["clothing"]
            assert (labels == LABEL["hat"]).any() == (clothing["hat"] != "none")  # a hat is drawn last, on top
            if clothing["bag"] == "none":
                assert not (labels == LABEL["bag"]).any()
            assert (labels == LABEL["clothes"]).any() and (labels == LABEL["shoes"]).any()


def test_a_bad_or_missing_mask_costs_its_image_nothing(raw: Path, tmp_path: Path) -> None:
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    masks = sorted((copy / "masks").rglob("*.png"))
    masks[0].write_bytes(b"not a png")
    masks[1].unlink()
    result = prepare_dataset("cuhk-pedes", str(copy), str(tmp_path / "ds"))
    assert result.manifest["part_masks"] == {"source": "files", "images_with_masks": 22, "missing": 1,
                                             "unreadable": 1}
    rows = _rows(str(tmp_path / "ds"))
    assert sum(len(r["image_ids"]) for r in rows) == 24  # every image kept
    assert sum(1 for r in rows for data in r["part_labels"] if not data) == 2


def test_no_masks_and_heuristic_modes(raw: Path, tmp_path: Path) -> None:
    none = prepare_dataset("cuhk-pedes", str(raw), str(tmp_path / "none"), part_masks="none")
    assert none.manifest["part_masks"]["images_with_masks"] == 0
    assert all(not data for r in _rows(str(tmp_path / "none")) for data in r["part_labels"])
    guessed = prepare_dataset("cuhk-pedes", str(raw), str(tmp_path / "guess"), part_masks="heuristic")
    assert guessed.manifest["part_masks"]["images_with_masks"] == 24
    with pytest.raises(PrepareError, match="part segmenter 'sam': give a built-in .heuristic. or 'module:function'"):
        prepare_dataset("cuhk-pedes", str(raw), str(tmp_path / "bad"), part_masks="sam")
    with pytest.raises(PrepareError, match="'nosuch_module:segment' cannot be loaded"):
        prepare_dataset("cuhk-pedes", str(raw), str(tmp_path / "bad"), part_masks="nosuch_module:segment")


def test_a_segmenter_plugs_in_by_import_path_and_its_output_is_checked(raw: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_parsing.py").write_text(
        "import numpy as np\n"
        "def all_clothes(rgb):\n    return np.full(rgb.shape[:2], 4, dtype=np.uint8)\n"
        "def wrong_shape(rgb):\n    return np.zeros((3, 3), dtype=np.uint8)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    good = prepare_dataset("cuhk-pedes", str(raw), str(tmp_path / "good"),
                           part_masks="my_parsing:all_clothes")
    assert good.manifest["part_masks"]["source"] == "my_parsing:all_clothes"
    assert good.manifest["part_masks"]["images_with_masks"] == 24
    labels = decode_labels(_rows(str(tmp_path / "good"))[0]["part_labels"][0])
    assert (labels == LABEL["clothes"]).all()
    bad = prepare_dataset("cuhk-pedes", str(raw), str(tmp_path / "bad"),
                          part_masks="my_parsing:wrong_shape")
    assert bad.manifest["part_masks"]["unreadable"] == 24
    assert sum(len(r["image_ids"]) for r in _rows(str(tmp_path / "bad"))) == 24  # every image kept, no region


def test_the_heuristic_finds_bands_of_a_figure_on_a_plain_background() -> None:
    image = np.full((100, 40, 3), 200, dtype=np.uint8)
    image[10:20, 15:25] = (40, 30, 20)  # hair
    image[20:50, 12:28] = (200, 20, 20)  # red top
    image[50:88, 14:26] = (20, 20, 120)  # blue trousers
    image[88:100, 14:26] = (10, 10, 10)  # shoes
    labels = heuristic_labels(image)
    assert labels[0, 0] == LABEL["background"] and labels[15, 20] == LABEL["hair"]
    assert labels[35, 20] == LABEL["clothes"] and labels[70, 20] == LABEL["pants"]
    assert labels[95, 20] == LABEL["shoes"]


def test_labels_move_with_the_image_through_flip_crop_and_erasing() -> None:
    height, width = 32, 16
    image = np.zeros((height, width, 3), dtype=np.uint8)
    labels = np.zeros((height, width), dtype=np.uint8)
    for y in range(height):
        for x in range(width):
            value = (y * width + x) % 12 + 1
            image[y, x] = value * 20
            labels[y, x] = value
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    transform = TrainTransform(size=(height, width), flip_prob=0.5, pad=3, erasing_prob=0.5)
    for seed in range(20):
        out, moved = transform.apply(buffer.getvalue(), np.random.default_rng(seed), labels)
        assert moved is not None
        same = np.asarray(transform(buffer.getvalue(), np.random.default_rng(seed)))
        np.testing.assert_array_equal(out, same)  # the labels change no draw
        visible = moved > 0
        np.testing.assert_array_equal(out[0][visible], moved[visible].astype(np.uint8) * 20)
        assert visible.mean() > 0.3
