"""The paper's analysis pictures as PNGs (matplotlib Agg): BDAM gate histograms (Fig. 3a), fusion
modality weights (Fig. 3b) and t-SNE of identity vs clothing features (Fig. 4).

Each function takes arrays and a path or URI, writes the PNG and returns what it plotted.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reid.storage import resolve, write_bytes
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)


def save_figure(fig: Figure, path: str, storage: StorageConfig | None = None) -> tuple[int, int]:
    """Render ``fig`` with the Agg canvas, write it as PNG to ``path`` and return its ``(width, height)``."""
    canvas = FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    write_bytes(resolve(path, storage), buffer.getvalue())
    width, height = canvas.get_width_height()
    return int(width), int(height)


def plot_gate_histograms(
    identity_weights: np.ndarray, path: str, clothing_weights: np.ndarray | None = None, bins: int = 50,
    storage: StorageConfig | None = None,
) -> dict[str, np.ndarray]:
    """The BDAM gate's identity weights ``g`` as one histogram (paper Fig. 3a); the clothing weights are
    ``1 - g``, so their histogram is the mirror image and is not drawn (their mean is in the title).

    ``g = sigmoid(W [f_id; f_clo] + b)`` of any shape (e.g. ``[B, D]``), flattened; ``clothing_weights``
    defaults to ``1 - g``. Returns ``{"edges": [bins + 1], "identity": [bins], "clothing": [bins]}``.
    """
    identity = _unit_interval(identity_weights, "identity_weights")
    clothing = 1.0 - identity if clothing_weights is None else _unit_interval(clothing_weights, "clothing_weights")
    title = (f"BDAM gate (paper Fig. 3a), {identity.size} feature weights\n"
             f"identity g: mean {identity.mean():.2f}    clothing 1 - g: mean {clothing.mean():.2f}")
    edges = _histogram(identity, "identity weight g per feature dimension", title, path, bins, storage)
    return {"edges": edges, "identity": np.histogram(identity, bins=edges)[0],
            "clothing": np.histogram(clothing, bins=edges)[0]}


def plot_modality_weights(
    image_weights: np.ndarray, path: str, text_weights: np.ndarray | None = None, bins: int = 50,
    storage: StorageConfig | None = None, has_description: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The fusion gate's image weight ``w_img`` over the gallery images that have a description, as one
    histogram (paper Fig. 3b; ``w_txt = 1 - w_img``). Images without one run image-only (``w_img = 1``) and
    are counted in the title, not drawn. Returns ``{"edges", "image", "text"}`` (counts of the drawn images).
    """
    image = _unit_interval(image_weights, "image_weights")
    text = 1.0 - image if text_weights is None else _unit_interval(text_weights, "text_weights")
    keep = np.ones(image.shape, dtype=bool) if has_description is None else np.asarray(has_description, dtype=bool)
    drawn = image[keep]
    if drawn.size:
        title = (f"fusion modality gate (paper Fig. 3b), {drawn.size} gallery images with a description\n"
                 f"image w_img: mean {drawn.mean():.2f}    text w_txt = 1 - w_img: mean {1 - drawn.mean():.2f}")
    else:
        title = "no gallery image has a description: the fusion ran image-only (w_img = 1)"
    if (~keep).any():
        title += f"\n{int((~keep).sum())} images without a description (image-only, w_img = 1) not drawn"
    edges = _histogram(drawn, "image weight w_img (text weight = 1 - w_img)", title, path, bins, storage)
    return {"edges": edges, "image": np.histogram(drawn, bins=edges)[0],
            "text": np.histogram(text[keep], bins=edges)[0]}


