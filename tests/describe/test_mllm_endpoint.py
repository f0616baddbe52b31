"""The MLLM describer against a real OpenAI-compatible server on 127.0.0.1: happy path, faults, quarantine."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from reid.describe.factory import build_describer
from reid.describe.local_endpoint import DEFAULT_ANSWER
from reid.describe.mllm import ApiKey, EndpointFatalError
from reid.describe.runner import describe_dataset_local
from reid.describe.style_store import write_styles
from reid.describe.table import load_descriptions, read_descriptions_table
from reid.storage import read_json, resolve


def record(dataset, image_id: str) -> dict:
    return {"image_id": image_id, "image": dataset.images[image_id], "captions": ["A tall man in a red coat."]}


def test_happy_path_writes_every_image_once_with_tokens_and_cost(make_dataset, endpoint, mllm_config, api_key) -> None:
    data = make_dataset(identities=3, per_identity=2)
    summary = describe_dataset_local(data.uri, mllm_config())
    rows = read_descriptions_table(data.uri).to_pylist()
    assert sorted(r["image_id"] for r in rows) == sorted(data.images)
    assert all(endpoint.script.requests[data.key(i)] == 1 for i in data.images)
    expected_parts = {k: v for k, v in DEFAULT_ANSWER["parts"].items() if v}
    per_image_cost = (100 * 2.5 + 40 * 10.0) / 1e6
    for row in rows:
        assert (row["identity"], row["clothing"]) == (DEFAULT_ANSWER["identity"], DEFAULT_ANSWER["clothing"])
        assert json.loads(row["parts"]) == expected_parts
        assert (row["provenance"], row["model"], row["quarantined"]) == ("mllm", "gpt-4o", False)
        assert (row["prompt_tokens"], row["completion_tokens"]) == (100, 40)
        assert row["cost_usd"] == pytest.approx(per_image_cost)
    assert (summary["images"], summary["ok"], summary["prompt_tokens"]) == (6, 6, 600)
    assert summary["cost_usd"] == pytest.approx(6 * per_image_cost)
    assert read_json(resolve(summary["report"]))["run_id"] == summary["run_id"]


def test_request_carries_image_settings_and_style_exemplars(make_dataset, endpoint, mllm_config, api_key) -> None:
    data = make_dataset(identities=1, per_identity=2)
    first, second = sorted(data.images)
    write_styles(data.uri, [first, second], [0, 0], [0, 1], {"styles": {
        "0": {"size": 1, "exemplars": ["tall man, red coat"]},
        "1": {"size": 1, "exemplars": ["The person in this picture is a lady with a hat."]}}})
    describe_dataset_local(data.uri, mllm_config(concurrency=1))
    bodies = {json.dumps(b).count("tall man, red coat"): b for b in endpoint.script.bodies}
    body = bodies[1]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("gpt-4o", 0.7, 222)
    assert body["response_format"] == {"type": "json_object"}
    image_part = body["messages"][1]["content"][1]["image_url"]["url"]
    assert image_part.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(image_part.split(",", 1)[1]) == data.images[first]
    assert "The person in this picture is a lady" not in json.dumps(body)
    rows = load_descriptions(data.uri)
    assert (rows[first]["style_id"], rows[second]["style_id"]) == (0, 1)


@pytest.mark.parametrize(("faults", "requests", "overrides"), [
    (["429"], 2, {}),
    (["500", "500"], 3, {}),
    (["slow"], 2, {"timeout_s": 0.5}),
    (["malformed"], 2, {}),
    (["bad_json"], 2, {}),
    (["coverage", "coverage"], 3, {}),
])
def test_each_fault_recovers(make_dataset, endpoint, mllm_config, api_key, faults, requests, overrides) -> None:
    data = make_dataset(identities=1, per_identity=1)
    (image_id,) = data.images
    endpoint.script.faults[data.key(image_id)] = list(faults)
    rows = build_describer(mllm_config(**overrides)).describe(record(data, image_id))
    assert endpoint.script.requests[data.key(image_id)] == requests
    assert len(rows) == 1 and not rows[0].quarantined and rows[0].identity == DEFAULT_ANSWER["identity"]
    answered = endpoint.script.answered[data.key(image_id)]
    assert rows[0].prompt_tokens == 100 * answered  # every answered attempt is paid for


def test_retry_after_is_honoured(make_dataset, endpoint, mllm_config, api_key) -> None:
    data = make_dataset(identities=1, per_identity=1)
    (image_id,) = data.images
    endpoint.script.faults[data.key(image_id)] = ["429"]
    build_describer(mllm_config()).describe(record(data, image_id))
    first, second = endpoint.script.times[data.key(image_id)]
    assert second - first >= 0.3  # Retry-After: 0.3 beats the 0.01 s backoff


def test_rejected_answer_is_reasked_with_the_reason(make_dataset, endpoint, mllm_config, api_key) -> None:
    data = make_dataset(identities=1, per_identity=1)
    (image_id,) = data.images
    endpoint.script.faults[data.key(image_id)] = ["coverage"]
    build_describer(mllm_config()).describe(record(data, image_id))
    last = endpoint.script.bodies[-1]["messages"]
    assert last[-2]["role"] == "assistant" and "pavement" in last[-2]["content"]
    assert "rejected: the identity description does not state the person's gender" in last[-1]["content"]


def test_quarantine_after_the_retry_limit_falls_back_to_rules(make_dataset, endpoint, mllm_config, api_key) -> None:
    data = make_dataset(identities=2, per_identity=1)
    bad = sorted(data.images)[0]
    endpoint.script.faults[data.key(bad)] = ["coverage"] * 3
    summary = describe_dataset_local(data.uri, mllm_config(max_validation_retries=2))
    assert endpoint.script.requests[data.key(bad)] == 3
    rows = [r for r in read_descriptions_table(data.uri).to_pylist() if r["image_id"] == bad]
    assert [(r["provenance"], r["quarantined"]) for r in rows] == [("mllm", True), ("rules", False)]
    assert "gender" in rows[0]["reason"] and rows[0]["prompt_tokens"] == 300
    assert load_descriptions(data.uri)[bad]["provenance"] == "rules"
    assert summary["quarantined_images"] == [{"image_id": bad, "reason": rows[0]["reason"]}]
    report = read_json(resolve(data.uri).join("reports", "describe-quarantined.json"))
    assert [(r["image_id"], r["fallback"]) for r in report] == [(bad, True)]
    describe_dataset_local(data.uri, mllm_config())  # a re-run does not ask for quarantined images again
    assert endpoint.script.requests[data.key(bad)] == 3


def test_endpoint_errors_past_the_retries_leave_the_image_for_a_rerun(make_dataset, endpoint, mllm_config,
                                                                     api_key) -> None:
    data = make_dataset(identities=1, per_identity=2)
    bad = sorted(data.images)[0]
    endpoint.script.faults[data.key(bad)] = ["500"] * 3
    summary = describe_dataset_local(data.uri, mllm_config(max_retries=2))
    assert (summary["ok"], summary["failed"]) == (1, 1)
    assert summary["failed_images"][0]["image_id"] == bad
    assert bad not in load_descriptions(data.uri, include_quarantined=True)
    summary = describe_dataset_local(data.uri, mllm_config(max_retries=2))
    assert (summary["images"], summary["ok"], endpoint.script.requests[data.key(bad)]) == (1, 1, 4)


def test_wrong_key_stops_the_job(make_dataset, endpoint, mllm_config, monkeypatch) -> None:
    monkeypatch.setenv(mllm_config().api_key_env, "sk-wrong")
    data = make_dataset(identities=1, per_identity=1)
    with pytest.raises(EndpointFatalError, match="answered 401"):
        describe_dataset_local(data.uri, mllm_config())
    assert sum(endpoint.script.requests.values()) == 0  # refused before an image was read


def test_missing_key_names_the_variable(make_dataset, endpoint, mllm_config, monkeypatch) -> None:
    monkeypatch.delenv(mllm_config().api_key_env, raising=False)
    with pytest.raises(ValueError, match=mllm_config().api_key_env):
        build_describer(mllm_config())


def test_separate_part_mode_asks_one_prompt_per_part(make_dataset, endpoint, mllm_config, api_key) -> None:
    data = make_dataset(identities=1, per_identity=1)
    (image_id,) = data.images
    describer = build_describer(mllm_config(part_mode="separate"))
    endpoint.script.part_answer = lambda key: "It is a dark red baseball cap."
    (row,) = describer.describe(record(data, image_id))
    assert endpoint.script.requests[data.key(image_id)] == 1 + 9
    assert row.parts == {p: "It is a dark red baseball cap" for p in
                         ("hat", "hair", "glasses", "clothes", "skirt", "pants", "dress", "shoes", "bag")}
    questions = [b["messages"][1]["content"][0]["text"] for b in endpoint.script.bodies[1:]]
    assert questions[0].startswith("Question: What kind of hat is this? Answer: It is")
    assert questions[7].startswith("Question: What shoes is she wearing? Answer: She is wearing")
    assert row.prompt_tokens == 1000


def test_api_key_never_reaches_logs_or_outputs(make_dataset, endpoint, mllm_config, api_key, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    data = make_dataset(identities=2, per_identity=1)
    endpoint.script.faults[data.key(sorted(data.images)[0])] = ["429", "coverage"]
    summary = describe_dataset_local(data.uri, mllm_config())
    assert summary["ok"] == 2 and caplog.records  # something was logged, at DEBUG
    secret = api_key.value
    assert secret not in caplog.text
    assert secret not in repr(ApiKey(secret)) and secret not in str(ApiKey(secret))
    for path in Path(data.uri).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in json.dumps(summary)


def test_an_overlong_part_phrase_is_reasked_then_left_out(make_dataset, endpoint, mllm_config, api_key,
                                                          caplog) -> None:
    data = make_dataset(identities=1, per_identity=1)
    (image_id,) = data.images
    sentence = "she is wearing what looks like a rather large black leather bag over her left shoulder today"
    answers = iter([{**DEFAULT_ANSWER, "parts": {**DEFAULT_ANSWER["parts"], "bag": sentence}}, DEFAULT_ANSWER])
    endpoint.script.answer = lambda key: next(answers)
    (row,) = build_describer(mllm_config()).describe(record(data, image_id))
    retry = endpoint.script.bodies[-1]["messages"][-1]["content"]
    assert "the bag phrase has 17 words; give a short phrase of at most 12 words" in retry
    assert row.parts["bag"] == "a black leather shoulder bag" and not row.quarantined
    endpoint.script.answer = lambda key: {**DEFAULT_ANSWER, "parts": {**DEFAULT_ANSWER["parts"], "bag": sentence}}
    with caplog.at_level(logging.WARNING, logger="reid.describe.mllm"):
        (row,) = build_describer(mllm_config(max_validation_retries=1)).describe(record(data, image_id))
    assert not row.quarantined and row.identity == DEFAULT_ANSWER["identity"]  # the descriptions still count
    assert "bag" not in row.parts and row.parts["hair"] == "long straight black hair"
    assert "part phrases still invalid after 1 re-asks (the bag phrase has 17 words" in caplog.text
