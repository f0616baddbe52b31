"""A Ray Train checkpoint made readable on a worker: downloaded once per node, read by every rank of the node, then
removed, with no rank reading a file another process is writing or deleting.

Why not ``Checkpoint.to_directory()``: without a path it downloads into a temporary directory named by the
checkpoint's id, shared by every process of the node, under a file lock taken with timeout 0. A rank that arrives
after another rank's download has finished finds the lock free and downloads again *into the same directory*,
truncating and rewriting the files the first rank is reading (DeepSpeed's loader then fails with
"PytorchStreamReader failed reading file data/0: file read failed"). Here the node's first local rank downloads
into a fresh directory while the other local ranks wait at a barrier; all read; a second barrier; then the first
local rank removes the directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow.fs

logger = logging.getLogger(__name__)

STAGING_PREFIX = "reid-restore-"


def staging_directory(checkpoint: Any) -> str:
    """The node-local directory a checkpoint is downloaded into: the same for every rank of a node (derived from
    the checkpoint's storage path), different for different checkpoints."""
    digest = hashlib.sha256(f"{checkpoint.filesystem.type_name}:{checkpoint.path}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"{STAGING_PREFIX}{digest}")


@contextlib.contextmanager
def staged_checkpoint(checkpoint: Any, local_rank: int, barrier: Callable[[], None]) -> Iterator[str | None]:
    """A local directory holding ``checkpoint`` (a ``ray.train.Checkpoint`` or None) for as long as the block runs.

    Entered by every rank of the worker group (``barrier`` is a collective over all of them). A checkpoint on the
    local file system is read where it lies (nothing writes a persisted checkpoint). Otherwise local rank 0
    downloads it into :func:`staging_directory` (removing what an earlier, crashed attempt left there), every rank
    reads it, and local rank 0 removes it after every rank has left the block.
    """
    if checkpoint is None:
        yield None
        return
    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem) and os.path.isdir(checkpoint.path):
        yield checkpoint.path
        return
    directory = staging_directory(checkpoint)
    try:
        if local_rank == 0:
            shutil.rmtree(directory, ignore_errors=True)
            checkpoint.to_directory(directory)
            logger.info("downloaded checkpoint %s to %s", checkpoint.path, directory)
    finally:
        barrier()  # no rank reads before the node's download is complete
    try:
        yield directory
    finally:
        barrier()  # no rank removes the files before every rank has read them
        if local_rank == 0:
            shutil.rmtree(directory, ignore_errors=True)
