"""Instance-segmentation metrics: SBD, |DiC|, AP over IoU thresholds, F1, matching IoU.

Every metric compares a *prediction* (a label image, 0 = background) with a
*ground truth* given either as

* a label image of the prediction's shape (0 = background), or
* a stack of per-object masks of shape ``(K, *prediction.shape)`` whose masks may
  overlap (BBBC010 worms cross; a pixel can belong to two worms).

The rooms: :mod:`.instances` (the metrics of one image, all built on one
vectorised overlap count), :mod:`.classes` (per-class scores and the class
accuracy of models trained on classes), :mod:`.folders` (pairing prediction and
ground-truth files in folders by name, and scoring them) and :mod:`.report`
(means and plain-text tables). Everything is importable from
``napari_deepcolor.metrics`` itself.

Conventions shared by all scores: when neither image holds an object the score is
perfect (1.0); when only one of them does it is 0.0. Object ids need not be
consecutive and any integer dtype is accepted; inputs are never modified.
"""

from .classes import evaluate_classes, object_classes_from_image, pooled_class_accuracy
from .folders import MISSING, evaluate_class_folders, evaluate_folders
from .instances import (DSB_THRESHOLDS, METRIC_KEYS, abs_difference_in_count, average_precision,
                        difference_in_count, evaluate, f1_score, iou_matrix, match_counts, matching_iou,
                        symmetric_best_dice)
from .report import format_table, summarize

__all__ = [
    "DSB_THRESHOLDS", "METRIC_KEYS", "MISSING", "abs_difference_in_count", "average_precision",
    "difference_in_count", "evaluate", "evaluate_class_folders", "evaluate_classes", "evaluate_folders",
    "f1_score", "format_table", "iou_matrix", "match_counts", "matching_iou", "object_classes_from_image",
    "pooled_class_accuracy", "summarize", "symmetric_best_dice",
]
