"""Linear probes of disentanglement: how well identity and clothing attributes decode from a feature.

The paper claims (3.2, Fig. 4) that BDAM moves clothing into ``f_clo^gate`` and keeps it out of
``f_id^gate``. A probe makes that measurable where ground truth exists (synthetic data): a multinomial
logistic regression per attribute, fitted on one split's images and scored on another split's (other
people, other images), so it must decode the attribute and cannot recall the person. A group's score is the
mean accuracy over its attributes; ``chance`` is the accuracy of always answering the fitting split's most
frequent value. Clothing decodable from the clothing branch and not (or far less) from the identity branch
is what the paper's claim predicts.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

GROUPS: dict[str, tuple[str, ...]] = {
    "id": ("gender", "height", "build", "skin", "hair_style"),
    "clo": ("upper_type", "upper_colour", "upper_pattern", "lower_type", "lower_colour", "shoes_colour", "bag",
            "hat"),
}
"""The attributes of each group: identity (fixed per person) and clothing (fixed per outfit); the
conditional ones (hair, bag and hat colours) are left out, since they are absent on some images."""

SECTIONS = {"id": "identity", "clo": "clothing"}


def attribute_labels(attributes: Sequence[str]) -> dict[str, np.ndarray] | None:
    """``{attribute: labels [N]}`` from each image's ground-truth attributes JSON (synthetic data), or None
    when any image has none (real datasets carry no attributes)."""
    parsed = []
    for text in attributes:
        try:
            record = json.loads(text) if text else None
        except json.JSONDecodeError:
            return None
        if not isinstance(record, Mapping) or not all(isinstance(record.get(s), Mapping) for s in SECTIONS.values()):
            return None
        parsed.append(record)
    if not parsed:
        return None
    return {name: np.asarray([str(r[SECTIONS[group]].get(name)) for r in parsed])
            for group, names in GROUPS.items() for name in names}


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   seed: int = 0) -> tuple[float, float]:
    """``(accuracy, chance)`` of a logistic-regression probe: features ``[N, D]``, labels ``[N]``.

    Features are standardised with the fitting split's statistics. A label seen only once when fitting still
    counts as a class; a test label never seen when fitting can only be missed.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    values, counts = np.unique(train_y, return_counts=True)
    chance = float(np.mean(test_y == values[np.argmax(counts)]))
    if len(values) < 2:
        return chance, chance
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a separable split may stop before convergence; its accuracy stands
        model.fit(train_x, train_y)
    return float(np.mean(model.predict(test_x) == test_y)), chance


def probe_report(features: Mapping[str, tuple[np.ndarray, np.ndarray]], train_labels: Mapping[str, np.ndarray],
                 test_labels: Mapping[str, np.ndarray], seed: int = 0) -> dict[str, float]:
    """Percent accuracies ``probe/<group>_from_<feature>`` and ``probe/chance_<group>``.

    ``features`` maps a feature name (``id``, ``clo``, ``pooled``) to its ``(fit [N, D], score [M, D])``
    arrays; the label dicts come from :func:`attribute_labels` of the same images, in the same order.
    """
    out: dict[str, float] = {}
    for group, names in GROUPS.items():
        for feature, (fit_x, score_x) in features.items():
            scores = [probe_accuracy(fit_x, train_labels[n], score_x, test_labels[n], seed) for n in names]
            out[f"probe/{group}_from_{feature}"] = 100.0 * float(np.mean([acc for acc, _ in scores]))
            out[f"probe/chance_{group}"] = 100.0 * float(np.mean([chance for _, chance in scores]))
    return out
