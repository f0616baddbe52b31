"""Per-run summary of a describe job (counts, tokens, cost, quarantined and failed images) and its report file."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from reid.describe.table import read_descriptions_table
from reid.storage import resolve, write_json
from reid.storage.config import StorageConfig

REPORTS_DIR = "reports"


def new_run_id() -> str:
    """A sortable run id: UTC time plus a short random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def summarise(results: Mapping[str, Sequence[Any]], *, run_id: str, describer: Any, skipped: int,
              wall_s: float, concurrency: int) -> dict[str, Any]:
    """A JSON-ready summary from the columns of :data:`reid.describe.worker.RESULT_COLUMNS`."""
    ids, status, reasons = results["image_id"], results["status"], results["reason"]
    counts = Counter(status)
    prompt_tokens, completion_tokens = int(sum(results["prompt_tokens"])), int(sum(results["completion_tokens"]))
    return {
        "run_id": run_id, "provenance": describer.provenance, "model": describer.model,
        "prompt_version": describer.prompt_version, "concurrency": concurrency,
        "images": len(ids), "skipped_finished": skipped,
        "ok": counts["ok"], "quarantined": counts["quarantined"], "failed": counts["failed"],
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "cost_usd": float(sum(results["cost_usd"])), "wall_s": wall_s,
        "images_per_s": len(ids) / wall_s if wall_s > 0 else 0.0,
        "quarantined_images": [{"image_id": i, "reason": r} for i, s, r in zip(ids, status, reasons, strict=True)
                               if s == "quarantined"],
        "failed_images": [{"image_id": i, "reason": r} for i, s, r in zip(ids, status, reasons, strict=True)
                          if s == "failed"],
    }


def quarantine_report(uri: str, storage: StorageConfig | None = None) -> list[dict[str, Any]]:
    """Every quarantined row in the table: image, describer, reason, and whether a valid row now covers it."""
    rows = read_descriptions_table(uri, storage).to_pylist()
    covered = {r["image_id"] for r in rows if not r["quarantined"]}
    return [{"image_id": r["image_id"], "provenance": r["provenance"], "model": r["model"],
             "prompt_version": r["prompt_version"], "reason": r["reason"], "fallback": r["image_id"] in covered}
            for r in rows if r["quarantined"]]


def write_reports(uri: str, summary: Mapping[str, Any], storage: StorageConfig | None = None) -> str:
    """Write ``reports/describe-<run_id>.json`` and refresh ``reports/describe-quarantined.json``; return the first."""
    reports = resolve(uri, storage).join(REPORTS_DIR)
    loc = reports.join(f"describe-{summary['run_id']}.json")
    write_json(loc, dict(summary))
    write_json(reports.join("describe-quarantined.json"), quarantine_report(uri, storage))
    return loc.uri
