"""The search service end to end: a model trained for the test, its gallery indexed on Ray Data, served by Ray
Serve on 127.0.0.1 and queried over HTTP; bad requests; an index refused with another checkpoint; the page in
headless Chromium."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import COLOURS, tiny_config, write_colour_dataset  # noqa: E402

from reid.distributed.runtime import free_port  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _describe_colours(dataset: Path) -> None:
    """Image-grounded identity descriptions of the colour figures (what an MLLM would see in each image)."""
    import pyarrow.parquet as pq

    from reid.describe.schema import Description
    from reid.describe.table import append_descriptions

    rows = []
    for path in sorted((dataset / "identities").rglob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            upper, lower = row["captions"][0][0].split(" a ")[1].split(" shirt and ")
            lower = lower.split(" trousers")[0]
            assert upper in COLOURS and lower in COLOURS
            rows += [Description(image_id, f"A figure, {upper} above and {lower} below.", f"A {upper} top.",
                                 "oracle") for image_id in row["image_ids"]]
    append_descriptions(str(dataset), rows)


@pytest.fixture(scope="module")
def service(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A tiny model trained on the colour figures (with their descriptions), its training gallery indexed and
    served; yields the URL, the paths and the dataset."""
    from ray import serve

    from reid.distributed.index_job import build_index
    from reid.distributed.serve_app import serve_index
    from reid.training.setup import train_local

    root = tmp_path_factory.mktemp("serve")
    dataset = write_colour_dataset(root / "dataset")
    _describe_colours(dataset)
    config = tiny_config(dataset, "data.use_descriptions=true", "model.fusion.kind=mamba", "train.engine=torch",
                         "train.epochs=3", "train.steps_per_epoch=40", "optim.lr=2e-3", "train.pictures=false",
                         "eval.probes=false")
    result, _ = train_local(config, root / "run")
    index = build_index(result.best_uri, str(dataset), "train", str(root / "index"), thumb_size=(64, 32),
                        progress=False)
    port = free_port()
    url = serve_index(str(root / "index"), host="127.0.0.1", port=port, blocking=False)
    yield {"url": url, "index": str(root / "index"), "checkpoint": result.best_uri, "manifest": index,
           "dataset": dataset, "root": root}
    serve.shutdown()


def test_the_index_names_its_checkpoint_and_gallery(service: dict) -> None:
    manifest = service["manifest"]
    assert manifest["count"] == 24 * 3 and manifest["split"] == "train" and manifest["embed_dim"] == 32
    assert manifest["described"] == 72 and manifest["image_only"] == 0
    assert manifest["checkpoint"] == service["checkpoint"] and len(manifest["checkpoint_fingerprint"]) == 16
    assert manifest["shards"] == ["train/part-00000"]


def test_an_interrupted_index_resumes_by_shard_and_another_checkpoint_is_refused(service: dict) -> None:
    from reid.distributed.index_job import build_index

    copy = service["root"] / "index-copy"
    shutil.copytree(service["index"], copy)
    (copy / "manifest.json").unlink()  # stopped after its shards were written
    shard = next((copy / "shards").rglob("*.parquet"))
    written = shard.stat().st_mtime_ns
    again = build_index(service["checkpoint"], str(service["dataset"]), "train", str(copy), thumb_size=(64, 32),
                        progress=False)
    assert shard.stat().st_mtime_ns == written  # nothing re-embedded
    assert {k: v for k, v in again.items() if k != "created"} == \
        {k: v for k, v in service["manifest"].items() if k != "created"}
    other = service["root"] / "other-checkpoint"
    shutil.copytree(service["checkpoint"], other)
    (other / "config.yaml").write_text((other / "config.yaml").read_text() + "\n")
    with pytest.raises(FileExistsError, match="built with other files or settings"):
        build_index(str(other), str(service["dataset"]), "train", str(copy), progress=False)


