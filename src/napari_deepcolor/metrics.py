"""Instance-segmentation metrics: SBD, |DiC|, AP over IoU thresholds, F1, matching IoU.

Every metric compares a *prediction* (a label image, 0 = background) with a
*ground truth* given either as

* a label image of the prediction's shape (0 = background), or
* a stack of per-object masks of shape ``(K, *prediction.shape)`` whose masks may
  overlap (BBBC010 worms cross; a pixel can belong to two worms).

All of them are built on one vectorised overlap count (:func:`_overlap`): the
ground-truth areas, the predicted areas and the ``(K_gt, K_pred)`` intersection
matrix, counted with one ``np.bincount`` over (object, object) pixel pairs. Nothing
loops over pixels or objects; a 1024 x 1024 image with a few hundred objects
scores in a few tens of milliseconds.

Conventions shared by all scores: when neither image holds an object the score is
perfect (1.0); when only one of them does it is 0.0. Object ids need not be
consecutive and any integer dtype is accepted; inputs are never modified.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from .data.io import IMAGE_SUFFIXES, as_label_image, read_image, read_labels
from .errors import DeepColorError

logger = logging.getLogger(__name__)

#: IoU thresholds of the 2018 Data Science Bowl (0.50, 0.55, ..., 0.95).
DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

#: The keys of :func:`evaluate`, in table order.
METRIC_KEYS: tuple[str, ...] = (
    "n_gt", "n_pred", "sbd", "abs_dic", "dic", "ap", "ap50", "f1", "matching_iou",
)

__all__ = [
    "DSB_THRESHOLDS", "METRIC_KEYS", "MISSING", "abs_difference_in_count", "average_precision",
    "difference_in_count", "evaluate", "evaluate_folders", "f1_score", "format_table",
    "iou_matrix", "match_counts", "matching_iou", "summarize", "symmetric_best_dice",
]


# --------------------------------------------------------------------------- overlap counting


def _shape_mismatch(prediction_shape, ground_truth_shape, *, what: str = "ground truth") -> str:
    message = (
        f"The prediction (shape {tuple(prediction_shape)}) and the {what} "
        f"(shape {tuple(ground_truth_shape)}) must have the same shape."
    )
    if tuple(prediction_shape) == tuple(ground_truth_shape)[::-1]:
        message += " They are transposed: did you swap the axes of one of them?"
    else:
        message += " Compare them at the same resolution and crop."
    return message


def _consecutive_ids(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat object index 1..K per pixel (0 = background) and K, for any id values."""
    flat = labels.ravel()
    max_id = int(flat.max(initial=0))
    if max_id <= 4 * flat.size + 65536:  # a lookup table is cheaper than sorting
        ids = flat.astype(np.intp, copy=False)
        present = np.bincount(ids, minlength=max_id + 1) > 0
        present[0] = False
        lookup = np.where(present, np.cumsum(present), 0)
        return lookup[ids], int(present.sum())
    unique, inverse = np.unique(flat, return_inverse=True)
    if unique[0] == 0:
        return inverse.ravel(), unique.size - 1
    return inverse.ravel() + 1, unique.size


def _as_prediction(prediction) -> np.ndarray:
    prediction = np.asarray(prediction)
    if prediction.ndim < 2:
        raise DeepColorError(
            f"The prediction must be a label image (at least 2D); got shape {prediction.shape}."
        )
    return as_label_image(prediction, what="prediction")


