"""Retrieval metrics, the evaluator, checkpoint selection, search and pictures (no Ray, no MLflow).

Names are imported lazily so that loading the configuration schema does not pull in numba or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "rank": "reid.evaluation.ranking",
    "rank_embeddings": "reid.evaluation.ranking",
    "query_ranks": "reid.evaluation.ranking",
    "query_ranks_from_embeddings": "reid.evaluation.ranking",
    "metrics_from_ranks": "reid.evaluation.ranking",
    "QueryRanks": "reid.evaluation.ranking",
    "RetrievalEncoder": "reid.evaluation.encoder",
    "Evaluator": "reid.evaluation.evaluator",
    "EvalResult": "reid.evaluation.evaluator",
    "create_evaluator": "reid.evaluation.evaluator",
    "CheckpointScore": "reid.evaluation.selection",
    "select_best_checkpoint": "reid.evaluation.selection",
    "summarize_seeds": "reid.evaluation.selection",
    "run_seeds": "reid.evaluation.selection",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reid.evaluation' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
