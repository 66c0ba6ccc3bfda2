"""Matching the objects of two label images by their overlap: the step that links objects through z and time.

:func:`match_objects` pairs the objects of two planes (or frames) one-to-one
by their intersection over union (IoU); :func:`link_to_previous` turns the
matches into linked ids, new ids for new objects and, through time, divisions.
Both work on :class:`Overlaps`, which :func:`count_overlaps` counts on two
label images and :func:`sum_overlaps` adds up over parts of them (bands of
rows of planes larger than memory, the planes of two volumes), so that the
in-memory linking (:mod:`napari_deepcolor.stacks`) and the out-of-core one
(:mod:`napari_deepcolor.batch.out_of_core_stacks`) take the same step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import DeepColorError

__all__ = ["Overlaps", "count_overlaps", "link_to_previous", "match_objects", "sum_overlaps"]

#: share of a new object's pixels inside its mother's former place for a division
DIVISION_OVERLAP = 0.5


class Overlaps(NamedTuple):
    """How the objects of two label images overlap: the pairs that share pixels, and each object's area.

    Areas are ``(ids, pixels)`` of every object of an image, sorted by id, so
    that the overlaps of two planes larger than memory can be counted band by
    band and summed (:func:`sum_overlaps`).
    """

    previous: np.ndarray  # (P,) id in the previous image of each overlapping pair
    current: np.ndarray  # (P,) id in the current image
    intersection: np.ndarray  # (P,) pixels the pair shares
    previous_areas: tuple[np.ndarray, np.ndarray]
    current_areas: tuple[np.ndarray, np.ndarray]

    def renamed(self, previous_ids: np.ndarray, current_ids: np.ndarray) -> Overlaps:
        """The same overlaps with the ids sent through the tables ``previous_ids`` and ``current_ids``
        (``table[old id] = new id``, one-to-one)."""
        return Overlaps(previous_ids[self.previous], current_ids[self.current], self.intersection,
                        (previous_ids[self.previous_areas[0]], self.previous_areas[1]),
                        (current_ids[self.current_areas[0]], self.current_areas[1]))


def count_overlaps(previous: np.ndarray, current: np.ndarray) -> Overlaps:
    """The :class:`Overlaps` of two label images (or two bands of rows) of the same shape."""
    both = (previous > 0) & (current > 0)
    a, b = previous[both].astype(np.int64), current[both].astype(np.int64)
    width = int(b.max(initial=0)) + 1
    pairs, intersection = np.unique(a * width + b, return_counts=True)
    return Overlaps(pairs // width, pairs % width, intersection.astype(np.int64), _areas(previous), _areas(current))


def _areas(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.bincount(labels.ravel().astype(np.int64), minlength=1)
    ids = np.flatnonzero(pixels[1:]) + 1
    return ids, pixels[ids]


def sum_overlaps(parts) -> Overlaps:
    """The overlaps of two images from those of their parts: bands of rows of two planes, or the
    planes of two volumes (an object's pieces in several parts add up)."""
    parts = list(parts)
    if not parts:
        nothing = np.zeros(0, np.int64)
        return Overlaps(nothing, nothing, nothing, (nothing, nothing), (nothing, nothing))
    a, b = (np.concatenate([p[k] for p in parts]).astype(np.int64) for k in (0, 1))
    width = int(b.max(initial=0)) + 1
    pairs, inverse = np.unique(a * width + b, return_inverse=True)
    intersection = np.bincount(inverse, weights=np.concatenate([p.intersection for p in parts]),
                               minlength=pairs.size).astype(np.int64)
    return Overlaps(pairs // width, pairs % width, intersection, _sum_areas(p.previous_areas for p in parts),
                    _sum_areas(p.current_areas for p in parts))


def _sum_areas(areas) -> tuple[np.ndarray, np.ndarray]:
    ids, pixels = zip(*areas)
    ids, inverse = np.unique(np.concatenate(ids).astype(np.int64), return_inverse=True)
    return ids, np.bincount(inverse, weights=np.concatenate(pixels), minlength=ids.size).astype(np.int64)


def _area_of(areas: tuple[np.ndarray, np.ndarray], ids: np.ndarray) -> np.ndarray:
    return areas[1][np.searchsorted(areas[0], ids)]


def match_objects(previous: np.ndarray, current: np.ndarray, threshold: float) -> dict[int, int]:
    """One-to-one matching of the objects of two label images of the same shape by their IoU.

    The matching maximises the total IoU over pairs whose IoU is at least
    ``threshold`` (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`,
    solved on each connected group of overlapping objects so that thousands of
    objects stay cheap).

    Returns
    -------
    dict
        ``{current id: previous id}`` for the matched objects.

    Examples
    --------
    >>> a = np.zeros((4, 6), int); a[:, :3] = 1; a[:, 3:] = 2
    >>> b = np.zeros((4, 6), int); b[:, 1:4] = 7
    >>> match_objects(a, b, 0.25)
    {7: 1}
    """
    if previous.shape != current.shape:
        raise DeepColorError(f"cannot link planes of shapes {previous.shape} and {current.shape}.")
    return _match(count_overlaps(previous, current), threshold)


def _match(overlaps: Overlaps, threshold: float) -> dict[int, int]:
    """:func:`match_objects` on counted overlaps."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids_a, ids_b, intersection = overlaps.previous, overlaps.current, overlaps.intersection
    union = _area_of(overlaps.previous_areas, ids_a) + _area_of(overlaps.current_areas, ids_b) - intersection
    iou = intersection / union
    keep = iou >= max(threshold, np.finfo(np.float64).tiny)
    ids_a, ids_b, iou = ids_a[keep], ids_b[keep], iou[keep]
    if not ids_a.size:
        return {}
    rows, a_index = np.unique(ids_a, return_inverse=True)
    cols, b_index = np.unique(ids_b, return_inverse=True)
    n = rows.size + cols.size
    graph = coo_matrix((np.ones(ids_a.size), (a_index, rows.size + b_index)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    matches = {}
    pair_group = group[a_index]
    order = np.argsort(pair_group, kind="stable")
    for sel in np.split(order, np.flatnonzero(np.diff(pair_group[order])) + 1):
        r, r_inv = np.unique(a_index[sel], return_inverse=True)
        c, c_inv = np.unique(b_index[sel], return_inverse=True)
        if r.size == 1 and c.size == 1:
            matches[int(cols[c[0]])] = int(rows[r[0]])
            continue
        cost = np.zeros((r.size, c.size))
        cost[r_inv, c_inv] = -iou[sel]
        for i, j in zip(*linear_sum_assignment(cost)):
            if cost[i, j] < 0:
                matches[int(cols[c[j]])] = int(rows[r[i]])
    return matches


def link_to_previous(ids, overlaps: Overlaps | None, threshold: float, next_id: int,
                     parents: dict | None = None) -> tuple[dict, int]:
    """Linked ids for the objects of one plane (or frame) given how they overlap the previous one.

    The step that :func:`~napari_deepcolor.stacks.stitch_planes`, :func:`~napari_deepcolor.stacks.track_frames`
    and :func:`~napari_deepcolor.stacks.link_labels`
    repeat along an axis, and that the out-of-core route takes on overlaps counted band by band.

    Parameters
    ----------
    ids : array of int
        The ids of the objects of this plane, ascending.
    overlaps : Overlaps or None
        Their overlaps (``current``) with the previous plane in linked ids
        (``previous``); None for the first plane.
    threshold : float
        Least IoU of a match; 0 links nothing.
    next_id : int
        The first free linked id.
    parents : dict, optional
        Given for time (divisions): a daughter's new id is recorded here with
        its mother's id.

    Returns
    -------
    lookup : dict
        ``{id: linked id}`` for every id of ``ids``: a match keeps the previous
        plane's id, an unmatched object takes a new one.
    next_id : int
        The first free linked id after these.
    """
    lookup = {}
    if overlaps is not None and threshold > 0:
        matches = _match(overlaps, threshold)
        lookup = dict(matches)  # the previous plane holds linked ids already
        if parents is not None:
            for mother, pair in _divisions(overlaps, matches).items():
                for daughter in pair:
                    lookup[daughter] = next_id
                    parents[next_id] = mother
                    next_id += 1
    for i in ids:
        if int(i) not in lookup:
            lookup[int(i)] = next_id
            next_id += 1
    return lookup, next_id


def _divisions(overlaps: Overlaps, matches: dict) -> dict:
    """``{mother (linked id): (daughter, daughter)}``: an unmatched object mostly inside a mother that
    matched another object of the current plane (its sister)."""
    ids_a, ids_b, intersection = overlaps.previous, overlaps.current, overlaps.intersection
    area_b = _area_of(overlaps.current_areas, ids_b)
    matched_to = {p: c for c, p in matches.items()}
    daughters = {}
    for c in np.unique(ids_b):
        c = int(c)
        if c in matches:
            continue
        sel = ids_b == c
        best = int(np.argmax(intersection[sel]))
        mother, inside = int(ids_a[sel][best]), intersection[sel][best] / area_b[sel][best]
        if inside >= DIVISION_OVERLAP and mother in matched_to and mother not in daughters:
            daughters[mother] = (matched_to[mother], c)
    return daughters
