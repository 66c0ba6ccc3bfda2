"""Scoring folders: pairing prediction files with their ground truth by name, then scoring each pair."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.io import IMAGE_SUFFIXES, read_image, read_labels
from ..errors import DeepColorError
from .classes import evaluate_classes, object_classes_from_image
from .instances import _shape_mismatch, evaluate

logger = logging.getLogger(__name__)


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
    from ..data.classes import (class_table_path, find_class_file, read_class_names, read_class_table)

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
    from ..data.classes import read_class_table

    if path.suffix.lower() == ".csv":
        return _classes_from_table(read_class_table(path), index, str(path))
    class_image = read_labels(path)
    if not per_object_masks:
        return object_classes_from_image(ground_truth, class_image)
    return np.array([0] + [int(object_classes_from_image(mask.astype(np.int64), class_image)[1])
                           if mask.any() else 0 for mask in ground_truth])
