"""The search service's audit log: one JSON line per search and image fetch (who asked, for what, what was shown,
with what answer), appended by a single writer and rotated by size."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 10
AUDIT_NAME = "search-audit.jsonl"


def default_audit_path(index_uri: str, runs_dir: str = "runs") -> Path:
    """``audit/search-audit.jsonl`` under a local index; ``<runs_dir>/audit/<index>.jsonl`` for a remote one (an
    object store cannot be appended to)."""
    local = index_uri[len("file://"):] if index_uri.startswith("file://") else index_uri
    if "://" not in local:
        return Path(local).resolve() / "audit" / AUDIT_NAME
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", index_uri.split("://", 1)[1]).strip("_.") or "index"
    return Path(runs_dir).resolve() / "audit" / f"{slug}.jsonl"


def audit_record(client: str, route: str, status: int, **fields: Any) -> dict[str, Any]:
    """One line's fields: UTC time, client address, route, HTTP status, then what the route adds (the query text
    and ``top``, or the image id, and the image ids returned)."""
    return {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "client": client, "route": route,
            "status": status, **fields}


class AuditLog:
    """An append-only JSON-lines file rotated by size: when a line would take it past ``max_bytes`` it becomes
    ``<name>.1`` (the older ones shift to ``.2`` ... ``.<backups>``, the oldest is dropped) and a new file starts.
    Each line is one ``write`` on an ``O_APPEND`` descriptor; one writer per file (the service's gatekeeper)."""

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
        if max_bytes < 1024 or backups < 1:
            raise ValueError(f"the audit log needs max_bytes >= 1024 and backups >= 1, got {max_bytes}, {backups}")
        self.path, self.max_bytes, self.backups = Path(path), max_bytes, backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line (rotating first if it would not fit); errors propagate."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")
        size = os.fstat(self.fd).st_size
        if size and size + len(line) > self.max_bytes:
            self._rotate()
        written = os.write(self.fd, line)
        if written != len(line):
            raise OSError(f"the audit log {self.path} took {written} of {len(line)} bytes")

    def _rotate(self) -> None:
        os.close(self.fd)
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self.fd = self._open()

    def close(self) -> None:
        os.close(self.fd)


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """Every line of the audit file at ``path`` and its rotated files, oldest first."""
    path = Path(path)
    rotated = [p for p in path.parent.glob(f"{path.name}.*") if p.suffix[1:].isdigit()]
    files = sorted(rotated, key=lambda p: -int(p.suffix[1:]))
    lines = []
    for file in [*files, path]:
        if file.exists():
            lines += [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]
    return lines
