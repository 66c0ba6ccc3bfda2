"""Object-size normalisation: the net always sees objects about one size.

A U-Net learns features at the pixel scale it is trained on, so nuclei of
30 px and cells of 60 px are two different problems for it. As Cellpose
does, we rescale every image so that its objects have a canonical diameter
(:data:`NET_OBJECT_DIAMETER`, 30 px): training patches are cut from images
rescaled by ``factor = NET_OBJECT_DIAMETER / d``, ``d`` the median object
diameter of the annotations, and at inference each tile is rescaled by the
same factor (or by one for a diameter the user gives), run through the net,
and its output resized back. Decoding therefore always happens at the
image's own resolution, so decode parameters (size threshold, radii) stay in
the image's pixels, and labels come back at the input's shape. The deep
coloring paper itself trained on downscaled CVPPP images (sec. 4.1).

The same :func:`resize` serves training and inference, so the net sees
identically prepared pixels in both.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np

from .errors import DeepColorError

#: the object diameter (px) the net is trained and run at
NET_OBJECT_DIAMETER = 30.0
#: factors this close to 1 are not worth a resize
_NO_RESIZE = 0.05


def object_diameter(label_images: Sequence[np.ndarray]) -> float:
    """Median equivalent diameter ``2 sqrt(area / pi)`` (px) of the objects in label images.

    Parameters
    ----------
    label_images : sequence of (H, W) instance ids, or (K, H, W) per-object masks.

    Returns
    -------
    float
        0.0 when no object is annotated.
    """
    area = median_object_area(label_images)
    return 2.0 * math.sqrt(area / math.pi) if area > 0 else 0.0


def median_object_area(ground_truths: Sequence[np.ndarray]) -> float:
    """Median pixel count of the objects in label images (H, W) or per-object mask stacks (K, H, W)."""
    areas = []
    for truth in ground_truths:
        truth = np.asarray(truth)
        if truth.ndim == 3:
            areas.append(truth.reshape(truth.shape[0], -1).astype(bool).sum(axis=1))
        else:
            counts = np.bincount(truth[truth > 0].ravel().astype(np.int64))
            areas.append(counts[counts > 0])
    areas = np.concatenate(areas) if areas else np.zeros(0)
    areas = areas[areas > 0]
    return float(np.median(areas)) if areas.size else 0.0


def scale_factor(object_diameter: float | None, net_object_diameter: float | None) -> float:
    """How much to enlarge an image with objects of ``object_diameter`` px for the net (1: as is)."""
    if not object_diameter or not net_object_diameter:
        return 1.0
    if object_diameter < 0:
        raise DeepColorError(f"object diameter must be positive (got {object_diameter:g} px).")
    factor = net_object_diameter / object_diameter
    if not 1 / 16 <= factor <= 16:
        raise DeepColorError(
            f"objects of {object_diameter:g} px would be rescaled by {factor:.3g} to reach the model's "
            f"{net_object_diameter:g} px; give the diameter of the objects in pixels (e.g. 30), "
            "or use a model trained on objects of about this size.")
    return 1.0 if abs(factor - 1.0) < _NO_RESIZE else factor


def scaled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    return tuple(max(int(round(n * factor)), 1) for n in shape)


def resize(x, shape: tuple[int, int]):
    """Bilinear resize of a (B, C, H, W) float tensor to ``shape``, antialiased when shrinking."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    shrinking = shape[0] < x.shape[-2] or shape[1] < x.shape[-1]
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False, antialias=shrinking)


def resize_nearest(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes (labels, masks): pixel centres mapped back."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * array.shape[-2] / shape[0]).astype(np.int64), array.shape[-2] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * array.shape[-1] / shape[1]).astype(np.int64), array.shape[-1] - 1)
    return array[..., rows[:, None], cols[None, :]]


def rescale_sample(sample, factor: float):
    """An :class:`~napari_deepcolor.data.AnnotatedImage` rescaled by ``factor`` (image, labels, ignore)."""
    import torch

    if factor == 1.0:
        return sample
    shape = scaled_shape(sample.labels.shape, factor)
    image = torch.from_numpy(np.ascontiguousarray(np.moveaxis(sample.image, -1, 0), dtype=np.float32))[None]
    image = np.ascontiguousarray(np.moveaxis(resize(image, shape)[0].numpy(), 0, -1))
    labels = resize_nearest(sample.labels, shape)
    ignore = None if sample.ignore is None else resize_nearest(sample.ignore, shape)
    classes = None if sample.classes is None else resize_nearest(sample.classes, shape)
    return replace(sample, image=image, labels=labels, ignore=ignore, classes=classes)


#: a fine-tuned model keeps its starter's object diameter unless the new images' differs by more than this
#: factor either way: the median of one image of a set lies within 0.72-1.58 of the whole set's (E. coli,
#: BBBC039, Usiigaci), while a change of objective is a factor of 2 or more
SAME_SCALE_FACTOR = 1.6


def kept_object_diameter(before: float | None, measured: float | None, *, resume: bool = False) -> float | None:
    """The object diameter a resumed or fine-tuned model records.

    A resumed run keeps its own. A fine-tuned model keeps its starter's unless the new images' objects
    (``measured``, their median) differ from it by more than :data:`SAME_SCALE_FACTOR`: a median from one
    or a few images of the same kind of data is that noisy (one E. coli image gave 16 px against the
    starter's 21, and the fine-tuned model, rescaling every image by it, lost test AP 0.93 -> 0.77), and
    the net was trained on scales 0.8-1.25 around its own (training's augmentation). Objects of another size take the new diameter.
    """
    if before is None or measured is None:
        return measured if before is None else before
    same = 1 / SAME_SCALE_FACTOR <= measured / before <= SAME_SCALE_FACTOR
    return before if resume or same else measured
