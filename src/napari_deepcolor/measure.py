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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DeepColorError

__all__ = ["ObjectSums", "measure_objects", "measurements_path", "table_from_sums", "tracks_path", "write_table"]

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
    names, others = _spatial_names(axes), _frame_axes(axes)
    channels = image.shape[-1] if image is not None else 0
    columns = _new_columns(axes, _channel_names(channel_names, channels))
    moved = np.moveaxis(labels, others, range(len(others)))
    pixels = None if image is None else np.moveaxis(image, others, range(len(others)))
    dims = len(names)
    for index in np.ndindex(*moved.shape[:len(others)]):
        frame = moved[index]
        if not frame.any():
            continue
        properties = ["label", "centroid", "bbox", "area"] + (["intensity_mean"] if channels else [])
        found = regionprops_table(frame, intensity_image=None if pixels is None else pixels[index],
                                  properties=properties)
        means = np.stack([found.get(f"intensity_mean-{c}", found.get("intensity_mean")) for c in range(channels)],
                         axis=1) if channels else None
        _append_frame(columns, axes, index, found["label"], np.stack([found[f"centroid-{k}"] for k in range(dims)], 1),
                      np.stack([found[f"bbox-{k}"] for k in range(dims)], 1),
                      np.stack([found[f"bbox-{k + dims}"] for k in range(dims)], 1), found["area"], means)
    if instances is not None:
        _add_instance_columns(columns, instances.scores, instances.classes, instances.class_scores, class_names)
    return columns


