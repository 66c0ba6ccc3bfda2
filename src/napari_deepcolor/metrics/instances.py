"""The instance metrics of one image: SBD, |DiC|, AP over IoU thresholds, F1, matching IoU.

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

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..data.io import as_label_image
from ..errors import DeepColorError

logger = logging.getLogger(__name__)

#: IoU thresholds of the 2018 Data Science Bowl (0.50, 0.55, ..., 0.95).
DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

#: The keys of :func:`evaluate`, in table order.
METRIC_KEYS: tuple[str, ...] = (
    "n_gt", "n_pred", "sbd", "abs_dic", "dic", "ap", "ap50", "f1", "matching_iou",
)



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