def plot_tsne(
    identity_features: np.ndarray, clothing_features: np.ndarray, person_ids: np.ndarray, path: str,
    max_identities: int = 10, seed: int = 0, storage: StorageConfig | None = None,
    gallery_embeddings: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """t-SNE of gated identity features ``[N, D]`` and clothing features ``[N, D]`` side by side, coloured
    by person, for the first ``max_identities`` persons in ``person_ids`` order (paper Fig. 4); with
    ``gallery_embeddings [N, E]`` (what retrieval ranks: the fused image + description) a third panel.

    Returns ``{"person_ids": [n], "identity": [n, 2], "clothing": [n, 2]}`` (and ``"gallery"``) of the points.
    """
    from sklearn.manifold import TSNE

    ident = np.asarray(identity_features, dtype=np.float64)
    cloth = np.asarray(clothing_features, dtype=np.float64)
    pids = np.asarray(person_ids)
    if ident.ndim != 2 or cloth.shape[0] != ident.shape[0] or cloth.ndim != 2 or len(pids) != len(ident):
        raise ValueError(f"need identity [N, D], clothing [N, D'] and person_ids [N]; got {ident.shape}, "
                         f"{cloth.shape}, {pids.shape}")
    panels = {"identity": ident, "clothing": cloth}
    titles = {"identity": "identity branch f_id_gate", "clothing": "clothing branch f_clo_gate",
              "gallery": "gallery embedding (image + description)"}
    if gallery_embeddings is not None:
        gallery = np.asarray(gallery_embeddings, dtype=np.float64)
        if gallery.ndim != 2 or len(gallery) != len(ident):
            raise ValueError(f"gallery_embeddings must be [N={len(ident)}, E], got {gallery.shape}")
        panels["gallery"] = gallery
    chosen = list(dict.fromkeys(pids.tolist()))[:max_identities]
    keep = np.isin(pids, chosen)
    if keep.sum() < 5:
        raise ValueError(f"t-SNE needs at least 5 points of the chosen persons, got {int(keep.sum())}")
    perplexity = float(min(30.0, (keep.sum() - 1) / 3))
    coords = {}
    for name, feats in panels.items():
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        coords[name] = tsne.fit_transform(feats[keep])
    fig = Figure(figsize=(5 * len(panels), 4.5))
    for i, name in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for pid in chosen:
            sel = pids[keep] == pid
            ax.scatter(coords[name][sel, 0], coords[name][sel, 1], s=14, label=str(pid))
        ax.set_title(titles[name], fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.axes[-1].legend(title="person", fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    save_figure(fig, path, storage)
    return {"person_ids": pids[keep], **coords}


def plot_probes(report: dict[str, float], path: str, storage: StorageConfig | None = None,
                title: str = "what each feature encodes (dashed: chance)") -> dict[str, float]:
    """Bars of the attribute-probe accuracies of :func:`reid.evaluation.probes.probe_report`: one group of bars
    per feature (identity branch, clothing branch, or the baseline's pooled feature), one bar per attribute
    group, each group's chance level as a dashed line. Returns the plotted values."""
    names = {"id": "identity branch f_id_gate", "clo": "clothing branch f_clo_gate", "pooled": "pooled feature"}
    features = [f for f in names if f"probe/id_from_{f}" in report]
    if not features:
        raise ValueError(f"no probe accuracies in {sorted(report)}")
    groups = (("id", "identity attributes", "tab:blue"), ("clo", "clothing attributes", "tab:orange"))
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(features))
    plotted = {}
    for i, (group, label, colour) in enumerate(groups):
        values = [report[f"probe/{group}_from_{f}"] for f in features]
        bars = ax.bar(x + (i - 0.5) * 0.38, values, width=0.36, label=label, color=colour)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.axhline(report[f"probe/chance_{group}"], color=colour, linestyle="--", linewidth=1)
        plotted.update({f"{group}_from_{f}": v for f, v in zip(features, values, strict=True)})
    ax.set_xticks(x, [names[f] for f in features])
    ax.set_ylim(0, 105)
    ax.set_ylabel("probe accuracy on held-out people (%)")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    save_figure(fig, path, storage)
    return plotted


def _unit_interval(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.all((array >= 0.0) & (array <= 1.0)):
        raise ValueError(f"{what} must lie in [0, 1]; found values in [{array.min()}, {array.max()}]")
    return array


def _histogram(values: np.ndarray, xlabel: str, title: str, path: str, bins: int,
               storage: StorageConfig | None) -> np.ndarray:
    """One histogram on [0, 1] with its mean as a dashed line; returns the bin edges."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(values, bins=edges, color="tab:blue")
    if values.size:
        ax.axvline(float(values.mean()), color="black", linestyle="--", linewidth=1)
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, storage)
    return edges
