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


#: validation AP that the instance CRF or test-time flips must add to be applied by default: each costs
#: time on every image (the CRF seconds a megapixel, the flips four times the net's work)
REFINEMENT_GAIN = 0.005
#: what the CRF costs, for planning within a deadline (benchmarks/results/crf_speed.json: 3.1-4.6 s, one core)
CRF_SECONDS_PER_MEGAPIXEL = 5.0


def choose_refinement(model: Model, samples, predictions: Sequence[Prediction] | None = None, *, device=None,
                      metric: str = "ap", deadline: float | None = None,
                      stop: Callable[[], bool] | None = None) -> dict:
    """Whether the instance CRF and test-time flips pay for ``model`` on annotated samples, and which CRF.

    Every combination the method allows is scored on the samples with the
    model's (tuned) decode parameters: no refinement, the CRF with the model's
    weights and, where those were fitted, with the default weights; each
    without and with flips. The best is chosen where it beats the combination
    the model holds by :data:`REFINEMENT_GAIN`, else that one stays: a new
    model holds the plain decode; a fine-tune holds its starter's choice, made
    on the starter's many validation images (a fine-tune of the ``cells`` starter
    on 3 images dropped its flips on one validation image, and with them about
    0.02 of test AP). Choosing the default CRF weights drops the
    fitted ones from the model. The choice is stored in
    ``model.inference_defaults``, which segmenting applies unless told
    otherwise. ``predictions``: the samples' plain predictions, if made
    already. A combination that would end after ``deadline`` is not tried,
    nor any once ``stop()`` answers True (past the deadline already, nothing
    is tried or stored). Returns ``{combination: mean metric}``, the chosen
    one under ``"chosen"``.
    """
    from .inference import predict, supports_flips
    from .metrics import evaluate
    from .refine import refine_prediction, supports_crf

    fitted = model.crf
    weights = {"crf": fitted, **({"crf_default_weights": None} if fitted else {})}
    refinements = ["none", *weights] if supports_crf(model.method) else ["none"]
    megapixels = sum(np.asarray(s.labels).size for s in samples) / 1e6

    def fits(seconds: float) -> bool:
        return not (stop is not None and stop()) and (deadline is None or time.perf_counter() + seconds <= deadline)

    def score(predictions, refine: str) -> float:
        model.crf = weights.get(refine, fitted)
        rows = []
        for prediction, sample in zip(predictions, samples):
            instances = prediction.decode()
            if refine != "none":
                instances = refine_prediction(prediction, sample.image, instances)
            rows.append(evaluate(sample.labels, instances.labels)[metric])
        model.crf = fitted
        return float(np.mean(rows))

    if not fits(0):
        return {"skipped": "no time was left in the budget"}  # the model keeps what it had
    if predictions is None:
        predictions = [predict(model, s.image, stack=False, device=device) for s in samples]
    scores = {"none": score(predictions, "none")}
    for flips in (False, True) if supports_flips(model.method) else (False,):
        if flips:
            started = time.perf_counter()
            predictions = [predict(model, samples[0].image, stack=False, device=device, flips=True)]
            if not fits((time.perf_counter() - started) * (len(samples) - 1)):
                break
            predictions += [predict(model, s.image, stack=False, device=device, flips=True) for s in samples[1:]]
        for refine in refinements:
            name = f"{refine}+flips" if flips else refine
            if name not in scores and fits(CRF_SECONDS_PER_MEGAPIXEL * megapixels if refine != "none" else 0):
                scores[name] = score(predictions, refine)
    held = ("crf" if model.inference_defaults.get("refine") == "crf" else "none") + \
        ("+flips" if model.inference_defaults.get("flips") else "")
    held = held if held in scores else "none"
    worth_it = {k: v for k, v in scores.items() if k == held or v >= scores[held] + REFINEMENT_GAIN}
    chosen = max(worth_it, key=worth_it.get)
    refine, _, flips = chosen.partition("+")
    if refine == "crf_default_weights":
        model.crf = None
    model.inference_defaults = {"refine": "none" if refine == "none" else "crf", "flips": bool(flips)}
    return {**scores, "chosen": chosen}


#: a fine-tune keeps its starter's decode, and its weights, unless the re-tuned decode, or the fine-tuned
#: weights, score this much higher on the validation images: a few images cannot resolve less (in
#: benchmarks/fine_tune_curve.py a re-tuned decode cost 0.02 AP on the test split (E. coli, 3 images) while
#: it gained on validation, and fine-tunes 0.001-0.006 above the starter there were -0.017 to +0.012 on test)
VALIDATION_GAIN = 0.01


