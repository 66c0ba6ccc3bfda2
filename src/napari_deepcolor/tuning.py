"""Choosing decode parameters on annotated images, without retraining.

The net runs once per image; every candidate setting is then only a decode
of the cached output, which is what makes tuning cheap (Kulikov et al.,
sec. 3.3: "trying different thresholds does not require retraining").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .checkpoint import Model
from .inference import Prediction, predict


def score_parameters(predictions: Sequence[Prediction], ground_truths: Sequence[np.ndarray], parameters: dict,
                     *, metric: str = "ap") -> float:
    """Mean ``metric`` (a key of :func:`napari_deepcolor.metrics.evaluate`) over the images."""
    from .metrics import evaluate

    values = [evaluate(gt, p.decode(**parameters).labels)[metric] for p, gt in zip(predictions, ground_truths)]
    return float(np.mean(values))


def tune_predictions(predictions: Sequence[Prediction], ground_truths: Sequence[np.ndarray], *,
                     metric: str = "ap", start: dict | None = None, rounds: int = 2) -> tuple[dict, float]:
    """Coordinate ascent over the method's declared decode parameters.

    Each parameter in turn is set to the best of its candidate values with the
    others held, for ``rounds`` passes. Returns ``(best parameters, best score)``.
    """
    model = predictions[0].model
    best = model.decode_parameters(start)
    best_score = score_parameters(predictions, ground_truths, best, metric=metric)
    for _ in range(rounds):
        improved = False
        for parameter in model.method.decode_parameters:
            for value in parameter.candidates():
                if value == best[parameter.name]:
                    continue
                trial = {**best, parameter.name: value}
                score = score_parameters(predictions, ground_truths, trial, metric=metric)
                if score > best_score + 1e-9:
                    best, best_score, improved = trial, score, True
        if not improved:
            break
    return best, best_score


def tune_decode_parameters(model: Model, samples, *, device=None, metric: str = "ap") -> tuple[dict, float]:
    """Tune on annotated samples (objects with ``.image`` and ``.labels``)."""
    predictions = [predict(model, s.image, stack=False, device=device) for s in samples]
    return tune_predictions(predictions, [s.labels for s in samples], metric=metric)
