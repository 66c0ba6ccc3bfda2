"""Stacks as stacks: axes (T, Z, C, Y, X), objects linked through z (stitching) and through time (tracks).

A 2D model segments a stack plane by plane; this module decides what the
planes are and then links the per-plane objects so that one object has one id:

* **Axes** come from the file's metadata (tifffile's ``series.axes``, OME-TIFF,
  OME-zarr) when it names them; letters it cannot name (tifffile's ``Q``
  "unknown" and ``I`` "sequence") are guessed (:func:`resolve_axes`: the last
  unknown axis is Z, the one before it T, then C) and the guess is reported so
  that the user can correct it with ``--axes``.
* **Through z** (:func:`stitch_planes`): the objects of plane z + 1 are matched
  one-to-one to those of plane z by their intersection over union (IoU), the
  matching that maximises the total IoU (:mod:`~napari_deepcolor.matching`,
  Hungarian algorithm); a pair with IoU of at least ``stitch_threshold`` shares an id, an
  unmatched object starts a new one. This is Cellpose's ``stitch_threshold``
  (Stringer et al., Nature Methods 2021), with a one-to-one assignment instead
  of Cellpose's best-partner rule. IoU between neighbouring planes does not
  depend on the z spacing, so anisotropy needs no parameter here; it matters
  for the measurements (volumes in voxels) and the display (the layer's scale).
* **Through time** (:func:`track_frames`): the same matching between
  consecutive frames (whole volumes for TZYX), with ``track_threshold``. An
  object that is left unmatched but lies mostly (at least half of its pixels)
  inside an object of the previous frame that matched another object is taken
  as a division: both daughters get new ids and the mother becomes their
  ``parent``, as in the Cell Tracking Challenge's track format.

What this linking cannot do: objects that move by more than about their own
radius between frames (no overlap, hence no match), objects missing in a frame
(the track ends; it is not bridged over gaps), merging objects, and divisions
where a daughter barely overlaps its mother. Dedicated trackers do (napari
plugins: btrack, napari-ultrack, laptrack's napari integration, trackastra).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .errors import DeepColorError
from .matching import count_overlaps, link_to_previous, match_objects

log = logging.getLogger(__name__)

__all__ = ["LinkedLabels", "axes_note", "link_instances", "link_labels", "match_objects", "merged_scores",
           "relabel_instances", "resolve_axes", "stitch_planes", "track_frames", "tracks_rows", "tracks_table"]

#: axis letters a user may give: time, depth, channel, rows, columns, RGB samples
AXIS_LETTERS = "TZCYXS"
#: letters tifffile uses for axes it cannot name
UNKNOWN_AXES = "QI"
#: the letters an unknown leading axis becomes, from the one nearest Y X outwards
GUESS_ORDER = "ZTC"
#: an unknown last axis at most this long after two longer ones holds channels (Y, X, C stored untagged)
MAX_CHANNELS_LAST = 4
#: default IoU thresholds: through z (Cellpose's stitch_threshold) and between time frames
STITCH_THRESHOLD = 0.25
TRACK_THRESHOLD = 0.1


# -- axes -------------------------------------------------------------------------------------

def check_axes(axes: str) -> str:
    """A user's ``--axes`` string in capitals, checked: letters of TZCYXS, each once, Y and X present."""
    letters = str(axes).strip().upper()
    wrong = sorted(set(letters) - set(AXIS_LETTERS))
    if wrong or not letters:
        raise DeepColorError(f"--axes '{axes}': use the letters T (time), Z (depth), C (channel), Y, X and S "
                             "(RGB samples), one per axis of the image, e.g. ZYX, TYX, CYX or TZCYX.")
    repeated = sorted({a for a in letters if letters.count(a) > 1})
    if repeated:
        raise DeepColorError(f"--axes '{axes}': {', '.join(repeated)} appears more than once; each axis once.")
    if "Y" not in letters or "X" not in letters:
        raise DeepColorError(f"--axes '{axes}' must contain Y and X (the rows and columns of each plane).")
    return letters