def starters_decode_unless_beaten(starters: dict, tuned: dict, tuned_score: float,
                                  predictions: Sequence[Prediction], ground_truths: Sequence[np.ndarray], *,
                                  strip_of_one_image: bool = False, metric: str = "ap") -> tuple[dict, float]:
    """``(decode, score)``: the re-tuned decode where it beats the starter's by :data:`VALIDATION_GAIN` on
    the validation predictions, else the starter's with its own score there.

    A strip cut from the one image a fine-tune was given (``strip_of_one_image``) never replaces the
    starter's decode: the objects its cut runs through look small, and the decodes re-tuned on such a
    strip cost the nuclei starter 0.09, 0.07 and 0.04 AP on the test split (fine_tune_curve.py, one
    image; they gained at most 0.01 elsewhere)."""
    kept_score = score_parameters(predictions, ground_truths, starters, metric=metric)
    beaten = not strip_of_one_image and tuned_score >= kept_score + VALIDATION_GAIN
    return (tuned, tuned_score) if beaten else (dict(starters), kept_score)


def starter_or_fine_tune(starter: Model, fine_tuned_score: float, samples, *, device=None, metric: str = "ap",
                         strip_of_one_image: bool = False) -> dict:
    """Whether a fine-tune beat its starter on the validation samples, or the starter should be kept.

    The starter is scored as shipped (its weights, decode and test-time choices, as ``segment`` applies
    them) on the same samples that scored the fine-tune (``fine_tuned_score``: its mean ``metric`` with
    its tuned decode and chosen refinement). The fine-tune is kept only if it scores
    :data:`VALIDATION_GAIN` higher: short of that nothing shows the new weights are better. This is model
    selection on held-out images with the starter as the checkpoint at step 0. A validation image or two
    cannot resolve 0.01 AP: fine-tunes that scored 0.001-0.006 above the starter there scored from 0.017
    below it to 0.012 above it on the test split, two of four below (nuclei and E. coli at 1e-4, session 17);
    what it catches besides is the larger loss a faster rate can cause on images like the starter's
    (benchmarks/fine_tune_curve.py, docs/benchmarks.md, sessions 16 and 17).

    On a strip cut from the one image a fine-tune was given (``strip_of_one_image``) the burden of proof
    turns: the fine-tune is kept unless the starter scores :data:`VALIDATION_GAIN` higher there. Such a
    strip holds a few objects, cut: the DSB2018 demo's fine-tunes scored 0.008 AP above the starter on it
    and were given back, where kept they scored 0.18-0.23 above it on the rest of the image
    (benchmarks/probes/unlike_training.py --keep-fine-tune); a fine-tune that wrecks the starter still
    shows there. Returns ``{"starter": score, "fine_tuned": score, "kept": "starter" or "fine-tuned"}``.
    """
    from .metrics import evaluate
    from .segment import segment

    starter_score = float(np.mean([evaluate(s.labels, segment(starter, s.image, device=device).labels)[metric]
                                   for s in samples]))
    if strip_of_one_image:
        kept = "starter" if starter_score >= fine_tuned_score + VALIDATION_GAIN else "fine-tuned"
    else:
        kept = "fine-tuned" if fine_tuned_score >= starter_score + VALIDATION_GAIN else "starter"
    return {"starter": round(starter_score, 4), "fine_tuned": round(float(fine_tuned_score), 4), "kept": kept}


def give_starter_back(model: Model, starter: Model) -> None:
    """``model`` takes its starter's weights back, with what was chosen for them: decode, test-time choices, CRF,
    object classifier and object scale."""
    model.net.load_state_dict(starter.net.state_dict())
    for kept in ("decode_defaults", "inference_defaults", "crf", "object_classifier", "object_scale"):
        setattr(model, kept, getattr(starter, kept))


def starter_kept_text(record: dict) -> str:
    """What :func:`starter_or_fine_tune`'s ``record`` means when it kept the starter, for the CLI and the widget."""
    return (f"the fine-tuned weights scored AP {record['fine_tuned']:.3f} on the validation images against the "
            f"starter's {record['starter']:.3f}, so the model keeps the starter's weights and defaults; annotate more "
            "images or train longer")


def starter_kept_note(model) -> str:
    """Why a fine-tuned ``model`` holds its starter's weights (:func:`starter_kept_text`), or ``""``."""
    record = getattr(model, "provenance", {}).get("starter_or_fine_tune") or {}
    return starter_kept_text(record) + "." if record.get("kept") == "starter" else ""


def validation_scores(model: Model, samples, device=None, *, predictions=None) -> dict:
    """Mean AP, F1, SBD and |DiC| of the model's decode (its current defaults) on annotated images.

    ``predictions``, the samples' predictions made already (e.g. for tuning), spares running the net again.
    """
    from .metrics import evaluate, summarize

    rows = []
    for index, sample in enumerate(samples):
        prediction = predictions[index] if predictions is not None else \
            predict(model, sample.image, stack=False, device=device)
        labels = prediction.decode().labels
        rows.append({"name": sample.name, **evaluate(sample.labels, labels)})
    model.net.train()
    summary = summarize(rows)
    return {k: summary[k] for k in ("ap", "f1", "sbd", "abs_dic") if k in summary}
