"""The evaluation figures of a trained model on one split: BDAM gate histograms, t-SNE of the gated identity
and clothing features, fusion modality weights and a rank-list grid (paper Figs. 3-4)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from reid.evaluation.evaluator import SplitEmbeddings
from reid.evaluation.figures import plot_gate_histograms, plot_modality_weights, plot_probes, plot_tsne
from reid.evaluation.rank_grid import plot_rank_grid
from reid.evaluation.split_reader import iter_gallery_batches
from reid.storage import resolve

if TYPE_CHECKING:
    from reid.config import Config
    from reid.models.reid_model import ReidModel
    from reid.models.retrieval import TextImageEncoder

logger = logging.getLogger(__name__)

GRID_QUERIES, GRID_TOP = 4, 6


@dataclass
class SplitPictures:
    """Where the pictures of a split went (name -> URI) and the split's metrics (percent)."""

    directory: str
    files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    probes: dict[str, float] = field(default_factory=dict)


@dataclass
class _GalleryFeatures:
    pids: np.ndarray  # [Ng]
    thumbnails: list[np.ndarray]  # Ng x uint8 [3, H, W]
    gate: np.ndarray | None  # [Ng, D]
    f_id: np.ndarray | None  # [Ng, D]
    f_clo: np.ndarray | None  # [Ng, D]
    w_img: np.ndarray  # [Ng]
    has_description: np.ndarray  # [Ng] bool: the fusion read a description for this image


def save_split_pictures(model: ReidModel, config: Config, split: str, out_uri: str, tokenizer: Any,
                        device: torch.device | None = None) -> SplitPictures:
    """Evaluate ``model`` on ``split`` (as the validator does) and write ``gate.png``, ``modality.png``,
    ``tsne.png``, ``ranks.png`` and (with ground-truth attributes) ``probes.png`` under ``out_uri``. The gate,
    t-SNE pictures read the gallery images alone; the modality weights are the fusion's with each image's own
    description (as evaluation runs it); the probes are fitted on the training split's images and scored on
    ``split``'s.

    Pictures that do not apply (no BDAM, no gate) are left out. Returns their URIs and the metrics.
    """
    from reid.evaluation.evaluator import create_evaluator
    from reid.models.retrieval import TextImageEncoder

    device = device or next(model.parameters()).device
    model.eval()
    evaluator = create_evaluator(config, progress=False)
    encoder = TextImageEncoder(model, tokenizer, config.data.max_text_length, device,
                               batch_size=config.data.eval_batch_size)
    embeddings = evaluator.embed(encoder, split)
    result = evaluator.score(embeddings, split)
    out = SplitPictures(resolve(out_uri, config.storage).uri, metrics=dict(result.metrics))
    features = _gallery_features(model, config, split, device, encoder)
    name = out.directory.rstrip("/")
    if features.gate is not None:
        plot_gate_histograms(features.gate, f"{name}/gate.png", storage=config.storage)
        out.files["gate"] = f"{name}/gate.png"
    plot_modality_weights(features.w_img, f"{name}/modality.png", storage=config.storage,
                          has_description=features.has_description)
    out.files["modality"] = f"{name}/modality.png"
    if features.f_id is not None and features.f_clo is not None and len(features.pids) >= 5:
        plot_tsne(features.f_id, features.f_clo, features.pids, f"{name}/tsne.png", seed=config.seed,
                  storage=config.storage, gallery_embeddings=embeddings.gallery.numpy())
        out.files["tsne"] = f"{name}/tsne.png"
    _rank_grid(embeddings, features, f"{name}/ranks.png", config, split)
    out.files["ranks"] = f"{name}/ranks.png"
    if config.eval.probes:
        from reid.training.probing import run_probes

        out.probes = run_probes(model, config, device, "train", split)
        if out.probes:
            plot_probes(out.probes, f"{name}/probes.png", storage=config.storage)
            out.files["probes"] = f"{name}/probes.png"
    logger.info("pictures of %s under %s: %s", split, name, ", ".join(sorted(out.files)))
    return out


