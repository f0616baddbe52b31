"""Disentanglement probes of a model during training: BDAM's gated features (or the baseline's pooled
feature) of two splits' images, and the attribute probes of :mod:`reid.evaluation.probes` on them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch

from reid.evaluation.probes import attribute_labels, probe_report
from reid.evaluation.split_reader import iter_gallery_batches, read_split_attributes

if TYPE_CHECKING:
    from reid.config import Config
    from reid.models.reid_model import ReidModel

logger = logging.getLogger(__name__)


def image_features(model: ReidModel, config: Config, split: str, device: torch.device
                   ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per image of ``split``: ``{"id": f_id_gate, "clo": f_clo_gate}`` ``[N, D]`` with BDAM, else
    ``{"pooled": mean encoder token}``; and the image ids in the same order."""
    chunks: dict[str, list[torch.Tensor]] = {}
    ids: list[str] = []
    was_training = model.training
    model.eval()
    batches = iter_gallery_batches(config.data.uri, split, tuple(config.data.image_size),
                                   config.data.eval_batch_size, config.storage)
    with torch.no_grad():
        for batch in batches:
            tokens = model.image_encoder(model.normalize_images(batch.images.to(device)))
            if model.bdam is not None:
                out = model.bdam(tokens)
                named = {"id": out.f_id_gate, "clo": out.f_clo_gate}
            else:
                named = {"pooled": tokens.mean(dim=1)}
            for name, value in named.items():
                chunks.setdefault(name, []).append(value.float().cpu())
            ids += batch.image_ids
    model.train(was_training)
    return {name: torch.cat(parts).numpy() for name, parts in chunks.items()}, ids


def run_probes(model: ReidModel, config: Config, device: torch.device, fit_split: str,
               score_split: str) -> dict[str, float]:
    """Probe accuracies (percent) fitted on ``fit_split``'s images and scored on ``score_split``'s; empty
    when the dataset carries no ground-truth attributes."""
    labels, features = {}, {}
    for split in (fit_split, score_split):
        attributes = read_split_attributes(config.data.uri, split, config.storage)
        features[split], ids = image_features(model, config, split, device)
        labels[split] = attribute_labels([attributes[i] for i in ids])
        if labels[split] is None:
            logger.debug("no ground-truth attributes in split '%s': no probes", split)
            return {}
    pairs = {name: (features[fit_split][name], features[score_split][name]) for name in features[fit_split]}
    return probe_report(pairs, labels[fit_split], labels[score_split], seed=config.seed)
