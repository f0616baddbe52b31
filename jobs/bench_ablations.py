"""The paper's ablations (Tables 1-3) in miniature: each shipped ``tune_spaces/<table>.yaml`` with seeds 0, 1, 2
on the synthetic clothes-changing split, every run's best checkpoint (chosen on val) scored on test in two
gallery modes (image only; image + identity description) under the standard and the clothes-changing (``cc``)
protocol, plus the disentanglement probes. SAP-SAM's tables (``sapsam_table4``, ``sapsam_table6``) report
R1/R5/R10 as it does, and R1 over the *part queries*: the captions that name a hat or a bag, a small part the
caption's image shows.

    python jobs/bench_ablations.py [--tables table1_bdam table2_fusion table3_losses] [--identities 120]
        [--images 6] [--seeds 0,1,2] [--workdir runs/ablations] [--out docs/results-tables.md]
        [--local [--parallel 2]] [--resume] [--set train.epochs=3 ...]

Prints (and writes to ``--out``) one markdown table per paper table, rows as the paper orders them, each
cell ``mean +- std`` over seeds. Two ways to run:

- on Ray (default): every table is an ordinary ``reid tune`` search under ``<workdir>/tune`` (MLflow under
  ``<workdir>``); the probes of Table 1's rows. ``--resume`` continues interrupted searches. A job for
  ``ray job submit`` too.
- ``--local`` (a 2-core machine): every (row, seed) trains in its own subprocess on one thread, ``--parallel``
  at a time, without Ray (``jobs/ablation_local.py``); rows of different tables with the same resolved config
  train once; each run is an MLflow run with its probe picture; ``<workdir>/results.jsonl`` holds one line per
  run and ``--resume`` continues it. Adds each table's differences from its reference row paired by seed, the
  probes of every row, the BDAM branches' dependence (linear CKA, HSIC) and ``<workdir>/probes.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from reid.config import Config, load_config

if TYPE_CHECKING:
    from reid.models.reid_model import ReidModel

REPO = Path(__file__).resolve().parents[1]
MODES = (("image", False, "standard"), ("image+desc", True, "standard"),
         ("image", False, "cc"), ("image+desc", True, "cc"))
PROBE_KEYS = ("probe/id_from_id", "probe/clo_from_id", "probe/id_from_clo", "probe/clo_from_clo",
              "probe/id_from_pooled", "probe/clo_from_pooled", "probe/chance_id", "probe/chance_clo")


def build_dataset(root: str, identities: int, images: int, seed: int) -> str:
    """Synthesise a clothes-changing split, prepare it and describe it with the oracle (once per workdir)."""
    from reid.data.synth import generate
    from reid.describe.config import DescribeConfig
    from reid.describe.runner import describe_dataset_local
    from reid.distributed.prepare_job import prepare_dataset
    from reid.storage import exists, resolve

    uri = f"{root}/dataset"
    if not exists(resolve(f"{uri}/manifest.json")):
        generate(f"{root}/raw", identities, images, seed=seed, clothes_changing=True, progress=False)
        prepare_dataset("cuhk-pedes", f"{root}/raw", uri, overwrite=True, seed=seed)
    describe_dataset_local(uri, DescribeConfig(backend="oracle"))  # resumable: a rerun describes nothing
    return uri


def seeded_space(table: str, seeds: list[int], directory: str) -> str:
    """The shipped space ``tune_spaces/<table>.yaml`` with a ``seed`` grid added under ``params``."""
    data = yaml.safe_load((REPO / "tune_spaces" / f"{table}.yaml").read_text())
    data.setdefault("params", {})["seed"] = {"grid": list(seeds)}
    path = os.path.join(directory, f"{table}.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)
    return path


def score_checkpoint(checkpoint: str, data: str, config: Config) -> dict[str, dict[str, float]]:
    """Test metrics of one checkpoint in every gallery mode x protocol, its probes (fit train, score test) and
    its BDAM branches' dependence on the test images."""
    import torch

    from reid.evaluation.evaluator import Evaluator
    from reid.evaluation.loading import load_encoder
    from reid.models.export import load_inference_checkpoint
    from reid.training.probing import run_probes

    encoder, ckpt = load_encoder(checkpoint, "cpu", config.data.eval_batch_size)
    part_queries = part_query_mask(data)
    out = {}
    for name, descriptions, protocol in MODES:
        evaluator = Evaluator(data, ckpt.data.image_size, config.data.eval_batch_size, use_descriptions=descriptions,
                              progress=False, protocol=protocol)
        result = evaluator.evaluate(encoder, "test")
        hits = result.first_ranks[part_queries] == 0
        out[f"{name}/{protocol}"] = {**result.metrics, "R1_part": 100.0 * float(hits.mean()) if len(hits) else 0.0,
                                     "part_queries": float(len(hits))}
    model, model_config = load_inference_checkpoint(checkpoint)
    probe_config = replace(model_config, data=replace(model_config.data, uri=data))
    out["probes"] = run_probes(model, probe_config, torch.device("cpu"), "train", "test")
    out["dependence"] = branch_dependence(model, probe_config)
    return out