def resolve_axes(file_axes: str, shape, user_axes: str | None = None, *,
                 in_channels: int | None = None) -> tuple[str, str]:
    """The axes to segment an image with, and how they were decided.

    Unknown axes are guessed: a last axis of at most 4 after two longer ones
    is channels last (tifffile reads an untagged (Y, X, C) file as ``QYX``
    with a narrow X); for a model of several channels (``in_channels``), an
    unknown axis that long is C; the other unknown axes are, from the one
    nearest Y X outwards, Z, then T, then C.

    Parameters
    ----------
    file_axes : str
        The axes the file's metadata gives, one letter per axis (``Q`` or ``I``
        where it does not know).
    shape : tuple of int
        The image's shape.
    user_axes : str, optional
        Axes the user gave (``--axes``). Used for every image with as many
        axes as it has letters; images with another number of axes (e.g. the
        2D images of a folder of stacks) keep their own.
    in_channels : int, optional
        The channels the model takes.

    Returns
    -------
    axes : str
        The axes, upper case, as many as ``shape`` has.
    source : str
        ``"file"``, ``"given"`` or ``"guessed"``.

    Examples
    --------
    >>> resolve_axes("QYX", (5, 64, 64))
    ('ZYX', 'guessed')
    >>> resolve_axes("QYX", (5, 64, 64), "TYX")
    ('TYX', 'given')
    >>> resolve_axes("TZCYX", (2, 3, 2, 64, 64))
    ('TZCYX', 'file')
    >>> resolve_axes("QYX", (64, 64, 2))
    ('YXC', 'guessed')
    >>> resolve_axes("QYX", (2, 64, 64), in_channels=2)
    ('CYX', 'guessed')
    """
    axes, shape = str(file_axes).upper(), tuple(shape)
    if user_axes is not None:
        given = check_axes(user_axes)
        if len(given) == len(shape):
            if not set(axes) & set(UNKNOWN_AXES) and given != axes:
                log.info("axes %s from the file replaced by the given %s", axes, given)
            return given, "given"
    letters = list(axes)
    if not set(letters) & set(UNKNOWN_AXES):
        return axes, "file"
    if len(shape) >= 3 and axes.endswith("YX") and letters[-3] in UNKNOWN_AXES and "C" not in axes \
            and shape[-1] <= MAX_CHANNELS_LAST < min(shape[-3], shape[-2]):
        letters[-3:] = ["Y", "X", "C"]
    elif in_channels is not None and in_channels > 1 and "C" not in axes:
        same = [i for i, letter in enumerate(letters) if letter in UNKNOWN_AXES and shape[i] == in_channels]
        if same:
            letters[same[-1]] = "C"
    unknown = [i for i, letter in enumerate(letters) if letter in UNKNOWN_AXES]
    free = [letter for letter in GUESS_ORDER if letter not in letters]
    if len(unknown) > len(free):
        raise DeepColorError(f"cannot guess what the {len(unknown)} unnamed axes of shape {shape} are; say it "
                             "with --axes (e.g. TZCYX).")
    for position, letter in zip(reversed(unknown), free):
        letters[position] = letter
    return "".join(letters), "guessed"


def axes_note(axes: str, source: str, shape) -> str:
    """One line that says which axes were used and, for a guess, how to say otherwise."""
    sizes = ", ".join(f"{letter}={n}" for letter, n in zip(axes, shape) if letter not in "YXS")
    text = f"axes {axes}" + (f" ({sizes})" if sizes else "")
    if source == "guessed":
        alternatives = _alternatives(axes)
        text += " guessed (the file does not name them)" + (f"; if that is wrong, pass --axes, e.g. "
                                                            f"{' or '.join(alternatives)}" if alternatives else "")
    elif source == "given":
        text += " as given by --axes"
    return text


def _alternatives(axes: str) -> list[str]:
    leading = [a for a in axes[:axes.index("Y")] if a in "TZC"] if "Y" in axes else []
    if len(leading) != 1:
        return []
    return [axes.replace(leading[0], other) for other in "ZTC" if other != leading[0]]


# -- linking along an axis ------------------------------------------------------------------------