def test_a_training_caption_finds_its_own_person_first(service: dict) -> None:
    """The service ranks as the checkpoint does in this process (same top 5, same scores), and the model has
    learned: most captions find their own person first (chance 1 in 24)."""
    import numpy as np

    from reid.evaluation.gallery_index import read_index
    from reid.evaluation.loading import load_encoder
    from reid.evaluation.split_reader import read_split_index
    from reid.evaluation.topk import exact_topk

    index = read_split_index(str(service["dataset"]), "train")
    gallery = read_index(service["index"])
    encoder, _ = load_encoder(service["checkpoint"], "cpu", 16, None)
    hits, queries = 0, list(zip(index.captions, index.caption_pids, strict=True))[::6]
    for caption, pid in queries:
        answer = requests.post(f"{service['url']}/search", json={"text": caption, "top": 5}, timeout=60).json()
        assert len(answer["hits"]) == 5 and answer["search"] == "exact"
        scores, order = exact_topk(encoder.encode_text([caption]).numpy().astype(np.float32), gallery.embeddings, 5)
        assert [h["image_id"] for h in answer["hits"]] == [gallery.image_ids[i] for i in order[0]]
        assert [h["score"] for h in answer["hits"]] == pytest.approx(scores[0].tolist(), abs=1e-5)
        hits += answer["hits"][0]["person_id"] == pid
    assert hits >= 0.6 * len(queries), hits


def test_bad_requests_get_a_400_with_one_line_and_the_service_keeps_answering(service: dict) -> None:
    url = service["url"]
    cases = [(b'{"text": "   "}', "'text' must be a non-empty string"), (b"not json", "the body must be JSON"),
             (b'{"text": "a man", "top": 0}', "'top' must be an integer from 1 to 1000"),
             (b'{"text": "a man", "top": 1001}', "'top' must be an integer from 1 to 1000"),
             (b'["a man"]', "must be a JSON object")]
    for body, reason in cases:
        response = requests.post(f"{url}/search", data=body, headers={"Content-Type": "application/json"},
                                 timeout=60)
        assert response.status_code == 400 and reason in response.json()["error"], (body, response.text)
        assert "\n" not in response.json()["error"]
    assert requests.get(f"{url}/healthz", timeout=60).json() == {"status": "ok", "images": 72}
    long = requests.post(f"{url}/search", json={"text": "red " * 200, "top": 3}, timeout=60).json()
    assert long["truncated"] and len(long["tokens"]) == 32 - 2 and len(long["hits"]) == 3


def test_only_the_index_thumbnails_are_reachable(service: dict) -> None:
    url = service["url"]
    answer = requests.post(f"{url}/search", json={"text": "a person in a red shirt", "top": 1}, timeout=60).json()
    image = requests.get(f"{url}/image/{answer['hits'][0]['image_id']}", timeout=60)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:2] == b"\xff\xd8"
    for wrong in ("train/nope.png", "../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd"):
        assert requests.get(f"{url}/image/{wrong}", timeout=60).status_code == 404


def test_an_index_built_with_another_checkpoint_is_refused(service: dict) -> None:
    from reid.distributed.serve_app import serve_index
    from reid.evaluation.gallery_index import IndexMismatchError

    other = service["root"] / "other"
    shutil.copytree(service["checkpoint"], other)
    (other / "config.yaml").write_text((other / "config.yaml").read_text() + "\n")  # rewritten: other files
    with pytest.raises(IndexMismatchError, match="was built with checkpoint"):
        serve_index(service["index"], checkpoint=str(other), port=free_port(), blocking=False)


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="Debian's chromium and chromium-driver")
def test_the_page_answers_a_typed_query_in_headless_chromium(service: dict) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(service["url"] + "/")
        box = driver.find_element(By.ID, "query")
        box.send_keys("a person wearing a red shirt and blue trousers")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 60).until(expected_conditions.presence_of_all_elements_located((By.CSS_SELECTOR,
                                                                                               ".hit img")))
        figures = driver.find_elements(By.CSS_SELECTOR, ".hit")
        assert len(figures) == 20
        captions = [f.find_element(By.TAG_NAME, "figcaption").text for f in figures]
        assert captions[0].startswith("#1") and all("person" in c for c in captions)
        assert driver.find_element(By.ID, "tokens").text.startswith("tokens read: a person wearing")
        loaded = driver.execute_script("return Array.from(document.querySelectorAll('.hit img'))"
                                       ".every(i => i.complete && i.naturalWidth > 0)")
        assert loaded
        figures[0].click()  # more like this: the first hit's own description
        WebDriverWait(driver, 60).until(expected_conditions.text_to_be_present_in_element((By.ID, "status"),
                                                                                         "more like this"))
        assert driver.find_element(By.ID, "query").get_attribute("value").startswith("A figure,")
        driver.save_screenshot(str(service["root"] / "page.png"))
    finally:
        driver.quit()


