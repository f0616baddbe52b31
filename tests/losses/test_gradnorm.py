"""GradNorm (eqs. 5-6) on a toy two-task problem, its exact first step, constraints, checkpoints; FixedWeights."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from reid.losses import FixedWeights, GradNorm, GradNormConfig, build_balancer
from reid.losses.gradnorm import project_weights

TASKS = ["small", "big"]


class Toy(nn.Module):
    """A shared layer and two heads; the second task's loss is scaled x100."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.shared, self.head1, self.head2 = nn.Linear(8, 16), nn.Linear(16, 1), nn.Linear(16, 1)
        self.x = torch.randn(64, 8, generator=gen)
        self.y1, self.y2 = torch.randn(64, 1, generator=gen), torch.randn(64, 1, generator=gen)

    def losses(self) -> dict[str, torch.Tensor]:
        z = torch.relu(self.shared(self.x))
        return {"small": ((self.head1(z) - self.y1) ** 2).mean(), "big": 100 * ((self.head2(z) - self.y2) ** 2).mean()}


def _train(model: Toy, balancer: GradNorm | FixedWeights, steps: int) -> list[dict[str, float]]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    history = []
    for _ in range(steps):
        total = balancer.balance(model.losses(), list(model.shared.parameters()))
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(balancer.stats())
    return history


def _log_gap(stats: dict[str, float], task: str) -> float:
    return abs(math.log(stats[f"grad_norm/{task}"] / stats[f"target/{task}"]))


def test_weighted_gradient_norms_approach_targets_on_toy_problem() -> None:
    model, gn = Toy(), GradNorm(TASKS)
    history = _train(model, gn, 150)
    start, end = history[0], history[-1]
    assert _log_gap(start, "big") > 0.5  # x100 scale: far from balanced with equal weights
    for task in TASKS:
        assert _log_gap(end, task) < 0.1
    assert sum(_log_gap(end, t) for t in TASKS) < 0.1 * sum(_log_gap(start, t) for t in TASKS)
    weights = gn.weights()
    assert weights["big"] < 0.1 < 1.5 < weights["small"]
    for stats in history:
        w = [stats["weight/small"], stats["weight/big"]]
        assert sum(w) == pytest.approx(2.0, abs=1e-5) and all(1e-4 <= v <= 10.0 for v in w)


def test_first_update_moves_each_log_weight_by_lr_against_the_l1_gradient() -> None:
    model = Toy()
    for reference in ("first", "mean"):
        gn = GradNorm(TASKS, lr=0.025, log_reg=0.0, reference=reference)
        losses = model.losses()
        norms = [torch.autograd.grad(losses[t], list(model.shared.parameters()), retain_graph=True) for t in TASKS]
        n = [math.sqrt(sum(float(g.pow(2).sum()) for g in grads)) for grads in norms]
        gn.balance(losses, list(model.shared.parameters()))
        # step 1: r~ = 1, so targets = G_ref; Adam's first step is -lr * sign(dL/ds_k) = -lr * sign(G_k - G_ref)
        g_ref = n[0] if reference == "first" else sum(n) / 2
        s = [-0.025 * (1 if nk > g_ref else -1 if nk < g_ref else 0) for nk in n]
        w = [math.exp(v) for v in s]
        expected = [2 * v / sum(w) for v in w]
        got = gn.weights()
        assert [got[t] for t in TASKS] == pytest.approx(expected, rel=1e-6)
        assert gn.stats()["grad_norm/big"] == pytest.approx(n[1], rel=1e-5)
        assert gn.stats()["target/big"] == pytest.approx(g_ref, rel=1e-5)