def _link_along_first_axis(labels: np.ndarray, threshold: float, next_id: int, *, divisions: bool):
    """Link the objects of ``labels[k]`` to those of ``labels[k - 1]``; ``(lookups, next_id, parents)``.

    ``labels`` holds ids unique across the whole array; ``lookups[k]`` maps
    plane k's ids to linked ids (a dict), new ids counting from ``next_id``.
    """
    lookups, parents, before = [], {}, None
    for k in range(labels.shape[0]):
        plane = labels[k]
        ids = np.unique(plane)
        overlaps = count_overlaps(before, plane) if before is not None else None
        lookup, next_id = link_to_previous(ids[ids > 0], overlaps, threshold, next_id, parents if divisions else None)
        lookups.append(lookup)
        before = _apply(plane, lookup) if threshold > 0 else None
    return lookups, next_id, parents


def _apply(plane: np.ndarray, lookup: dict) -> np.ndarray:
    if not lookup:
        return np.zeros(plane.shape, np.int64)
    table = np.zeros(int(max(lookup)) + 1, np.int64)
    table[list(lookup)] = list(lookup.values())
    return table[plane]


def stitch_planes(labels: np.ndarray, threshold: float = STITCH_THRESHOLD) -> np.ndarray:
    """Give an object one id in every plane of a (Z, H, W) stack segmented plane by plane.

    Parameters
    ----------
    labels : ndarray of int, shape (Z, H, W)
        Per-plane labels (0 = background); ids need not be unique across planes.
    threshold : float
        Least IoU between an object and its continuation in the next plane
        (Cellpose's ``stitch_threshold``); 0 links nothing.

    Returns
    -------
    ndarray of int64, shape (Z, H, W)
        Labels with ids 1..N, one per object through the planes.
    """
    unique = _unique_per_plane(np.asarray(labels))
    lookups, _, _ = _link_along_first_axis(unique, threshold, 1, divisions=False)
    return np.stack([_apply(plane, lookup) for plane, lookup in zip(unique, lookups)])


def track_frames(labels: np.ndarray, threshold: float = TRACK_THRESHOLD) -> tuple[np.ndarray, dict[int, int]]:
    """Follow objects through the frames of a (T, ...) time-lapse segmented frame by frame.

    Returns the labels with one id per track and ``{daughter id: mother id}``
    for the divisions found (see the module notes).
    """
    unique = _unique_per_plane(np.asarray(labels))
    lookups, _, parents = _link_along_first_axis(unique, threshold, 1, divisions=True)
    return np.stack([_apply(frame, lookup) for frame, lookup in zip(unique, lookups)]), parents


def _unique_per_plane(labels: np.ndarray) -> np.ndarray:
    out, offset = np.zeros(labels.shape, np.int64), 0
    for k in range(labels.shape[0]):
        out[k] = np.where(labels[k] > 0, labels[k].astype(np.int64) + offset, 0)
        offset += int(labels[k].max(initial=0))
    return out


@dataclass(frozen=True)
class LinkedLabels:
    """Labels whose ids follow objects through z and t, and where each id came from.

    ``lookup[old id] = new id`` for the per-plane ids given to :func:`link_labels`;
    ``parents`` maps a daughter's id to its mother's after a division.
    """

    labels: np.ndarray
    lookup: np.ndarray
    parents: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.lookup.max(initial=0))