def branch_dependence(model: ReidModel, config: Config, split: str = "test") -> dict[str, float]:
    """How much the two BDAM branches share on ``split``'s images: eq. 2's linear HSIC of ``f_id_gate`` and
    ``f_clo_gate`` ``[N, D]``, and its scale-free form, linear CKA ``HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y))``
    in [0, 1] (0: no linear dependence). Empty for a model without BDAM."""
    import torch

    from reid.losses.decoupling import hsic
    from reid.training.probing import image_features

    features, _ = image_features(model, config, split, torch.device("cpu"))
    if "id" not in features:
        return {}
    x, y = (torch.from_numpy(features[name]).double() for name in ("id", "clo"))
    cross, self_x, self_y = (float(hsic(a, b)) for a, b in ((x, y), (x, x), (y, y)))
    return {"hsic": cross, "cka": cross / max((self_x * self_y) ** 0.5, 1e-30)}


def part_query_mask(data: str) -> np.ndarray:
    """``bool [Nq]``: test captions that name a hat or a bag (synthetic vocabulary, whole words)."""
    import re

    from reid.data.synth.vocab import BAG_WORDS, HAT_WORDS
    from reid.evaluation.split_reader import read_split_index

    words = sorted({w for table in (BAG_WORDS, HAT_WORDS) for ws in table.values() for w in ws}, key=len)
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    return np.asarray([bool(pattern.search(c)) for c in read_split_index(data, "test").captions], dtype=bool)


def run_table(table: str, config: Config, data: str, seeds: list[int], resume: bool) -> dict[str, list[dict]]:
    """Search one table (variants x seeds, FIFO: no trial stopped early); scores of each variant's trials."""
    from reid.config.loader import with_overrides
    from reid.distributed.tune_job import SEARCH_FILE, run_search, search_uri
    from reid.distributed.tune_summary import COMPLETED
    from reid.search_space import load_space
    from reid.storage import exists, resolve

    with tempfile.TemporaryDirectory() as tmp:
        space = load_space(seeded_space(table, seeds, tmp))
        search = with_overrides(config, {"tune.name": table, "tune.scheduler": "fifo"})
        started = exists(resolve(search_uri(search)).join(SEARCH_FILE))  # --resume continues only what began
        outcome = run_search(search, space, num_samples=1, resume=resume and started)
    scores: dict[str, list[dict]] = defaultdict(list)
    for row in outcome.rows:
        best = f"{outcome.search_uri}/trials/{row.trial_id}/best"
        if row.status != COMPLETED:
            logging.warning("%s: trial %s (%s) ended %s; left out", table, row.trial_id, dict(row.params), row.status)
            continue
        scores[row.params["variant"]].append(score_checkpoint(best, data, config))
    return {variant: scores[variant] for variant in space.variants if variant in scores}


def mean_std(values: list[float]) -> str:
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else float("nan")
    return f"{array.mean():.1f} ± {std:.1f}" if not math.isnan(std) else f"{array.mean():.1f}"


