"""The table of objects next to a label file: position, size and intensity of every object.

One row per object and time frame, measured with scikit-image's
:func:`~skimage.measure.regionprops_table` on each frame's label image (a
volume for z-stacks, so ``volume`` replaces ``area``):

``label``, ``frame`` (time-lapses), ``centroid_z`` (stacks), ``centroid_y``,
``centroid_x``, ``bbox_z0``/``bbox_z1`` (stacks), ``bbox_y0``, ``bbox_x0``,
``bbox_y1``, ``bbox_x1`` (end exclusive, as NumPy slices), ``area`` or
``volume`` (pixels or voxels), for each channel of the image
``mean_intensity_<channel>`` and ``integrated_intensity_<channel>`` (the sum
over the object), ``instance_score`` (the decoder's confidence in the object)
and, for models with classes, ``class`` and ``class_score`` (the class head's
confidence, the ``score`` of ``NAME_classes.csv``). Coordinates are in pixels of the
image (multiply by the pixel size for microns).

The same table is the labels layer's ``features`` in napari; written as CSV
atomically (:func:`write_table`) as ``NAME_objects.csv`` beside ``NAME.tif``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .errors import DeepColorError

__all__ = ["measure_objects", "measurements_path", "tracks_path", "write_table"]

MEASUREMENTS_SUFFIX = "_objects.csv"
TRACKS_SUFFIX = "_tracks.csv"


def measurements_path(label_path) -> Path:
    """``out/a.tif`` -> ``out/a_objects.csv`` (also for ``a.zarr``)."""
    path = Path(label_path)
    return path.with_name(path.stem + MEASUREMENTS_SUFFIX)


def tracks_path(label_path) -> Path:
    """``out/a.tif`` -> ``out/a_tracks.csv``."""
    path = Path(label_path)
    return path.with_name(path.stem + TRACKS_SUFFIX)


def measure_objects(labels: np.ndarray, axes: str, *, image: np.ndarray | None = None, instances=None,
                    class_names=(), channel_names=()) -> dict[str, list]:
    """Measure every object of a label image; a table as ``{column: values}`` (see the module notes).

    Parameters
    ----------
    labels : ndarray of int
        Label image (0 = background) with ``axes`` ending in ``YX``, e.g. ``YX``,
        ``ZYX``, ``TYX``, ``TZYX``. Axes other than T and Z are measured as
        independent images, with a column of their own (e.g. ``q``).
    axes : str
        One letter per axis of ``labels``.
    image : ndarray, optional
        The intensities: ``labels``' shape plus a last channel axis (C >= 1).
    instances : Instances, optional
        Where ``instance_score`` (and ``class``, ``class_score``) come from: entry
        ``i - 1`` belongs to label ``i``.
    class_names : sequence of str
        Names of class ids 1..K (models with classes).
    channel_names : sequence of str
        Names for the intensity columns (default: 0, 1, ...).

    Returns
    -------
    dict
        Column name -> list of values, one per object and frame, ordered by
        frame then label.

    Examples
    --------
    >>> labels = np.zeros((4, 5), int); labels[1:3, 1:4] = 1
    >>> table = measure_objects(labels, "YX", image=np.full((4, 5, 1), 2.0))
    >>> table["label"], table["area"], table["integrated_intensity_0"]
    ([1], [6], [12.0])
    """
    from skimage.measure import regionprops_table

    labels, axes = np.asarray(labels), axes.upper()
    if labels.ndim != len(axes) or not axes.endswith("YX"):
        raise DeepColorError(f"labels of shape {labels.shape} do not match axes '{axes}' ending in YX.")
    if image is not None and (image.ndim != labels.ndim + 1 or image.shape[:-1] != labels.shape):
        raise DeepColorError(f"the intensity image (shape {image.shape}) must have the labels' shape "
                             f"{labels.shape} plus a channel axis.")
    spatial = [i for i, a in enumerate(axes) if a in "ZYX"]
    others = [i for i, a in enumerate(axes) if a not in "ZYX"]
    names = ["z", "y", "x"][-len(spatial):]
    channels = image.shape[-1] if image is not None else 0
    channel_names = [str(n) for n in channel_names] if len(channel_names) == channels else \
        [str(c) for c in range(channels)]
    size = "volume" if "Z" in axes else "area"
    columns: dict[str, list] = {"label": []}
    for a in others:
        columns["frame" if axes[a] == "T" else axes[a].lower()] = []
    columns.update({f"centroid_{n}": [] for n in names})
    columns.update({f"bbox_{n}0": [] for n in names})
    columns.update({f"bbox_{n}1": [] for n in names})
    columns[size] = []
    for c in channel_names:
        columns[f"mean_intensity_{c}"], columns[f"integrated_intensity_{c}"] = [], []
    moved = np.moveaxis(labels, others, range(len(others)))
    pixels = None if image is None else np.moveaxis(image, others, range(len(others)))
    for index in np.ndindex(*moved.shape[:len(others)]):
        frame = moved[index]
        if not frame.any():
            continue
        properties = ["label", "centroid", "bbox", "area"] + (["intensity_mean"] if channels else [])
        found = regionprops_table(frame, intensity_image=None if pixels is None else pixels[index],
                                  properties=properties)
        count = len(found["label"])
        columns["label"] += [int(v) for v in found["label"]]
        for a, i in zip(others, index):
            columns["frame" if axes[a] == "T" else axes[a].lower()] += [int(i)] * count
        dims = len(names)
        for k, n in enumerate(names):
            columns[f"centroid_{n}"] += [round(float(v), 2) for v in found[f"centroid-{k}"]]
            columns[f"bbox_{n}0"] += [int(v) for v in found[f"bbox-{k}"]]
            columns[f"bbox_{n}1"] += [int(v) for v in found[f"bbox-{k + dims}"]]
        areas = [int(v) for v in found["area"]]
        columns[size] += areas
        for c, name in enumerate(channel_names):
            means = found.get(f"intensity_mean-{c}", found.get("intensity_mean"))
            columns[f"mean_intensity_{name}"] += [round(float(m), 4) for m in means]
            columns[f"integrated_intensity_{name}"] += [round(float(m) * a, 4) for m, a in zip(means, areas)]
    if instances is not None:
        _add_instance_columns(columns, instances, class_names)
    return columns


def _add_instance_columns(columns: dict, instances, class_names) -> None:
    ids = np.asarray(columns["label"], np.int64) - 1
    scores = np.asarray(instances.scores)
    if scores.size and ids.size and ids.max() >= scores.size:
        raise DeepColorError(f"the labels hold id {ids.max() + 1} but only {scores.size} objects were decoded.")
    columns["instance_score"] = [round(float(scores[i]), 4) for i in ids] if scores.size else [""] * ids.size
    if instances.classes is not None and class_names:
        columns["class"] = [class_names[int(instances.classes[i]) - 1] for i in ids]
        columns["class_score"] = [round(float(instances.class_scores[i]), 4) for i in ids]


def write_table(path, table, fields=None, *, overwrite: bool = False) -> Path:
    """Write a table (``{column: values}`` or a list of row dicts) as CSV atomically."""
    from .data.io import atomic_write

    if isinstance(table, dict):
        fields = list(table) if fields is None else list(fields)
        count = len(next(iter(table.values()), []))
        rows = [{k: table[k][i] for k in table} for i in range(count)]
    else:
        rows = list(table)
        fields = list(fields) if fields is not None else list(dict.fromkeys(k for row in rows for k in row))
    fields = [f for f in fields if any(f in row for row in rows)] or list(fields)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write, overwrite=overwrite)
