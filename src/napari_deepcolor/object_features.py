"""Shape and intensity features of whole objects, for classifying objects once they are segmented.

A pixel class head has to learn a class such as "alive and curved" from local texture; the shape of
the whole object tells it at once. Every object of a 2D label image gets one row of numbers
(:func:`object_features`), from scikit-image's :func:`~skimage.measure.regionprops` and the
object's skeleton:

``area``, ``perimeter``, ``eccentricity``, ``solidity`` (area over convex hull area: low for a
curved worm), ``extent``, ``major_axis``, ``minor_axis``, ``elongation`` (minor over major axis),
``feret_diameter`` (the longest distance between two points of the outline), ``skeleton_length``
(the longest path through the skeleton, diagonal steps counting sqrt 2: an elongated object's
length along its body), ``endpoint_distance`` (the straight distance between that path's ends),
``tortuosity`` (skeleton length over endpoint distance: 1 for a straight rod, more for a curved
one), ``bend`` (the farthest the path strays from the straight line between its ends, over its
length), ``thickness`` (area over skeleton length), ``skeleton_share`` (skeleton pixels over the
path's pixels: above 1 for a branched skeleton), and per channel of the image ``mean_<c>``,
``std_<c>``, ``p10_<c>`` and ``p90_<c>`` (mean, spread and 10th / 90th percentile of the
intensity inside the object).

Intensities are those of the image as the net saw it (normalised by the model's percentiles, see
:func:`napari_deepcolor.inference.prepare_image`), so that training and prediction measure alike.
"""

from __future__ import annotations

import numpy as np

from .errors import DeepColorError

__all__ = ["SHAPE_FEATURES", "feature_names", "object_features"]

SHAPE_FEATURES = ("area", "perimeter", "eccentricity", "solidity", "extent", "major_axis", "minor_axis",
                  "elongation", "feret_diameter", "skeleton_length", "endpoint_distance", "tortuosity", "bend",
                  "thickness", "skeleton_share")
INTENSITY_FEATURES = ("mean", "std", "p10", "p90")


def feature_names(channels: int) -> tuple[str, ...]:
    """The names of :func:`object_features`' columns for an image of ``channels`` channels."""
    return SHAPE_FEATURES + tuple(f"{name}_{c}" for c in range(channels) for name in INTENSITY_FEATURES)


def object_features(labels: np.ndarray, image: np.ndarray | None = None, *, ids=None) -> np.ndarray:
    """One row of shape and intensity features per object of a 2D label image.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Label image, 0 = background.
    image : ndarray, shape (H, W, C), optional
        The intensities (channels last); without it the intensity columns are left out.
    ids : sequence of int, optional
        The objects to measure, in this order (default: 1 .. labels.max()). An id absent from
        ``labels`` gets a row of NaN.

    Returns
    -------
    ndarray of float64, shape (len(ids), len(feature_names(C)))
        The columns named by :func:`feature_names`.

    Examples
    --------
    >>> labels = np.zeros((20, 40), int); labels[8:12, 5:35] = 1
    >>> row = object_features(labels)[0]
    >>> names = feature_names(0)
    >>> round(row[names.index("tortuosity")], 2), round(row[names.index("elongation")], 2)
    (1.0, 0.13)
    """
    from skimage.measure import regionprops

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DeepColorError(f"object features are measured on 2D label images (got shape {labels.shape}); "
                             "measure a stack plane by plane.")
    if image is not None:
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[:2] != labels.shape:
            raise DeepColorError(f"the intensity image (shape {image.shape}) must have the labels' shape "
                                 f"{labels.shape} plus a channel axis.")
    channels = 0 if image is None else image.shape[-1]
    ids = np.arange(1, int(labels.max(initial=0)) + 1) if ids is None else np.asarray(ids, np.int64)
    rows = np.full((ids.size, len(feature_names(channels))), np.nan)
    where = {int(i): k for k, i in enumerate(ids)}
    for region in regionprops(labels.astype(np.int64, copy=False)):
        k = where.get(region.label)
        if k is not None:
            pixels = None if image is None else image[region.slice][region.image]
            rows[k] = _row(region, pixels)
    return rows


def _row(region, pixels: np.ndarray | None) -> list[float]:
    mask = region.image
    length, ends, bend, path_pixels, skeleton_pixels = _skeleton_path(mask)
    area = float(region.area)
    major, minor = float(region.axis_major_length), float(region.axis_minor_length)
    row = [area, float(region.perimeter), float(region.eccentricity), float(region.solidity),
           float(region.extent), major, minor, minor / major if major > 0 else 1.0,
           float(region.feret_diameter_max), length, ends, length / max(ends, 1.0), bend / max(length, 1.0),
           area / max(length, 1.0), skeleton_pixels / max(path_pixels, 1)]
    if pixels is not None:
        for c in range(pixels.shape[-1]):
            values = pixels[:, c]
            p10, p90 = np.percentile(values, [10, 90])
            row += [float(values.mean()), float(values.std()), float(p10), float(p90)]
    return row


def _skeleton_path(mask: np.ndarray) -> tuple[float, float, float, int, int]:
    """The longest path through the skeleton of a binary mask: ``(length, distance between its ends, farthest
    distance of the path from the straight line between its ends, pixels on the path, skeleton pixels)``.

    The skeleton's pixels are a graph (8-neighbours, diagonal steps sqrt 2); its longest shortest path is found
    from the farthest pixel of the farthest pixel (two Dijkstra sweeps: exact on a tree, close on a skeleton
    with small loops).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra
    from skimage.morphology import skeletonize

    skeleton = skeletonize(np.pad(mask, 1))
    points = np.argwhere(skeleton)
    if len(points) < 2:
        return 1.0, 1.0, 0.0, 1, max(len(points), 1)
    index = np.full(skeleton.shape, -1, np.int64)
    index[tuple(points.T)] = np.arange(len(points))
    rows, cols, weights = [], [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each neighbour pair once
        shifted = index[1 + dy:index.shape[0] - 1 + dy, 1 + dx:index.shape[1] - 1 + dx]
        here = index[1:-1, 1:-1]
        both = (here >= 0) & (shifted >= 0)
        rows.append(here[both])
        cols.append(shifted[both])
        weights.append(np.full(int(both.sum()), np.hypot(dy, dx)))
    rows, cols, weights = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    graph = coo_matrix((weights, (rows, cols)), shape=(len(points),) * 2).tocsr()
    first = dijkstra(graph, directed=False, indices=0)
    start = int(np.argmax(np.where(np.isfinite(first), first, -1)))
    distances, predecessors = dijkstra(graph, directed=False, indices=start, return_predecessors=True)
    end = int(np.argmax(np.where(np.isfinite(distances), distances, -1)))
    path = [end]
    while path[-1] != start:
        path.append(int(predecessors[path[-1]]))
    on_path = points[path].astype(np.float64)
    chord = on_path[-1] - on_path[0]
    ends = float(np.hypot(*chord))
    if ends > 0:
        offsets = on_path - on_path[0]
        bend = float(np.max(np.abs(offsets[:, 0] * chord[1] - offsets[:, 1] * chord[0])) / ends)
    else:
        bend = 0.0
    return float(distances[end]) + 1.0, ends + 1.0, bend, len(path), len(points)