def markdown(table: str, rows: dict[str, list[dict]]) -> str:
    """``| row | image mAP | image R1 | image+desc mAP | ... |`` for the standard and the cc protocol."""
    header = ["row", "seeds"] + [f"{mode} {proto} {metric}" for mode, _, proto in MODES for metric in ("mAP", "R1")]
    lines = [f"### {table}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, trials in rows.items():
        cells = [variant, str(len(trials))]
        for mode, _, proto in MODES:
            for metric in ("mAP", "R1"):
                cells.append(mean_std([t[f"{mode}/{proto}"][metric] for t in trials]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sapsam_markdown(table: str, rows: dict[str, list[dict]]) -> str:
    """SAP-SAM's columns: R1/R5/R10 (standard protocol) with and without the gallery's descriptions, and R1 over
    the part queries."""
    header = ["row", "seeds"]
    columns = [(mode, metric) for mode in ("image+desc/standard", "image/standard")
               for metric in ("R1", "R5", "R10", "R1_part")]
    header += [f"{mode.split('/')[0]} {'R1 part queries' if m == 'R1_part' else m}" for mode, m in columns]
    lines = [f"### {table}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, trials in rows.items():
        cells = [variant, str(len(trials))] + [mean_std([t[mode][metric] for t in trials]) for mode, metric in columns]
        lines.append("| " + " | ".join(cells) + " |")
    counts = {int(t["image/standard"]["part_queries"]) for trials in rows.values() for t in trials}
    lines.append("")
    lines.append(f"Part queries: {', '.join(map(str, sorted(counts)))} of the test captions name a hat or a bag.")
    return "\n".join(lines)


def probe_markdown(rows: dict[str, list[dict]]) -> str:
    """Probe accuracies (percent, mean +- std over seeds) of every row that has them."""
    keys = [k for k in PROBE_KEYS if any(k in t["probes"] for trials in rows.values() for t in trials)]
    lines = ["| row | " + " | ".join(k.removeprefix("probe/") for k in keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for variant, trials in rows.items():
        cells = [mean_std([t["probes"][k] for t in trials]) if all(k in t["probes"] for t in trials) else "-"
                 for k in keys]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


REFERENCE = {"table1_bdam": "bdam", "table2_fusion": "full_fusion", "table3_losses": "full",
             "clothing_terms": "adversarial", "sapsam_table6": "no_matching"}
"""The row every other row of a table is compared with, seed by seed."""


def paired_markdown(table: str, rows: dict[str, list[dict]]) -> str:
    """Each row minus the table's reference row, seed by seed (the seed moves every row alike: it draws the
    initialisation and the batches), mean ± std of the differences, for mAP and R1 of both gallery modes."""
    reference = {t["seed"]: t for t in rows.get(REFERENCE.get(table, ""), [])}
    columns = [(mode, metric) for mode in ("image/standard", "image+desc/standard") for metric in ("mAP", "R1")]
    lines = [f"### {table}: each row minus {REFERENCE.get(table)}, paired by seed", "",
             "| row | seeds | " + " | ".join(f"Δ {m.split('/')[0]} {k}" for m, k in columns) + " |",
             "|" + "---|" * (len(columns) + 2)]
    for variant, trials in rows.items():
        pairs = [(t, reference[t["seed"]]) for t in trials if t.get("seed") in reference]
        if not pairs or variant == REFERENCE.get(table):
            continue
        cells = [mean_std([t[m][k] - r[m][k] for t, r in pairs]) for m, k in columns]
        lines.append(f"| {variant} | {len(pairs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dependence_markdown(rows: dict[str, list[dict]]) -> str:
    """Linear CKA and HSIC (eq. 2) of the two BDAM branches on the test images, of every row that has them."""
    lines = ["| row | CKA(f_id_gate, f_clo_gate) | HSIC |", "|---|---|---|"]
    for variant, trials in rows.items():
        found = [t["dependence"] for t in trials if t.get("dependence")]
        if found:
            cka = np.asarray([d["cka"] for d in found])
            lines.append(f"| {variant} | {cka.mean():.2f} ± {cka.std(ddof=1) if len(cka) > 1 else 0.0:.2f} | "
                         f"{np.mean([d['hsic'] for d in found]):.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pkg://demo")
    parser.add_argument("--tables", nargs="+", default=["table1_bdam", "table2_fusion", "table3_losses"])
    parser.add_argument("--identities", type=int, default=120)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", default="runs/ablations")
    parser.add_argument("--out", default=None, help="also write the markdown tables to this file")
    parser.add_argument("--resume", action="store_true", help="continue interrupted searches (or local runs)")
    parser.add_argument("--local", action="store_true",
                        help="no Ray: each run in a subprocess on one thread (results in <workdir>/results.jsonl)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time with --local")
    parser.add_argument("--set", action="append", default=[], help="config override for every trial")
    parser.add_argument("--one", nargs=3, metavar=("TABLE", "VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from reid.evaluation.selection import parse_seeds

    workdir = Path(args.workdir).absolute()
    if args.one:
        run_local_one(args, workdir)
        return
    if args.parallel < 1:
        parser.error("--parallel takes a positive count")
    from reid.distributed.runtime import ensure_ray

    ensure_ray(dashboard=not args.local)
    data = build_dataset(str(workdir), args.identities, args.images, seed=0)
    seeds = parse_seeds(args.seeds)
    parts = [f"Synthetic clothes-changing split: {args.identities} identities x {args.images} images, seeds "
             f"{args.seeds}, config {' '.join([args.config, *args.set])}"
             f"{' (one process per run, no Ray)' if args.local else ''}; test metrics of the checkpoint chosen on "
             "val, mean ± std over seeds."]
    if args.local:
        import ray

        ray.shutdown()  # the runs need no Ray: its processes would take their share of the cores
        tables = local_tables(args, workdir, data, seeds)
    else:
        config = load_config(args.config, [f"data.uri={data}", f"tune.storage_uri={workdir}/tune",
                                           f"tracking.runs_dir={workdir}", "train.pictures=false", *args.set])
        tables = {table: run_table(table, config, data, seeds, args.resume) for table in args.tables}
    probes = {}
    for table, rows in tables.items():
        parts.append(sapsam_markdown(table, rows) if table.startswith("sapsam") else markdown(table, rows))
        if args.local and table in REFERENCE:
            parts[-1] += "\n\n" + paired_markdown(table, rows)
        if table.startswith("table1") or (args.local and not table.startswith("sapsam")):
            seen = [json.dumps(t, sort_keys=True) for t in probes.values()]
            probes.update({variant if table.startswith("table1") else f"{table.split('_')[0]}: {variant}": trials
                           for variant, trials in rows.items()
                           if json.dumps(trials, sort_keys=True) not in seen})  # a shared run is shown once
        print(parts[-1] + "\n", flush=True)
    if probes:
        parts.append("### probes (fitted on train images, scored on test images)\n\n" + probe_markdown(probes))
        print(parts[-1], flush=True)
        if args.local:
            from ablation_local import plot_probe_summary

            parts.append("### dependence of the BDAM branches on the test images (0: none)\n\n"
                         + dependence_markdown(probes))
            print(parts[-1], flush=True)
            if all(t["probes"] for trials in probes.values() for t in trials):  # synthetic data: attributes known
                plot_probe_summary({k: [t["probes"] for t in v] for k, v in probes.items()},
                                   str(workdir / "probes.png"))
                print(f"probe picture: {workdir / 'probes.png'}", flush=True)
    if args.out:
        Path(args.out).write_text("\n\n".join(parts) + "\n")


def local_config(args: argparse.Namespace, workdir: Path) -> Config:
    """The base config of every local run (the same in the parent and in each run's subprocess)."""
    from ablation_local import LOCAL_SETTINGS

    return load_config(args.config, [f"data.uri={workdir}/dataset", f"tracking.runs_dir={workdir}",
                                     *LOCAL_SETTINGS, *args.set])


def local_tables(args: argparse.Namespace, workdir: Path, data: str,
                 seeds: list[int]) -> dict[str, dict[str, list[dict]]]:
    """Every table's rows trained one process per run (resumable through ``<workdir>/results.jsonl``)."""
    from ablation_local import plan, run_all, table_rows

    from reid.distributed.tracking import experiment_id, tracking_uri

    base = local_config(args, workdir)
    runs, layout = plan(base, args.tables, seeds)
    results = workdir / "results.jsonl"
    if results.exists() and not args.resume:
        raise SystemExit(f"{results} exists: pass --resume to continue it, or choose another --workdir")
    from mlflow import MlflowClient

    uri = tracking_uri(base.tracking)
    experiment_id(MlflowClient(tracking_uri=uri), base.tracking, uri)  # created once, before the runs race to it
    child_args = ["--config", args.config, *(f"--set={item}" for item in args.set)]
    done = run_all(runs, results, workdir, child_args, args.parallel)
    return {table: table_rows(layout[table], done) for table in args.tables}


def run_local_one(args: argparse.Namespace, workdir: Path) -> None:
    """``--one TABLE VARIANT SEED``: train and score one run here; its row is the last stdout line."""
    from ablation_local import Run, config_key, train_and_score, variant_config, variants

    table, variant, seed = args.one[0], args.one[1], int(args.one[2])
    config = variant_config(local_config(args, workdir), variants(table)[variant], seed)
    run = Run(table, variant, seed, config_key(config))
    row = train_and_score(config, run, str(workdir / "dataset"), workdir / "local" / run.key)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
