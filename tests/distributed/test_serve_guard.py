"""The search service's guards without Ray: the token (read, checked, compared), the loopback rule and the command
that refuses a wider address before anything starts, the body cap, the per-client token bucket, the audit log's
rotation, and the access policy's repr."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reid.serving.audit import AuditLog, default_audit_path, read_audit
from reid.serving.auth import (
    TOKEN_ENV,
    TokenError,
    allows,
    check_exposure,
    is_loopback,
    presented_token,
    read_token,
    token_digest,
)
from reid.serving.limits import BodyTooLarge, RateLimiter, read_capped
from reid.serving.policy import AccessPolicy

TOKEN = "k3Jd9-fQz_20a8Lw"  # 16 characters


def test_the_token_comes_from_the_file_first_then_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text(f"  {TOKEN}x\n")
    assert read_token(str(file), {TOKEN_ENV: TOKEN}) == TOKEN + "x"
    assert read_token(None, {TOKEN_ENV: f"{TOKEN}\n"}) == TOKEN
    assert read_token(None, {}) is None


@pytest.mark.parametrize(("content", "reason"), [("", "is empty"), ("short-secret", "has 12 characters"),
                                                 ("a secret with spaces in it", "without spaces"),
                                                 ("été-été-été-été-été", "printable ASCII")])
def test_an_unusable_token_is_refused_without_being_echoed(tmp_path: Path, content: str, reason: str) -> None:
    file = tmp_path / "token"
    file.write_text(content)
    for source in ({"token_file": str(file), "environ": {}}, {"token_file": None, "environ": {TOKEN_ENV: content}}):
        with pytest.raises(TokenError, match=reason) as caught:
            read_token(**source)
        assert not content or content not in str(caught.value)
    with pytest.raises(TokenError, match="cannot read the token file"):
        read_token(str(tmp_path / "missing"), {})


def test_only_the_bearer_token_passes_and_no_digest_means_no_check() -> None:
    digest = token_digest(TOKEN)
    assert digest == hashlib.sha256(TOKEN.encode()).digest()
    for header in (f"Bearer {TOKEN}", f"bearer  {TOKEN} ", f"BEARER {TOKEN}"):
        assert allows(digest, header), header
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ",
                   "Bearer \udcff"):
        assert not allows(digest, header), header
    assert allows(None, None) and allows(None, "Bearer anything")
    assert presented_token(f"Bearer {TOKEN}") == TOKEN and presented_token("Token abc") is None


def test_only_loopback_may_serve_without_a_token() -> None:
    for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
        check_exposure(host, token_required=False)
    for host in ("0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "example.org", ""):
        assert not is_loopback(host), host
        with pytest.raises(TokenError) as caught:
            check_exposure(host, token_required=False)
        message = str(caught.value)
        assert "\n" not in message and TOKEN_ENV in message and "--token-file" in message and "127.0.0.1" in message
        check_exposure(host, token_required=True)


def _reid(*args: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    environ.update({"RAY_TMPDIR": str(tmp_path / "ray"), "REID_LOG_DIR": str(tmp_path / "logs"), **env})
    return subprocess.run([sys.executable, "-m", "reid.cli.main", *args], capture_output=True, text=True,
                          env=environ, timeout=120, cwd=tmp_path)


def test_reid_serve_beyond_loopback_without_a_token_stops_in_one_line_before_anything_starts(tmp_path: Path) -> None:
    """The index does not even exist: the token is checked first, and no Ray is started (its temp dir stays
    empty); a short token from a file is refused the same way, without being echoed."""
    done = _reid("serve", "--index", str(tmp_path / "no-index"), "--host", "0.0.0.0", tmp_path=tmp_path, env={})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("reid serve: refusing to serve on 0.0.0.0 without a token")
    assert TOKEN_ENV in lines[0] and "--token-file" in lines[0]
    assert "reid serve: http://" not in done.stdout  # nothing announced
    (tmp_path / "token").write_text("tiny-secret")
    done = _reid("serve", "--index", str(tmp_path / "no-index"), "--host", "10.0.0.5", "--token-file",
                 str(tmp_path / "token"), tmp_path=tmp_path, env={})
    assert done.returncode == 2 and "has 11 characters" in done.stderr and "tiny-secret" not in done.stderr
    assert not (tmp_path / "ray").exists()


def test_reid_serve_with_a_token_goes_on_to_the_index(tmp_path: Path) -> None:
    done = _reid("serve", "--index", str(tmp_path / "no-index"), "--host", "0.0.0.0", tmp_path=tmp_path,
                 env={TOKEN_ENV: TOKEN})
    assert done.returncode == 2 and "no gallery index" in done.stderr and "refusing" not in done.stderr, done.stderr
    assert "searches need the bearer token from REID_SERVE_TOKEN" in done.stdout and TOKEN not in done.stdout
    assert not (tmp_path / "ray").exists()


async def _chunks(parts: list[bytes], touched: list[int]) -> AsyncIterator[bytes]:
    for part in parts:
        touched.append(len(part))
        yield part


def test_a_body_over_the_cap_is_refused_declared_or_chunked() -> None:
    touched: list[int] = []
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_capped({"content-length": "65537"}, _chunks([b"x"], touched), 65536))
    assert touched == []  # refused on its declared length, unread
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_capped({}, _chunks([b"x" * 40000, b"x" * 40000, b"never"], touched), 65536))
    assert touched == [40000, 40000]
    assert asyncio.run(read_capped({"content-length": "6"}, _chunks([b"abc", b"def"], []), 6)) == b"abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_token_bucket_allows_a_burst_then_the_rate_per_client() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock, max_clients=2)
    assert [limiter.admit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.admit("a") == pytest.approx(0.5)  # empty: one token comes in 1/rate s
    assert limiter.admit("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert limiter.admit("a") == 0.0 and limiter.admit("a") == pytest.approx(0.5)
    clock.now += 60
    assert [limiter.admit("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond
    limiter.admit("c")  # a third client: the least recently seen ("b") is forgotten
    assert set(limiter.buckets) == {"a", "c"}
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=3)


def test_the_audit_log_rotates_by_size_and_keeps_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "search.jsonl"
    log = AuditLog(path, max_bytes=1024, backups=2)
    for n in range(60):
        log.write({"n": n, "query": f"a person in a red coat nº{n}", "returned": ["train/0001.jpg"] * 2})
    log.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["search.jsonl", "search.jsonl.1", "search.jsonl.2"]
    for file in path.parent.iterdir():
        assert 0 < file.stat().st_size <= 1024 and stat.S_IMODE(file.stat().st_mode) == 0o600
        assert all(json.loads(line) for line in file.read_text().splitlines())
    kept = [line["n"] for line in read_audit(path)]
    assert kept == list(range(60 - len(kept), 60)) and 15 < len(kept) < 60  # the newest, in order, none torn
    assert read_audit(path)[-1]["query"].endswith("nº59")


def test_the_audit_log_lives_under_a_local_index_or_under_runs(tmp_path: Path) -> None:
    assert default_audit_path(str(tmp_path / "index")) == tmp_path / "index" / "audit" / "search-audit.jsonl"
    assert default_audit_path(f"file://{tmp_path}/index") == tmp_path / "index" / "audit" / "search-audit.jsonl"
    remote = default_audit_path("s3://bucket/indexes/test", runs_dir=str(tmp_path))
    assert remote == tmp_path / "audit" / "bucket_indexes_test.jsonl"


def test_the_policy_keeps_the_digest_only_and_never_shows_it() -> None:
    policy = AccessPolicy.with_token(TOKEN, rate=5.0, burst=10)
    assert policy.digest == token_digest(TOKEN) and policy.token_required
    assert TOKEN not in repr(policy) and policy.digest.hex() not in repr(policy) and str(policy.digest) not in \
        repr(policy)
    assert not AccessPolicy.with_token(None).token_required
    with pytest.raises(ValueError, match="rate limit"):
        AccessPolicy(rate=-1.0)


def test_a_rotation_with_several_writers_never_tears_a_line(tmp_path: Path) -> None:
    """Two writers on one file (two services pointed at one path by mistake): lines stay whole."""
    path = tmp_path / "shared.jsonl"
    logs = [AuditLog(path, max_bytes=1 << 20), AuditLog(path, max_bytes=1 << 20)]
    start = time.perf_counter()
    for n in range(200):
        logs[n % 2].write({"n": n, "pad": "x" * 100})
    assert time.perf_counter() - start < 10
    assert sorted(line["n"] for line in read_audit(path)) == list(range(200))
