"""Instance-segmentation metrics, checked against hand-computed cases and real folders."""

from __future__ import annotations

import doctest
import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_deepcolor import metrics
from napari_deepcolor.errors import DeepColorError
from napari_deepcolor.metrics import (
    DSB_THRESHOLDS,
    METRIC_KEYS,
    abs_difference_in_count,
    average_precision,
    difference_in_count,
    evaluate,
    evaluate_folders,
    f1_score,
    format_table,
    iou_matrix,
    match_counts,
    matching_iou,
    summarize,
    symmetric_best_dice,
)


# Two 2x2 squares; the prediction shifts the second one right by a column.
#   gt          pred
#   1 1 . . .   1 1 . . .
#   1 1 . . .   1 1 . . .
#   . . 2 2 .   . . . 2 2
#   . . 2 2 .   . . . 2 2
# square 1: IoU 1, Dice 1.  square 2: |g & p| = 2, |g | p| = 6 -> IoU 2/6 = 1/3, Dice 2*2/8 = 1/2.
# SBD = min(BD(gt,pred), BD(pred,gt)) = min((1 + 1/2)/2, (1 + 1/2)/2) = 3/4.
# AP(t), every t in 0.50..0.95: TP 1 (square 1), FP 1, FN 1 -> 1/3; mean 1/3.
# F1 at 0.5 = 2*1 / (2*1 + 1 + 1) = 1/2.  Matching IoU = (1 + 1/3) / max(2, 2) = 2/3.
SHIFT_GT = np.array([
    [1, 1, 0, 0, 0],
    [1, 1, 0, 0, 0],
    [0, 0, 2, 2, 0],
    [0, 0, 2, 2, 0],
])
SHIFT_PRED = np.array([
    [1, 1, 0, 0, 0],
    [1, 1, 0, 0, 0],
    [0, 0, 0, 2, 2],
    [0, 0, 0, 2, 2],
])


