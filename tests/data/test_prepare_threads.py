"""Preparation without Ray: ``reid.data.prepare`` imports no Ray, and its thread executors prepare a dataset in a
process that never loads Ray, with the manifest counts the Ray Data round trip writes (tests/data/test_prepare.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import ROUND_TRIP_COUNTS, ROUND_TRIP_RAW


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_pipeline_loads_no_ray() -> None:
    run_python("import sys\nimport reid.data.prepare\nassert 'ray' not in sys.modules, 'it pulled in ray'")


def test_thread_executors_prepare_what_ray_data_prepares(raw_writer, tmp_path: Path) -> None:
    root, _ = raw_writer("cuhk-pedes", **ROUND_TRIP_RAW)
    out = tmp_path / "prepared"
    printed = run_python("\n".join([
        "import json, sys",
        "from reid.data.prepare import load_on_threads, prepare_dataset, write_in_process",
        f"result = prepare_dataset('cuhk-pedes', {str(root)!r}, {str(out)!r}, load_images=load_on_threads,",
        "                         write_shards=write_in_process)",
        "assert not [m for m in sys.modules if m.split('.')[0] == 'ray'], 'preparing on threads loaded ray'",
        "print(json.dumps(result.manifest))",
    ]))
    manifest = json.loads(printed.splitlines()[-1])
    assert manifest["counts"] == ROUND_TRIP_COUNTS and manifest["rejected"] == 0
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert sum(1 for _ in (out / "identities").rglob("*.parquet")) == 3  # one shard per split
