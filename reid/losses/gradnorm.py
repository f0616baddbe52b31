"""Task balancing: GradNorm (paper eqs. 5-6) learning the loss weights, or fixed weights."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from reid.losses.config import GradNormConfig

logger = logging.getLogger(__name__)


class GradNorm(nn.Module):
    r"""GradNorm task weights :math:`w_k = \exp(s_k)` trained to balance per-task gradient norms.

    Eq. 6 writes one total, :math:`\mathcal{L}_{Total} = \sum_k w_k \mathcal{L}_k
    + \alpha \mathcal{L}_{GradNorm} + \lambda \sum_k (\log w_k)^2`. As in GradNorm, its parts train
    different parameters:

    - **the model** receives :math:`\sum_k \bar w_k \mathcal{L}_k` with the weights as constants
      (``weighted_loss``/``balance`` return it; the caller runs ``loss.backward()`` / ``engine.backward``);
    - **the weights** :math:`s_k` receive only :math:`\mathcal{L}_{GradNorm} + \lambda \sum_k s_k^2`,
      minimised by their own Adam optimiser inside ``update`` (the first term would only shrink them).

    Eq. 5: :math:`\mathcal{L}_{GradNorm} = \sum_k | G_k - \tilde r_k^{\alpha} G_{ref} |` with
    :math:`G_k = \|\nabla_\theta (w_k \mathcal{L}_k)\|_2 = w_k \|\nabla_\theta \mathcal{L}_k\|_2` on the
    shared parameters :math:`\theta` (the last shared layer), :math:`r_k = \mathcal{L}_k / \mathcal{L}_k^0`,
    :math:`\tilde r_k = r_k / \operatorname{mean}_j r_j`, and the targets :math:`\tilde r_k^\alpha G_{ref}`
    held constant. :math:`\alpha` (1.5) is the exponent of the targets; the L1 term has unit strength
    (eq. 6 reuses the symbol in front of it). :math:`\mathcal{L}_k^0` is the first positive value seen
    for task k (until then :math:`r_k = 1`).

    :math:`G_{ref}` is :math:`\operatorname{mean}_k G_k` (``reference="mean"``, the original GradNorm, the
    default) or :math:`G_1` (``"first"``, the paper's wording). With ``"first"`` the first task's target
    is :math:`\tilde r_1^\alpha G_1`, so its weight follows only the sign of :math:`1 - \tilde r_1`, never
    the gradient balance: on a two-task toy with a x100 loss scale it pushed the large task's weight
    towards the lower clip while that task's gap to its target grew, where ``"mean"`` converged.

    ``fixed`` names terms that are summed with constant weights and never balanced (the gate regulariser
    by default): :meth:`weighted_loss` adds them, :meth:`update` leaves them out.

    A task whose loss is 0 on a step (e.g. a batch without clothing descriptions) sits that step out:
    it is left out of the L1 sum, of the mean ratio and of :math:`G_{ref}`. After each step the weights
    are rescaled by one common factor so that :math:`\sum_k w_k = K` with each in ``clip`` (both hold
    exactly: the factor is solved for).

    The norms come from ``torch.autograd.grad(L_k, shared_params, retain_graph=True)``: no ``.grad``
    of a model parameter is read or written and no backward runs through the model for GradNorm.
    Two ways to call it:

    - plain PyTorch: ``loss = balance(losses, shared)`` (update first), then ``loss.backward()``;
    - **DeepSpeed** (ZeRO 0-2), or anywhere: ``loss = weighted_loss(losses)``;
      ``engine.backward(loss, retain_graph=will_update())``; ``update(losses, shared)``;
      ``engine.step()``. DeepSpeed 0.19 hooks the engine's forward outputs: the first backward
      traversal of them after a forward, ``autograd.grad`` included, starts its backward bookkeeping
      and queues its gradient reduction (which fails with no gradients, and ZeRO-0 refuses it), so the
      per-task gradients must come after ``engine.backward``. They must come before ``engine.step()``
      (the retained graph holds the pre-step parameters). DeepSpeed's hooks divide these gradients by
      the accumulation steps, for every task alike, which leaves the balance unchanged.

    ZeRO-3 partitions parameters and is refused. Under ``torch.distributed`` the loss values and norms
    are averaged over ranks before the update, so every rank holds the same weights (every rank must
    call ``update``/``balance`` on the same steps).
    """

    def __init__(self, task_names: Sequence[str], alpha: float = 1.5, lr: float = 0.025,
                 clip: tuple[float, float] = (1e-4, 10.0), log_reg: float = 1e-3,
                 reference: Literal["first", "mean"] = "mean", update_every: int = 1,
                 fixed: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.task_names = _check_names(task_names)
        self.fixed = _check_fixed(fixed, self.task_names)
        if not 0 < clip[0] <= 1.0 <= clip[1]:
            raise ValueError(f"GradNorm: clip must satisfy 0 < low <= 1 <= high, got {clip}")
        if reference not in ("first", "mean"):
            raise ValueError(f"GradNorm: reference must be 'first' or 'mean', got {reference!r}")
        if update_every < 1:
            raise ValueError(f"GradNorm: update_every must be >= 1, got {update_every}")
        self.alpha, self.clip, self.log_reg = float(alpha), (float(clip[0]), float(clip[1])), float(log_reg)
        self.reference, self.update_every = reference, int(update_every)
        k = len(self.task_names)
        self.log_weights = nn.Parameter(torch.zeros(k))
        self.register_buffer("initial_losses", torch.zeros(k))
        self.register_buffer("has_initial", torch.zeros(k, dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.optimizer = torch.optim.Adam([self.log_weights], lr=lr)
        self.last_stats: dict[str, float] = {}
        self._warned: set[str] = set()

    def weights(self) -> dict[str, float]:
        """Current task weights ``{name: w_k}`` (and the constant weights of the ``fixed`` terms)."""
        return {**dict(zip(self.task_names, self.log_weights.detach().exp().tolist(), strict=True)), **self.fixed}

    def weighted_loss(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The model loss ``sum_k w_k.detach() * L_k`` (first term of eq. 6, weights constant) plus the
        ``fixed`` terms at their constant weights.

        losses: ``{name: scalar}`` with exactly this balancer's task and fixed names.
        """
        balanced = weighted_sum(_ordered(losses, self.task_names, self.fixed), self.log_weights.detach().exp())
        return _plus_fixed(balanced, losses, self.fixed)

    def will_update(self) -> bool:
        """Whether the next :meth:`update` computes gradients (then the graph must still be alive)."""
        return self.training and torch.is_grad_enabled() and int(self.steps) % self.update_every == 0

    def update(self, losses: Mapping[str, Tensor], shared_params: Iterable[Tensor]) -> None:
        """One GradNorm step on the weights from the per-task gradient norms on ``shared_params``.

        losses: the same ``{name: scalar}`` as given to :meth:`weighted_loss`, still attached to the
        graph; shared_params: the last shared layer's parameters (the theta of eq. 5). In training mode
        with grad enabled it runs on every ``update_every``-th call (the others only count); otherwise
        it does nothing.
        """
        if not (self.training and torch.is_grad_enabled()):
            return
        if self.will_update():
            self._update(_ordered(losses, self.task_names, self.fixed), list(shared_params))
        self.steps += 1

    def balance(self, losses: Mapping[str, Tensor], shared_params: Iterable[Tensor]) -> Tensor:
        """:meth:`weighted_loss`, then :meth:`update`: the loss uses the weights from before the update.

        For plain PyTorch (the caller then runs ``loss.backward()``); under DeepSpeed call the two
        separately around ``engine.backward`` (see the class).
        """
        total = self.weighted_loss(losses)
        self.update(losses, shared_params)
        return total

    def stats(self) -> dict[str, float]:
        """Scalars for logging: each weight, and after an update each gradient norm, target and the L1 loss."""
        out = {f"weight/{name}": value for name, value in self.weights().items()}
        return {**out, **self.last_stats}

    def _update(self, losses: list[Tensor], params: list[Tensor]) -> None:
        _check_shared(params)
        norms = torch.stack([self._grad_norm(name, loss, params) for name, loss in zip(self.task_names, losses,
                                                                                         strict=True)])
        values = torch.stack([loss.detach().float() for loss in losses])
        values, norms = _all_reduce_mean(torch.cat([values, norms.to(values.device)])).chunk(2)
        values, norms = values.to(self.log_weights.device), norms.to(self.log_weights.device)
        if not (torch.isfinite(values).all() and torch.isfinite(norms).all()):
            logger.warning("GradNorm: non-finite loss or gradient norm %s / %s; weights not updated",
                           values.tolist(), norms.tolist())
            return
        active = values > 0
        if not bool(active.any()):
            return
        self._record_initial(values)
        ratio = torch.where(self.has_initial, values / self.initial_losses.clamp_min(1e-12), torch.ones_like(values))
        targets, g = self._targets_and_norms(ratio, norms, active)
        l1 = torch.where(active, (g - targets).abs(), torch.zeros_like(g)).sum()
        objective = l1 + self.log_reg * self.log_weights.pow(2).sum()
        self.optimizer.zero_grad(set_to_none=True)
        (self.log_weights.grad,) = torch.autograd.grad(objective, [self.log_weights])
        self.optimizer.step()
        with torch.no_grad():
            self.log_weights.copy_(project_weights(self.log_weights.exp(), float(len(losses)), *self.clip).log())
        self.last_stats = {"gradnorm_loss": float(l1.detach())}
        for name, norm, target in zip(self.task_names, g.detach().tolist(), targets.tolist(), strict=True):
            self.last_stats[f"grad_norm/{name}"] = norm
            self.last_stats[f"target/{name}"] = target

    def _targets_and_norms(self, ratio: Tensor, norms: Tensor, active: Tensor) -> tuple[Tensor, Tensor]:
        """Constant targets r~_k^alpha G_ref [K] and the weighted norms G_k = w_k ||grad L_k|| [K] (with grad).

        Means (of r and, for ``"mean"``, of G) and the ``"first"`` task run over the active tasks only.
        """
        g = self.log_weights.exp() * norms
        g_active = g.detach()[active]
        g_ref = g_active[0] if self.reference == "first" else g_active.mean()
        return g_ref * (ratio / ratio[active].mean()).pow(self.alpha), g

    def _record_initial(self, values: Tensor) -> None:
        new = ~self.has_initial & (values > 0)
        self.initial_losses[new] = values[new]
        self.has_initial |= new

    def _grad_norm(self, name: str, loss: Tensor, params: list[Tensor]) -> Tensor:
        if not loss.requires_grad:
            return self._no_gradient(name, loss)
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        if not squares:
            return self._no_gradient(name, loss)
        return torch.stack(squares).sum().sqrt()

    def _no_gradient(self, name: str, loss: Tensor) -> Tensor:
        if name not in self._warned:
            self._warned.add(name)
            logger.warning("GradNorm: loss '%s' does not reach the shared parameters; its gradient norm is 0", name)
        return torch.zeros((), device=loss.device)

    def get_extra_state(self) -> dict[str, Any]:
        return {"task_names": list(self.task_names), "optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if list(state["task_names"]) != list(self.task_names):  # a checkpoint from before a task moved
            raise ValueError(f"GradNorm.load_state_dict: checkpoint tasks {state['task_names']} differ from "
                             f"{list(self.task_names)}")
        self.optimizer.load_state_dict(state["optimizer"])


class FixedWeights(nn.Module):
    """Constant task weights (the fixed-weights option) with the :class:`GradNorm` interface."""

    def __init__(self, task_names: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.task_names = _check_names(task_names)
        given = dict(weights or {})
        unknown = sorted(set(given) - set(self.task_names))
        if unknown:
            raise ValueError(f"FixedWeights: weight for unknown task '{unknown[0]}' (tasks: {list(self.task_names)})")
        values = [float(given.get(name, 1.0)) for name in self.task_names]
        self.register_buffer("fixed", torch.tensor(values))

    def weights(self) -> dict[str, float]:
        """The constant weights ``{name: w_k}``."""
        return dict(zip(self.task_names, self.fixed.tolist(), strict=True))

    def weighted_loss(self, losses: Mapping[str, Tensor]) -> Tensor:
        """``sum_k w_k * L_k`` with the constant weights."""
        return weighted_sum(_ordered(losses, self.task_names), self.fixed)

    def will_update(self) -> bool:
        """Always False: nothing needs the graph after backward."""
        return False

    def update(self, losses: Mapping[str, Tensor], shared_params: Iterable[Tensor] = ()) -> None:
        """Nothing to update."""

    def balance(self, losses: Mapping[str, Tensor], shared_params: Iterable[Tensor] = ()) -> Tensor:
        """:meth:`weighted_loss`; ``shared_params`` is ignored."""
        return self.weighted_loss(losses)

    def stats(self) -> dict[str, float]:
        """The weights, keyed ``weight/<task>``."""
        return {f"weight/{name}": value for name, value in self.weights().items()}


def build_balancer(cfg: GradNormConfig, task_names: Sequence[str],
                   fixed: Mapping[str, float] | None = None) -> GradNorm | FixedWeights:
    """GradNorm over ``task_names`` from ``cfg`` when ``cfg.enabled`` (``fixed`` terms at constant weights),
    else :class:`FixedWeights` over both, ``cfg.fixed_weights`` overriding ``fixed``'s weights."""
    if not cfg.enabled:
        return FixedWeights([*task_names, *(fixed or {})], {**(fixed or {}), **cfg.fixed_weights})
    return GradNorm(task_names, alpha=cfg.alpha, lr=cfg.lr, clip=(cfg.clip_min, cfg.clip_max),
                    log_reg=cfg.log_reg, reference=cfg.reference, update_every=cfg.update_every, fixed=fixed)


def project_weights(w: Tensor, total: float, low: float, high: float, iters: int = 100) -> Tensor:
    """``clip(c * w, low, high)`` [K] with the one factor c > 0 that makes it sum to ``total``.

    w: [K] positive. Bisection on log c; needs ``K * low <= total <= K * high``.
    """
    w64 = w.detach().double().clamp_min(1e-300)
    lo, hi = math.log(low) - float(w64.max().log()), math.log(high) - float(w64.min().log())
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if float((w64 * math.exp(mid)).clamp(low, high).sum()) < total:
            lo = mid
        else:
            hi = mid
    return (w64 * math.exp(0.5 * (lo + hi))).clamp(low, high).to(w.dtype)


def weighted_sum(losses: list[Tensor], weights: Tensor) -> Tensor:
    """``sum_k weights[k] * losses[k]`` with constant weights [K] moved to each loss's device and dtype."""
    terms = [weights[i].detach().to(loss.device, loss.dtype) * loss for i, loss in enumerate(losses)]
    return sum(terms[1:], terms[0])


def _ordered(losses: Mapping[str, Tensor], names: tuple[str, ...],
             fixed: Mapping[str, float] | None = None) -> list[Tensor]:
    """The losses of ``names`` in order; ``losses`` must hold exactly ``names`` and the ``fixed`` terms."""
    expected = set(names) | set(fixed or {})
    if set(losses) != expected:
        raise KeyError(f"balance: losses {sorted(losses)} do not match the balancer's tasks {sorted(expected)}")
    for name in expected:
        if not isinstance(losses[name], Tensor) or losses[name].numel() != 1:
            raise ValueError(f"balance: loss '{name}' must be a scalar tensor")
    return [losses[name].reshape(()) for name in names]


def _plus_fixed(total: Tensor, losses: Mapping[str, Tensor], fixed: Mapping[str, float]) -> Tensor:
    """``total + sum_f fixed[f] * losses[f]``."""
    for name, weight in fixed.items():
        total = total + weight * losses[name].reshape(())
    return total


def _check_fixed(fixed: Mapping[str, float] | None, names: tuple[str, ...]) -> dict[str, float]:
    out = {name: float(weight) for name, weight in (fixed or {}).items()}
    both = sorted(set(out) & set(names))
    if both:
        raise ValueError(f"GradNorm: '{both[0]}' is both a balanced task and a fixed-weight term")
    return out


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"task names must be non-empty and unique, got {list(names)}")
    return names


def _check_shared(params: list[Tensor]) -> None:
    if not params:
        raise ValueError("GradNorm: shared_params is empty; pass the last shared layer's parameters")
    for i, p in enumerate(params):
        if not p.requires_grad:
            raise ValueError(f"GradNorm: shared_params[{i}] does not require grad")
        if p.numel() == 0 or hasattr(p, "ds_tensor"):
            raise ValueError(f"GradNorm: shared_params[{i}] is partitioned (DeepSpeed ZeRO-3?); "
                             "per-task gradients need whole parameters (ZeRO 0-2)")


def _all_reduce_mean(x: Tensor) -> Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return x
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / dist.get_world_size()