def test_shifted_square_every_metric():
    assert iou_matrix(SHIFT_GT, SHIFT_PRED) == pytest.approx(np.array([[1, 0], [0, 1 / 3]]))
    assert symmetric_best_dice(SHIFT_GT, SHIFT_PRED) == pytest.approx(0.75)
    ap = average_precision(SHIFT_GT, SHIFT_PRED)
    assert ap["ap"] == pytest.approx(1 / 3)
    assert list(ap["ap_per_threshold"]) == list(DSB_THRESHOLDS)
    assert all(v == pytest.approx(1 / 3) for v in ap["ap_per_threshold"].values())
    assert f1_score(SHIFT_GT, SHIFT_PRED) == pytest.approx(0.5)
    assert matching_iou(SHIFT_GT, SHIFT_PRED) == pytest.approx(2 / 3)
    assert difference_in_count(SHIFT_GT, SHIFT_PRED) == 0
    assert abs_difference_in_count(SHIFT_GT, SHIFT_PRED) == 0
    # a lower threshold lets square 2 match: IoU 1/3 > 0.3
    assert match_counts(SHIFT_GT, SHIFT_PRED, iou_threshold=0.3) == {
        "tp": 2, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_evaluate_has_every_key_and_agrees_with_the_single_metrics():
    scores = evaluate(SHIFT_GT, SHIFT_PRED)
    assert tuple(scores) == METRIC_KEYS
    assert scores == pytest.approx({
        "n_gt": 2, "n_pred": 2, "sbd": 0.75, "abs_dic": 0, "dic": 0, "ap": 1 / 3,
        "ap50": 1 / 3, "f1": 0.5, "matching_iou": 2 / 3,
    })
    assert isinstance(scores["n_gt"], int) and isinstance(scores["dic"], int)


def test_perfect_prediction_scores_one_whatever_the_ids():
    prediction = np.where(SHIFT_GT == 1, 40, np.where(SHIFT_GT == 2, 7, 0))  # ids swapped and renamed
    assert evaluate(SHIFT_GT, prediction) == {
        "n_gt": 2, "n_pred": 2, "sbd": 1.0, "abs_dic": 0, "dic": 0, "ap": 1.0, "ap50": 1.0,
        "f1": 1.0, "matching_iou": 1.0}


def test_empty_prediction_scores_zero():
    # no predicted object: every Dice/IoU is 0; TP 0, FP 0, FN 2 -> AP 0, F1 0; DiC = 0 - 2
    scores = evaluate(SHIFT_GT, np.zeros_like(SHIFT_GT))
    assert scores == {
        "n_gt": 2, "n_pred": 0, "sbd": 0.0, "abs_dic": 2, "dic": -2, "ap": 0.0, "ap50": 0.0,
        "f1": 0.0, "matching_iou": 0.0}
    assert match_counts(SHIFT_GT, np.zeros_like(SHIFT_GT)) == {
        "tp": 0, "fp": 0, "fn": 2, "precision": 1.0, "recall": 0.0, "f1": 0.0}
    assert iou_matrix(SHIFT_GT, np.zeros_like(SHIFT_GT)).shape == (2, 0)


def test_prediction_without_ground_truth_objects_scores_zero():
    scores = evaluate(np.zeros_like(SHIFT_PRED), SHIFT_PRED)
    assert (scores["sbd"], scores["ap"], scores["f1"], scores["matching_iou"]) == (0, 0, 0, 0)
    assert scores["dic"] == 2


def test_both_empty_is_perfect():
    empty = np.zeros((3, 4), np.uint8)
    assert evaluate(empty, empty) == {
        "n_gt": 0, "n_pred": 0, "sbd": 1.0, "abs_dic": 0, "dic": 0, "ap": 1.0, "ap50": 1.0,
        "f1": 1.0, "matching_iou": 1.0}
    assert iou_matrix(empty, empty).shape == (0, 0)
    # an empty stack of masks is the same as an empty label image
    assert evaluate(np.zeros((0, 3, 4), bool), empty)["sbd"] == 1.0


def test_over_segmentation_one_object_split_in_two():
    # gt one 2x4 rectangle (8 px); prediction two 2x2 halves (4 px each).
    # each half: IoU 4/8 = 1/2, Dice 2*4/(8+4) = 2/3.  SBD = min(2/3, (2/3+2/3)/2) = 2/3.
    # IoU 1/2 is NOT > 0.5: TP 0, FP 2, FN 1 at every threshold -> AP 0, F1 0.
    # Matching IoU: one pair of IoU 1/2 over max(1, 2) labels = 1/4.  DiC = 2 - 1 = +1.
    gt = np.array([[1, 1, 1, 1], [1, 1, 1, 1]])
    pred = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    assert iou_matrix(gt, pred) == pytest.approx(np.array([[0.5, 0.5]]))
    assert evaluate(gt, pred) == pytest.approx({
        "n_gt": 1, "n_pred": 2, "sbd": 2 / 3, "abs_dic": 1, "dic": 1, "ap": 0.0, "ap50": 0.0,
        "f1": 0.0, "matching_iou": 0.25})
    # at IoU > 0.4 one half matches: TP 1, FP 1, FN 0 -> precision 1/2, recall 1, F1 2/3
    assert match_counts(gt, pred, iou_threshold=0.4) == pytest.approx({
        "tp": 1, "fp": 1, "fn": 0, "precision": 0.5, "recall": 1.0, "f1": 2 / 3})


def test_threshold_is_strict():
    # IoU exactly 0.5 is no match at t = 0.5 (DSB: a hit needs IoU > t); it is at t = 0.45
    gt = np.array([[1, 1, 1, 1]])
    pred = np.array([[1, 1, 0, 0]])
    assert average_precision(gt, pred, thresholds=(0.5,))["ap"] == 0.0
    assert average_precision(gt, pred, thresholds=(0.45, 0.5))["ap_per_threshold"] == {0.45: 1.0, 0.5: 0.0}


@pytest.mark.parametrize("threshold", [-0.1, 1.0, float("nan")])
def test_thresholds_outside_0_1_are_refused(threshold):
    with pytest.raises(DeepColorError, match="IoU thresholds"):
        f1_score(SHIFT_GT, SHIFT_PRED, iou_threshold=threshold)


def test_merged_objects():
    # gt: A = 2x2 (4 px) and B = 2x1 (2 px) side by side; the prediction merges them (6 px).
    #   Dice(A, P) = 2*4/(4+6) = 0.8, Dice(B, P) = 2*2/(2+6) = 0.5
    #   BD(gt, pred) = (0.8 + 0.5)/2 = 0.65, BD(pred, gt) = 0.8 -> SBD 0.65
    #   IoU(A, P) = 4/6 = 0.667, IoU(B, P) = 2/6: TP 1, FP 0, FN 1 -> AP(t) = 1/2 for
    #   t = 0.50, 0.55, 0.60, 0.65 and 0 above -> AP = 4 * 0.5 / 10 = 0.2; F1 = 2/(2+0+1) = 2/3
    #   Matching IoU = (2/3) / max(2, 1) = 1/3; DiC = 1 - 2 = -1
    gt = np.array([[1, 1, 2], [1, 1, 2]])
    pred = np.array([[9, 9, 9], [9, 9, 9]])
    assert evaluate(gt, pred) == pytest.approx({
        "n_gt": 2, "n_pred": 1, "sbd": 0.65, "abs_dic": 1, "dic": -1, "ap": 0.2, "ap50": 0.5,
        "f1": 2 / 3, "matching_iou": 1 / 3})


def test_overlapping_ground_truth_masks():
    # 1x5 image; masks A = cols 0-2, B = cols 2-4 share col 2.  Prediction p1 = cols 0-1, p2 = cols 2-4.
    #   |A|=3 |B|=3 |p1|=2 |p2|=3;  A&p1 = 2, A&p2 = 1 (the shared pixel), B&p2 = 3, B&p1 = 0
    #   IoU: A-p1 = 2/(3+2-2) = 2/3, A-p2 = 1/(3+3-1) = 1/5, B-p2 = 3/3 = 1
    #   Dice: A-p1 = 4/5, A-p2 = 2/6, B-p2 = 1 -> BD both ways (0.8 + 1)/2 = 0.9 -> SBD 0.9
    #   AP: t <= 0.65 both match (AP 1); t >= 0.70 only B-p2: 1/(1+1+1) -> (4*1 + 6/3)/10 = 0.6
    #   Matching IoU = (2/3 + 1) / 2 = 5/6
    masks = np.array([[[1, 1, 1, 0, 0]], [[0, 0, 1, 1, 1]]], dtype=bool)
    pred = np.array([[1, 1, 2, 2, 2]])
    assert iou_matrix(masks, pred) == pytest.approx(np.array([[2 / 3, 1 / 5], [0, 1]]))
    assert evaluate(masks, pred) == pytest.approx({
        "n_gt": 2, "n_pred": 2, "sbd": 0.9, "abs_dic": 0, "dic": 0, "ap": 0.6, "ap50": 1.0,
        "f1": 1.0, "matching_iou": 5 / 6})
    # 0/255 uint8 masks, as BBBC010 stores them, mean the same; empty masks are no objects
    as_png = np.concatenate([masks.astype(np.uint8) * 255, np.zeros((1, 1, 5), np.uint8)])
    assert evaluate(as_png, pred) == evaluate(masks, pred)


def test_one_prediction_matches_only_one_of_two_overlapping_masks():
    # masks A = cols 0-3, B = cols 0-2 (B inside A); prediction = cols 0-3.
    # IoU(A, p) = 1, IoU(B, p) = 3/4: both above 0.5, but one-to-one -> TP 1, FN 1, FP 0.
    masks = np.array([[[1, 1, 1, 1]], [[1, 1, 1, 0]]], dtype=bool)
    pred = np.array([[1, 1, 1, 1]])
    assert match_counts(masks, pred) == pytest.approx({
        "tp": 1, "fp": 0, "fn": 1, "precision": 1.0, "recall": 0.5, "f1": 2 / 3})
    assert matching_iou(masks, pred) == pytest.approx(0.5)  # (1 + 0) / 2


def test_matching_maximises_the_number_of_matches():
    # 1x10.  gt B = cols 0-1, A = cols 2-9; prediction p1 = cols 0-6, p2 = cols 7-9.
    #   IoU(A, p1) = 5/10 = 0.5, IoU(A, p2) = 3/8 = 0.375, IoU(B, p1) = 2/7 = 0.286, IoU(B, p2) = 0
    # At IoU > 0.25 greedy best-first takes A-p1 and leaves B and p2 alone (TP 1); the
    # one-to-one matching finds A-p2 and B-p1 (TP 2).  Matching IoU = (3/8 + 2/7) / 2.
    gt = np.array([[2, 2, 1, 1, 1, 1, 1, 1, 1, 1]])
    pred = np.array([[1, 1, 1, 1, 1, 1, 1, 2, 2, 2]])
    assert match_counts(gt, pred, iou_threshold=0.25)["tp"] == 2
    assert matching_iou(gt, pred) == pytest.approx((3 / 8 + 2 / 7) / 2)


@pytest.mark.parametrize("gt_dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64, np.float32])
@pytest.mark.parametrize("pred_dtype", [np.uint8, np.int16, np.uint32, np.int64])
def test_ids_and_dtypes_do_not_matter(gt_dtype, pred_dtype):
    # same geometry as SHIFT_GT / SHIFT_PRED, ids 3 and 17 in gt, 200 and 5 in the prediction
    gt = np.where(SHIFT_GT == 1, 3, np.where(SHIFT_GT == 2, 17, 0)).astype(gt_dtype)
    pred = np.where(SHIFT_PRED == 1, 200, np.where(SHIFT_PRED == 2, 5, 0)).astype(pred_dtype)
    scores = evaluate(gt, pred)
    assert scores == evaluate(SHIFT_GT, SHIFT_PRED)
    # objects come in increasing id order: gt 3, 17 x pred 5, 200
    assert iou_matrix(gt, pred) == pytest.approx(np.array([[0, 1], [1 / 3, 0]]))


def test_huge_ids_are_fine():
    gt = SHIFT_GT.astype(np.int64) * 2**40
    assert evaluate(gt, SHIFT_PRED) == evaluate(SHIFT_GT, SHIFT_PRED)


def test_inputs_are_not_modified():
    gt, pred = SHIFT_GT.copy(), SHIFT_PRED.copy()
    masks = np.stack([SHIFT_GT == 1, SHIFT_GT == 2])
    masks_before = masks.copy()
    evaluate(gt, pred)
    evaluate(masks, pred)
    assert np.array_equal(gt, SHIFT_GT) and np.array_equal(pred, SHIFT_PRED)
    assert np.array_equal(masks, masks_before)


def test_label_image_and_its_masks_give_the_same_scores():
    masks = np.stack([SHIFT_GT == 1, SHIFT_GT == 2])
    assert evaluate(masks, SHIFT_PRED) == evaluate(SHIFT_GT, SHIFT_PRED)


def _reference(gt: np.ndarray, pred: np.ndarray) -> dict:
    """Loop-over-objects reference: IoU/Dice per pair, brute-force best permutation."""
    gt_ids, pred_ids = np.unique(gt[gt > 0]), np.unique(pred[pred > 0])
    iou = np.zeros((gt_ids.size, pred_ids.size))
    dice = np.zeros_like(iou)
    for i, g in enumerate(gt_ids):
        for j, p in enumerate(pred_ids):
            inter = np.sum((gt == g) & (pred == p))
            iou[i, j] = inter / np.sum((gt == g) | (pred == p))
            dice[i, j] = 2 * inter / (np.sum(gt == g) + np.sum(pred == p))
    sbd = min(dice.max(1).mean(), dice.max(0).mean())
    n = max(iou.shape)
    padded = np.zeros((n, n))
    padded[: iou.shape[0], : iou.shape[1]] = iou
    best = max(sum(padded[i, perm[i]] for i in range(n)) for perm in itertools.permutations(range(n)))
    return {"iou": iou, "sbd": sbd, "matching_iou": best / n}


@pytest.mark.parametrize("seed", range(4))
def test_random_images_agree_with_a_loop_reference(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 5, size=(12, 12)) * (rng.random((12, 12)) < 0.8)
    pred = np.where(rng.random((12, 12)) < 0.7, gt, rng.integers(0, 6, size=(12, 12)))
    reference = _reference(gt, pred)
    assert iou_matrix(gt, pred) == pytest.approx(reference["iou"])
    assert symmetric_best_dice(gt, pred) == pytest.approx(reference["sbd"])
    assert matching_iou(gt, pred) == pytest.approx(reference["matching_iou"])


@pytest.mark.parametrize(
    ("gt", "pred", "expected"),
    [
        (np.zeros((4, 5), int), np.zeros((5, 4), int), "transposed"),
        (np.zeros((4, 5), int), np.zeros((4, 6), int), "(4, 6)"),
        (np.zeros((2, 5, 4), bool), np.zeros((4, 5), int), "transposed"),
        (np.zeros((2, 2, 4, 5)), np.zeros((4, 5), int), "stack of per-object masks"),
        (np.zeros((4, 5), int), np.full((4, 5), 0.5), "integer"),
        (np.zeros((4, 5), int), np.full((4, 5), -1), ">= 0"),
        (np.zeros(5, int), np.zeros(5, int), "at least 2D"),
    ],
)
def test_bad_inputs_raise_a_helpful_error(gt, pred, expected):
    with pytest.raises(DeepColorError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        evaluate(gt, pred)


def test_docstring_examples_run():
    assert doctest.testmod(metrics).failed == 0


# --------------------------------------------------------------------------- folders


def _write_tif(path: Path, labels: np.ndarray) -> None:
    tifffile.imwrite(path, labels)


def test_evaluate_folders_on_bbbc010_per_object_masks(shared_data, tmp_path, caplog):
    masks_dir = shared_data / "bbbc010/masks"
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for well in ("A01", "A03"):
        masks = [np.asarray(Image.open(p)) > 0 for p in sorted(masks_dir.glob(f"{well}_*_ground_truth.png"))]
        labels = np.zeros(masks[0].shape, np.uint16)
        for index, mask in enumerate(masks, start=1):
            labels[mask] = index  # overlaps go to the later worm
        _write_tif(predictions / f"{well}_w1.tif", labels)
    _write_tif(predictions / "Z99_w1.tif", labels)  # no ground truth: skipped with a warning
    with caplog.at_level(logging.WARNING, logger="napari_deepcolor.metrics"):
        rows = evaluate_folders(predictions, masks_dir)
    assert "Z99_w1.tif" in caplog.text
    rows, missing = rows[:2], rows[2:]
    assert [row["name"] for row in rows] == ["A01_w1", "A03_w1"]
    wells = {p.name[:3] for p in masks_dir.glob("*_ground_truth.png")}
    assert sorted(row["name"] for row in missing) == sorted(wells - {"A01", "A03"})  # the wells not predicted
    assert all(row["prediction"] == "missing" and row["f1"] == 0 and row["n_pred"] == 0 for row in missing)
    for row in rows:
        assert set(row) == {"name", *METRIC_KEYS}
        assert row["n_gt"] == len(list(masks_dir.glob(f"{row['name'][:3]}_*_ground_truth.png")))
        assert row["dic"] == 0
        assert row["sbd"] > 0.95  # only the crossing pixels differ
        assert row["f1"] == 1.0
    summary = summarize(rows + missing)
    assert summary["name"] == "mean" and "prediction" not in summary
    assert summary["sbd"] == pytest.approx(np.sum([row["sbd"] for row in rows]) / len(wells))


def test_evaluate_folders_on_bbbc039_label_images(shared_data, tmp_path):
    names = sorted(p.stem for p in (shared_data / "bbbc039/labels").glob("*.tif"))[:2]
    predictions = tmp_path / "pred"
    predictions.mkdir()
    truth = tifffile.imread(shared_data / "bbbc039/labels" / f"{names[0]}.tif")
    _write_tif(predictions / f"{names[0]}.tif", truth)
    second = tifffile.imread(shared_data / "bbbc039/labels" / f"{names[1]}.tif")
    damaged = np.where(second == second.max(), 0, second)  # one nucleus missed
    _write_tif(predictions / f"{names[1]}_labels.tif", damaged)  # suffix added by a tool
    rows = evaluate_folders(predictions, shared_data / "bbbc039/labels")
    assert len(rows) == len(list((shared_data / "bbbc039/labels").glob("*.tif")))  # the unpredicted ones count as misses
    rows = rows[:2]
    assert [row["name"] for row in rows] == [names[0], f"{names[1]}_labels"]
    assert rows[0] == {"name": names[0], **evaluate(truth, truth)}
    assert rows[0]["sbd"] == 1.0 and rows[0]["ap"] == 1.0
    assert rows[1]["dic"] == -1 and rows[1]["n_gt"] == np.unique(second[second > 0]).size


def test_evaluate_folders_on_a_cvppp_layout(tmp_path):
    # plantNNN_rgb.png (image), plantNNN_label.png (ids), plantNNN_fg.png in one folder;
    # the prediction is named like the image.
    truth_dir, predictions = tmp_path / "A1", tmp_path / "pred"
    truth_dir.mkdir()
    predictions.mkdir()
    labels = np.zeros((6, 8), np.uint8)
    labels[1:3, 1:4], labels[4:6, 5:8] = 1, 2
    Image.fromarray(labels).save(truth_dir / "plant001_label.png")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(truth_dir / "plant001_rgb.png")
    Image.fromarray((labels > 0).astype(np.uint8)).save(truth_dir / "plant001_fg.png")
    _write_tif(predictions / "plant001_rgb.tif", labels * 5)
    rows = evaluate_folders(predictions, truth_dir)
    assert len(rows) == 1 and rows[0]["name"] == "plant001_rgb"
    assert rows[0]["sbd"] == 1.0 and rows[0]["n_gt"] == 2


def test_evaluate_folders_errors(tmp_path):
    truth_dir, predictions = tmp_path / "gt", tmp_path / "pred"
    truth_dir.mkdir()
    predictions.mkdir()
    with pytest.raises(DeepColorError, match="no image files"):
        evaluate_folders(predictions, truth_dir)
    with pytest.raises(DeepColorError, match="does not exist"):
        evaluate_folders(tmp_path / "missing", truth_dir)

    _write_tif(truth_dir / "cells_a.tif", np.ones((4, 6), np.uint8))
    _write_tif(predictions / "other_b.tif", np.ones((4, 6), np.uint8))
    with pytest.raises(DeepColorError, match="No prediction") as error:
        evaluate_folders(predictions, truth_dir)
    assert "other_b.tif" in str(error.value) and "cells_a.tif" in str(error.value)

    _write_tif(predictions / "cells_a.tif", np.ones((6, 4), np.uint8))
    with pytest.raises(DeepColorError, match=r"\(6, 4\).*\(4, 6\).*transposed"):
        evaluate_folders(predictions, truth_dir)
    _write_tif(predictions / "cells_a.tif", np.ones((4, 5), np.uint8))
    with pytest.raises(DeepColorError, match=r"\(4, 5\).*\(4, 6\)"):
        evaluate_folders(predictions, truth_dir)

    _write_tif(predictions / "cells_a.tif", np.ones((4, 6), np.uint8))
    _write_tif(predictions / "cells_a_labels.tif", np.ones((4, 6), np.uint8))
    with pytest.raises(DeepColorError, match="both match"):
        evaluate_folders(predictions, truth_dir)


def test_summarize_and_format_table():
    rows = [
        {"name": "a", **evaluate(SHIFT_GT, SHIFT_PRED)},
        {"name": "a_much_longer_name", **evaluate(SHIFT_GT, SHIFT_GT)},
    ]
    summary = summarize(rows)
    assert summary["sbd"] == pytest.approx((0.75 + 1.0) / 2)
    assert summary["n_gt"] == 2.0
    table = format_table([*rows, summary])
    lines = table.splitlines()
    assert lines[0].split() == ["name", *METRIC_KEYS]
    assert len({len(line) for line in lines}) == 1  # every line as wide: columns aligned
    assert lines[-1].startswith("mean") and set(lines[-2]) <= {"-", " "}
    assert "0.750" in lines[2] and "a_much_longer_name" in lines[3]
    with pytest.raises(DeepColorError):
        summarize([])


def test_evaluate_folders_counts_a_missing_prediction_as_all_misses(tmp_path):
    truth_dir, predictions = tmp_path / "gt", tmp_path / "pred"
    truth_dir.mkdir()
    predictions.mkdir()
    truth = np.zeros((20, 20), np.uint16)
    truth[2:6, 2:6], truth[10:15, 10:15] = 1, 2
    for name in ("a", "b", "c"):
        _write_tif(truth_dir / f"{name}.tif", truth)
    _write_tif(predictions / "b.tif", truth)
    rows = evaluate_folders(predictions, truth_dir)
    assert [(row["name"], row.get("prediction")) for row in rows] == [("b", None), ("a", "missing"), ("c", "missing")]
    assert rows[1] == {"name": "a", **evaluate(truth, np.zeros_like(truth)), "prediction": "missing"}
    assert rows[1]["n_gt"] == 2 and rows[1]["f1"] == 0 and rows[1]["ap"] == 0
    assert summarize(rows)["f1"] == pytest.approx(1 / 3)
