"""Label images that are masks: one value painted over many separate objects.

A binary mask (0/255, 0/1) or a napari Labels layer painted with a single label
looks like instance labels but says "all these objects are one": a model trained
on it learns to merge them (on 0/255 masks of nuclei: AP 0, four objects found).
:func:`mask_like_labels` recognises such labels so that reading them can stop with
a message; :func:`label_pieces` is the opt-in that makes each connected piece an
object of its own.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as connected_components

#: a label id drawn as this many separate pieces (or more) is not one object
MANY_PIECES = 3
#: pieces smaller than this (pixels) are specks and not counted
MIN_PIECE_PIXELS = 9
#: the labels look like a mask when ids in many pieces cover more than this share of the labelled pixels
MASK_SHARE = 0.5


def _pieces_by_id(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, pieces of at least MIN_PIECE_PIXELS per id, pixels per id) of a 2D label image."""
    pieces = connected_components(labels, background=0, connectivity=2)
    sizes = np.bincount(pieces.ravel())
    owner = np.zeros(sizes.size, labels.dtype)
    owner[pieces.ravel()] = labels.ravel()
    big = np.flatnonzero(sizes >= MIN_PIECE_PIXELS)
    big = big[big > 0]
    ids, counts = np.unique(owner[big], return_counts=True)
    pixels = np.array([sizes[owner == i].sum() for i in ids], np.int64) if ids.size < 64 else \
        np.bincount(np.searchsorted(ids, owner[big]), weights=sizes[big], minlength=ids.size).astype(np.int64)
    return ids, counts, pixels


def mask_like_labels(labels: np.ndarray) -> str | None:
    """What makes ``labels`` look like a mask rather than one id per object, or None if it does not.

    Parameters
    ----------
    labels : (H, W) ndarray of int
        A label image as read (the file's own values), 0 = background.

    Returns
    -------
    str or None
        E.g. "the value 255 covers 48 separate pieces (all 2 values: 0 and 255, a binary mask)";
        None when no id is drawn in MANY_PIECES or more pieces, or those ids hold at most
        MASK_SHARE of the labelled pixels (an object cut in two or three by another stays allowed).

    Examples
    --------
    >>> mask = np.zeros((20, 20), np.uint8)
    >>> mask[2:6, 2:6] = mask[2:6, 12:16] = mask[12:16, 2:6] = mask[12:16, 12:16] = 255
    >>> mask_like_labels(mask)
    'the value 255 covers 4 separate pieces (the image holds only the values 0 and 255: a binary mask)'
    >>> mask_like_labels(connected_components(mask)) is None
    True
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not labels.any():
        return None
    ids, counts, pixels = _pieces_by_id(labels)
    many = counts >= MANY_PIECES
    if not many.any() or pixels[many].sum() <= MASK_SHARE * pixels.sum():
        return None
    order = np.argsort(-counts[many])
    worst = [(int(ids[many][i]), int(counts[many][i])) for i in order[:3]]
    seen = "; ".join(f"the value {value} covers {n} separate pieces" for value, n in worst)
    values = np.unique(labels)
    if values.size <= 2:
        seen += f" (the image holds only the values {' and '.join(str(int(v)) for v in values)}: a binary mask)"
    return seen


def label_pieces(labels: np.ndarray) -> np.ndarray:
    """Each connected piece of one value becomes an object of its own: ids 1..K (int32), 0 stays 0.

    Pieces of different values that touch stay apart; pieces of one value that touch (even
    diagonally) are one object, so touching objects painted alike cannot be told apart here.
    """
    return connected_components(np.asarray(labels), background=0, connectivity=2).astype(np.int32)
