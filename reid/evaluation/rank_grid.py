"""A rank-list grid for N queries: the query text, then its top-K gallery images framed green (same
person) or red (another person)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from reid.evaluation.figures import save_figure
from reid.storage.config import StorageConfig

RIGHT = "#00aa00"
WRONG = "#dd0000"
UNKNOWN = "#999999"
WRAP, MAX_LINES = 34, 9  # characters per line and lines of query text that fit the text column at fontsize 8


def wrap_query(query: str) -> str:
    """The query wrapped to the text column, at most :data:`MAX_LINES` lines (the last ending in "...")."""
    lines = textwrap.wrap(query, WRAP, break_long_words=True) or [""]
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES]
        lines[-1] = lines[-1][: WRAP - 3] + "..."
    return "\n".join(lines)


def plot_rank_grid(
    queries: Sequence[str],
    thumbnails: Sequence[Sequence[np.ndarray]],
    path: str,
    correct: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    dpi: int = 100,
    storage: StorageConfig | None = None,
    title: str | None = None,
) -> list[list[str]]:
    """Draw one row per query: wrapped text, then ``thumbnails[i][k]`` (uint8 ``[3, H, W]``) in rank order.

    ``correct`` bool ``[N, K]`` colours the frames (grey when None); ``scores`` ``[N, K]`` titles them;
    ``title`` (e.g. which gallery was ranked) heads the figure.
    The figure is ``(3 + 0.9 K) x 1.8 N`` inches at ``dpi``. Returns the frame colour of every cell.
    """
    n = len(queries)
    if n == 0 or len(thumbnails) != n:
        raise ValueError(f"need one thumbnail row per query: {n} queries, {len(thumbnails)} rows")
    k = len(thumbnails[0])
    if k == 0 or any(len(row) != k for row in thumbnails):
        raise ValueError("every query needs the same, non-zero number of thumbnails")
    for name, array in (("correct", correct), ("scores", scores)):
        if array is not None and np.shape(array) != (n, k):
            raise ValueError(f"{name} must be [{n}, {k}], got {np.shape(array)}")
    fig = Figure(figsize=(3 + 0.9 * k, 1.8 * n), dpi=dpi)
    if title:
        fig.suptitle(title, fontsize=9)
    grid = fig.add_gridspec(n, k + 1, width_ratios=[3.0] + [0.9] * k, wspace=0.08, hspace=0.25)
    colours = []
    for i, query in enumerate(queries):
        text_ax = fig.add_subplot(grid[i, 0])
        text_ax.axis("off")
        text_ax.text(0.0, 0.5, wrap_query(query), va="center", ha="left", fontsize=8, clip_on=True)
        row = []
        for j, thumb in enumerate(thumbnails[i]):
            thumb = np.asarray(thumb)
            if thumb.ndim != 3 or thumb.shape[0] != 3 or thumb.dtype != np.uint8:
                raise ValueError(f"thumbnail [{i}][{j}] must be uint8 [3, H, W], got {thumb.dtype} {thumb.shape}")
            ax = fig.add_subplot(grid[i, j + 1])
            ax.imshow(thumb.transpose(1, 2, 0))
            ax.set_xticks([])
            ax.set_yticks([])
            colour = UNKNOWN if correct is None else (RIGHT if correct[i][j] else WRONG)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            if scores is not None:
                ax.set_title(f"{j + 1}: {float(scores[i][j]):.2f}", fontsize=7)
            row.append(colour)
        colours.append(row)
    save_figure(fig, path, storage)
    return colours