def link_labels(labels: np.ndarray, axes: str, *, stitch_threshold: float = STITCH_THRESHOLD,
                track_threshold: float = TRACK_THRESHOLD) -> LinkedLabels:
    """Link per-plane objects through Z (stitching) and T (tracking) in a label image with ``axes``.

    Parameters
    ----------
    labels : ndarray of int
        Labels with ids unique across the whole array (as
        :func:`~napari_deepcolor.inference.stack_instances` makes them), axes
        ``axes`` ending in ``YX`` (e.g. ``ZYX``, ``TYX``, ``TZYX``).
    axes : str
        One letter per axis. Axes other than T and Z (unknown ones) hold
        independent images: nothing is linked across them.
    stitch_threshold, track_threshold : float
        Least IoU to link an object to its continuation in the next plane or
        frame; 0 links nothing along that axis.

    Returns
    -------
    LinkedLabels
        Labels with ids 1..N (in order of first appearance), the lookup from
        the given ids, and the divisions found.
    """
    labels, axes = np.asarray(labels), axes.upper()
    if labels.ndim != len(axes) or not axes.endswith("YX"):
        raise DeepColorError(f"labels of shape {labels.shape} do not match axes '{axes}' ending in YX.")
    order = [axes.index(a) for a in "TZ" if a in axes]
    rest = [i for i, a in enumerate(axes) if a not in "TZYX"]
    perm = rest + order + [len(axes) - 2, len(axes) - 1]
    moved = np.transpose(labels, perm)
    groups = moved.reshape((-1,) + moved.shape[len(rest):])
    has_t, has_z = "T" in axes, "Z" in axes
    lookup = np.zeros(int(labels.max(initial=0)) + 1, np.int64)
    parents, next_id = {}, 1
    for g in range(groups.shape[0]):
        block = groups[g] if has_t else groups[g][None]  # (T, [Z,] H, W)
        frames = []
        for t in range(block.shape[0]):
            frame = block[t]
            if has_z:
                stitched, next_id = _stitch_into(frame, stitch_threshold, next_id, lookup)
                frames.append(stitched)
            else:
                frames.append(frame.astype(np.int64))
        if not has_z:  # ids are still the given ones; each becomes its own object before tracking
            for frame in frames:
                for i in np.unique(frame[frame > 0]):
                    lookup[i] = next_id
                    next_id += 1
            frames = [lookup[frame] for frame in frames]
        if has_t:
            tracked, next_id, found = _track_into(np.stack(frames), track_threshold, next_id)
            parents.update(found[1])
            lookup = found[0][lookup]
    relabelled = lookup[labels]
    final = _first_appearance_order(relabelled, perm)
    parents = {int(final[d]): int(final[m]) for d, m in parents.items()}
    return LinkedLabels(final[relabelled], final[lookup], parents)


def _stitch_into(volume: np.ndarray, threshold: float, next_id: int, lookup: np.ndarray):
    """Stitch a (Z, H, W) volume of given ids, recording given id -> linked id in ``lookup``."""
    volume = volume.astype(np.int64)
    lookups, next_id, _ = _link_along_first_axis(volume, threshold, next_id, divisions=False)
    for plane_lookup in lookups:
        for old, new in plane_lookup.items():
            lookup[old] = new
    return lookup[volume], next_id


def _track_into(frames: np.ndarray, threshold: float, next_id: int):
    """Track (T, ...) frames of linked ids; returns the frames, next id and (id map, parents).

    The id map sends each linked id (of the frames) to its track id; ids are
    per-frame unique on input (stitched ids of different frames differ).
    """
    lookups, end, parents = _link_along_first_axis(frames, threshold, next_id, divisions=True)
    table = np.arange(max(end, int(frames.max(initial=0)) + 1), dtype=np.int64)
    for frame_lookup in lookups:
        for old, new in frame_lookup.items():
            table[old] = new
    # ids below next_id that are not linked ids of these frames keep their value; the caller maps through
    return np.stack([table[f] for f in frames]), end, (table, parents)


def _first_appearance_order(labels: np.ndarray, perm: list[int]) -> np.ndarray:
    """A table renumbering ids 1..N in order of first appearance along T, then Z, then rows."""
    moved = np.transpose(labels, perm).ravel()
    ids, first = np.unique(moved, return_index=True)
    keep = ids > 0
    ids = ids[keep][np.argsort(first[keep], kind="stable")]
    table = np.zeros(int(labels.max(initial=0)) + 1, np.int64)
    table[ids] = np.arange(1, ids.size + 1)
    return table


def relabel_instances(instances, lookup: np.ndarray, labels: np.ndarray):
    """Instances with linked ``labels``: scores as the area-weighted mean of the linked pieces,
    class and class score of the largest piece (``lookup[old id] = new id``)."""
    from .methods.base import Instances

    count = int(lookup.max(initial=0))
    areas = np.bincount(np.asarray(instances.labels).ravel().astype(np.int64), minlength=lookup.size)[:lookup.size]
    scores = merged_scores(instances.scores, areas, lookup)
    if instances.classes is None:
        return Instances(labels, scores)
    old_ids = np.arange(1, lookup.size)
    new = lookup[1:]
    present = new > 0
    old_ids, areas, new = old_ids[present], areas[1:][present].astype(np.float64), new[present]
    largest = np.zeros(count + 1, np.int64)
    best_area = np.full(count + 1, -1.0)
    for old, area, n in zip(old_ids, areas, new):
        if area > best_area[n]:
            best_area[n], largest[n] = area, old
    pick = largest[1:] - 1
    return Instances(labels, scores, np.asarray(instances.classes)[pick], np.asarray(instances.class_scores)[pick])


