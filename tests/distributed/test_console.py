"""What a person sees from ``reid train``: a progress bar and one line per epoch, a short summary, no framework
chatter (the full log in a file); ``--verbose`` brings the workers' output back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402

pytestmark = pytest.mark.slow

REID = Path(sys.executable).parent / "reid"
EPOCHS = 3


def test_a_three_epoch_training_prints_one_line_per_epoch_and_a_summary(tmp_path: Path) -> None:
    dataset = write_colour_dataset(tmp_path / "dataset")
    overrides = [f"data.uri={dataset}", "data.use_descriptions=false", f"train.epochs={EPOCHS}",
                 "train.steps_per_epoch=3", f"train.storage_uri={tmp_path / 'ckpt'}", "train.name=console",
                 f"tracking.runs_dir={tmp_path / 'runs'}", "train.pictures=false"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["REID_LOG_DIR"] = str(tmp_path / "logs")
    done = subprocess.run([str(REID), "train", "--config", "pkg://tiny",
                           *[a for item in overrides for a in ("--set", item)]],
                          capture_output=True, text=True, timeout=900, env=env)
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-4000:]
    lines = [line for line in console.splitlines() if line.strip()]
    epochs = [line for line in lines if re.match(r"^epoch \d/3 ", line)]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"], console
    assert all("val R1" in line and "samples/s" in line for line in epochs)
    assert "TrainingReport(" not in console and "RayTrainWorker" not in console and "Checkpoint successfully" \
        not in console
    assert len(lines) <= 20, console
    assert any(line.startswith("reid train: finished; best epoch") for line in lines)
    (log,) = (tmp_path / "logs").glob("train-*.log")
    assert any(f"  full log: {log}" == line for line in lines)
    assert "global batch" in log.read_text()  # the INFO lines went to the file