def _gallery_features(model: ReidModel, config: Config, split: str, device: torch.device,
                      encoder: TextImageEncoder) -> _GalleryFeatures:
    """Per gallery image: thumbnail, BDAM gate and gated features (when the model has them), and the fusion's
    modality weights with the image's admissible identity description (none: image-only, ``w_img = 1``)."""
    from reid.evaluation.descriptions import load_gallery_descriptions
    from reid.evaluation.split_reader import read_split_index

    index = read_split_index(config.data.uri, split, config.storage)
    descriptions = None
    if config.data.use_descriptions and model.fusion_uses_text:
        descriptions = load_gallery_descriptions(config.data.uri, index.image_ids, config.storage)
    texts = dict(zip(index.image_ids, descriptions or [None] * len(index.image_ids), strict=True))
    pids, thumbs, gates, ids, clos, w_img, has_desc = [], [], [], [], [], [], []
    batches = iter_gallery_batches(config.data.uri, split, tuple(config.data.image_size),
                                   config.data.eval_batch_size, config.storage)
    with torch.no_grad():
        for batch in batches:
            images = batch.images.to(device)
            tokens = model.image_encoder(model.normalize_images(images))
            id_tokens = tokens
            if model.bdam is not None:
                bdam = model.bdam(tokens)
                id_tokens = bdam.id_tokens
                ids.append(bdam.f_id_gate.float().cpu())
                clos.append(bdam.f_clo_gate.float().cpu())
                if bdam.gate is not None:
                    gates.append(bdam.gate.float().cpu())
            batch_texts = [texts[i] for i in batch.image_ids]
            has = torch.tensor([t is not None for t in batch_texts], dtype=torch.bool)
            if has.any():
                desc_ids, desc_mask = encoder.tokenize([t or "" for t in batch_texts])
                desc_mask = desc_mask * has[:, None]
                desc_tokens, _ = model.text_encoder(desc_ids.to(device), desc_mask.to(device))
                fused = model.fusion(id_tokens, desc_tokens, desc_mask.to(device), has.to(device))
            else:
                fused = model.fusion(id_tokens)
            w_img.append(fused["w_img"].float().cpu())
            has_desc.append(has)
            pids.append(batch.person_ids)
            thumbs += [image.cpu().numpy() for image in batch.images]

    def stack(chunks: list[torch.Tensor]) -> np.ndarray | None:
        return torch.cat(chunks).numpy() if chunks else None

    return _GalleryFeatures(np.concatenate(pids), thumbs, stack(gates), stack(ids), stack(clos),
                            torch.cat(w_img).numpy(), torch.cat(has_desc).numpy())


def _rank_grid(embeddings: SplitEmbeddings, features: _GalleryFeatures, path: str, config: Config,
               split: str) -> None:
    """The top gallery images of the first caption of up to GRID_QUERIES persons, framed by correctness, under
    a title saying which gallery was ranked (fused with the images' descriptions, or the images alone)."""
    index = embeddings.index
    first_caption = {}
    for i, pid in enumerate(index.caption_pids.tolist()):
        first_caption.setdefault(pid, i)
    chosen = list(first_caption.values())[:GRID_QUERIES]
    query = F.normalize(embeddings.query[chosen].float(), dim=-1)
    gallery = F.normalize(embeddings.gallery.float(), dim=-1)
    scores, order = (query @ gallery.t()).topk(min(GRID_TOP, gallery.shape[0]), dim=1)
    order_np = order.numpy()
    correct = features.pids[order_np] == index.caption_pids[chosen][:, None]
    thumbnails = [[features.thumbnails[j] for j in row] for row in order_np]
    described = features.has_description is not None and bool(np.any(features.has_description))
    gallery_kind = "images with their descriptions" if described else "the images alone"
    plot_rank_grid([index.captions[i] for i in chosen], thumbnails, path, correct=correct,
                   scores=scores.numpy(), storage=config.storage,
                   title=f"{split} gallery ranked for one caption per person ({gallery_kind}); "
                         "green: that person, red: another")
