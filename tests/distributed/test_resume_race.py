"""Two ranks of one node resume from a checkpoint in object storage while injected delays hold one rank inside its
read and the other late: every rank reads complete files, and its loaded state equals what it saved.

The delays reproduce the race of ``Checkpoint.to_directory()`` (a late rank downloading again into the directory
another rank is reading) and would expose a clean-up that removes the files before every rank has read them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from reid.config import load_config

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402

pytestmark = pytest.mark.slow


def instrumented_worker(signals: str, hold: bool) -> Any:
    """``train_worker`` with each rank's engine state digested after ``save`` and ``load`` (``<signals>/saved-R``,
    ``loaded-R``) and, with ``hold``, the injected delays. Defined in a closure so Ray ships it by value."""

    def worker(loop_config: dict[str, Any]) -> None:
        import hashlib
        import time

        import ray.train
        import ray.train._checkpoint as ray_checkpoint
        import torch

        from reid.distributed import train_job
        from reid.training import deepspeed_engine

        rank = ray.train.get_context().get_world_rank()

        def signal(name: str, payload: str = "") -> None:
            Path(signals, name).write_text(payload)

        def wait(name: str, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while not os.path.exists(os.path.join(signals, name)) and time.monotonic() < deadline:
                time.sleep(0.05)
            return os.path.exists(os.path.join(signals, name))

        def digest(engine: Any) -> str:
            """The rank's model weights, ZeRO fp32 partition and Adam moments."""
            sha = hashlib.sha256()
            tensors = list(engine.module.state_dict().values())
            zero = engine.optimizer
            tensors += list(getattr(zero, "single_partition_of_fp32_groups", []))
            for state in zero.optimizer.state.values():
                tensors += [v for v in state.values() if torch.is_tensor(v)]
            for t in tensors:
                sha.update(t.detach().float().cpu().contiguous().numpy().tobytes())
            return sha.hexdigest()

        save, load = deepspeed_engine.DeepSpeedEngine.save, deepspeed_engine.DeepSpeedEngine.load

        def saving(self: Any, directory: str, client: Any) -> None:
            save(self, directory, client)
            signal(f"saved-{rank}", digest(self.engine))

        def loading(self: Any, directory: str) -> dict[str, Any]:
            if hold and rank == 0:
                wait("rewriting", 5)  # inside its read at the moment a late rank would download again
            if hold and rank == 1:
                wait(f"loaded-{0}", 30)  # still reading after rank 0 is done with the files
                time.sleep(1)
            client = load(self, directory)
            signal(f"loaded-{rank}", digest(self.engine))
            return client

        deepspeed_engine.DeepSpeedEngine.save, deepspeed_engine.DeepSpeedEngine.load = saving, loading
        if hold:
            download, get_checkpoint = ray_checkpoint._download_from_fs_path, ray.train.get_checkpoint

            def slow_download(fs: Any, fs_path: str, local_path: str, *args: Any, **kwargs: Any) -> None:
                if rank == 1:  # a download into a directory that holds files truncates them, then writes slowly
                    for root, _, files in os.walk(local_path):
                        for name in files:
                            open(os.path.join(root, name), "wb").close()
                    signal("rewriting")
                    time.sleep(2)
                download(fs, fs_path, local_path, *args, **kwargs)
                signal(f"downloaded-{rank}")

            def late_checkpoint() -> Any:
                if rank == 1:
                    wait("downloaded-0", 30)  # arrives after rank 0's download has finished
                return get_checkpoint()

            ray_checkpoint._download_from_fs_path, ray.train.get_checkpoint = slow_download, late_checkpoint
        train_job.train_worker(loop_config)

    return worker


def fit(config: Any, worker: Any, resume: bool) -> None:
    from ray.train.torch import TorchTrainer

    from reid.distributed.train_job import build_trainer

    built = build_trainer(config, resume, data="memory")
    TorchTrainer(worker, train_loop_config=built.train_loop_config, scaling_config=built.scaling_config,
                 run_config=built.run_config, torch_config=built.backend_config).fit()


def test_two_ranks_of_one_node_resume_from_complete_files(ray_local: None, s3_bucket: str, tmp_path: Path) -> None:
    from reid.distributed.checkpoint_restore import STAGING_PREFIX
    from reid.distributed.train_job import RESULT_FILE
    from reid.storage import read_json, resolve

    dataset = write_colour_dataset(tmp_path / "dataset")
    overrides = [f"data.uri={dataset}", "data.use_descriptions=false", "train.epochs=2", "train.steps_per_epoch=2",
                 "train.engine=deepspeed", "train.zero_stage=1", "train.workers=2", "train.max_failures=0",
                 f"train.storage_uri={s3_bucket}/ckpt", "train.name=race", "train.pictures=false",
                 "tracking.enabled=false", "eval.probes=false"]
    saved, resumed = tmp_path / "saved", tmp_path / "resumed"
    saved.mkdir()
    resumed.mkdir()
    staged_before = {p.name for p in Path("/tmp").glob(f"{STAGING_PREFIX}*")}
    fit(load_config("pkg://tiny", [*overrides, "train.stop_after_epochs=1"]), instrumented_worker(str(saved), False),
        resume=False)
    fit(load_config("pkg://tiny", overrides), instrumented_worker(str(resumed), True), resume=True)

    signals = {p.name for p in resumed.iterdir()}
    assert "rewriting" not in signals, "a second rank downloaded into the directory rank 0 was reading"
    for rank in (0, 1):
        assert (resumed / f"loaded-{rank}").read_text() == (saved / f"saved-{rank}").read_text(), rank
    assert (saved / "saved-0").read_text() != (saved / "saved-1").read_text()  # ZeRO-1: each rank its own shard
    assert {p.name for p in Path("/tmp").glob(f"{STAGING_PREFIX}*")} <= staged_before  # removed after the read
    result = read_json(resolve(f"{s3_bucket}/ckpt/race").join(RESULT_FILE))
    assert result["finished"] and result["started_at_epoch"] == 1 and [h["epoch"] for h in result["history"]] == [0, 1]
