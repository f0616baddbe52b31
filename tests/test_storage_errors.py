"""An object store that cannot be reached is one line naming the setting that decided the endpoint, not a
traceback; the local filesystem's own errors pass through unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reid.storage import StorageUnreachableError, exists, read_bytes, resolve

REID = Path(sys.executable).parent / "reid"


def test_an_unreachable_endpoint_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(StorageUnreachableError, match=r"s3://bucket/data: .*check the S3 endpoint"):
        exists(resolve("s3://bucket/data"))


def test_local_errors_are_not_translated(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bytes(resolve(str(tmp_path / "missing")))


def test_the_command_line_says_no_endpoint_is_configured_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    done = subprocess.run([str(REID), "inspect", "--data", "s3://some-bucket/ds"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "cannot reach the object store for s3://some-bucket/ds" in line and "no S3 endpoint is configured" in line
