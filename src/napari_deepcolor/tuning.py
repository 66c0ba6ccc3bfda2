"""Choosing decode parameters on annotated images, without retraining.

The net runs once per image; every candidate setting is then only a decode
of the cached output, which is what makes tuning cheap (Kulikov et al.,
sec. 3.3: "trying different thresholds does not require retraining").
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from .inference import Prediction, predict
from .models.files import Model
from .scale import median_object_area


def score_parameters(predictions: Sequence[Prediction], ground_truths: Sequence[np.ndarray], parameters: dict,
                     *, metric: str = "ap") -> float:
    """Mean ``metric`` (a key of :func:`napari_deepcolor.metrics.evaluate`) over the images."""
    return _scores(predictions, ground_truths, parameters, metric)[0]


def _scores(predictions, ground_truths, parameters, metric) -> tuple[float, float]:
    """(mean ``metric``, mean SBD): SBD breaks ties, e.g. while a young model's AP is still 0 everywhere."""
    from .metrics import evaluate

    rows = [evaluate(gt, p.decode(**parameters).labels) for p, gt in zip(predictions, ground_truths)]
    return float(np.mean([r[metric] for r in rows])), float(np.mean([r["sbd"] for r in rows]))


def tune_predictions(predictions: Sequence[Prediction], ground_truths: Sequence[np.ndarray], *,
                     metric: str = "ap", start: dict | None = None, rounds: int = 2,
                     deadline: float | None = None, stop: Callable[[], bool] | None = None) -> tuple[dict, float]:
    """Coordinate ascent over the method's declared decode parameters.

    Each parameter in turn is set to the best of its candidate values with the
    others held, for ``rounds`` passes; ties on ``metric`` go to the better
    SBD. Candidates declared relative to the objects' size are scaled by the
    median area of the annotated objects. With a ``deadline`` (a
    :func:`time.perf_counter` value), no trial starts that would end after it:
    the search stops and keeps the best parameters found so far (the cost of a
    trial is that of scoring the starting parameters). ``stop``, when given, is asked
    before each candidate; once it answers True the best setting found so far is
    returned. Returns ``(best parameters, best metric score)``.
    """
    model = predictions[0].model
    object_area = median_object_area(ground_truths)
    best = model.decode_parameters(start)
    started = time.perf_counter()
    best_score = _scores(predictions, ground_truths, best, metric)
    trial_seconds = time.perf_counter() - started
    for _ in range(rounds):
        improved = False
        for parameter in model.method.parameters_used(model.method_options):
            for value in parameter.candidates(object_area):
                if stop is not None and stop():
                    return best, best_score[0]
                if value == best[parameter.name]:
                    continue
                if deadline is not None and time.perf_counter() + trial_seconds > deadline:
                    return best, best_score[0]
                trial = {**best, parameter.name: value}
                score = _scores(predictions, ground_truths, trial, metric)
                if _better(score, best_score):
                    best, best_score, improved = trial, score, True
        if not improved:
            break
    return best, best_score[0]


def _better(score: tuple[float, float], best: tuple[float, float], tolerance: float = 1e-9) -> bool:
    if abs(score[0] - best[0]) > tolerance:
        return score[0] > best[0]
    return score[1] > best[1] + tolerance


def tune_decode_parameters(model: Model, samples, *, device=None, metric: str = "ap",
                           deadline: float | None = None,
                           stop: Callable[[], bool] | None = None) -> tuple[dict, float]:
    """Tune on annotated samples (objects with ``.image`` and ``.labels``); ``deadline`` and ``stop`` as in
    :func:`tune_predictions`."""
    predictions = []
    for sample in samples:
        if stop is not None and stop() and predictions:
            break  # score what is predicted already
        predictions.append(predict(model, sample.image, stack=False, device=device))
    return tune_predictions(predictions, [s.labels for s in samples[:len(predictions)]], metric=metric,
                            deadline=deadline, stop=stop)
