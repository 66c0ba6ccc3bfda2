"""One annotated training image: normalised pixels, instance ids and an ignore mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DeepColorError
from .io import as_label_image

__all__ = ["AnnotatedImage", "relabel_consecutive"]

# Above this id a lookup table would cost more memory than sorting the ids.
_MAX_LUT_ID = 1 << 24


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Renumber instance ids to 1..K in increasing order of the old ids; 0 stays 0.

    Parameters
    ----------
    labels : (..., H, W) ndarray of non-negative int
        Instance ids, 0 = background. Not modified.

    Returns
    -------
    (..., H, W) ndarray of int32
        A new array (never a view of ``labels``) with ids 1..K, K the number of
        distinct non-zero ids.

    Examples
    --------
    >>> relabel_consecutive(np.array([[0, 7], [3, 7]])).tolist()
    [[0, 2], [1, 2]]
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(labels.shape, np.int32)
    max_id = int(labels.max())
    if max_id == 0:
        return np.zeros(labels.shape, np.int32)
    if max_id < _MAX_LUT_ID:
        flat = labels.ravel()
        if flat.dtype == np.uint64:
            flat = flat.astype(np.int64)
        present = np.bincount(flat, minlength=max_id + 1) > 0
        present[0] = False
        lut = np.cumsum(present, dtype=np.int32)
        lut[~present] = 0
        return lut[labels]
    ids, inverse = np.unique(labels, return_inverse=True)
    offset = 0 if ids[0] == 0 else 1
    return (inverse.reshape(labels.shape) + offset).astype(np.int32)


@dataclass(frozen=True, eq=False)
class AnnotatedImage:
    """An image with its instance labels, ready for patch sampling.

    Construction checks and converts the arrays (the inputs are not modified):
    the image becomes float32 ``(H, W, C)`` (a 2D image gets ``C = 1``), the
    labels become int32 with ids renumbered 1..K, the ignore mask becomes bool.

    Parameters
    ----------
    image : (H, W, C) ndarray of float32
        Pixel values, already normalised (see
        :func:`~napari_deepcolor.data.normalize.normalize_percentile`).
    labels : (H, W) ndarray of int32
        Instance ids, 0 = background, consecutive 1..K.
    ignore : (H, W) ndarray of bool or None
        True where pixels are excluded from every loss (unannotated regions,
        overlapping objects, padding). None when every pixel counts.
    name : str
        Where the image came from (file name, layer name), shown in messages.

    Raises
    ------
    DeepColorError
        If shapes disagree, labels are not integer ids or the image holds
        NaN or infinite values.

    Notes
    -----
    Instances compare by identity (``==`` on arrays would be ambiguous).
    """

    image: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray | None = None
    name: str = "image"

    def __post_init__(self) -> None:
        image = np.asarray(self.image)
        if image.ndim == 2:
            image = image[..., np.newaxis]
        if image.ndim != 3:
            raise DeepColorError(
                f"{self.name}: image must have shape (H, W) or (H, W, C); got shape {image.shape}."
            )
        if image.dtype != np.float32:
            image = image.astype(np.float32)
        if not np.all(np.isfinite(image)):
            raise DeepColorError(
                f"{self.name}: image holds NaN or infinite values; replace them (e.g. with 0) first."
            )
        labels = as_label_image(self.labels, what=f"{self.name} labels")
        if labels.shape != image.shape[:2]:
            raise DeepColorError(_shape_mismatch_message(self.name, image.shape[:2], labels.shape))
        ignore = self.ignore
        if ignore is not None:
            ignore = np.asarray(ignore)
            if ignore.shape != labels.shape:
                raise DeepColorError(
                    f"{self.name}: ignore mask has shape {ignore.shape} but labels have shape "
                    f"{labels.shape}; they must be the same."
                )
            ignore = ignore.astype(bool, copy=False)
            if not ignore.any():
                ignore = None
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "labels", relabel_consecutive(labels))
        object.__setattr__(self, "ignore", ignore)
        object.__setattr__(self, "name", str(self.name))

    @property
    def shape(self) -> tuple[int, int]:
        """The spatial shape ``(H, W)``."""
        return self.labels.shape

    @property
    def num_channels(self) -> int:
        """The number of image channels ``C``."""
        return self.image.shape[2]

    @property
    def num_objects(self) -> int:
        """The number of annotated objects ``K``."""
        return int(self.labels.max(initial=0))

    def __repr__(self) -> str:
        ignored = 0 if self.ignore is None else int(self.ignore.sum())
        return (
            f"AnnotatedImage(name={self.name!r}, shape={self.shape}, channels={self.num_channels}, "
            f"objects={self.num_objects}, ignored_pixels={ignored})"
        )


def _shape_mismatch_message(name: str, image_shape: tuple, labels_shape: tuple) -> str:
    message = (
        f"{name}: labels have shape {tuple(labels_shape)} but the image has spatial shape "
        f"{tuple(image_shape)}; they must match."
    )
    if tuple(labels_shape[::-1]) == tuple(image_shape):
        message += " The labels look transposed (rows and columns swapped): transpose them."
    return message
