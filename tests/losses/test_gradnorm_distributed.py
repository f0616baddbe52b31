"""GradNorm under torch.distributed (ranks agree) and under DeepSpeed ZeRO 0-2 engines (same as plain torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from reid.distributed.runtime import free_port

TOY = textwrap.dedent("""
    import json, os, sys
    import torch
    from torch import nn
    from reid.losses import GradNorm

    class Toy(nn.Module):
        def __init__(self, seed):
            super().__init__()
            torch.manual_seed(0)
            self.shared, self.head1, self.head2 = nn.Linear(8, 16), nn.Linear(16, 1), nn.Linear(16, 1)
            gen = torch.Generator().manual_seed(seed)
            self.register_buffer("x", torch.randn(32, 8, generator=gen))
            self.register_buffer("y", torch.randn(32, 2, generator=gen))

        def forward(self):
            z = torch.relu(self.shared(self.x))
            return {"small": ((self.head1(z) - self.y[:, :1]) ** 2).mean(),
                    "big": 100 * ((self.head2(z) - self.y[:, 1:]) ** 2).mean()}
""")

RANKS = TOY + textwrap.dedent("""
    import torch.distributed as dist
    rank = int(os.environ["RANK"])
    if os.environ["WORLD_SIZE"] != "1":
        dist.init_process_group("gloo", rank=rank, world_size=int(os.environ["WORLD_SIZE"]))
    model, gn = Toy(seed=rank), GradNorm(["small", "big"])
    opt = torch.optim.SGD(model.parameters(), lr=0.002)
    for _ in range(6):
        loss = gn.balance(model(), list(model.shared.parameters()))
        opt.zero_grad(); loss.backward(); opt.step()
    print(json.dumps(gn.weights()))
    if dist.is_initialized():
        dist.destroy_process_group()
""")

DEEPSPEED = TOY + textwrap.dedent("""
    import deepspeed
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    deepspeed.init_distributed(dist_backend="gloo")
    results = {}
    for stage in (0, 1, 2):
        config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                  "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True,
                  "gradient_clipping": 0.0}  # 0.19.8 clips at 1.0 unless told
        plain, wrapped = Toy(seed=1), Toy(seed=1)
        engine, *_ = deepspeed.initialize(model=wrapped, optimizer=torch.optim.SGD(wrapped.parameters(), lr=0.01),
                                          config=config)
        opt = torch.optim.SGD(plain.parameters(), lr=0.01)
        gn_plain, gn_ds = GradNorm(["small", "big"]), GradNorm(["small", "big"])
        for _ in range(4):
            loss = gn_plain.balance(plain(), list(plain.shared.parameters()))
            opt.zero_grad(); loss.backward(); opt.step()
            losses = engine()
            engine.backward(gn_ds.weighted_loss(losses), retain_graph=gn_ds.will_update())
            gn_ds.update(losses, list(engine.module.shared.parameters()))
            engine.step()
        diff = max(float((a - b).detach().abs().max()) for a, b in zip(plain.parameters(), engine.module.parameters()))
        results[stage] = {"plain": gn_plain.weights(), "deepspeed": gn_ds.weights(), "max_param_diff": diff}
    print(json.dumps(results))
""")


def _run(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script], env={**os.environ, **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _result(proc: subprocess.Popen[str], timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_ranks_hold_identical_weights_from_averaged_statistics() -> None:
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    procs = [_run(RANKS, {**env, "RANK": str(rank)}) for rank in (0, 1)]
    both = [_result(p) for p in procs]
    alone = [_result(_run(RANKS, {"RANK": str(rank), "WORLD_SIZE": "1"})) for rank in (0, 1)]
    assert both[0] == both[1]
    assert alone[0] != alone[1]  # different local data: unsynchronised ranks would disagree
    assert both[0] != alone[0] and both[0] != alone[1]


@pytest.mark.slow
def test_gradnorm_under_deepspeed_zero_0_to_2_matches_plain_torch() -> None:
    pytest.importorskip("deepspeed")
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "DS_ACCELERATOR": "cpu"}
    results = _result(_run(DEEPSPEED, env), timeout=600)
    assert sorted(results) == ["0", "1", "2"]
    for result in results.values():  # weighted_loss -> engine.backward(retain_graph) -> update -> step
        assert result["deepspeed"] == pytest.approx(result["plain"], rel=1e-5)
        assert result["deepspeed"] != {"small": 1.0, "big": 1.0}
        assert result["max_param_diff"] < 1e-5