def _overlap(ground_truth, prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object areas and pairwise intersections of a ground truth and a prediction.

    Parameters
    ----------
    ground_truth : (H, W) integer array or (K, H, W) array
        A label image (0 = background) or a stack of per-object masks (nonzero =
        inside), which may overlap. Empty masks are not objects and are dropped.
        Any number of spatial axes works, as long as it matches the prediction.
    prediction : (H, W) integer array
        Label image, 0 = background.

    Returns
    -------
    gt_areas : (K_gt,) int64
    pred_areas : (K_pred,) int64
    intersection : (K_gt, K_pred) int64
        ``intersection[i, j]`` = number of pixels in ground-truth object ``i`` and
        predicted object ``j``; objects are ordered by increasing id (mask order
        for a stack).
    """
    prediction = _as_prediction(prediction)
    pred_index, n_pred = _consecutive_ids(prediction)
    pred_areas = np.bincount(pred_index, minlength=n_pred + 1)[1:].astype(np.int64)
    ground_truth = np.asarray(ground_truth)

    if ground_truth.ndim == prediction.ndim:
        if ground_truth.shape != prediction.shape:
            raise DeepColorError(_shape_mismatch(prediction.shape, ground_truth.shape))
        gt_index, n_gt = _consecutive_ids(as_label_image(ground_truth, what="ground truth"))
        gt_areas = np.bincount(gt_index, minlength=n_gt + 1)[1:].astype(np.int64)
        both = (gt_index > 0) & (pred_index > 0)
        rows, cols = gt_index[both] - 1, pred_index[both] - 1
    elif ground_truth.ndim == prediction.ndim + 1:
        if ground_truth.shape[1:] != prediction.shape:
            raise DeepColorError(_shape_mismatch(
                prediction.shape, ground_truth.shape[1:], what="ground-truth masks (each mask)"))
        masks = ground_truth.reshape(ground_truth.shape[0], prediction.size)
        if masks.dtype != bool:
            masks = masks != 0
        # (mask, pixel) pairs: the sparse product masks @ one_hot(prediction), as pair counts
        mask_index, pixel = np.divmod(np.flatnonzero(masks), masks.shape[1])
        gt_areas = np.bincount(mask_index, minlength=masks.shape[0]).astype(np.int64)
        if not gt_areas.all():  # an empty mask is no object: drop it, renumber the others
            logger.debug("dropping %d empty ground-truth masks", int((gt_areas == 0).sum()))
            mask_index = (np.cumsum(gt_areas > 0) - 1)[mask_index]
            gt_areas = gt_areas[gt_areas > 0]
        n_gt = gt_areas.size
        cols = pred_index[pixel]
        inside = cols > 0
        rows, cols = mask_index[inside], cols[inside] - 1
    else:
        raise DeepColorError(
            f"The ground truth (shape {ground_truth.shape}) must be a label image of the "
            f"prediction's shape {prediction.shape} or a stack of per-object masks of shape "
            f"(K, {', '.join(map(str, prediction.shape))})."
        )
    codes = rows.astype(np.int64) * n_pred + cols
    intersection = np.bincount(codes, minlength=n_gt * n_pred).reshape(n_gt, n_pred)
    return gt_areas, pred_areas, intersection.astype(np.int64, copy=False)


def _iou(gt_areas, pred_areas, intersection) -> np.ndarray:
    union = gt_areas[:, None] + pred_areas[None, :] - intersection
    return intersection / np.maximum(union, 1)


def _dice(gt_areas, pred_areas, intersection) -> np.ndarray:
    return 2.0 * intersection / np.maximum(gt_areas[:, None] + pred_areas[None, :], 1)


# --------------------------------------------------------------------------- matching


def _matched_pairs(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of pairs with ``iou > threshold``: most matches, then most IoU."""
    if not 0.0 <= threshold < 1.0:
        raise DeepColorError(
            f"IoU thresholds must lie in [0, 1) (got {threshold}); a match needs IoU > threshold."
        )
    candidates = iou > threshold
    rows = np.flatnonzero(candidates.any(axis=1))
    cols = np.flatnonzero(candidates.any(axis=0))
    sub = candidates[np.ix_(rows, cols)]
    if (sub.sum(axis=0) <= 1).all() and (sub.sum(axis=1) <= 1).all():
        r, c = np.nonzero(sub)  # no object has two candidates: the matching is unique
        return rows[r], cols[c]
    scores = np.where(sub, iou[np.ix_(rows, cols)], 0.0)
    # StarDist's cost: every match is worth 1, IoU only breaks ties (its sum is < 1/2)
    cost = -sub.astype(float) - scores / (2 * min(sub.shape))
    r, c = linear_sum_assignment(cost)
    ok = sub[r, c]
    return rows[r[ok]], cols[c[ok]]


def _counts(iou: np.ndarray, threshold: float) -> tuple[int, int, int]:
    tp = int(_matched_pairs(iou, threshold)[0].size)
    return tp, iou.shape[1] - tp, iou.shape[0] - tp


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with 0/0 = 1 (nothing to find and nothing found)."""
    return 1.0 if denominator == 0 else float(numerator / denominator)


def _matching_iou(iou: np.ndarray) -> float:
    n_labels = max(iou.shape)
    if n_labels == 0:
        return 1.0
    rows = np.flatnonzero(iou.any(axis=1))
    cols = np.flatnonzero(iou.any(axis=0))
    if rows.size == 0:
        return 0.0
    sub = iou[np.ix_(rows, cols)]  # rows/columns of zeros cannot add to the total
    r, c = linear_sum_assignment(sub, maximize=True)
    return float(sub[r, c].sum() / n_labels)


def _symmetric_best_dice(dice: np.ndarray) -> float:
    if dice.size == 0:
        return 1.0 if dice.shape == (0, 0) else 0.0
    return float(min(dice.max(axis=1).mean(), dice.max(axis=0).mean()))


# --------------------------------------------------------------------------- public metrics


def iou_matrix(ground_truth, prediction) -> np.ndarray:
    """Intersection over union of every ground-truth object with every predicted object.

    Parameters
    ----------
    ground_truth : (H, W) integer array or (K, H, W) array
        Label image (0 = background) or stack of per-object masks, possibly overlapping.
    prediction : (H, W) integer array
        Label image, 0 = background.

    Returns
    -------
    iou : (K_gt, K_pred) float array
        Objects in increasing id order (mask order for a stack).

    Notes
    -----
    IoU(g, p) = |g ∩ p| / |g ∪ p| (Jaccard index); for masks the union is
    |g| + |p| - |g ∩ p|, which stays right when ground-truth masks overlap.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2]])
    >>> pred = np.array([[5, 0, 0, 7]])
    >>> iou_matrix(gt, pred)
    array([[0.5, 0. ],
           [0. , 1. ]])
    """
    return _iou(*_overlap(ground_truth, prediction))


def symmetric_best_dice(ground_truth, prediction) -> float:
    """Symmetric Best Dice (SBD) of the CVPPP leaf segmentation challenge.

    Parameters
    ----------
    ground_truth : (H, W) integer array or (K, H, W) array
        Label image (0 = background) or stack of per-object masks, possibly overlapping.
    prediction : (H, W) integer array
        Label image, 0 = background.

    Returns
    -------
    float
        In [0, 1]; 1.0 when neither holds an object, 0.0 when only one does.

    Notes
    -----
    With Dice(a, b) = 2 |a ∩ b| / (|a| + |b|) and the best Dice

        BD(L^a, L^b) = 1/M Σ_{i=1..M} max_{j=1..N} Dice(L^a_i, L^b_j)

    over the M objects of L^a and N objects of L^b,
    SBD(L^gt, L^pred) = min(BD(L^gt, L^pred), BD(L^pred, L^gt))
    (Scharr et al., "Leaf segmentation in plant phenotyping: a collation study",
    Machine Vision and Applications 27, 2016; used by Kulikov & Lempitsky's deep
    coloring paper). The min makes over- and under-segmentation both cost.

    Examples
    --------
    >>> symmetric_best_dice(np.array([[1, 1, 2, 2]]), np.array([[3, 3, 3, 3]]))
    0.6666666666666666
    """
    return _symmetric_best_dice(_dice(*_overlap(ground_truth, prediction)))


def difference_in_count(ground_truth, prediction) -> int:
    """Signed Difference in Count, DiC = #prediction - #ground truth objects.

    Positive means over-counting (over-segmentation), negative under-counting.
    See :func:`abs_difference_in_count`.

    Examples
    --------
    >>> difference_in_count(np.array([[1, 0, 2]]), np.array([[1, 0, 0]]))
    -1
    """
    gt_areas, pred_areas, _ = _overlap(ground_truth, prediction)
    return int(pred_areas.size - gt_areas.size)


def abs_difference_in_count(ground_truth, prediction) -> int:
    """Absolute Difference in Count, |DiC| = |#prediction - #ground truth objects|.

    Parameters
    ----------
    ground_truth : (H, W) integer array or (K, H, W) array
        Label image (0 = background) or stack of per-object masks, possibly overlapping.
    prediction : (H, W) integer array
        Label image, 0 = background.

    Notes
    -----
    The CVPPP challenge's counting error (Scharr et al. 2016), reported next to SBD
    in the deep coloring paper. Objects are distinct nonzero ids (non-empty masks
    for a stack); whether they are well placed is not considered.

    Examples
    --------
    >>> abs_difference_in_count(np.array([[1, 0, 2]]), np.array([[4, 5, 6]]))
    1
    """
    return abs(difference_in_count(ground_truth, prediction))


def match_counts(ground_truth, prediction, *, iou_threshold: float = 0.5) -> dict[str, float]:
    """True/false positives and false negatives under one-to-one IoU matching.

    Parameters
    ----------
    ground_truth : (H, W) integer array or (K, H, W) array
        Label image (0 = background) or stack of per-object masks, possibly overlapping.
    prediction : (H, W) integer array
        Label image, 0 = background.
    iou_threshold : float
        A predicted and a ground-truth object can be matched when their IoU is
        strictly greater than this.

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn`` (int) and ``precision`` = TP / (TP + FP),
        ``recall`` = TP / (TP + FN), ``f1`` = 2TP / (2TP + FP + FN). A ratio whose
        denominator is 0 is 1.0 (nothing to find, nothing found).

    Notes
    -----
    Each object is matched at most once. Among pairs with IoU > ``iou_threshold``
    the matching with the most pairs is chosen, ties broken by the largest total
    IoU (``scipy.optimize.linear_sum_assignment`` on StarDist's cost
    -[IoU > t] - IoU / 2n). For t >= 0.5 and a label-image prediction the
    matching is unique; it matters for lower thresholds and for overlapping
    ground-truth masks.

    Examples
    --------
    >>> match_counts(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 0, 0]]))["recall"]
    0.5
    """
    tp, fp, fn = _counts(_iou(*_overlap(ground_truth, prediction)), iou_threshold)
    return _counts_dict(tp, fp, fn)


def _counts_dict(tp: int, fp: int, fn: int) -> dict[str, float]:
    return {
        "tp": tp, "fp": fp, "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def f1_score(ground_truth, prediction, *, iou_threshold: float = 0.5) -> float:
    """F1 score of object detection, 2TP / (2TP + FP + FN), at one IoU threshold.

    Objects are matched one-to-one with IoU > ``iou_threshold`` as in
    :func:`match_counts`; 1.0 when neither image holds an object.

    Examples
    --------
    >>> f1_score(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 0, 0]]))
    0.6666666666666666
    """
    return match_counts(ground_truth, prediction, iou_threshold=iou_threshold)["f1"]


def average_precision(
    ground_truth, prediction, *, thresholds: tuple[float, ...] = DSB_THRESHOLDS
) -> dict:
    """Average precision of the 2018 Data Science Bowl, averaged over IoU thresholds.

    Parameters
    ----------
    ground_truth : (H, W) integer array or (K, H, W) array
        Label image (0 = background) or stack of per-object masks, possibly overlapping.
    prediction : (H, W) integer array
        Label image, 0 = background.
    thresholds : sequence of float
        IoU thresholds t; the default is 0.50, 0.55, ..., 0.95.

    Returns
    -------
    dict
        ``ap``: the mean over thresholds; ``ap_per_threshold``: {t: AP(t)}.

    Notes
    -----
    AP(t) = TP(t) / (TP(t) + FP(t) + FN(t)), where a predicted object is a true
    positive when it is matched one-to-one (see :func:`match_counts`) to a
    ground-truth object with IoU > t, strictly, as in the DSB2018 definition ("a
    hit when IoU > t"). StarDist's ``matching`` uses IoU >= t instead; the two only
    differ for an IoU exactly equal to a threshold. Despite the name this is not
    the area under a precision-recall curve: there are no scores to rank.
    AP(t) = 1.0 when neither image holds an object.

    Examples
    --------
    >>> result = average_precision(np.array([[1, 1, 1, 2]]), np.array([[1, 1, 0, 2]]))
    >>> result["ap_per_threshold"][0.6], result["ap_per_threshold"][0.7]
    (1.0, 0.3333333333333333)
    """
    iou = _iou(*_overlap(ground_truth, prediction))
    return _average_precision(iou, thresholds)


def _average_precision(iou: np.ndarray, thresholds) -> dict:
    thresholds = [float(t) for t in np.atleast_1d(thresholds)]
    if not thresholds:
        raise DeepColorError("average_precision needs at least one IoU threshold.")
    per_threshold = {}
    for threshold in thresholds:
        tp, fp, fn = _counts(iou, threshold)
        per_threshold[threshold] = _ratio(tp, tp + fp + fn)
    return {"ap": float(np.mean(list(per_threshold.values()))), "ap_per_threshold": per_threshold}


def matching_iou(ground_truth, prediction) -> float:
    """Matching IoU of Arnab & Torr (2017): IoU of the best-matched instance labellings.

    Parameters
    ----------
    ground_truth : (H, W) integer array or (K, H, W) array
        Label image (0 = background) or stack of per-object masks, possibly overlapping.
    prediction : (H, W) integer array
        Label image, 0 = background.

    Returns
    -------
    float
        In [0, 1]; 1.0 when neither holds an object, 0.0 when only one does.

    Notes
    -----
    Arnab & Torr ("Pixelwise instance segmentation with a dynamically instantiated
    network", CVPR 2017, Sec. 3.4 and 5) first relabel the ground truth G = {g_1..g_r}
    with the permutation that best fits the prediction P = {p_1..p_s},

        G* = argmax_{m in M} IoU(m, P)                        (their Eq. 7)

    solved as maximum-weight bipartite matching with edge weight IoU(g_i, p_j)
    ("leftover segments are matched to dummy nodes with zero overlap"), and then
    compute "the corresponding IoU as defined in [13]", the Pascal VOC
    segmentation measure: per label, TP / (TP + FP + FN), averaged over labels.
    After matching, each instance label is one "class", so here

        matching IoU = (Σ_{matched (i, j)} IoU(g_i, p_j)) / max(r, s)

    with the matching from ``linear_sum_assignment(iou, maximize=True)``. The
    relabelled pair of images holds max(r, s) labels: min(r, s) matched pairs,
    the rest paired with a dummy (empty) segment, whose IoU is 0. So missed and
    spurious objects both cost. Two choices the paper leaves open: background is
    not counted as a label (it is not an instance, and a VOC-style background
    term would reward images that are mostly background), and IoUs are averaged
    per label, not pooled over pixels, so small objects weigh as much as big ones.
    For overlapping ground-truth masks the per-label IoU uses each mask whole.

    Examples
    --------
    >>> matching_iou(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 0, 0]]))
    0.5
    """
    return _matching_iou(_iou(*_overlap(ground_truth, prediction)))


def evaluate(ground_truth, prediction) -> dict[str, float]:
    """All metrics of this module for one image, from a single overlap count.

    Parameters
    ----------
    ground_truth : (H, W) integer array or (K, H, W) array
        Label image (0 = background) or stack of per-object masks, possibly overlapping.
    prediction : (H, W) integer array
        Label image, 0 = background.

    Returns
    -------
    dict
        ``n_gt``, ``n_pred`` (object counts), ``sbd`` (:func:`symmetric_best_dice`),
        ``abs_dic`` and ``dic`` (:func:`abs_difference_in_count`,
        :func:`difference_in_count`), ``ap`` (:func:`average_precision` over
        IoU 0.50:0.95), ``ap50`` (AP at IoU > 0.5), ``f1`` (:func:`f1_score` at
        IoU > 0.5) and ``matching_iou`` (:func:`matching_iou`).

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> scores = evaluate(gt, gt * 3)
    >>> scores["sbd"], scores["ap"], scores["dic"]
    (1.0, 1.0, 0)
    """
    gt_areas, pred_areas, intersection = _overlap(ground_truth, prediction)
    iou = _iou(gt_areas, pred_areas, intersection)
    ap = _average_precision(iou, DSB_THRESHOLDS)
    tp, fp, fn = _counts(iou, 0.5)
    dic = int(pred_areas.size - gt_areas.size)
    return {
        "n_gt": int(gt_areas.size),
        "n_pred": int(pred_areas.size),
        "sbd": _symmetric_best_dice(_dice(gt_areas, pred_areas, intersection)),
        "abs_dic": abs(dic),
        "dic": dic,
        "ap": ap["ap"],
        "ap50": ap["ap_per_threshold"][0.5],
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "matching_iou": _matching_iou(iou),
    }


# --------------------------------------------------------------------------- classes


def evaluate_classes(ground_truth, prediction, *, gt_classes, pred_classes, class_names,
                     iou_threshold: float = 0.5) -> dict:
    """Per-class AP and F1, and the class accuracy of matched objects, for one image.

    Parameters
    ----------
    ground_truth : (H, W) integer array or (K, H, W) per-object masks.
    prediction : (H, W) integer array.
    gt_classes : (max_id + 1,) int
        The class id (1..C) of each ground-truth object: ``gt_classes[i]`` for label ``i``, or for
        mask ``i`` (counted from 1) of a stack. Entry 0 is unused.
    pred_classes : (max_id + 1,) int, the same for the predicted labels.
    class_names : the names of class ids 1..C.
    iou_threshold : IoU a match must exceed, for F1 and the class accuracy.

    Returns
    -------
    dict
        For each class NAME: ``ap_NAME`` (AP over IoU 0.50:0.95) and ``f1_NAME``, scoring only the
        objects of that class in both images (a predicted object of the wrong class is a false
        positive of its class and leaves a false negative in the true one), and ``n_gt_NAME`` /
        ``n_pred_NAME``. Then ``class_accuracy``: of the objects matched one-to-one regardless of
        class (IoU > ``iou_threshold``), the share whose predicted class is right (1.0 when none
        matched), with ``n_matched`` and ``n_class_correct`` to pool it over images.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> scores = evaluate_classes(gt, gt, gt_classes=np.array([0, 1, 2]), pred_classes=np.array([0, 1, 1]),
    ...                           class_names=("a", "b"))
    >>> scores["class_accuracy"], scores["f1_a"], scores["f1_b"]
    (0.5, 0.6666666666666666, 0.0)
    """
    prediction = _as_prediction(prediction)
    ground_truth = np.asarray(ground_truth)
    masks = ground_truth.ndim == prediction.ndim + 1
    gt_classes, pred_classes = np.asarray(gt_classes, np.int64), np.asarray(pred_classes, np.int64)
    gt_ids = _object_ids(ground_truth, masks)
    pred_ids = _object_ids(prediction, False)
    _check_classes_cover(gt_classes, gt_ids, "ground-truth")
    _check_classes_cover(pred_classes, pred_ids, "predicted")
    result = {}
    for k, name in enumerate(class_names, start=1):
        if masks:
            gt_k = ground_truth[[i - 1 for i in gt_ids if gt_classes[i] == k]]
        else:
            gt_k = np.where(gt_classes[ground_truth] == k, ground_truth, 0) if ground_truth.size else ground_truth
        pred_k = np.where(pred_classes[prediction] == k, prediction, 0)
        scores = evaluate(gt_k, pred_k)
        result.update({f"ap_{name}": scores["ap"], f"f1_{name}": scores["f1"],
                       f"n_gt_{name}": scores["n_gt"], f"n_pred_{name}": scores["n_pred"]})
    iou = _iou(*_overlap(ground_truth, prediction))
    rows, cols = _matched_pairs(iou, iou_threshold)
    correct = int(np.sum(gt_classes[np.asarray(gt_ids, np.int64)[rows]] ==
                         pred_classes[np.asarray(pred_ids, np.int64)[cols]])) if rows.size else 0
    result.update({"class_accuracy": _ratio(correct, rows.size), "n_matched": int(rows.size),
                   "n_class_correct": correct})
    return result


def object_classes_from_image(labels, class_image) -> np.ndarray:
    """``(max_id + 1,)`` class of each labelled object: the most common class id over its pixels (0: none)."""
    labels = np.asarray(labels).astype(np.int64)
    class_image = np.asarray(class_image).astype(np.int64)
    n, c = int(labels.max(initial=0)) + 1, int(class_image.max(initial=0)) + 1
    votes = np.bincount(labels.ravel() * c + class_image.ravel(), minlength=n * c).reshape(n, c)
    votes[:, 0] = 0
    result = votes.argmax(axis=1)
    result[votes.max(axis=1) == 0] = 0
    result[0] = 0
    return result


def pooled_class_accuracy(rows: list[dict]) -> float:
    """The class accuracy of all matched objects of all images together (not the mean of the images')."""
    matched = sum(int(r.get("n_matched", 0)) for r in rows)
    return _ratio(sum(int(r.get("n_class_correct", 0)) for r in rows), matched)


def _object_ids(labels: np.ndarray, masks: bool) -> list[int]:
    """The objects in the order :func:`_overlap` counts them: increasing ids, or non-empty masks from 1."""
    if masks:
        return [i + 1 for i in range(labels.shape[0]) if labels[i].any()]
    ids = np.unique(labels)
    return [int(i) for i in ids if i > 0]


def _check_classes_cover(classes: np.ndarray, ids: list[int], what: str) -> None:
    if ids and classes.size <= max(ids):
        raise DeepColorError(f"the {what} classes cover objects up to {classes.size - 1} but the {what} labels "
                             f"go up to {max(ids)}; give every object a class.")
    unclassed = [i for i in ids if classes[i] <= 0]
    if unclassed:
        raise DeepColorError(f"{what} object(s) {', '.join(map(str, unclassed[:8]))} have no class.")


# --------------------------------------------------------------------------- folders

#: endings that mark a file as ground truth: NAME_label.png (CVPPP), NAME_masks.tif, ...
_GT_SUFFIXES = ("_ground_truth", "_groundtruth", "_labels", "_label", "_masks", "_mask", "_gt")
#: endings a prediction's name may add to the image name (NAME_rgb is the CVPPP image)
_PRED_SUFFIXES = (
    "_cp_masks", "_masks", "_mask", "_labels", "_label", "_prediction", "_predictions", "_pred",
    "_segmentation", "_seg", "_instances", "_rgb", "_image", "_img",
)
#: BBBC010: one binary PNG per worm, <well>_<nn>_ground_truth.png
_PER_OBJECT_MASK = re.compile(r"^(?P<key>.+)_(?P<index>\d+)_ground_truth$")


@dataclass
class _GroundTruth:
    key: str
    paths: list[Path]
    per_object_masks: bool

    @property
    def description(self) -> str:
        if self.per_object_masks:
            return f"{len(self.paths)} masks {self.key}_*_ground_truth"
        return self.paths[0].name

    def read(self) -> np.ndarray:
        if not self.per_object_masks:
            return read_labels(self.paths[0])
        masks = []
        for path in self.paths:
            mask = read_image(path)
            if mask.ndim == 3 and mask.shape[-1] in (3, 4):  # an RGB(A) mask: any colour is inside
                mask = mask[..., :3].any(axis=-1)
            masks.append(mask != 0)
        shapes = {m.shape for m in masks}
        if len(shapes) > 1:
            raise DeepColorError(
                f"The ground-truth masks of {self.key} have different shapes {sorted(shapes)}; "
                "every mask of one image must have the image's shape."
            )
        return np.stack(masks)


def _image_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DeepColorError(f"{what} folder {folder} does not exist or is not a folder.")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DeepColorError(
            f"The {what} folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}). "
            "Check the path."
        )
    return files


def _strip_suffix(stem: str, suffixes) -> str | None:
    for suffix in suffixes:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


def _ground_truth_index(files: list[Path]) -> dict[str, _GroundTruth]:
    """Ground truth per key. Files marked as ground truth by their name win over plain ones."""
    masks: dict[str, list[tuple[int, Path]]] = {}
    marked: dict[str, _GroundTruth] = {}
    plain: dict[str, _GroundTruth] = {}
    for path in files:
        match = _PER_OBJECT_MASK.match(path.stem)
        if match:
            masks.setdefault(match["key"], []).append((int(match["index"]), path))
            continue
        key = _strip_suffix(path.stem, _GT_SUFFIXES)
        if key is not None:
            marked.setdefault(key, _GroundTruth(key, [path], False))
        else:
            plain.setdefault(path.stem, _GroundTruth(path.stem, [path], False))
    for key, numbered in masks.items():
        marked[key] = _GroundTruth(key, [p for _, p in sorted(numbered)], True)
    if marked:
        if plain:  # e.g. the CVPPP folder: plantNNN_rgb.png and _fg.png next to _label.png
            logger.info("ground truth: ignoring %d files without a ground-truth ending (%s, ...)",
                        len(plain), next(iter(plain)))
        return marked
    return plain


def _candidate_keys(stem: str) -> list[str]:
    """Names under which a prediction's ground truth may be stored, most specific first."""
    keys = [stem]
    while (shorter := _strip_suffix(keys[-1], _PRED_SUFFIXES)) is not None:
        keys.append(shorter)
    return keys


def _prefix_keys(stem: str) -> list[str]:
    """BBBC010: the image <well>_w1 goes with the masks <well>_<nn>_ground_truth."""
    parts = stem.split("_")
    return ["_".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _find_ground_truth(stem: str, index: dict[str, _GroundTruth]) -> _GroundTruth | None:
    for key in _candidate_keys(stem):
        if key in index:
            return index[key]
    for key in _prefix_keys(stem):
        if key in index and index[key].per_object_masks:
            return index[key]
    return None


def _few(names, n: int = 5) -> str:
    names = list(names)
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")


def _pair_files(prediction_dir: Path, ground_truth_dir: Path) -> tuple[list[tuple[Path, _GroundTruth]],
                                                                      list[_GroundTruth]]:
    """(prediction, ground truth) pairs, and the ground truths that no prediction matches."""
    predictions = _image_files(prediction_dir, "prediction")
    index = _ground_truth_index(_image_files(ground_truth_dir, "ground-truth"))
    pairs, unmatched, taken = [], [], {}
    for path in predictions:
        truth = _find_ground_truth(path.stem, index)
        if truth is None:
            unmatched.append(path.name)
            continue
        if truth.key in taken:
            raise DeepColorError(
                f"Predictions {taken[truth.key].name} and {path.name} both match the ground "
                f"truth {truth.description}. Keep one prediction per image in {prediction_dir}."
            )
        taken[truth.key] = path
        pairs.append((path, truth))
    if not pairs:
        raise DeepColorError(
            f"No prediction in {prediction_dir} matches a ground truth in {ground_truth_dir}. "
            f"Predictions: {_few(p.name for p in predictions)}. Ground truth: "
            f"{_few(t.description for t in index.values())}. Files are paired by name: NAME.tif "
            "with NAME.tif, NAME_label.png or NAME_masks.tif; <well>_w1.tif with "
            "<well>_<nn>_ground_truth.png."
        )
    if unmatched:
        logger.warning("skipping %d predictions without ground truth in %s: %s",
                       len(unmatched), ground_truth_dir, _few(unmatched))
    missing = [truth for key, truth in sorted(index.items()) if key not in taken]
    if missing:
        logger.warning("%d of %d ground-truth images have no prediction in %s (%s); each counts as all misses",
                       len(missing), len(index), prediction_dir, _few(t.description for t in missing))
    return pairs, missing


def evaluate_folders(
    prediction_dir: str | os.PathLike, ground_truth_dir: str | os.PathLike
) -> list[dict]:
    """Score every prediction in a folder against its ground truth (:func:`evaluate`).

    Parameters
    ----------
    prediction_dir : path
        Label images (TIFF/PNG), one per image.
    ground_truth_dir : path
        Either label images, paired by name: ``NAME.tif``/``NAME.png``, or
        ``NAME_label.png`` (CVPPP), ``NAME_masks.tif``, ... with the prediction
        ``NAME`` (a prediction may add ``_labels``, ``_rgb``, ``_cp_masks``, ...
        to the name). Or BBBC010-style per-object masks
        ``<well>_<nn>_ground_truth.png`` (binary, one per object, may overlap),
        paired with the prediction ``<well>_...`` (e.g. ``<well>_w1.tif``, named
        like the image). When some files carry a ground-truth ending (``_label``,
        ``_masks``, ``_ground_truth``, ...) the others are taken to be images and
        ignored, so a dataset folder holding images and labels works as it is.

    Returns
    -------
    list of dict
        One row per paired image, sorted by prediction name: ``name`` (the
        prediction's file stem) and the keys of :func:`evaluate`. Predictions
        without ground truth are skipped with a logged warning. Then one row
        per ground truth without a prediction, sorted by name (the ground
        truth's name, e.g. ``A02`` for BBBC010 masks), scored against an empty
        prediction: every object is a false negative, so a missing prediction
        lowers the means instead of vanishing from them. These rows also carry
        ``"prediction": "missing"`` (:data:`MISSING`).

    Raises
    ------
    DeepColorError
        A folder is missing or holds no images, no prediction matches any ground
        truth, two predictions match the same ground truth, or a prediction's
        shape differs from its ground truth's.
    """
    pairs, missing = _pair_files(Path(prediction_dir), Path(ground_truth_dir))
    rows = []
    for path, truth in pairs:
        prediction = read_labels(path)
        ground_truth = truth.read()
        gt_shape = ground_truth.shape[1:] if truth.per_object_masks else ground_truth.shape
        if prediction.shape != gt_shape:
            raise DeepColorError(
                f"{path.name} vs {truth.description}: "
                + _shape_mismatch(prediction.shape, gt_shape)
            )
        logger.debug("evaluating %s against %s", path.name, truth.description)
        rows.append({"name": path.stem, **evaluate(ground_truth, prediction)})
    for truth in missing:
        ground_truth = truth.read()
        nothing = np.zeros(ground_truth.shape[1:] if truth.per_object_masks else ground_truth.shape, np.uint8)
        rows.append({"name": truth.key, **evaluate(ground_truth, nothing), "prediction": MISSING})
    return rows


#: the ``prediction`` entry of a row of :func:`evaluate_folders` for a ground truth without prediction
MISSING = "missing"


def evaluate_class_folders(prediction_dir, ground_truth_dir, classes_dir) -> list[dict]:
    """:func:`evaluate_classes` for every prediction of a folder, paired as :func:`evaluate_folders` pairs them.

    The predicted classes come from each label file's ``NAME_classes.csv`` (as ``predict`` writes
    them); the true ones from ``classes_dir``, in the forms training reads
    (:mod:`napari_deepcolor.data.classes`): class images with ``classes.json``, or CSV tables of
    instance id (for per-object masks: the mask's number, counted from 1 in name order) and class
    name. Class names are those of ``classes.json``, else the names in the tables, sorted.
    A ground truth without prediction counts as all misses.
    """
    from .data.classes import (class_table_path, find_class_file, read_class_names, read_class_table)

    classes_dir = Path(classes_dir)
    if not classes_dir.is_dir():
        raise DeepColorError(f"the classes folder {classes_dir} does not exist; check the path.")
    pairs, missing = _pair_files(Path(prediction_dir), Path(ground_truth_dir))
    names = read_class_names(classes_dir)
    if names is None:
        names = tuple(sorted({n for f in classes_dir.glob("*.csv") for n in read_class_table(f).values()}))
    if not names:
        raise DeepColorError(f"{classes_dir} names no classes: add classes.json or CSV tables (label, class).")
    index = {n: i for i, n in enumerate(names, start=1)}
    rows = []
    for path, truth in [(p, t) for p, t in pairs] + [(None, t) for t in missing]:
        ground_truth = truth.read()
        gt_file = find_class_file(classes_dir, (truth.key, truth.paths[0].stem))
        if gt_file is None:
            raise DeepColorError(f"no class annotation for {truth.description} in {classes_dir} "
                                 f"(looked for {truth.key}.tif/.png/.csv).")
        gt_classes = _true_classes(ground_truth, gt_file, truth.per_object_masks, index)
        if path is None:
            prediction, pred_classes = np.zeros(ground_truth.shape[-2:], np.uint8), np.zeros(1, np.int64)
        else:
            prediction = read_labels(path)
            table_path = class_table_path(path)
            if not table_path.is_file():
                raise DeepColorError(f"{path.name} has no class table {table_path.name} beside it; predict with "
                                     "a model trained on classes (it writes NAME_classes.csv).")
            pred_classes = _classes_from_table(read_class_table(table_path), index, str(table_path))
        rows.append({"name": path.stem if path is not None else truth.key,
                     **evaluate_classes(ground_truth, prediction, gt_classes=gt_classes, pred_classes=pred_classes,
                                        class_names=names),
                     **({} if path is not None else {"prediction": MISSING})})
    return rows


def _classes_from_table(table: dict, index: dict, where: str) -> np.ndarray:
    unknown = sorted({n for n in table.values() if n not in index})
    if unknown:
        raise DeepColorError(f"{where}: class(es) {', '.join(unknown)} are not among {', '.join(index)}.")
    result = np.zeros(max(table, default=0) + 1, np.int64)
    for label, name in table.items():
        result[label] = index[name]
    return result


def _true_classes(ground_truth, path: Path, per_object_masks: bool, index: dict) -> np.ndarray:
    from .data.classes import read_class_table

    if path.suffix.lower() == ".csv":
        return _classes_from_table(read_class_table(path), index, str(path))
    class_image = read_labels(path)
    if not per_object_masks:
        return object_classes_from_image(ground_truth, class_image)
    return np.array([0] + [int(object_classes_from_image(mask.astype(np.int64), class_image)[1])
                           if mask.any() else 0 for mask in ground_truth])


# --------------------------------------------------------------------------- reporting


def summarize(rows: list[dict]) -> dict:
    """Mean of every metric over images: ``{'name': 'mean', metric: mean, ...}`` (text entries are left out)."""
    if not rows:
        raise DeepColorError("There are no results to summarize: no image was evaluated.")
    keys = [k for k in rows[0] if k != "name" and all(_is_number(row.get(k)) for row in rows)]
    return {"name": "mean", **{k: float(np.mean([row[k] for row in rows])) for k in keys}}


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """Rows of metrics as an aligned plain-text table (names left, numbers right).

    A row named ``'mean'`` (from :func:`summarize`) is set off by a rule.

    Examples
    --------
    >>> print(format_table([{"name": "a", "sbd": 0.5, "n_gt": 2}]))
    name    sbd  n_gt
    ----  -----  ----
    a     0.500     2
    """
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if "name" in columns:
        columns.remove("name")
        columns.insert(0, "name")
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(
            v.ljust(w) if c == "name" else v.rjust(w) for v, w, c in zip(values, widths, columns)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [line(columns), rule]
    for row, values in zip(rows, cells):
        if row.get("name") == "mean" and len(lines) > 2:
            lines.append(rule)
        lines.append(line(values))
    return "\n".join(lines)
