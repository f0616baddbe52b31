"""reid.evaluation stays free of Ray and MLflow, and importing the config schema does not load numba."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "ranking", "rank_kernels", "evaluator", "split_reader", "descriptions", "selection", "search",
    "embedding_cache", "contact_sheet", "figures", "rank_grid", "loading", "table", "encoder",
]


def test_evaluation_modules_import_neither_ray_nor_mlflow() -> None:
    code = "\n".join([
        "import sys, importlib",
        "import reid.config",
        "assert 'numba' not in sys.modules, 'the config schema pulled in numba'",
        *(f"importlib.import_module('reid.evaluation.{m}')" for m in MODULES),
        "import reid.cli.evaluate, reid.cli.search",
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow'))",
        "assert not bad, bad",
        "import reid.evaluation as e",
        "assert callable(e.rank) and callable(e.rank_embeddings) and e.Evaluator",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
