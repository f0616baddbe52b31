"""Training engines: how a loss becomes an optimiser step, and how that state is saved and restored."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

STATE_FILE = "engine_state.pt"


class Engine(Protocol):
    """A model with its optimiser and scheduler. ``module`` is the bare model (for evaluation/export)."""

    module: nn.Module

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]: ...

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None: ...

    def step(self) -> None: ...

    def learning_rate(self) -> float: ...

    def save(self, directory: str, client_state: Mapping[str, Any]) -> None: ...

    def load(self, directory: str) -> dict[str, Any]: ...

    def whole_module(self) -> contextlib.AbstractContextManager[nn.Module]:
        """The model with whole parameters for evaluation and export (``module`` itself, or under ZeRO-3 a
        gathered copy); a collective under ZeRO-3, so every rank must enter it."""
        ...


class TorchEngine:
    """A plain optimiser + scheduler; with several processes the gradients are averaged by all-reduce."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, grad_clip: float = 0.0) -> None:
        self.module, self.optimizer, self.scheduler, self.grad_clip = model, optimizer, scheduler, grad_clip
        if _world_size() > 1:
            for p in model.parameters():
                dist.broadcast(p.data, src=0)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return self.module(batch)

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """Gradients of ``loss``; ``retain_graph`` keeps the graph for GradNorm's per-task norms."""
        loss.backward(retain_graph=retain_graph)

    def step(self) -> None:
        """Average gradients over ranks, clip, step the optimiser and the scheduler, clear gradients."""
        world = _world_size()
        if world > 1:
            for p in self.module.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= world
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def whole_module(self) -> contextlib.AbstractContextManager[nn.Module]:
        """Every rank holds whole parameters already: ``module`` itself."""
        return contextlib.nullcontext(self.module)

    def save(self, directory: str, client_state: Mapping[str, Any]) -> None:
        """Rank 0 writes model, optimiser, scheduler and ``client_state`` to ``engine_state.pt``."""
        if _rank() != 0:
            return
        state = {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "client": dict(client_state)}
        torch.save(state, os.path.join(directory, STATE_FILE))

    def load(self, directory: str) -> dict[str, Any]:
        """Restore from :meth:`save`'s file (``weights_only=True``); returns the client state."""
        state = torch.load(os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return state["client"]


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
