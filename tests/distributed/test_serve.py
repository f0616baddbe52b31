"""The search service end to end: a model trained for the test, its gallery indexed on Ray Data, served by Ray
Serve on 127.0.0.1 and queried over HTTP; bad requests; an index refused with another checkpoint; the page in
headless Chromium."""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import describe_colours, tiny_config, write_colour_dataset  # noqa: E402

from reid.distributed.runtime import free_port  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


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
    describe_colours(dataset)
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


TOKEN = secrets.token_urlsafe(24)


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _port(service: dict) -> int:
    return int(service["url"].rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def guarded(service: dict) -> dict:
    """The same index served again on the same port, with a bearer token, 20 requests/s per client (burst 60) and
    its audit log in the test's directory. Only the tests below use it (the last test redeploys on its own)."""
    from reid.distributed.serve_app import serve_index
    from reid.serving.policy import AccessPolicy

    audit = service["root"] / "audit" / "search.jsonl"
    policy = AccessPolicy.with_token(TOKEN, rate=20.0, burst=60, audit_log=str(audit))
    url = serve_index(service["index"], host="127.0.0.1", port=_port(service), blocking=False, policy=policy)
    first = requests.post(f"{url}/search", json={"text": "a person in a red shirt", "top": 1}, headers=_bearer(),
                          timeout=60)
    assert first.status_code == 200, first.text
    return {**service, "url": url, "audit": audit, "image": first.json()["hits"][0]["image_id"]}


def test_without_the_token_every_route_but_healthz_answers_401(guarded: dict) -> None:
    url, image = guarded["url"], f"/image/{guarded['image']}"
    routes = [("POST", "/search", {"text": "a person in a red shirt", "top": 3}), ("GET", image, None),
              ("GET", "/", None)]
    refused = [{}, _bearer(f"wrong-{TOKEN}"), _bearer(TOKEN[:-1]), {"Authorization": TOKEN},
               {"Authorization": f"Basic {TOKEN}"}]
    for method, path, body in routes:
        for headers in refused:
            answer = requests.request(method, url + path, json=body, headers=headers, timeout=60)
            assert answer.status_code == 401, (path, headers, answer.status_code)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            if path != "/":  # an error line, neither hits nor a picture
                assert set(answer.json()) == {"error"} and "Bearer" in answer.json()["error"]
        answer = requests.request(method, url + path, json=body, headers=_bearer(), timeout=60)
        assert answer.status_code == 200, (path, answer.text[:200])
    search = requests.post(f"{url}/search", json=routes[0][2], headers=_bearer(), timeout=60).json()
    assert len(search["hits"]) == 3
    page = requests.get(f"{url}/", timeout=60)  # the page that asks for the token, and nothing else
    assert page.status_code == 401 and 'data-auth="token"' in page.text and 'id="login"' in page.text
    assert requests.get(f"{url}/image/{guarded['image']}", headers=_bearer(), timeout=60).content[:2] == b"\xff\xd8"
    assert requests.get(f"{url}/healthz", timeout=60).json() == {"status": "ok", "images": 72}


def _forwarded_by_ray(line: str) -> bool:
    """Whether a printed line is a Ray worker's, forwarded to the driver: ``(ActorName pid=123) ...``, maybe
    coloured."""
    return re.match(r"^(\x1b\[[0-9;]*m)?\([^)]*pid=\d+", line) is not None


@pytest.mark.timeout(300)
def test_a_non_loopback_host_without_a_token_is_refused_before_anything_starts(
        guarded: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the command nor the library redeploys: the running service still asks for its token."""
    from reid.cli.main import main
    from reid.distributed.serve_app import serve_index
    from reid.serving.auth import TokenError

    monkeypatch.setenv("REID_LOG_DIR", str(guarded["root"] / "logs"))
    monkeypatch.delenv("REID_SERVE_TOKEN", raising=False)
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        argv = ["serve", "--index", guarded["index"], "--host", host, "--port", str(_port(guarded))]
        assert main(argv) == 2
        printed = capsys.readouterr()
        # The test session's Ray forwards its workers' logs (each line prefixed with the actor's name) to this
        # process's streams at any moment, e.g. a replica's access lines of an earlier test: not the command's.
        out, err = ([line for line in text.splitlines() if line.strip() and not _forwarded_by_ray(line)]
                    for text in (printed.out, printed.err))
        assert out == [] and len(err) == 1, printed
        assert f"refusing to serve on {host} without a token" in printed.err and "REID_SERVE_TOKEN" in printed.err
        assert "--token-file" in printed.err
        with pytest.raises(TokenError, match="without a token"):
            serve_index(guarded["index"], host=host, port=_port(guarded), blocking=False)
    assert requests.get(f"{guarded['url']}/", timeout=60).status_code == 401
    assert requests.get(f"{guarded['url']}/", headers=_bearer(), timeout=60).status_code == 200


def test_the_audit_log_has_a_line_per_search_and_image_fetch_and_never_the_token(guarded: dict) -> None:
    import hashlib
    from datetime import UTC, datetime, timedelta

    from reid.distributed.runtime import ray_log_dir
    from reid.serving.audit import read_audit

    url, before = guarded["url"], len(read_audit(guarded["audit"]))
    text = f"a person in a green shirt and black trousers {secrets.token_hex(4)}"
    answer = requests.post(f"{url}/search", json={"text": text, "top": 4}, headers=_bearer(), timeout=60).json()
    shown = answer["hits"][0]["image_id"]
    assert requests.get(f"{url}/image/{shown}", headers=_bearer(), timeout=60).status_code == 200
    assert requests.post(f"{url}/search", json={"text": text, "top": 4}, timeout=60).status_code == 401
    wrong = f"wrong-{TOKEN}"
    assert requests.get(f"{url}/image/{shown}", headers=_bearer(wrong), timeout=60).status_code == 401
    assert requests.get(f"{url}/image/nope.jpg", headers=_bearer(), timeout=60).status_code == 404
    lines = read_audit(guarded["audit"])[before:]
    assert [(line["route"], line["status"]) for line in lines] == \
        [("search", 200), ("image", 200), ("search", 401), ("image", 401), ("image", 404)]
    search, image = lines[0], lines[1]
    assert search["client"] == "127.0.0.1" and search["query"] == text and search["top"] == 4
    assert search["returned"] == [hit["image_id"] for hit in answer["hits"]]
    assert image["image_id"] == shown and image["returned"] == [shown]
    assert lines[2]["query"] is None and lines[3]["returned"] == [] and lines[4]["image_id"] == "nope.jpg"
    when = datetime.fromisoformat(search["time"])
    assert datetime.now(UTC) - timedelta(minutes=2) < when <= datetime.now(UTC)
    secrets_seen = (TOKEN, wrong, hashlib.sha256(TOKEN.encode()).hexdigest())
    audit_text = "".join(p.read_text() for p in guarded["audit"].parent.iterdir())
    assert not any(s in audit_text for s in secrets_seen)
    for path in Path(ray_log_dir()).rglob("*"):  # Ray's and Serve's own logs of this session
        if path.is_file() and path.stat().st_size < 200 * 2**20:
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets_seen), path


def test_a_body_over_64_kb_gets_413_and_a_client_over_its_rate_429(guarded: dict) -> None:
    """413 on a declared and on a chunked body; a client (127.0.0.2) sending faster than 20/s gets 429 once its
    burst of 60 is spent, with Retry-After, while 127.0.0.1 is still served; after the wait it is served again."""
    from concurrent.futures import ThreadPoolExecutor

    from reid.serving.audit import read_audit
    from reid.serving.load import client_session

    url, json_headers = guarded["url"], {**_bearer(), "Content-Type": "application/json"}
    big = json.dumps({"text": "red " * 17000, "top": 3}).encode()
    assert len(big) > 64 * 1024
    answer = requests.post(f"{url}/search", data=big, headers=json_headers, timeout=60)
    assert answer.status_code == 413 and "64 KB" in answer.json()["error"]
    chunked = requests.post(f"{url}/search", data=iter([big[i:i + 8192] for i in range(0, len(big), 8192)]),
                            headers=json_headers, timeout=60)
    assert chunked.status_code == 413
    under = requests.post(f"{url}/search", data=json.dumps({"text": "red " * 15000, "top": 3}).encode(),
                          headers=json_headers, timeout=60).json()
    assert under["truncated"] and len(under["hits"]) == 3

    image, before = f"{url}/image/{guarded['image']}", len(read_audit(guarded["audit"]))

    def flood(_: int) -> list[tuple[float, int, str | None]]:
        with client_session("127.0.0.2") as session:
            got = []
            for _ in range(100):
                answer = session.get(image, headers=_bearer(), timeout=60)
                got.append((time.perf_counter(), answer.status_code, answer.headers.get("Retry-After")))
            return got

    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        answers = sorted(a for lane in pool.map(flood, range(4)) for a in lane)
    elapsed = answers[-1][0] - start
    codes = [code for _, code, _ in answers]
    assert set(codes) == {200, 429} and codes[:50] == [200] * 50 and codes.count(200) >= 60, codes[:70]
    assert codes.count(200) <= 60 + 20 * elapsed + 4, (codes.count(200), elapsed)
    assert all(int(wait) >= 1 for _, code, wait in answers if code == 429)
    assert requests.get(image, headers=_bearer(), timeout=60).status_code == 200  # another client: served
    time.sleep(1.0)
    with client_session("127.0.0.2") as session:
        assert session.get(image, headers=_bearer(), timeout=60).status_code == 200  # refilled
    flooded = [line["status"] for line in read_audit(guarded["audit"])[before:] if line["client"] == "127.0.0.2"]
    assert Counter(flooded) == Counter([*codes, 200])  # every answer on the log, with the flooder's own address


def test_a_bounded_mixed_load_gets_every_answer_it_should(guarded: dict) -> None:
    """8 kinds of request x 8 each (good, bad, unauthenticated, over the cap), 8 threads from 8 loopback addresses:
    every request answered, each with its kind's status; the service is healthy afterwards."""
    from reid.serving.load import bounded_load, format_figures

    sources = [f"127.0.0.{10 + i}" for i in range(8)]
    figures = bounded_load(guarded["url"], TOKEN, per_kind=8, concurrency=8, sources=sources)
    (guarded["root"] / "load.json").write_text(json.dumps(figures, indent=1))
    logging.getLogger(__name__).info("bounded load:\n%s", format_figures(figures))
    assert figures["lost"] == 0 and figures["unexpected"] == 0, format_figures(figures)
    assert figures["sent"] == 11 * 8 and len(figures["kinds"]) == 11
    for kind, entry in figures["kinds"].items():
        assert entry["returned"] == {str(entry["expected"]): 8}, (kind, entry)
    assert requests.get(f"{guarded['url']}/healthz", timeout=60).json() == {"status": "ok", "images": 72}


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="Debian's chromium and chromium-driver")
def test_the_page_asks_for_the_token_once_and_searches_with_it_in_headless_chromium(guarded: dict) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from reid.serving.audit import read_audit

    before = len(read_audit(guarded["audit"]))
    driver = _chromium()
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(guarded["url"] + "/")
        box = wait.until(ec.visibility_of_element_located((By.ID, "token")))
        assert not driver.find_element(By.ID, "query").is_displayed()
        box.send_keys(f"wrong-{TOKEN}")
        driver.find_element(By.ID, "unlock").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "that token was refused"))
        box.send_keys(TOKEN)
        driver.find_element(By.ID, "unlock").click()
        query = wait.until(ec.visibility_of_element_located((By.ID, "query")))
        assert driver.execute_script("return sessionStorage.getItem('reid-search-token')") == TOKEN
        assert not driver.find_element(By.ID, "login").is_displayed()
        driver.refresh()  # kept for the browser session: not asked again
        query = wait.until(ec.visibility_of_element_located((By.ID, "query")))
        assert not driver.find_element(By.ID, "login").is_displayed()
        query.send_keys("a person wearing a red shirt and blue trousers")
        driver.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
        wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, ".hit img")))
        assert len(driver.find_elements(By.CSS_SELECTOR, ".hit")) == 20
        images = driver.execute_script("return Array.from(document.querySelectorAll('.hit img'))"
                                       ".map(i => [i.src, i.complete && i.naturalWidth > 0])")
        assert all(src.startswith("blob:") and loaded for src, loaded in images), images
        driver.save_screenshot(str(guarded["root"] / "page-with-token.png"))
    finally:
        driver.quit()
    lines = read_audit(guarded["audit"])[before:]
    searches = [line for line in lines if line["route"] == "search" and line["status"] == 200]
    fetched = [line["image_id"] for line in lines if line["route"] == "image" and line["status"] == 200]
    assert [s["query"] for s in searches] == ["a person wearing a red shirt and blue trousers"]
    assert sorted(fetched) == sorted(searches[0]["returned"]) and len(fetched) == 20


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
