"""Random training patches from annotated images, and the train/validation split."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DeepColorError
from .augment import Augmentation, Geometry, draw_geometry, jitter_intensity, warp_patch
from .sample import AnnotatedImage, relabel_consecutive

log = logging.getLogger(__name__)

__all__ = ["Patch", "PatchSampler", "split_for_tuning", "split_train_validation"]

# Extra source pixels on each side of a warped crop, for linear interpolation.
_WARP_MARGIN = 2
# At most this many foreground pixels per image are remembered to centre windows on.
_MAX_ANCHORS = 4096


@dataclass(frozen=True, eq=False)
class Patch:
    """One training patch.

    Attributes
    ----------
    image : (C, P_h, P_w) ndarray of float32, C-contiguous
    labels : (P_h, P_w) ndarray of int32, ids consecutive 1..K within the patch
    ignore : (P_h, P_w) ndarray of bool
        True where the loss must not look: the image's own ignore mask, and
        pixels that came from outside the image (padding, rotated corners).
    source : str
        Name of the image the patch was cut from.
    classes : (P_h, P_w) ndarray of int64 or None
        The class id (1..K) of each pixel's instance, 0 on background; None without classes.
    """

    image: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    source: str
    classes: np.ndarray | None = None


class PatchSampler:
    """Draw random, augmented, fixed-size patches from annotated images.

    Each draw picks an image with probability proportional to its area, picks a
    window (trying a few times for one that holds at least one object), crops a
    region just large enough for the drawn rotation and scale, warps it into the
    patch, then flips, turns and changes its intensity.

    Parameters
    ----------
    samples : sequence of AnnotatedImage
        All with the same number of channels.
    patch_size : int or (int, int)
        Patch height and width in pixels.
    augmentation : Augmentation or None
        None gives plain crops.
    seed : int, numpy.random.Generator or None
        Seeds the sampler's own generator: the same seed gives the same patch
        sequence. None draws fresh entropy. Parallel workers that share one
        sampler should each pass their own generator to :meth:`sample`, e.g.
        ``np.random.default_rng([seed, worker_id])``, or they draw the same patches.
    foreground_tries : int
        How many random windows to try for one holding an object before
        centring the window on an annotated pixel. 0 takes any window.

    Notes
    -----
    Pixels from outside the image (images smaller than the patch, corners of
    a rotated window at the border) get image value 0, label 0 and
    ``ignore=True``. Zero is the background level after percentile
    normalisation, so the padding looks like empty background rather than like
    anything the net must explain; mirror padding was not used because it would
    show unlabelled mirror copies of labelled objects. Either way the loss
    never sees these pixels.

    Examples
    --------
    >>> labels = np.zeros((300, 400), np.int32)
    >>> labels[100:140, 200:260] = 1
    >>> samples = [AnnotatedImage(labels.astype(np.float32), labels, None, "one box")]
    >>> sampler = PatchSampler(samples, patch_size=256, augmentation=Augmentation(), seed=0)
    >>> patch = sampler.sample()
    >>> patch.image.shape, patch.labels.dtype.name, patch.ignore.dtype.name
    ((1, 256, 256), 'int32', 'bool')
    """

    def __init__(
        self,
        samples: Sequence[AnnotatedImage],
        *,
        patch_size: int | tuple[int, int],
        augmentation: Augmentation | None = None,
        seed: int | np.random.Generator | None = None,
        foreground_tries: int = 5,
    ) -> None:
        self.samples = tuple(samples)
        if not self.samples:
            raise DeepColorError("no training images given; load an annotated dataset first.")
        for sample in self.samples:
            if not isinstance(sample, AnnotatedImage):
                raise DeepColorError(
                    f"PatchSampler needs AnnotatedImage samples; got {type(sample).__name__}."
                )
        channels = {s.num_channels for s in self.samples}
        if len(channels) > 1:
            raise DeepColorError(
                f"all training images need the same number of channels; got {sorted(channels)}."
            )
        self.patch_shape = _patch_shape(patch_size)
        self.augmentation = augmentation if augmentation is not None else Augmentation.none()
        self.foreground_tries = int(foreground_tries)
        self.num_channels = channels.pop()
        areas = np.array([s.labels.size for s in self.samples], dtype=np.float64)
        self._weights = areas / areas.sum()
        self._anchors = [_foreground_anchors(s.labels) for s in self.samples]
        self._rng = np.random.default_rng(seed)

    def sample(self, rng: np.random.Generator | None = None) -> Patch:
        """Draw one patch, from ``rng`` or else the sampler's own generator."""
        rng = self._rng if rng is None else rng
        index = int(rng.choice(len(self.samples), p=self._weights))
        sample = self.samples[index]
        geometry = draw_geometry(self.augmentation, rng, square=self.patch_shape[0] == self.patch_shape[1])
        if geometry.warps:
            extent = geometry.source_extent(self.patch_shape)
            crop_shape = tuple(int(math.ceil(e)) + 2 * _WARP_MARGIN for e in extent)
        else:
            crop_shape = self.patch_shape
        corner = self._choose_window(index, crop_shape, rng)
        image, labels, ignore = _crop(sample, corner, crop_shape)
        if geometry.warps:
            image, labels, ignore = warp_patch(image, labels, ignore, geometry, patch_shape=self.patch_shape)
        elif ignore is None:
            ignore = np.zeros(self.patch_shape, bool)
        image, labels, ignore = _flip_and_turn(image, labels, ignore, geometry)
        if self.augmentation.changes_intensity:
            image = jitter_intensity(image, self.augmentation, rng)
        # the labels still hold the image's own ids here, so the per-object classes map straight on
        classes = None if sample.object_classes is None else sample.object_classes[labels].astype(np.int64)
        return Patch(
            image=np.array(image, dtype=np.float32, order="C", copy=True),
            labels=relabel_consecutive(labels),
            ignore=np.array(ignore, dtype=bool, order="C", copy=True),
            source=sample.name,
            classes=classes,
        )

    def sample_batch(self, batch_size: int, rng: np.random.Generator | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw ``batch_size`` patches stacked: images (B, C, P_h, P_w), labels (B, P_h, P_w), ignore."""
        patches = [self.sample(rng) for _ in range(int(batch_size))]
        return (np.stack([p.image for p in patches]), np.stack([p.labels for p in patches]),
                np.stack([p.ignore for p in patches]))

    def __iter__(self) -> Iterator[Patch]:
        """Endless patches from the sampler's own generator."""
        while True:
            yield self.sample()

    def _choose_window(self, index: int, crop_shape: tuple[int, int], rng) -> tuple[int, int]:
        sample = self.samples[index]
        height, width = sample.shape
        ch, cw = crop_shape
        row_range = (min(0, height - ch), max(0, height - ch))
        col_range = (min(0, width - cw), max(0, width - cw))
        anchors = self._anchors[index]
        for _ in range(max(self.foreground_tries, 0) + 1):
            r0 = int(rng.integers(row_range[0], row_range[1] + 1))
            c0 = int(rng.integers(col_range[0], col_range[1] + 1))
            if anchors.size == 0 or self.foreground_tries <= 0:
                return r0, c0
            if sample.labels[max(r0, 0):r0 + ch, max(c0, 0):c0 + cw].any():
                return r0, c0
        # Sparse annotation: centre the window on a random annotated pixel instead.
        r, c = anchors[int(rng.integers(len(anchors)))]
        r0 = int(np.clip(r - ch // 2, *row_range))
        c0 = int(np.clip(c - cw // 2, *col_range))
        return r0, c0


def split_train_validation(
    samples: Sequence[AnnotatedImage], *, validation_fraction: float = 0.15, seed: int = 0
) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """Split annotated images into training and validation parts that share no pixel.

    Parameters
    ----------
    samples : sequence of AnnotatedImage
    validation_fraction : float
        In [0, 1). With two or more images, this fraction of the images (at
        least one, and at least one left for training) is drawn at random for
        validation. A single image is cut in two along its longer axis: the
        last ``validation_fraction`` of it validates.
    seed : int
        Seeds which images go to validation.

    Returns
    -------
    train, validation : list of AnnotatedImage
        In their original order. ``validation`` is empty when the fraction is 0.
    """
    samples = list(samples)
    if not 0 <= validation_fraction < 1:
        raise DeepColorError(f"validation_fraction must be in [0, 1); got {validation_fraction}.")
    if not samples:
        raise DeepColorError("no images to split; load an annotated dataset first.")
    if validation_fraction == 0:
        return samples, []
    if len(samples) == 1:
        return _split_spatially(samples[0], validation_fraction)
    count = min(max(int(round(validation_fraction * len(samples))), 1), len(samples) - 1)
    chosen = set(np.random.default_rng(seed).permutation(len(samples))[:count].tolist())
    train = [s for i, s in enumerate(samples) if i not in chosen]
    validation = [s for i, s in enumerate(samples) if i in chosen]
    return train, validation


def _split_spatially(sample: AnnotatedImage, fraction: float) -> tuple[list, list]:
    axis = 0 if sample.shape[0] > sample.shape[1] else 1
    length = sample.shape[axis]
    if length < 2:
        raise DeepColorError(f"{sample.name} (shape {sample.shape}) is too small to split for validation.")
    cut = min(max(int(round(length * (1 - fraction))), 1), length - 1)
    parts = []
    for part, region in (("training part", slice(0, cut)), ("validation part", slice(cut, length))):
        index = (region, slice(None)) if axis == 0 else (slice(None), region)
        ignore = None if sample.ignore is None else sample.ignore[index]
        classes = None if sample.classes is None else sample.classes[index]
        parts.append(AnnotatedImage(sample.image[index], sample.labels[index], ignore,
                                    f"{sample.name} [{part}]", classes, sample.class_names))
    return [parts[0]], [parts[1]]


def _patch_shape(patch_size) -> tuple[int, int]:
    shape = (patch_size, patch_size) if np.isscalar(patch_size) else tuple(patch_size)
    if len(shape) != 2 or any(int(s) != s or s < 1 for s in shape):
        raise DeepColorError(f"patch_size must be a positive int or (height, width); got {patch_size!r}.")
    return int(shape[0]), int(shape[1])


def _foreground_anchors(labels: np.ndarray) -> np.ndarray:
    flat = np.flatnonzero(labels)
    if flat.size > _MAX_ANCHORS:  # an even subset: enough to centre windows on every object
        flat = flat[:: int(math.ceil(flat.size / _MAX_ANCHORS))]
    return np.stack(np.unravel_index(flat, labels.shape), axis=1)


def _crop(sample: AnnotatedImage, corner: tuple[int, int], shape: tuple[int, int]):
    """The (C, h, w) image, labels and ignore of a window that may reach outside the image.

    Returns views when the window lies inside the image (ignore may be None then).
    """
    (r0, c0), (h, w) = corner, shape
    height, width = sample.shape
    if r0 >= 0 and c0 >= 0 and r0 + h <= height and c0 + w <= width:
        window = (slice(r0, r0 + h), slice(c0, c0 + w))
        ignore = None if sample.ignore is None else sample.ignore[window]
        return sample.image[window].transpose(2, 0, 1), sample.labels[window], ignore
    image = np.zeros((sample.num_channels, h, w), np.float32)
    labels = np.zeros((h, w), np.int32)
    ignore = np.ones((h, w), bool)
    src = (slice(max(r0, 0), min(r0 + h, height)), slice(max(c0, 0), min(c0 + w, width)))
    dst = (slice(src[0].start - r0, src[0].stop - r0), slice(src[1].start - c0, src[1].stop - c0))
    image[(slice(None),) + dst] = sample.image[src].transpose(2, 0, 1)
    labels[dst] = sample.labels[src]
    ignore[dst] = False if sample.ignore is None else sample.ignore[src]
    return image, labels, ignore


def _flip_and_turn(image, labels, ignore, geometry: Geometry):
    axes = []
    if geometry.flip_rows:
        axes.append(-2)
    if geometry.flip_cols:
        axes.append(-1)
    if axes:
        image, labels, ignore = (np.flip(a, axis=tuple(axes)) for a in (image, labels, ignore))
    if geometry.quarter_turns:
        image, labels, ignore = (np.rot90(a, geometry.quarter_turns, axes=(-2, -1))
                                 for a in (image, labels, ignore))
    return image, labels, ignore


def split_for_tuning(samples: Sequence[AnnotatedImage], *, validation_fraction: float = 0.15,
                     seed: int = 0) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """:func:`split_train_validation`, except that a validation part with no annotated object, which cannot
    tune the decode (a strip of one image cut at its empty edge, say), goes back to training: then every
    image trains and the model keeps its decode defaults (a fine-tuned starter's own)."""
    samples = list(samples)
    if validation_fraction <= 0:
        return samples, []
    train, validation = split_train_validation(samples, validation_fraction=validation_fraction, seed=seed)
    if validation and not any(sample.labels.any() for sample in validation):
        log.warning("the validation part of the images holds no annotated object, so the decode parameters "
                    "are not tuned: all %d image(s) train and the model keeps its decode defaults", len(samples))
        return samples, []
    return train, validation
