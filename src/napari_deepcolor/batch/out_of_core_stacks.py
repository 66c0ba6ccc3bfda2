"""Planes segmented out of core, linked through Z and T and measured a band of rows at a time.

The out-of-core counterpart of :func:`~napari_deepcolor.stacks.link_labels` and
:func:`~napari_deepcolor.measure.measure_objects`, with the same results: each
plane's labels stay in the scratch store as provisional ids (zarr) and a lookup
table (:class:`PlaneStore`); the overlaps of two planes are counted band by band
(:func:`~napari_deepcolor.matching.count_overlaps`, summed), the link from one
plane (or frame) to the next is the in-memory route's own step
(:func:`~napari_deepcolor.matching.link_to_previous`), and relabelling a plane is
a new lookup table, so the store is never rewritten. Measurements are sums over
bands (:class:`~napari_deepcolor.measure.ObjectSums`). Memory holds a band of
rows of two planes and tables with one entry per object, never a whole plane.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..measure import ObjectSums, table_from_sums
from ..matching import count_overlaps, link_to_previous, sum_overlaps
from ..stacks import merged_scores


@dataclass(frozen=True)
class _Plane:
    ids: object  # provisional ids, an (H, W) zarr array; None for a plane without objects
    lookup: np.ndarray  # provisional id -> the plane's own label, 1..count
    offset: int  # the plane's labels are offset + 1..offset + count across the file
    count: int


class PlaneStore:
    """The labels of a file's planes segmented out of core, read in bands of ``band`` rows.

    A plane's own labels are 1..count; across the file they are numbered on
    (plane after plane, as :func:`~napari_deepcolor.inference.stack_instances`
    numbers planes in memory), and tables indexed by those file-wide labels
    (``table[label] = new id``) relabel them.
    """

    def __init__(self, layout, band: int):
        self.layout, self.band, self.planes, self.total = layout, band, [], 0

    def add(self, ids, lookup: np.ndarray, count: int) -> None:
        """Add the next plane: labels ``lookup[ids]``, 1..count."""
        self.planes.append(_Plane(ids, lookup, self.total, count))
        self.total += count

    def labels_of(self, plane: int, table: np.ndarray | None = None) -> np.ndarray:
        """(count + 1,) the file-wide labels of the plane's labels 0..count, through ``table`` if given."""
        p = self.planes[plane]
        labels = np.arange(p.offset, p.offset + p.count + 1)
        labels[0] = 0
        return labels if table is None else np.asarray(table)[labels]

    def bands(self, plane: int, table: np.ndarray | None = None):
        """``(y0, labels)`` in bands of rows: the plane's own labels, or ``table`` of its file-wide labels."""
        p, height, width = self.planes[plane], self.layout.height, self.layout.width
        lookup = p.lookup if table is None else self.labels_of(plane, table)[p.lookup]
        for y0 in range(0, height, self.band):
            rows = slice(y0, min(y0 + self.band, height))
            yield y0, np.zeros((rows.stop - y0, width), np.uint8) if p.ids is None else lookup[p.ids[rows]]