@dataclass(frozen=True)
class ObjectSums:
    """Sums over the pixels of each object, from which :func:`table_from_sums` gives the measurements.

    For label images larger than memory: sums of bands of rows (:meth:`of_band`)
    add up (:meth:`combined`) to those of a plane, and planes' to a volume's.
    Coordinates are (y, x), or (z, y, x) for stacks.
    """

    labels: np.ndarray  # (n,) ascending
    pixels: np.ndarray  # (n,) pixel (voxel) count
    coordinate_sums: np.ndarray  # (n, dims)
    first: np.ndarray  # (n, dims) least coordinate
    last: np.ndarray  # (n, dims) greatest coordinate
    intensity_sums: np.ndarray  # (n, C), C = 0 without intensities

    @classmethod
    def of_band(cls, labels: np.ndarray, origin: tuple[int, ...], image: np.ndarray | None = None) -> ObjectSums:
        """Sums of the objects of a band (h, w) of labels whose first pixel sits at ``origin`` ((y, x) or
        (z, y, x)); ``image`` (h, w, C) the intensities. Costs memory in the band's largest label."""
        flat = np.asarray(labels).ravel()
        where = np.flatnonzero(flat)
        ids = flat[where].astype(np.int64)
        width = labels.shape[1]
        coordinates = [np.full(where.size, origin[0], np.int64)] * (len(origin) - 2) + \
            [where // width + origin[-2], where % width + origin[-1]]
        size = int(ids.max(initial=0)) + 1
        pixels = np.bincount(ids, minlength=size)
        present = np.flatnonzero(pixels[1:]) + 1
        sums, first, last = [], [], []
        for c in coordinates:
            sums.append(np.bincount(ids, weights=c, minlength=size)[present])
            low, high = np.full(size, np.iinfo(np.int64).max), np.full(size, -1, np.int64)
            np.minimum.at(low, ids, c)
            np.maximum.at(high, ids, c)
            first.append(low[present])
            last.append(high[present])
        channels = 0 if image is None else image.shape[-1]
        values = None if image is None else np.asarray(image).reshape(-1, channels)[where]
        intensity = [np.bincount(ids, weights=values[:, c], minlength=size)[present] for c in range(channels)]
        return cls(present, pixels[present], np.stack(sums, 1), np.stack(first, 1), np.stack(last, 1),
                   np.stack(intensity, 1) if channels else np.zeros((present.size, 0)))

    def renamed(self, table: np.ndarray) -> ObjectSums:
        """The same objects with labels ``table[label]`` (one-to-one), in ascending order."""
        labels = np.asarray(table)[self.labels]
        order = np.argsort(labels, kind="stable")
        return ObjectSums(labels[order], self.pixels[order], self.coordinate_sums[order], self.first[order],
                          self.last[order], self.intensity_sums[order])

    @classmethod
    def combined(cls, parts) -> ObjectSums:
        """The sums of an image from those of its parts (bands, planes): an object's pieces add up."""
        parts = list(parts)
        labels = np.concatenate([p.labels for p in parts])
        order = np.argsort(labels, kind="stable")
        labels = labels[order]
        starts = np.flatnonzero(np.diff(labels, prepend=-1)) if labels.size else np.zeros(0, np.intp)

        def reduce(name, ufunc):
            values = np.concatenate([getattr(p, name) for p in parts])[order]
            return ufunc.reduceat(values, starts) if labels.size else values

        return cls(labels[starts], reduce("pixels", np.add), reduce("coordinate_sums", np.add),
                   reduce("first", np.minimum), reduce("last", np.maximum), reduce("intensity_sums", np.add))


def table_from_sums(axes: str, frames, *, channels: int = 0, scores=None, channel_names=()) -> dict[str, list]:
    """:func:`measure_objects`' table from :class:`ObjectSums` gathered elsewhere (e.g. band by band).

    ``frames`` yields ``(index, sums)`` in :func:`measure_objects`' order: the
    frame's position along the axes other than Z, Y, X (``()`` for YX or ZYX)
    and the sums of its objects, with ``channels`` intensity sums;
    ``scores[i - 1]`` is label i's ``instance_score``.
    """
    axes = axes.upper()
    columns = _new_columns(axes, _channel_names(channel_names, channels))
    for index, sums in frames:
        count = sums.pixels[:, None].astype(np.float64)
        _append_frame(columns, axes, index, sums.labels, sums.coordinate_sums / count, sums.first, sums.last + 1,
                      sums.pixels, sums.intensity_sums / count if channels else None)
    if scores is not None:
        _add_instance_columns(columns, scores)
    return columns


def _spatial_names(axes: str) -> list[str]:
    return ["z", "y", "x"][-sum(a in "ZYX" for a in axes):]


def _frame_axes(axes: str) -> list[int]:
    return [i for i, a in enumerate(axes) if a not in "ZYX"]


def _channel_names(channel_names, channels: int) -> list[str]:
    return [str(n) for n in channel_names] if len(channel_names) == channels else [str(c) for c in range(channels)]


def _new_columns(axes: str, channel_names) -> dict[str, list]:
    """The table's columns, empty, in their order."""
    names = _spatial_names(axes)
    columns: dict[str, list] = {"label": []}
    for a in _frame_axes(axes):
        columns["frame" if axes[a] == "T" else axes[a].lower()] = []
    columns.update({f"centroid_{n}": [] for n in names})
    columns.update({f"bbox_{n}0": [] for n in names})
    columns.update({f"bbox_{n}1": [] for n in names})
    columns["volume" if "Z" in axes else "area"] = []
    for c in channel_names:
        columns[f"mean_intensity_{c}"], columns[f"integrated_intensity_{c}"] = [], []
    return columns


def _append_frame(columns: dict, axes: str, index, labels, centroids, bbox0, bbox1, sizes, means) -> None:
    """Add one frame's rows: (n,) labels and sizes, (n, dims) centroids and boxes, (n, C) mean intensities."""
    count = len(labels)
    columns["label"] += [int(v) for v in labels]
    for a, i in zip(_frame_axes(axes), index):
        columns["frame" if axes[a] == "T" else axes[a].lower()] += [int(i)] * count
    for k, n in enumerate(_spatial_names(axes)):
        columns[f"centroid_{n}"] += [round(float(v), 2) for v in centroids[:, k]]
        columns[f"bbox_{n}0"] += [int(v) for v in bbox0[:, k]]
        columns[f"bbox_{n}1"] += [int(v) for v in bbox1[:, k]]
    areas = [int(v) for v in sizes]
    columns["volume" if "Z" in axes else "area"] += areas
    intensity_names = [c[len("mean_intensity_"):] for c in columns if c.startswith("mean_intensity_")]
    for c, name in enumerate(intensity_names):
        columns[f"mean_intensity_{name}"] += [round(float(m), 4) for m in means[:, c]]
        columns[f"integrated_intensity_{name}"] += [round(float(m) * a, 4) for m, a in zip(means[:, c], areas)]


def _add_instance_columns(columns: dict, scores, classes=None, class_scores=None, class_names=()) -> None:
    ids = np.asarray(columns["label"], np.int64) - 1
    scores = np.asarray(scores)
    if scores.size and ids.size and ids.max() >= scores.size:
        raise DeepColorError(f"the labels hold id {ids.max() + 1} but only {scores.size} objects were decoded.")
    columns["instance_score"] = [round(float(scores[i]), 4) for i in ids] if scores.size else [""] * ids.size
    if classes is not None and class_names:
        columns["class"] = [class_names[int(classes[i]) - 1] for i in ids]
        columns["class_score"] = [round(float(class_scores[i]), 4) for i in ids]


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