def test_an_undescribed_gallery_is_indexed_and_served_from_the_images_alone(
        service: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A gallery nobody described (the dataset without its descriptions table) and a described one indexed with
    ``--no-descriptions``: ``reid index`` counts every image as embedded alone, the service serves it, each hit
    says so, and the ranking is the checkpoint's image-only one."""
    import numpy as np
    from ray import serve

    from reid.cli.main import main
    from reid.distributed.serve_app import serve_index
    from reid.evaluation.gallery_index import read_index
    from reid.evaluation.loading import load_encoder
    from reid.evaluation.topk import exact_topk

    monkeypatch.setenv("REID_LOG_DIR", str(service["root"] / "logs"))
    undescribed = service["root"] / "undescribed"
    shutil.copytree(service["dataset"], undescribed, ignore=shutil.ignore_patterns("descriptions"))
    runs = [("train", undescribed, []), ("test", undescribed, []), ("test", service["dataset"], ["--no-descriptions"]),
            ("test", service["dataset"], [])]
    indexes = []
    serve.delete("reid-search")  # its replicas hold one of the two CPUs the index job's actor and readers need
    for split, gallery, extra in runs:
        out = service["root"] / f"index-{len(indexes)}"
        assert main(["index", "--checkpoint", service["checkpoint"], "--gallery", str(gallery), "--split", split,
                     "--out", str(out), "--thumb", "32x16", *extra]) == 0
        indexes.append(read_index(str(out)))
    printed = capsys.readouterr().out
    assert printed.count("0 with their identity description, 36 from the image alone") == 2, printed
    assert "0 with their identity description, 72 from the image alone" in printed
    assert "36 with their identity description, 0 from the image alone" in printed
    for index in indexes[:3]:
        assert index.manifest["image_only"] == index.manifest["count"] and set(index.descriptions) == {None}
    np.testing.assert_allclose(indexes[1].embeddings, indexes[2].embeddings, atol=1e-5)  # alone is alone
    assert np.abs(indexes[2].embeddings - indexes[3].embeddings).max() > 1e-3  # the description moves them

    encoder, _ = load_encoder(service["checkpoint"], "cpu", 16, None)
    url = serve_index(str(service["root"] / "index-0"), host="127.0.0.1", port=int(service["url"].rsplit(":", 1)[1]),
                      blocking=False)
    try:
        assert requests.get(f"{url}/healthz", timeout=60).json() == {"status": "ok", "images": 72}
        text = "a person wearing a red shirt and blue trousers"
        answer = requests.post(f"{url}/search", json={"text": text, "top": 5}, timeout=60).json()
        assert [h["with_description"] for h in answer["hits"]] == [False] * 5
        assert all(h["description"] is None for h in answer["hits"])
        _, order = exact_topk(encoder.encode_text([text]).numpy().astype(np.float32), indexes[0].embeddings, 5)
        assert [h["image_id"] for h in answer["hits"]] == [indexes[0].image_ids[i] for i in order[0]]
        image = requests.get(f"{url}/image/{answer['hits'][0]['image_id']}", timeout=60)
        assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    finally:
        serve_index(service["index"], host="127.0.0.1", port=int(service["url"].rsplit(":", 1)[1]), blocking=False)
