"""jobs/ablation_local.py: the ablation tables' runs planned once per distinct config, read back for resuming,
laid out per table, and the probes drawn as their means over seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1] / "jobs"))

from ablation_local import Run, finished, plan, plot_probe_summary, table_rows  # noqa: E402

from reid.config import load_config  # noqa: E402

TABLES = ["table1_bdam", "table2_fusion", "table3_losses"]


@pytest.fixture(scope="module")
def planned():
    base = load_config("pkg://demo", ["data.uri=/nowhere"])
    return plan(base, TABLES, [0, 1])


def test_equal_configs_train_once(planned) -> None:
    runs, layout = planned
    # 5 + 5 + 6 rows; Table 2's full fusion and Table 3's full objective are Table 1's BDAM as shipped
    assert len(runs) == (5 + 4 + 5) * 2
    assert len({run.key for run in runs}) == len(runs)
    assert layout["table2_fusion"]["full_fusion"] == layout["table1_bdam"]["bdam"]
    assert layout["table3_losses"]["full"] == layout["table1_bdam"]["bdam"]
    # same name, different switch: BDAM's gate and the fusion's gate are different runs
    assert set(layout["table1_bdam"]["no_gate"]).isdisjoint(layout["table2_fusion"]["no_gate"])
    # one key per seed, and the run that owns a shared key is the first table's
    assert len(set(layout["table1_bdam"]["bdam"])) == 2
    owner = {run.key: run for run in runs}[layout["table3_losses"]["full"][1]]
    assert (owner.table, owner.variant, owner.seed) == ("table1_bdam", "bdam", 1)


def test_rows_read_back_and_laid_out(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    assert finished(results) == {}
    rows = [{"key": "a", "seed": 0, "scores": {"x": 1}}, {"key": "c", "seed": 2, "scores": {"x": 3}}]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    done = finished(results)
    assert sorted(done) == ["a", "c"]
    layout = {"first": ["a", "b"], "second": ["b"], "third": ["c"]}
    # unfinished rows left out; each trial's scores carry its seed (rows are compared seed by seed)
    assert table_rows(layout, done) == {"first": [{"x": 1, "seed": 0}], "third": [{"x": 3, "seed": 2}]}
    assert Run("t", "v", 0, "a").key == "a"


def test_probe_summary_plots_means_over_seeds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def report(branches: bool) -> dict[str, float]:
        features = ("id", "clo") if branches else ("pooled",)
        out = {f"probe/{g}_from_{f}": float(rng.uniform(20, 90)) for g in ("id", "clo") for f in features}
        return {**out, "probe/chance_id": 40.0, "probe/chance_clo": 37.0}

    rows = {"baseline": [report(False) for _ in range(3)], "bdam": [report(True) for _ in range(3)]}
    path = tmp_path / "probes.png"
    plotted = plot_probe_summary(rows, str(path))
    assert plotted["bdam"]["clo_from_id"] == pytest.approx(np.mean([r["probe/clo_from_id"] for r in rows["bdam"]]))
    assert plotted["baseline"]["id_from_pooled"] == pytest.approx(
        np.mean([r["probe/id_from_pooled"] for r in rows["baseline"]]))
    assert set(plotted["baseline"]) == {"id_from_pooled", "clo_from_pooled"}
    assert set(plotted["bdam"]) == {"id_from_id", "id_from_clo", "clo_from_id", "clo_from_clo"}
    width, height = Image.open(path).size
    assert width == 1100 and height > 300  # grows with the rows


def test_rows_compared_with_the_reference_seed_by_seed() -> None:
    from bench_ablations import paired_markdown

    def trial(seed: int, image_map: float) -> dict:
        metrics = {"mAP": image_map, "R1": 2 * image_map}
        return {"seed": seed, "image/standard": metrics, "image+desc/standard": {"mAP": 50.0, "R1": 60.0}}

    rows = {"bdam": [trial(0, 10.0), trial(1, 40.0)], "no_gate": [trial(1, 43.0), trial(0, 11.0), trial(5, 0.0)]}
    lines = paired_markdown("table1_bdam", rows).splitlines()
    assert "minus bdam" in lines[0]
    (row,) = [line for line in lines if line.startswith("| no_gate")]
    # seed 5 has no reference; seeds 0 and 1 differ by +1 and +3: 2.0 ± 1.4 (R1 twice that), described 0
    assert row == "| no_gate | 2 | 2.0 ± 1.4 | 4.0 ± 2.8 | 0.0 ± 0.0 | 0.0 ± 0.0 |"