def link_planes(store: PlaneStore, scores: np.ndarray, *, stitch_threshold: float, track_threshold: float):
    """Link the objects of the planes through Z and T as :func:`~napari_deepcolor.stacks.link_labels` does.

    Returns ``(table, scores, parents)``: ``table[file-wide label]`` is the
    linked id, 1..N in order of first appearance along T, then Z, then rows;
    the linked objects' scores (the area-weighted mean of their pieces', as
    :func:`~napari_deepcolor.stacks.relabel_instances`); divisions as
    ``{daughter: mother}``. Without a Z or T axis the labels stay as they are.
    """
    letters = store.layout.out_axes[:-2]
    if "T" not in letters and "Z" not in letters:
        return np.arange(store.total + 1), scores, {}
    grid = _plane_grid(store.layout)
    first, areas = _first_positions_and_areas(store, grid)
    link = np.zeros(store.total + 1, np.int64)
    parents, next_id = {}, 1
    for group in grid:
        for frame in group:
            for z, plane in enumerate(frame):
                overlaps = None
                if "Z" in letters and z > 0 and stitch_threshold > 0:
                    before = frame[z - 1]
                    overlaps = sum_overlaps(_band_overlaps(store, before, store.labels_of(before, link), plane,
                                                           store.labels_of(plane)))
                labels = store.labels_of(plane)[1:]
                lookup, next_id = link_to_previous(labels[areas[labels] > 0], overlaps, stitch_threshold, next_id)
                _set(link, lookup)
        if "T" in letters:
            next_id = _track(store, group, link, track_threshold, next_id, parents)
    final = _first_appearance_order(link, first)
    table = final[link]
    return table, merged_scores(scores, areas, table), {int(final[d]): int(final[m]) for d, m in parents.items()}


def _plane_grid(layout) -> np.ndarray:
    """Plane numbers as (groups, T, Z), in link_labels' order: other axes, then T, then Z."""
    letters, shape = layout.out_axes[:-2], layout.plane_shape
    order = [i for i, a in enumerate(letters) if a not in "TZ"] + [letters.index(a) for a in "TZ" if a in letters]
    grid = np.arange(layout.n_planes).reshape(shape).transpose(order)
    frames = shape[letters.index("T")] if "T" in letters else 1
    depth = shape[letters.index("Z")] if "Z" in letters else 1
    return grid.reshape(-1, frames, depth)


def _band_overlaps(store: PlaneStore, before: int, before_ids: np.ndarray, plane: int, plane_ids: np.ndarray):
    """The overlaps of two planes band by band, with ids ``before_ids[own label]`` and ``plane_ids[own label]``."""
    if not store.planes[before].count or not store.planes[plane].count:
        return
    for (_, a), (_, b) in zip(store.bands(before), store.bands(plane)):
        yield count_overlaps(a, b).renamed(before_ids, plane_ids)


def _set(table: np.ndarray, lookup: dict) -> None:
    if lookup:
        table[list(lookup)] = list(lookup.values())


def _track(store: PlaneStore, group: np.ndarray, link: np.ndarray, threshold: float, next_id: int,
           parents: dict) -> int:
    """Track the (T, Z) planes of ``group`` from frame to frame; ``link`` goes from stitched to track ids."""
    track = np.zeros(next_id, np.int64)  # stitched id -> track id
    for t, frame in enumerate(group):
        ids = np.unique(np.concatenate([store.labels_of(plane, link)[1:] for plane in frame]))
        ids = ids[ids > 0]  # labels without pixels are linked to nothing
        overlaps = None
        if t > 0 and threshold > 0:
            overlaps = sum_overlaps(part for before, plane in zip(group[t - 1], frame)
                                    for part in _band_overlaps(store, before, track[store.labels_of(before, link)],
                                                               plane, store.labels_of(plane, link)))
        lookup, next_id = link_to_previous(ids, overlaps, threshold, next_id, parents)
        _set(track, lookup)
    for plane in group.ravel():
        labels = store.labels_of(plane)[1:]
        link[labels] = track[link[labels]]
    return next_id


def _first_positions_and_areas(store: PlaneStore, grid: np.ndarray):
    """For each file-wide label: where it first appears (plane in T, Z order, then row-major pixel; the
    largest int64 if it has no pixels) and its area."""
    pixels, never = store.layout.height * store.layout.width, np.iinfo(np.int64).max
    first = np.full(store.total + 1, never)
    areas = np.zeros(store.total + 1, np.int64)
    for rank, plane in enumerate(grid.ravel()):
        p = store.planes[plane]
        if not p.count:
            continue
        own_first = np.full(p.count + 1, never)
        own_areas = np.zeros(p.count + 1, np.int64)
        for y0, labels in store.bands(plane):
            flat = labels.ravel()
            where = np.flatnonzero(flat)
            np.minimum.at(own_first, flat[where], where + y0 * store.layout.width)
            own_areas += np.bincount(flat[where], minlength=p.count + 1)
        labels = store.labels_of(plane)
        first[labels[1:]] = np.where(own_first[1:] < never, rank * pixels + own_first[1:], never)
        areas[labels[1:]] = own_areas[1:]
    return first, areas


