"""The small interface the training loop runs against, and a plain single-process implementation."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

logger = logging.getLogger(__name__)


class TrainContext(Protocol):
    """What the loop needs from its runner (Ray Train or a plain process).

    ``restored_checkpoint()`` is a context manager yielding a local directory holding the state to resume from
    (or None); every rank enters it, and the files stay complete and unchanged until every rank has left it.
    ``report(metrics, checkpoint_dir)`` is called by every rank at the end of each epoch with the same
    metrics; ``checkpoint_dir`` (a local directory every rank wrote its part into) is persisted by the
    runner before the call returns, and may be deleted afterwards.
    """

    world_rank: int
    world_size: int
    device: torch.device

    def restored_checkpoint(self) -> contextlib.AbstractContextManager[str | None]: ...

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class LocalContext:
    """One process, no Ray: checkpoints are copied to ``<root>/epoch-NNNN``; reports are kept in memory.

    ``resume_from`` is a directory written by an earlier run's :meth:`report` (see :meth:`latest`).
    """

    root: Path
    resume_from: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    world_rank: int = 0
    world_size: int = 1
    reports: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[str | None]:
        yield self.resume_from

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is None:
            return
        target = Path(self.root) / f"epoch-{int(metrics['epoch']):04d}"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(checkpoint_dir, target)
        self.checkpoints.append(str(target))
        logger.info("checkpoint of epoch %d at %s", int(metrics["epoch"]), target)

    def should_stop(self) -> bool:
        return False

    @staticmethod
    def latest(root: Path) -> str | None:
        """The newest ``epoch-NNNN`` checkpoint directory under ``root``, or None."""
        found = sorted(Path(root).glob("epoch-*"))
        return str(found[-1]) if found else None
