"""DeepSpeed ZeRO-3 (fixed task weights): validation sees whole, gathered parameters, so the epoch's validation
scores equal those of the exported best model; GradNorm with ZeRO-3 is refused when the config loads."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from reid.config import ConfigError, load_config

sys.path.insert(0, str(Path(__file__).parent))
from conftest import run_single_rank_deepspeed  # noqa: E402

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, {conftest_dir!r})
    from conftest import tiny_config
    from reid.evaluation.evaluator import create_evaluator
    from reid.models.export import load_inference_checkpoint
    from reid.models.retrieval import TextImageEncoder, build_tokenizer
    from reid.training.setup import train_local

    config = tiny_config(Path({dataset!r}), "train.engine=deepspeed", "train.zero_stage=3", "gradnorm.enabled=false",
                         "train.epochs=1", "train.steps_per_epoch=3", "train.pictures=false",
                         "model.fusion.kind=mamba")
    result, _ = train_local(config, Path({root!r}))
    model, _ = load_inference_checkpoint(result.best_uri)
    encoder = TextImageEncoder(model, build_tokenizer(config.data.tokenizer), config.data.max_text_length, "cpu")
    again = create_evaluator(config, progress=False).evaluate(encoder, config.data.val_split).metrics
    print(json.dumps({{"history": result.state.history, "again": {{k: float(v) for k, v in again.items()}},
                      "test": result.test_metrics}}))
""")



def test_zero3_validation_gathers_parameters(colour_dataset: Path, tmp_path: Path) -> None:
    out = run_single_rank_deepspeed(SCRIPT, colour_dataset, tmp_path / "run")
    (scores,) = out["history"]
    assert set(out["test"]) == {"R1", "R5", "R10", "mAP", "mINP"}
    for metric, value in out["again"].items():
        assert scores[metric] == pytest.approx(value, abs=1e-4), metric


def test_zero3_with_gradnorm_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="gradnorm.enabled=false"):
        load_config("pkg://tiny", ["train.engine=deepspeed", "train.zero_stage=3", "gradnorm.enabled=true"])