def _first_appearance_order(link: np.ndarray, first: np.ndarray) -> np.ndarray:
    """A table renumbering linked ids 1..N in order of their pieces' first appearance."""
    earliest = np.full(int(link.max(initial=0)) + 1, np.iinfo(np.int64).max)
    np.minimum.at(earliest, link[1:], first[1:])
    ids = np.flatnonzero(earliest[1:] < np.iinfo(np.int64).max) + 1
    ids = ids[np.argsort(earliest[ids], kind="stable")]
    final = np.zeros(earliest.size, np.int64)
    final[ids] = np.arange(1, ids.size + 1)
    return final


def measure_planes(store: PlaneStore, table: np.ndarray, *, source=None, scores=None) -> dict[str, list]:
    """:func:`~napari_deepcolor.measure.measure_objects`' table of the labels ``table[file-wide label]``,
    with the intensities of every channel of ``source`` if given, summed band by band."""
    layout = store.layout
    whole = replace(layout, channel_pick=None)  # every channel, as measure_objects gets them
    channels = 0 if source is None else 1 if layout.channel_axis is None else layout.shape[layout.channel_axis]
    origin = (lambda z, y0: (z, y0, 0)) if "Z" in layout.out_axes else (lambda z, y0: (y0, 0))

    def plane_sums(plane, z):
        parts = []
        for y0, labels in store.bands(plane):
            if labels.any():
                image = None if source is None else source.read(whole, plane, slice(y0, y0 + labels.shape[0]))
                image = image if image is None or image.ndim == 3 else image[..., None]
                parts.append(ObjectSums.of_band(labels, origin(z, y0), image))
        return ObjectSums.combined(parts).renamed(store.labels_of(plane, table)) if parts else None

    def frames():
        for index, planes in _measured_frames(layout):
            parts = [s for s in (plane_sums(plane, z) for z, plane in enumerate(planes)) if s is not None]
            if parts:
                yield index, ObjectSums.combined(parts)

    return table_from_sums(layout.out_axes, frames(), channels=channels, scores=scores,
                           channel_names=() if source is None else source.channel_names)


def _measured_frames(layout):
    """``(index, planes along Z)`` in measure_objects' order: C order over the axes other than Z."""
    letters, shape = layout.out_axes[:-2], layout.plane_shape
    others = [i for i, a in enumerate(letters) if a != "Z"]
    depth = [letters.index("Z")] if "Z" in letters else []
    grid = np.arange(layout.n_planes).reshape(shape).transpose(others + depth)
    grid = grid.reshape(tuple(shape[i] for i in others) + (-1,))
    for index in np.ndindex(*grid.shape[:-1]):
        yield index, grid[index]


def write_tables(task, store: PlaneStore, table: np.ndarray, scores: np.ndarray, parents: dict, source) -> None:
    """Write the tracks table (time-lapses) and the measurements (if asked) beside the task's target, as the
    in-memory route does."""
    from ..measure import measurements_path, tracks_path, write_table
    from ..stacks import TRACK_FIELDS, tracks_rows

    time_lapse, measure = "T" in store.layout.out_axes, task.config.measure
    if not (time_lapse or measure):
        return
    measured = measure_planes(store, table, source=source if measure else None, scores=scores)
    if time_lapse:  # our own companions of a label file that is not there yet
        write_table(tracks_path(task.target), tracks_rows(measured, parents), TRACK_FIELDS, overwrite=True)
    if measure:
        write_table(measurements_path(task.target), measured, overwrite=True)
