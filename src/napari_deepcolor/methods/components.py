"""Connected-component helpers shared by the decoders (vectorised, NumPy/SciPy)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..data.io import smallest_label_dtype


def relabel_by_lookup(components: np.ndarray, keep: np.ndarray, group: np.ndarray | None = None):
    """Map component ids to consecutive instance ids 1..N.

    ``keep[i]`` says whether component ``i`` (1-based, ``keep[0]`` is background)
    survives; ``group[i]`` optionally merges components that share a group id.
    Returns ``(labels, lookup)`` with labels in the smallest unsigned dtype.
    """
    n = keep.shape[0]
    group = np.arange(n) if group is None else group
    kept_groups = np.unique(group[keep & (np.arange(n) > 0)])
    new_id = np.zeros(group.max(initial=0) + 1, dtype=np.int64)
    new_id[kept_groups] = np.arange(1, kept_groups.size + 1)
    lookup = np.where(keep, new_id[group], 0)
    lookup[0] = 0
    lookup = lookup.astype(smallest_label_dtype(kept_groups.size))
    return lookup[components], lookup


def merge_close_components(components: np.ndarray, component_class: np.ndarray, radius: float) -> np.ndarray:
    """Group same-class components whose gap is at most ``radius`` pixels.

    The gap between two components is the smallest Euclidean distance between
    their pixels (single linkage, applied transitively). Returns ``group`` of
    shape (n_components + 1,), ``group[0] == 0``.

    Only pairs whose bounding boxes come within ``radius`` are examined, and
    each examined component costs one distance transform of its padded box,
    so the work scales with the number of close pairs, not with the image.
    """
    n = int(components.max(initial=0))
    group = np.arange(n + 1)
    if radius <= 0 or n < 2:
        return group
    slices = ndi.find_objects(components)
    boxes = np.array([[s[0].start, s[0].stop, s[1].start, s[1].stop] if s else [0, 0, 0, 0]
                      for s in slices], dtype=np.int64)
    pad = int(np.ceil(radius))
    overlap = (
        (boxes[:, None, 0] - pad < boxes[None, :, 1]) & (boxes[None, :, 0] - pad < boxes[:, None, 1])
        & (boxes[:, None, 2] - pad < boxes[None, :, 3]) & (boxes[None, :, 2] - pad < boxes[:, None, 3])
    )
    same = component_class[1:, None] == component_class[None, 1:]
    candidates = np.triu(overlap & same, k=1)
    rows, cols = [], []
    for a in np.flatnonzero(candidates.any(axis=1)):
        y0, y1 = max(boxes[a, 0] - pad, 0), boxes[a, 1] + pad
        x0, x1 = max(boxes[a, 2] - pad, 0), boxes[a, 3] + pad
        crop = components[y0:y1, x0:x1]
        distance = ndi.distance_transform_edt(crop != a + 1)
        for b in np.flatnonzero(candidates[a]):
            inside = crop == b + 1
            if inside.any() and distance[inside].min() <= radius:
                rows.append(a + 1)
                cols.append(b + 1)
    if rows:
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n + 1, n + 1))
        _, group = connected_components(graph, directed=False)
    return group
