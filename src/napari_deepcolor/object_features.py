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
path's pixels: above 1 for a branched skeleton), ``turning`` (the path's total absolute change of
direction, radians, over its length in units of ``TURN_STEP`` px: its mean curvature),
``max_turn`` (the sharpest change of direction between two steps), ``turn_sign_changes`` (how
often the path turns from left to right and back: a wave), ``width_mean`` and ``width_spread``
(the object's half width along the path, from the distance transform, and its coefficient of
variation: high for two objects merged into one), and per channel of the image ``mean_<c>``,
``std_<c>``, ``p10_<c>`` and ``p90_<c>`` (mean, spread and 10th / 90th percentile of the
intensity inside the object), ``edges_<c>`` (the mean gradient magnitude inside it: texture) and
``spine_<c>`` (the mean intensity along the path).

Intensities are those of the image as the net saw it (normalised by the model's percentiles, see
:func:`napari_deepcolor.inference.prepare_image`), so that training and prediction measure alike.
"""

from __future__ import annotations

import numpy as np

from .errors import DeepColorError

__all__ = ["SHAPE_FEATURES", "feature_names", "object_features"]

SHAPE_FEATURES = ("area", "perimeter", "eccentricity", "solidity", "extent", "major_axis", "minor_axis",
                  "elongation", "feret_diameter", "skeleton_length", "endpoint_distance", "tortuosity", "bend",
                  "thickness", "skeleton_share", "turning", "max_turn", "turn_sign_changes", "width_mean",
                  "width_spread")
INTENSITY_FEATURES = ("mean", "std", "p10", "p90", "edges", "spine")
#: the step (px along the skeleton path) over which the path's turning is measured
TURN_STEP = 6


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
    >>> float(round(row[names.index("tortuosity")], 2)), float(round(row[names.index("elongation")], 2))
    (1.01, 0.13)
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
    edges = None if image is None else _gradient_magnitude(image)
    for region in regionprops(labels.astype(np.int64, copy=False)):
        k = where.get(region.label)
        if k is not None:
            rows[k] = _row(region, None if image is None else image[region.slice],
                           None if edges is None else edges[region.slice])
    return rows


def _gradient_magnitude(image: np.ndarray) -> np.ndarray:
    from skimage.filters import sobel

    return np.stack([sobel(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def _row(region, crop: np.ndarray | None, edges: np.ndarray | None) -> list[float]:
    from scipy import ndimage as ndi

    mask = region.image
    length, ends, bend, path, skeleton_pixels = _skeleton_path(mask)
    turning, max_turn, sign_changes = _turning(path, length)
    half_width = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1][tuple(path.T)]
    area = float(region.area)
    major, minor = float(region.axis_major_length), float(region.axis_minor_length)
    row = [area, float(region.perimeter), float(region.eccentricity), float(region.solidity),
           float(region.extent), major, minor, minor / major if major > 0 else 1.0,
           float(region.feret_diameter_max), length, ends, length / max(ends, 1.0), bend / max(length, 1.0),
           area / max(length, 1.0), skeleton_pixels / max(len(path), 1), turning, max_turn, sign_changes,
           float(half_width.mean()), float(half_width.std() / max(half_width.mean(), 1e-6))]
    if crop is not None:
        pixels, edge_pixels, spine = crop[mask], edges[mask], crop[tuple(path.T)]
        for c in range(pixels.shape[-1]):
            values = pixels[:, c]
            p10, p90 = np.percentile(values, [10, 90])
            row += [float(values.mean()), float(values.std()), float(p10), float(p90),
                    float(edge_pixels[:, c].mean()), float(spine[:, c].mean())]
    return row


def _turning(path: np.ndarray, length: float) -> tuple[float, float, float]:
    """``(total absolute turning per TURN_STEP px of path, sharpest turn, sign changes of the turning)``
    of an ordered path of pixels, its direction taken every ``TURN_STEP`` pixels."""
    points = path[::TURN_STEP].astype(np.float64)
    if len(points) < 3:
        return 0.0, 0.0, 0.0
    steps = np.diff(points, axis=0)
    angles = np.arctan2(steps[:, 0], steps[:, 1])
    turns = (np.diff(angles) + np.pi) % (2 * np.pi) - np.pi
    signs = np.sign(turns[np.abs(turns) > 0.05])
    changes = float(np.sum(signs[1:] != signs[:-1])) if signs.size > 1 else 0.0
    return float(np.abs(turns).sum() / max(length / TURN_STEP, 1.0)), float(np.abs(turns).max()), changes


def _skeleton_path(mask: np.ndarray) -> tuple[float, float, float, np.ndarray, int]:
    """The longest path through the skeleton of a binary mask: ``(length, distance between its ends, farthest
    distance of the path from the straight line between its ends, the path's pixels (P, 2) in order in the
    mask's coordinates, skeleton pixels)``.

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
        inside = np.argwhere(mask)
        centre = inside[len(inside) // 2:len(inside) // 2 + 1] if len(inside) else np.zeros((1, 2), np.int64)
        return 1.0, 1.0, 0.0, centre, max(len(points), 1)
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
    return float(distances[end]) + 1.0, ends + 1.0, bend, points[path] - 1, len(points)
