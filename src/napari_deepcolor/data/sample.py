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
    classes : (H, W) ndarray of int or None
        Class annotation (:mod:`napari_deepcolor.data.classes`): per pixel the class id 1..K of the
        instance it belongs to, 0 elsewhere. Each instance must carry one class; pixels of class 0
        inside an instance take its class. Kept as the cleaned image ``object_classes[labels]``.
        None for a dataset without classes.
    class_names : tuple of str
        The names of class ids 1..K (``class_names[k - 1]`` names class ``k``); needed with ``classes``.

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
    classes: np.ndarray | None = None
    class_names: tuple[str, ...] = ()

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
        original, labels = labels, relabel_consecutive(labels)
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "ignore", ignore)
        object.__setattr__(self, "name", str(self.name))
        self._set_classes(original, labels)

    def _set_classes(self, original: np.ndarray, labels: np.ndarray) -> None:
        from .classes import object_classes, validate_class_names

        names = validate_class_names(self.class_names, where=f"{self.name}: class names")
        object.__setattr__(self, "class_names", names)
        if self.classes is None:
            object.__setattr__(self, "object_classes", None)
            return
        if not names:
            raise DeepColorError(f"{self.name}: a class image needs the class names (e.g. classes.json).")
        # checked on the ids as given, so that messages name the instances the user knows
        ids = original if int(original.max(initial=0)) < _MAX_LUT_ID else labels
        cleaned = object_classes(ids, self.classes, len(names), where=f"{self.name}: the class annotation")[ids]
        per_object = np.zeros(self.num_objects + 1, np.int32)
        per_object[labels] = cleaned
        object.__setattr__(self, "object_classes", per_object)
        object.__setattr__(self, "classes", cleaned)

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

    @property
    def has_classes(self) -> bool:
        """Whether every instance has a class (``object_classes[k]`` is the class id of instance k)."""
        return self.object_classes is not None

    def __repr__(self) -> str:
        ignored = 0 if self.ignore is None else int(self.ignore.sum())
        classes = f", classes={self.class_names}" if self.has_classes else ""
        return (
            f"AnnotatedImage(name={self.name!r}, shape={self.shape}, channels={self.num_channels}, "
            f"objects={self.num_objects}, ignored_pixels={ignored}{classes})"
        )


def _shape_mismatch_message(name: str, image_shape: tuple, labels_shape: tuple) -> str:
    message = (
        f"{name}: labels have shape {tuple(labels_shape)} but the image has spatial shape "
        f"{tuple(image_shape)}; they must match."
    )
    if tuple(labels_shape[::-1]) == tuple(image_shape):
        message += " The labels look transposed (rows and columns swapped): transpose them."
    return message
