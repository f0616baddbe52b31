"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 (tests, benchmarks, offline demos).

It answers ``POST <base>/chat/completions`` with a fixed valid description, after ``latency_s``, and can
be told to fail requests for an image in order: ``"429"`` (with ``Retry-After``), ``"500"``, ``"slow"``
(sleep ``slow_s`` before answering), ``"malformed"`` (a broken HTTP body), ``"bad_json"`` (an answer
that is not JSON) or ``"coverage"`` (valid JSON failing validation). Images are keyed by the SHA-256 of
the decoded data-URL bytes; every request is counted (and timed) per image.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reid.describe.prompts import PART_SYSTEM_PROMPT

DEFAULT_ANSWER = {
    "identity": "a young woman of slim build with long straight black hair and a fair skin tone",
    "clothing": "a red knitted sweater, blue denim jeans, white sneakers and a black leather shoulder bag",
    "parts": {"hair": "long straight black hair", "clothes": "a red knitted sweater", "pants": "blue denim jeans",
              "shoes": "white sneakers", "bag": "a black leather shoulder bag", "hat": None},
}
COVERAGE_FAILURE = {"identity": "a person standing on the pavement near a wall", "clothing": "some clothes"}
FAULTS = ("ok", "429", "500", "slow", "malformed", "bad_json", "coverage")
_DATA_URL = re.compile(r"^data:image/[a-z]+;base64,(.*)$", re.DOTALL)


def image_key(image: bytes) -> str:
    """How the server names an image: the SHA-256 hex digest of its bytes."""
    return hashlib.sha256(image).hexdigest()


@dataclass
class EndpointScript:
    """What the server does. ``faults[key]`` is consumed one entry per request for that image
    (``"*"`` is one queue shared by the images without their own list); ``answer(key)`` gives the JSON answer."""

    latency_s: float = 0.0
    slow_s: float = 2.0
    retry_after_s: float = 0.2
    api_key: str | None = None
    faults: dict[str, list[str]] = field(default_factory=dict)
    answer: Callable[[str], dict[str, Any]] = lambda key: DEFAULT_ANSWER
    part_answer: Callable[[str], str] = lambda key: "a plain phrase"
    requests: Counter[str] = field(default_factory=Counter)
    times: dict[str, list[float]] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self, key: str) -> str:
        with self.lock:
            self.requests[key] += 1
            self.times.setdefault(key, []).append(time.monotonic())
            queue = self.faults.get(key, self.faults.get("*"))
            return queue.pop(0) if queue else "ok"


def _image_of(body: dict[str, Any]) -> str:
    for message in body.get("messages", []):
        content = message.get("content")
        for item in content if isinstance(content, list) else []:
            if item.get("type") == "image_url":
                match = _DATA_URL.match(item["image_url"]["url"])
                if match:
                    return image_key(base64.b64decode(match.group(1)))
    return "<no image>"


def _completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-local", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        script = self.server.script
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(*_error(404, f"no route {self.path}"))
        if script.api_key is not None and self.headers.get("Authorization") != f"Bearer {script.api_key}":
            return self._send(*_error(401, "invalid api key"))
        key = _image_of(body)
        fault = script.next_fault(key)
        with script.lock:
            script.bodies.append(body)
            script.in_flight += 1
            script.max_in_flight = max(script.max_in_flight, script.in_flight)
        try:
            reply = _reply(script, body, key, fault)
        finally:
            with script.lock:  # before the reply goes out, so the client's next request never overlaps
                script.in_flight -= 1
        self._send(*reply)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"error": {"message": message, "type": "local"}}).encode(), headers or {}


def _reply(script: EndpointScript, body: dict[str, Any], key: str, fault: str) -> tuple[int, bytes, dict[str, str]]:
    """``(status, body, headers)`` after the scripted latency, following ``fault``."""
    time.sleep(script.latency_s + (script.slow_s if fault == "slow" else 0.0))
    if fault == "429":
        return _error(429, "rate limited", {"Retry-After": f"{script.retry_after_s:g}"})
    if fault == "500":
        return _error(500, "internal error")
    if fault == "malformed":
        return 200, b'{"id": "chatcmpl-local", "choices": [{"message": ', {}
    if body.get("messages", [{}])[0].get("content") == PART_SYSTEM_PROMPT:
        content = script.part_answer(key)
    elif fault == "bad_json":
        content = "Sure! The person is a woman in a red sweater."
    elif fault == "coverage":
        content = json.dumps(COVERAGE_FAILURE)
    else:
        content = json.dumps(script.answer(key))
    with script.lock:
        script.answered[key] += 1
    return 200, json.dumps(_completion(content, body.get("model", ""))).encode(), {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    script: EndpointScript


class LocalChatEndpoint:
    """Start with ``with LocalChatEndpoint(script) as ep:``; ``ep.base_url`` ends in ``/v1``."""

    def __init__(self, script: EndpointScript | None = None, port: int = 0) -> None:
        self.script = script or EndpointScript()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.script = self.script
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="local-chat",
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LocalChatEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalChatEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
