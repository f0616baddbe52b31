"""A bounded load on the search service: a fixed, shuffled mix of good, bad and unauthenticated requests sent by a
few threads, each answer's status compared with the one its kind must get (none may be lost)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from requests.adapters import HTTPAdapter

CAPTIONS = ("a person in a red shirt and blue trousers", "a woman in a green top and black trousers",
            "someone wearing a white shirt and grey trousers", "a man in a yellow shirt")


@dataclass(frozen=True)
class Probe:
    """One request of the load and the status it must get."""

    kind: str
    method: str
    path: str
    expected: int
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


class SourceAddressAdapter(HTTPAdapter):
    """Connections from a given local address (127.0.0.x on loopback: a distinct client to the service)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def client_session(source: str | None = None) -> requests.Session:
    """A requests session, bound to the local address ``source`` when given."""
    session = requests.Session()
    if source:
        adapter = SourceAddressAdapter(source)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def probe_kinds(token: str, image_id: str, max_body: int = 64 * 1024) -> list[Probe]:
    """One probe of each kind (the good search's caption is filled in per request)."""
    bearer = {"Authorization": f"Bearer {token}"}
    wrong = {"Authorization": f"Bearer wrong-{token}"}
    js = {"Content-Type": "application/json"}
    search = json.dumps({"text": CAPTIONS[0], "top": 5}).encode()
    oversized = json.dumps({"text": "red " * (max_body // 4 + 1024), "top": 5}).encode()
    return [Probe("search", "POST", "/search", 200, search, {**js, **bearer}),
            Probe("search: not JSON", "POST", "/search", 400, b"not json", {**js, **bearer}),
            Probe("search: top out of range", "POST", "/search", 400,
                  json.dumps({"text": "a man", "top": 0}).encode(), {**js, **bearer}),
            Probe("search: no token", "POST", "/search", 401, search, js),
            Probe("search: wrong token", "POST", "/search", 401, search, {**js, **wrong}),
            Probe("search: body over the cap", "POST", "/search", 413, oversized, {**js, **bearer}),
            Probe("image", "GET", f"/image/{image_id}", 200, None, bearer),
            Probe("image: unknown id", "GET", "/image/no/such/image.jpg", 404, None, bearer),
            Probe("image: no token", "GET", f"/image/{image_id}", 401),
            Probe("page: no token", "GET", "/", 401),
            Probe("healthz", "GET", "/healthz", 200)]


def plan(token: str, image_id: str, per_kind: int, seed: int = 0) -> list[Probe]:
    """``per_kind`` probes of every kind, good searches cycling through the captions, shuffled."""
    probes = []
    for kind in probe_kinds(token, image_id):
        for n in range(per_kind):
            caption = json.dumps({"text": CAPTIONS[n % len(CAPTIONS)], "top": 5}).encode()
            probes.append(replace(kind, body=caption) if kind.kind == "search" else kind)
    random.Random(seed).shuffle(probes)
    return probes


def send(session: requests.Session, url: str, probe: Probe, timeout: float) -> int | str:
    """The status ``probe`` got, or the name of the error that lost it."""
    try:
        return session.request(probe.method, url + probe.path, data=probe.body, headers=probe.headers,
                               timeout=timeout).status_code
    except requests.RequestException as exc:
        return type(exc).__name__


def first_image(url: str, token: str, timeout: float = 60) -> str:
    """An image id the service returns, for the image probes."""
    answer = requests.post(f"{url}/search", json={"text": CAPTIONS[0], "top": 1}, timeout=timeout,
                           headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    return answer.json()["hits"][0]["image_id"]


@dataclass(frozen=True)
class Answer:
    """One request of a load as it went: its kind, the status it must get, what it got (a status or the name of
    the error that lost it) and when it was sent and answered (``time.monotonic``)."""

    kind: str
    expected: int
    got: int | str
    sent_at: float
    answered_at: float

    @property
    def failed(self) -> bool:
        return self.got != self.expected


def bounded_load(url: str, token: str, per_kind: int = 10, concurrency: int = 8, sources: list[str] | None = None,
                 timeout: float = 60, seed: int = 0, answers: list[Answer] | None = None) -> dict[str, Any]:
    """Send the plan with ``concurrency`` threads (thread ``i`` connecting from ``sources[i % len(sources)]`` when
    given); returns the figures: per kind the status expected, the requests sent and each status (or error)
    returned, and the totals (``lost``: requests without an HTTP answer; ``unexpected``: answers with another
    status). ``answers``, when given, gets each request's :class:`Answer` as it comes back."""
    url = url.rstrip("/")
    image_id = first_image(url, token, timeout)
    probes, order = plan(token, image_id, per_kind, seed), [probe.kind for probe in probe_kinds(token, image_id)]
    lanes = [probes[i::concurrency] for i in range(concurrency)]

    def timed(session: requests.Session, probe: Probe) -> int | str:
        sent_at = time.monotonic()
        got = send(session, url, probe, timeout)
        if answers is not None:
            answers.append(Answer(probe.kind, probe.expected, got, sent_at, time.monotonic()))
        return got

    def run_lane(i: int) -> list[tuple[Probe, int | str]]:
        session = client_session(sources[i % len(sources)] if sources else None)
        with session:
            return [(probe, timed(session, probe)) for probe in lanes[i]]

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        answered = [pair for lane in pool.map(run_lane, range(concurrency)) for pair in lane]
    return summarise(sorted(answered, key=lambda pair: order.index(pair[0].kind)), time.perf_counter() - start)


def summarise(answered: list[tuple[Probe, int | str]], seconds: float) -> dict[str, Any]:
    """Figures per kind (in the order the kinds first appear) and in total."""
    kinds: dict[str, dict[str, Any]] = {}
    for probe, got in answered:
        entry = kinds.setdefault(probe.kind, {"expected": probe.expected, "sent": 0, "returned": Counter()})
        entry["sent"] += 1
        entry["returned"][str(got)] += 1
    for entry in kinds.values():
        entry["returned"] = dict(sorted(entry["returned"].items()))
    codes = Counter(str(got) for _, got in answered)
    return {"kinds": kinds, "sent": len(answered), "seconds": round(seconds, 2),
            "returned": dict(sorted(codes.items())),
            "lost": sum(not isinstance(got, int) for _, got in answered),
            "unexpected": sum(isinstance(got, int) and got != probe.expected for probe, got in answered)}


def format_figures(figures: dict[str, Any]) -> str:
    """The figures as a small table."""
    rows = [f"{'kind':<28} {'expected':>8} {'sent':>5}  returned"]
    for kind, entry in figures["kinds"].items():
        returned = ", ".join(f"{code}: {n}" for code, n in entry["returned"].items())
        rows.append(f"{kind:<28} {entry['expected']:>8} {entry['sent']:>5}  {returned}")
    total = ", ".join(f"{code}: {n}" for code, n in figures["returned"].items())
    rows.append(f"{'all':<28} {'':>8} {figures['sent']:>5}  {total}  in {figures['seconds']} s; "
                f"lost {figures['lost']}, unexpected {figures['unexpected']}")
    return "\n".join(rows)


def recovery(answers: list[Answer], since: float) -> dict[str, Any]:
    """What an incident at ``since`` (``time.monotonic``) cost the load: the requests answered after it, those that
    failed (by what they got), and seconds from it to the last failed request's sending (every request sent later
    got its status) and to its answer; None for both without a failure."""
    after = [a for a in answers if a.answered_at >= since]
    failed = [a for a in after if a.failed]
    last = max(failed, key=lambda a: a.sent_at, default=None)
    return {"answered": len(after), "failed": len(failed),
            "failures": dict(sorted(Counter(str(a.got) for a in failed).items())),
            "last_failure_sent_s": None if last is None else round(max(0.0, last.sent_at - since), 2),
            "last_failure_answered_s": None if last is None else round(last.answered_at - since, 2),
            "succeeded_after": sum(not a.failed for a in after if last is None or a.sent_at > last.sent_at)}
