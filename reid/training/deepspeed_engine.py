"""A DeepSpeed engine (ZeRO 0-3, fp32/bf16; CPU accelerator over gloo or GPUs over NCCL) behind :class:`Engine`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

CHECKPOINT_TAG = "state"


def deepspeed_config(micro_batch: int, zero_stage: int, precision: str, grad_clip: float) -> dict[str, Any]:
    """The DeepSpeed JSON config for one micro-batch per step (no gradient accumulation).

    ``grad_clip`` is the max global gradient norm (``optim.grad_clip``); 0 disables clipping.
    """
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(micro_batch),
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": int(zero_stage)},
        "bf16": {"enabled": precision == "bf16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1_000_000_000,
        "wall_clock_breakdown": False,
        "gradient_clipping": float(grad_clip),  # DeepSpeed's own default clips at 1.0; 0 disables it
    }
    return config


class DeepSpeedEngine:
    """``deepspeed.initialize`` of a model with a torch optimiser and scheduler (stepped by the engine).

    Every rank must call :meth:`save` (ZeRO writes one optimiser shard per rank) and :meth:`load`.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, config: Mapping[str, Any],
                 rebuild: Callable[[], nn.Module] | None = None) -> None:
        import deepspeed

        self.rebuild = rebuild  # a fresh model of the same architecture (ZeRO-3's whole_module)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=dict(config),
        )
        self.module = self.engine.module
        self.zero_stage = int(dict(config).get("zero_optimization", {}).get("stage", 0))
        self.bf16 = bool(dict(config).get("bf16", {}).get("enabled", False))

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return self.engine(batch)

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """``engine.backward``; ``retain_graph`` keeps the graph for GradNorm's per-task norms after it."""
        self.engine.backward(loss, retain_graph=retain_graph)

    def step(self) -> None:
        self.engine.step()

    def learning_rate(self) -> float:
        return float(self.engine.get_lr()[0])

    @contextlib.contextmanager
    def whole_module(self) -> Iterator[nn.Module]:
        """The model with whole fp32 weights, for validation and the best-model export (entered by every rank).

        fp32 at stages 0-2: ``module`` itself. bf16 at stages 0-2: a fresh fp32 model from ``rebuild`` holding
        the optimiser's fp32 master weights (each gathered from the ranks' partitions, a collective), not the
        bf16 copies the forward uses, so the exported checkpoint keeps full precision. ZeRO-3: every rank
        gathers the parameters and copies them into a fresh model (used instead of ``module`` because ZeRO-3's
        forward hooks partition a module's parameters again after each of its forwards); with bf16 these are
        the bf16 values, upcast.
        """
        if self.zero_stage < 3 and not self.bf16:
            yield self.module
            return
        if self.rebuild is None:
            raise RuntimeError("ZeRO-3 and bf16 evaluation need DeepSpeedEngine(rebuild=...) to hold a whole copy")
        state = self._master_state() if self.zero_stage < 3 else self._gathered_state()
        device = next(iter(state.values())).device
        copy = self.rebuild().to(device)
        copy.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        copy.train(self.module.training)
        yield copy

    def _gathered_state(self) -> dict[str, torch.Tensor]:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
            return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def _master_state(self) -> dict[str, torch.Tensor]:
        """The state dict with every trained parameter replaced by its fp32 master copy (frozen ones, which the
        optimiser does not hold, and buffers as they are)."""
        from deepspeed.utils import safe_get_full_fp32_param

        state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        for name, param in self.module.named_parameters():
            master = safe_get_full_fp32_param(param) if param.requires_grad else None
            if master is not None:
                state[name] = master.detach().clone().to(state[name].device)
        return state

    def save(self, directory: str, client_state: Mapping[str, Any]) -> None:
        """``engine.save_checkpoint``: model, ZeRO optimiser shards, scheduler and ``client_state``."""
        self.engine.save_checkpoint(directory, tag=CHECKPOINT_TAG, client_state=dict(client_state))

    def load(self, directory: str) -> dict[str, Any]:
        """``engine.load_checkpoint`` of :meth:`save`'s directory; returns the client state."""
        path, client = self.engine.load_checkpoint(directory, tag=CHECKPOINT_TAG)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint '{CHECKPOINT_TAG}' under {directory}")
        return dict(client or {})
