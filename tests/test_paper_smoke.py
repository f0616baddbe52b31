"""jobs/paper_smoke.py end to end (the paper-size model on 2 Ray Train workers, ZeRO-2, bf16, GradNorm,
checkpoint and resume, both image sizes). About 15 minutes on 2 cores, so outside the default suite:
``pytest -m paper_scale tests/test_paper_smoke.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.paper_scale

JOB = Path(__file__).parents[1] / "jobs" / "paper_smoke.py"


def test_paper_smoke_runs_both_sizes(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(JOB), "--workdir", str(tmp_path / "smoke")], capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("paper-scale step:")]
    assert len(lines) == 2 and "224x224" in lines[0] and "384x128" in lines[1]
