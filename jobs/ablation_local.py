"""The ablation tables run without Ray, for a 2-core machine: every (variant, seed) is trained and scored in
its own subprocess on one thread (``--parallel`` of them at once), appended to ``<workdir>/results.jsonl`` as
it finishes (``--resume`` skips what is there), and logged as an MLflow run with its probe picture.

Rows of different tables whose resolved configs are equal (Table 1's ``bdam``, Table 2's ``full_fusion`` and
Table 3's ``full``) are trained once and shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid.config import Config
from reid.config.loader import with_overrides

REPO = Path(__file__).resolve().parents[1]
LOCAL_SETTINGS = ["train.engine=torch", "train.pictures=false", "eval.probes=false"]
"""One process, the plain PyTorch engine; probes and pictures once, on the chosen checkpoint, not per epoch."""


@dataclass(frozen=True)
class Run:
    """One training run: the first (table, variant) that asked for it, its seed and its config's digest."""

    table: str
    variant: str
    seed: int
    key: str


def config_key(config: Config) -> str:
    """A digest of the resolved config (seed included): equal configs train once."""
    from reid.config.loader import config_to_dict

    body = json.dumps(config_to_dict(config), sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def variants(table: str) -> dict[str, dict[str, Any]]:
    """``{variant: its overrides}`` of the shipped space ``tune_spaces/<table>.yaml``, in the file's order."""
    from reid.search_space import load_space

    return load_space(REPO / "tune_spaces" / f"{table}.yaml").variants


def variant_config(base: Config, overrides: dict[str, Any], seed: int) -> Config:
    return with_overrides(base, {**overrides, "seed": seed})


def plan(base: Config, tables: list[str], seeds: list[int]) -> tuple[list[Run], dict[str, dict[str, list[str]]]]:
    """The distinct runs in table order, and ``{table: {variant: [run key per seed]}}``."""
    runs: dict[str, Run] = {}
    layout: dict[str, dict[str, list[str]]] = {}
    for table in tables:
        layout[table] = {}
        for variant, overrides in variants(table).items():
            keys = []
            for seed in seeds:
                key = config_key(variant_config(base, overrides, seed))
                runs.setdefault(key, Run(table, variant, seed, key))
                keys.append(key)
            layout[table][variant] = keys
    return list(runs.values()), layout


def finished(results: Path) -> dict[str, dict[str, Any]]:
    """``{run key: row}`` of the runs already in ``results`` (one JSON object per line)."""
    if not results.exists():
        return {}
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {row["key"]: row for row in rows}


def train_and_score(config: Config, run: Run, data: str, root: Path) -> dict[str, Any]:
    """Train one run in this process (one thread), score its val-chosen checkpoint on test in every gallery
    mode and protocol, probe its features, draw the probes and log it all to one MLflow run."""
    import torch
    from bench_ablations import score_checkpoint

    from reid.distributed.tracking import RunTracker
    from reid.evaluation.figures import plot_probes
    from reid.training.setup import train_local

    torch.set_num_threads(1)
    if root.exists():
        shutil.rmtree(root)  # what an interrupted attempt left: every run trains from its start
    tracker = RunTracker.create(config, f"{run.table}-{run.variant}-seed{run.seed}")
    tracker.set_tags({"ablation.table": run.table, "ablation.variant": run.variant, "ablation.key": run.key})
    start = time.perf_counter()
    try:
        result, context = train_local(config, root, tracker=tracker)
        scores = score_checkpoint(str(root / "best"), data, config)
        (root / "figures").mkdir(exist_ok=True)
        plot_probes(scores["probes"], str(root / "figures" / "probes.png"),
                    title=f"{run.variant}, seed {run.seed}: what each feature encodes (dashed: chance)")
        tracker.log_metrics({f"{mode}/{name}": value for mode, metrics in scores.items() if mode != "probes"
                             for name, value in metrics.items()}, prefix="test/")
        tracker.log_metrics(scores["probes"])
        tracker.log_artifacts(str(root / "figures"), "figures")
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish()
    seconds = sum(r["epoch_seconds"] for r in context.reports) / max(result.state.step, 1)
    epochs = [{k: v for k, v in report.items() if isinstance(v, (int, float))} for report in context.reports]
    return {"key": run.key, "table": run.table, "variant": run.variant, "seed": run.seed, "scores": scores,
            "best_epoch": result.state.best_epoch, "epochs": epochs, "s/step": seconds,
            "wall": time.perf_counter() - start, "mlflow_run": tracker.run_id}


def add_dependence(done: dict[str, dict], results: Path, workdir: Path) -> None:
    """Rows finished before the branches' dependence was measured get it from their kept checkpoint (the row
    is appended again with it; :func:`finished` keeps a key's last row)."""
    from bench_ablations import branch_dependence

    from reid.models.export import load_inference_checkpoint

    for key, row in done.items():
        best = workdir / "local" / key / "best"
        if "dependence" in row["scores"] or not best.exists():
            continue
        model, config = load_inference_checkpoint(str(best))
        config = with_overrides(config, {"data.uri": str(workdir / "dataset")})
        row["scores"]["dependence"] = branch_dependence(model, config)
        with results.open("a") as out:
            out.write(json.dumps(row) + "\n")


def run_all(runs: list[Run], results: Path, workdir: Path, child_args: list[str], parallel: int) -> dict[str, dict]:
    """Run what ``results`` lacks, ``parallel`` subprocesses at a time, appending each row as it finishes."""
    done = finished(results)
    todo = [run for run in runs if run.key not in done]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def one(run: Run) -> tuple[dict, float]:
        start = time.perf_counter()
        command = [sys.executable, str(Path(__file__).with_name("bench_ablations.py")), "--workdir", str(workdir),
                   "--one", run.table, run.variant, str(run.seed), *child_args]
        child = subprocess.run(command, env=env, capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(f"{run.table} {run.variant} seed {run.seed} failed:\n{child.stderr[-3000:]}")
        return json.loads(child.stdout.strip().splitlines()[-1]), time.perf_counter() - start

    print(f"{len(todo)} of {len(runs)} runs to train ({len(runs) - len(todo)} already in {results})", flush=True)
    with ThreadPoolExecutor(parallel) as pool:
        futures = {pool.submit(one, run): run for run in todo}
        for i, future in enumerate(as_completed(futures), 1):
            row, seconds = future.result()
            with results.open("a") as out:
                out.write(json.dumps(row) + "\n")
            done[row["key"]] = row
            image = row["scores"]["image/standard"]
            print(f"[{i}/{len(todo)}] {row['table']} {row['variant']} seed {row['seed']}: image-only test R1 "
                  f"{image['R1']:.1f} mAP {image['mAP']:.1f}, best epoch {row['best_epoch']}, {seconds:.0f} s",
                  flush=True)
    add_dependence(done, results, workdir)
    return done


def table_rows(layout: dict[str, list[str]], done: dict[str, dict]) -> dict[str, list[dict]]:
    """``{variant: [scores of each finished seed]}`` of one table, in the layout's row order."""
    return {variant: [{**done[key]["scores"], "seed": done[key]["seed"]} for key in keys if key in done]
            for variant, keys in layout.items() if any(key in done for key in keys)}


def plot_probe_summary(rows: dict[str, list[dict[str, float]]], path: str) -> dict[str, dict[str, float]]:
    """The probes of every row at a glance: one panel per attribute group (identity, clothing), one line per
    row with a dot per feature (decoded from the identity branch, the clothing branch, or the baseline's pooled
    feature), mean over seeds with the seeds' spread as error bars, chance as a dashed line. ``rows``:
    ``{row label: [probe report of each seed]}``. Returns the plotted means."""
    import numpy as np
    from matplotlib.figure import Figure

    from reid.evaluation.figures import save_figure

    features = (("id", "from identity branch f_id_gate", "tab:blue", "o", 0.15),
                ("clo", "from clothing branch f_clo_gate", "tab:orange", "s", -0.15),
                ("pooled", "from pooled feature (no BDAM)", "tab:gray", "D", 0.0))  # a row has branches or pooled
    groups = (("id", "identity attributes\n(gender, height, build, skin, hair)"),
              ("clo", "clothing attributes\n(garments, colours, shoes, bag, hat)"))
    labels = list(rows)
    y = np.arange(len(labels))[::-1]  # the first row on top
    fig = Figure(figsize=(11, 0.42 * len(labels) + 2.2))
    plotted: dict[str, dict[str, float]] = {label: {} for label in labels}
    for panel, (group, title) in enumerate(groups):
        ax = fig.add_subplot(1, 2, panel + 1)
        for feature, name, colour, marker, offset in features:
            key = f"probe/{group}_from_{feature}"
            have = [all(key in r for r in rows[label]) for label in labels]
            means = np.asarray([np.mean([r[key] for r in rows[label]]) if ok else np.nan
                                for label, ok in zip(labels, have, strict=True)])
            spread = np.asarray([np.std([r[key] for r in rows[label]]) if ok else 0.0
                                 for label, ok in zip(labels, have, strict=True)])
            ax.errorbar(means, y + offset, xerr=spread, fmt=marker, color=colour, capsize=2, markersize=6,
                        label=name if panel == 0 else None)  # dots, not bars: the axis does not start at 0
            for label, mean in zip(labels, means, strict=True):
                if not np.isnan(mean):
                    plotted[label][f"{group}_from_{feature}"] = float(mean)
        chance = np.mean([r[f"probe/chance_{group}"] for trials in rows.values() for r in trials])
        ax.axvline(chance, color="black", linestyle="--", linewidth=1,
                   label="chance (majority value)" if panel == 0 else None)
        low = min(v for values in plotted.values() for k, v in values.items() if k.startswith(group))
        high = max(v for values in plotted.values() for k, v in values.items() if k.startswith(group))
        ax.set_xlim(max(0.0, min(low, chance) - 8.0), min(100.0, high + 5.0))
        ax.set_yticks(y, labels if panel == 0 else [""] * len(labels), fontsize=9)
        ax.set_xlabel("probe accuracy on held-out people (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    fig.legend(loc="upper center", ncol=4, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / (0.42 * len(labels) + 2.2)))
    save_figure(fig, path)
    return plotted