def merged_scores(scores: np.ndarray, areas: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """The scores of linked objects: the area-weighted mean of their pieces' scores.

    ``scores[i - 1]`` and ``areas[i]`` belong to piece ``i`` (a per-plane id),
    ``lookup[i]`` is its linked id; returns (N,) float32, entry ``j - 1`` for linked id ``j``.
    """
    count = int(lookup.max(initial=0))
    old_ids = np.arange(1, lookup.size)
    new = lookup[1:]
    present = new > 0
    old_ids, weights, new = old_ids[present], np.asarray(areas)[1:lookup.size][present].astype(np.float64), new[present]
    total = np.bincount(new, weights=weights, minlength=count + 1)[1:]
    sums = np.bincount(new, weights=weights * np.asarray(scores)[old_ids - 1], minlength=count + 1)[1:]
    return np.where(total > 0, sums / np.maximum(total, 1e-12), 0.0).astype(np.float32)


def link_instances(instances, axes: str, *, stitch_threshold: float = STITCH_THRESHOLD,
                   track_threshold: float = TRACK_THRESHOLD):
    """Per-plane instances of a stack linked through Z and T; ``(instances, {daughter: mother})``.

    ``instances.labels`` has ``axes`` (ids unique across the planes, as
    :func:`~napari_deepcolor.inference.stack_instances` gives them); labels
    without a Z or T axis come back as they are.
    """
    from .data.io import smallest_label_dtype

    axes = axes.upper()
    if not ("T" in axes or "Z" in axes) or not instances.count:
        return instances, {}
    linked = link_labels(instances.labels, axes, stitch_threshold=stitch_threshold, track_threshold=track_threshold)
    labels = linked.labels.astype(smallest_label_dtype(linked.count))
    return relabel_instances(instances, linked.lookup, labels), linked.parents


# -- the tracks table --------------------------------------------------------------------------

TRACK_FIELDS = ("track_id", "frame", "centroid_z", "centroid_y", "centroid_x", "area", "parent")


def tracks_table(labels: np.ndarray, axes: str, parents: dict | None = None) -> list[dict]:
    """One row per object and frame: ``track_id``, ``frame``, centroid, ``area`` (pixels, or voxels
    for TZYX) and ``parent`` (the mother's track id after a division, else 0)."""
    from .measure import measure_objects

    axes = axes.upper()
    if "T" not in axes:
        raise DeepColorError(f"a tracks table needs a time axis (T); these labels have axes {axes}.")
    spatial = axes.replace("T", "")
    if not set(spatial) <= set("ZYX"):
        raise DeepColorError(f"a tracks table needs frames with axes ZYX or YX (got {spatial}).")
    return tracks_rows(measure_objects(np.asarray(labels), axes), parents or {})


def tracks_rows(measured: dict[str, list], parents: dict) -> list[dict]:
    """:func:`tracks_table`'s rows from the measurements of a time-lapse's labels
    (:func:`~napari_deepcolor.measure.measure_objects`' table, or its out-of-core twin's)."""
    size = "volume" if "volume" in measured else "area"
    rows = []
    for i, label in enumerate(measured["label"]):
        row = {"track_id": label, "frame": measured["frame"][i]}
        if "centroid_z" in measured:
            row["centroid_z"] = measured["centroid_z"][i]
        row.update(centroid_y=measured["centroid_y"][i], centroid_x=measured["centroid_x"][i],
                   area=measured[size][i], parent=int(parents.get(label, 0)))
        rows.append(row)
    return rows


def napari_tracks(rows: list[dict]) -> tuple[np.ndarray, dict]:
    """The rows of :func:`tracks_table` as a napari Tracks layer's data ``[id, t, (z,) y, x]`` and graph."""
    has_z = any("centroid_z" in r for r in rows)
    columns = ["track_id", "frame"] + (["centroid_z"] if has_z else []) + ["centroid_y", "centroid_x"]
    data = np.array([[r[c] for c in columns] for r in rows], np.float64).reshape(-1, len(columns))
    graph = {}
    for r in rows:
        if r["parent"]:
            graph[r["track_id"]] = [r["parent"]]
    return data, graph
