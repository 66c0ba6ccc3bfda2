"""The class metrics of one image: per-class AP and F1, and the class accuracy of matched objects."""

from __future__ import annotations

import numpy as np

from ..errors import DeepColorError
from .instances import _as_prediction, _iou, _matched_pairs, _overlap, _ratio, evaluate


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