def test_balance_returns_weighted_loss_and_leaves_model_grads_alone() -> None:
    model, gn = Toy(), GradNorm(TASKS)
    with torch.no_grad():
        gn.log_weights.copy_(torch.tensor([0.3, -0.3]))
    w = gn.weights()
    losses = model.losses()
    total = gn.balance(losses, list(model.shared.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert total.item() == pytest.approx(w["small"] * losses["small"].item() + w["big"] * losses["big"].item())
    total.backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    (w["small"] * model.losses()["small"] + w["big"] * model.losses()["big"]).backward()
    for a, p in zip(got, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)
    assert gn.weights() != w  # updated after the loss was built


def test_no_update_in_eval_mode_or_without_grad_and_update_every() -> None:
    model, gn = Toy(), GradNorm(TASKS)
    before = gn.weights()
    gn.eval()
    gn.balance(model.losses(), list(model.shared.parameters()))
    gn.train()
    with torch.no_grad():
        gn.balance(model.losses(), list(model.shared.parameters()))
    assert gn.weights() == before and int(gn.steps) == 0
    sparse = GradNorm(TASKS, update_every=3)
    changes = []
    for _ in range(6):
        prev = sparse.weights()
        sparse.balance(model.losses(), list(model.shared.parameters()))
        changes.append(sparse.weights() != prev)
    assert changes == [True, False, False, True, False, False]


def test_weights_stay_clipped_and_sum_to_task_count_under_pressure() -> None:
    gn = GradNorm(["a", "b", "c"], lr=0.5, clip=(0.05, 2.0))
    shared = nn.Parameter(torch.ones(3))
    for _ in range(40):  # task "c" has a 1e4 larger gradient: its weight is pushed to the lower clip
        losses = {"a": shared[0] * 1.0, "b": shared[1] * 1.0, "c": shared[2] * 1e4}
        gn.balance(losses, [shared])
        w = gn.weights()
        assert sum(w.values()) == pytest.approx(3.0, rel=1e-6)
        assert all(0.05 - 1e-7 <= v <= 2.0 + 1e-6 for v in w.values())
    assert gn.weights()["c"] == pytest.approx(0.05, rel=1e-5)


def test_project_weights() -> None:
    w = project_weights(torch.tensor([100.0, 1.0, 1.0, 1e-9]), 4.0, 1e-4, 2.0)
    assert float(w.sum()) == pytest.approx(4.0, rel=1e-6)
    assert float(w[0]) == pytest.approx(2.0) and float(w[3]) == pytest.approx(1e-4)
    assert float(w[1]) == pytest.approx(float(w[2]))
    plain = project_weights(torch.tensor([1.0, 3.0]), 2.0, 1e-4, 10.0)
    torch.testing.assert_close(plain, torch.tensor([0.5, 1.5]))


def test_state_dict_round_trip_restores_behaviour() -> None:
    model_a, model_b = Toy(), Toy()
    gn_a = GradNorm(TASKS)
    _train(model_a, gn_a, 5)
    buffer = io.BytesIO()
    torch.save(gn_a.state_dict(), buffer)
    model_b.load_state_dict(model_a.state_dict())
    gn_b = GradNorm(TASKS)
    gn_b.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    assert torch.equal(gn_b.initial_losses, gn_a.initial_losses) and int(gn_b.steps) == 5
    hist_a, hist_b = _train(model_a, gn_a, 5), _train(model_b, gn_b, 5)
    assert hist_a == hist_b
    fresh = GradNorm(TASKS)  # without the optimiser state and L^0 the trajectory differs
    fresh.log_weights.data.copy_(gn_b.log_weights.data)
    model_c = Toy()
    model_c.load_state_dict(model_a.state_dict())
    assert _train(model_c, fresh, 1)[0] != _train(model_a, gn_a, 1)[0]
    with pytest.raises(ValueError, match="checkpoint tasks"):
        GradNorm(["big", "small"]).load_state_dict(gn_a.state_dict())


def test_fixed_weights_stay_fixed() -> None:
    model = Toy()
    fixed = FixedWeights(TASKS, {"big": 0.01})
    losses = model.losses()
    total = fixed.balance(losses, list(model.shared.parameters()))
    assert total.item() == pytest.approx(losses["small"].item() + 0.01 * losses["big"].item(), rel=1e-6)
    _train(model, fixed, 5)
    assert fixed.weights() == pytest.approx({"small": 1.0, "big": 0.01})
    restored = FixedWeights(TASKS)
    restored.load_state_dict(fixed.state_dict())
    assert restored.weights() == fixed.weights()
    with pytest.raises(ValueError, match="unknown task 'hsic'"):
        FixedWeights(TASKS, {"hsic": 2.0})


def test_build_balancer_and_input_errors() -> None:
    gn = build_balancer(GradNormConfig(alpha=0.5, lr=0.1, clip_min=0.01, clip_max=3.0, reference="first"), TASKS)
    assert isinstance(gn, GradNorm) and gn.alpha == 0.5 and gn.clip == (0.01, 3.0) and gn.reference == "first"
    assert gn.optimizer.param_groups[0]["lr"] == 0.1
    fixed = build_balancer(GradNormConfig(enabled=False, fixed_weights={"big": 0.5}), TASKS)
    assert isinstance(fixed, FixedWeights) and fixed.weights() == {"small": 1.0, "big": 0.5}
    model = Toy()
    with pytest.raises(KeyError, match="do not match the balancer's tasks"):
        gn.balance({"small": model.losses()["small"]}, list(model.shared.parameters()))
    with pytest.raises(ValueError, match="shared_params is empty"):
        gn.balance(model.losses(), [])
    with pytest.raises(ValueError, match="clip_min <= 1 <= clip_max"):
        GradNormConfig(clip_min=2.0)


def test_task_without_gradient_on_shared_params_gets_zero_norm() -> None:
    model, gn = Toy(), GradNorm(["small", "big", "const"])
    losses = {**model.losses(), "const": model.head1.weight.sum()}  # does not reach model.shared
    gn.balance(losses, list(model.shared.parameters()))
    assert gn.stats()["grad_norm/const"] == 0.0 and gn.stats()["grad_norm/small"] > 0


def test_zero_loss_task_sits_the_step_out() -> None:
    model = Toy()
    two, three = GradNorm(TASKS), GradNorm([*TASKS, "absent"])
    for step in range(3):
        losses = model.losses()
        two.balance(losses, list(model.shared.parameters()))
        three.balance({**losses, "absent": model.shared.weight.sum() * 0.0}, list(model.shared.parameters()))
        w2, w3 = two.weights(), three.weights()
        assert w3["small"] / w3["big"] == pytest.approx(w2["small"] / w2["big"], rel=1e-5)
        if step == 0:  # equal weights before the first update: the same L1 objective
            assert three.stats()["gradnorm_loss"] == pytest.approx(two.stats()["gradnorm_loss"], rel=1e-6)
        assert sum(w3.values()) == pytest.approx(3.0, rel=1e-6)


def test_update_after_backward_equals_balance_before() -> None:
    model_a, model_b = Toy(), Toy()
    gn_a, gn_b = GradNorm(TASKS, update_every=2), GradNorm(TASKS, update_every=2)
    opt_a, opt_b = (torch.optim.SGD(m.parameters(), lr=1e-4) for m in (model_a, model_b))
    needs_graph = []
    for _ in range(5):
        opt_a.zero_grad()
        gn_a.balance(model_a.losses(), list(model_a.shared.parameters())).backward()
        opt_a.step()
        losses = model_b.losses()
        opt_b.zero_grad()
        needs_graph.append(gn_b.will_update())
        gn_b.weighted_loss(losses).backward(retain_graph=needs_graph[-1])
        gn_b.update(losses, list(model_b.shared.parameters()))
        opt_b.step()
        assert gn_a.weights() == gn_b.weights()
    assert needs_graph == [True, False, True, False, True]
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert not FixedWeights(TASKS).will_update()
