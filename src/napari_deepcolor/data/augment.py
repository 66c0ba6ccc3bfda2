"""Random augmentation of training patches: geometry for image and labels, intensity for the image.

Geometry that needs interpolation (free rotation, scaling) is one affine map,
applied by :class:`~napari_deepcolor.data.sampling.PatchSampler` to a crop only
slightly larger than the patch. Flips and quarter turns are exact array views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.transform import warp

from ..errors import DeepColorError

__all__ = ["Augmentation", "Geometry", "draw_geometry", "warp_patch", "jitter_intensity"]


@dataclass(frozen=True)
class Augmentation:
    """Which random changes training patches get, and how strong.

    Set a flag to False or a range to None to switch that change off;
    ``Augmentation.none()`` switches off everything.

    Parameters
    ----------
    flips : bool
        Mirror rows and/or columns, each with probability 1/2.
    rot90 : bool
        Turn by a random multiple of 90 degrees (exact, no interpolation).
    free_rotation : bool
        Turn by a uniform random angle (linear interpolation for the image,
        nearest neighbour for labels and ignore mask).
    scale_range : (float, float) or None
        Zoom factor drawn log-uniformly; > 1 makes objects larger.
    gain_range : (float, float) or None
        Multiplies each channel, drawn log-uniformly.
    offset_range : (float, float) or None
        Added to each channel after the gain, drawn uniformly (in units of the
        normalised intensity, where background ~ 0 and bright objects ~ 1).
    gamma_range : (float, float) or None
        Gamma curve on each channel's range within the patch, drawn log-uniformly.
    """

    flips: bool = True
    rot90: bool = True
    free_rotation: bool = True
    scale_range: tuple[float, float] | None = (0.8, 1.25)
    gain_range: tuple[float, float] | None = (0.8, 1.25)
    offset_range: tuple[float, float] | None = (-0.1, 0.1)
    gamma_range: tuple[float, float] | None = (0.8, 1.25)

    def __post_init__(self) -> None:
        for field in ("scale_range", "gain_range", "gamma_range", "offset_range"):
            value = getattr(self, field)
            if value is None:
                continue
            try:
                low, high = (float(v) for v in value)
            except (TypeError, ValueError):
                raise DeepColorError(
                    f"Augmentation {field} must be a pair (low, high) or None; got {value!r}."
                ) from None
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise DeepColorError(f"Augmentation {field} must satisfy low <= high; got {value!r}.")
            if field != "offset_range" and low <= 0:
                raise DeepColorError(f"Augmentation {field} must be positive; got {value!r}.")
            object.__setattr__(self, field, (low, high))

    @classmethod
    def none(cls) -> Augmentation:
        """No augmentation at all: patches are plain crops."""
        return cls(flips=False, rot90=False, free_rotation=False, scale_range=None,
                   gain_range=None, offset_range=None, gamma_range=None)

    @property
    def changes_intensity(self) -> bool:
        """Whether any intensity change is switched on."""
        return any(_active(r, neutral) for r, neutral in
                   ((self.gain_range, 1.0), (self.offset_range, 0.0), (self.gamma_range, 1.0)))


@dataclass(frozen=True)
class Geometry:
    """One random draw of the geometric augmentation."""

    angle: float = 0.0  # radians, counter-clockwise in (row, col) display
    scale: float = 1.0
    flip_rows: bool = False
    flip_cols: bool = False
    quarter_turns: int = 0

    @property
    def warps(self) -> bool:
        """Whether interpolation is needed (free rotation or scaling)."""
        return self.angle != 0.0 or self.scale != 1.0

    def source_extent(self, patch_shape: tuple[int, int]) -> tuple[float, float]:
        """Height and width of the source region the warped patch is drawn from."""
        c, s = abs(math.cos(self.angle)), abs(math.sin(self.angle))
        ph, pw = patch_shape
        return (ph * c + pw * s) / self.scale, (ph * s + pw * c) / self.scale


def _active(value, neutral: float) -> bool:
    return value is not None and value != (neutral, neutral)


def _log_uniform(rng: np.random.Generator, value, size=None):
    return np.exp(rng.uniform(math.log(value[0]), math.log(value[1]), size))


def draw_geometry(augmentation: Augmentation, rng: np.random.Generator, *, square: bool = True) -> Geometry:
    """Draw the geometric part of an augmentation.

    Parameters
    ----------
    augmentation : Augmentation
    rng : numpy.random.Generator
    square : bool
        Whether the patch is square; a non-square patch only gets half turns
        from ``rot90``, so its shape is kept.
    """
    angle = float(rng.uniform(0.0, 2 * math.pi)) if augmentation.free_rotation else 0.0
    scale = 1.0
    if _active(augmentation.scale_range, 1.0):
        scale = float(_log_uniform(rng, augmentation.scale_range))
    flip_rows = flip_cols = False
    if augmentation.flips:
        flip_rows, flip_cols = (bool(b) for b in rng.integers(0, 2, size=2))
    turns = 0
    if augmentation.rot90:
        turns = int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2))
    return Geometry(angle, scale, flip_rows, flip_cols, turns)


def warp_patch(
    image: np.ndarray,
    labels: np.ndarray,
    ignore: np.ndarray | None,
    geometry: Geometry,
    *,
    patch_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate and scale a crop about its centre into a patch of ``patch_shape``.

    Parameters
    ----------
    image : (C, h, w) ndarray of float32
    labels : (h, w) ndarray of int
    ignore : (h, w) ndarray of bool or None
    geometry : Geometry
        Its ``angle`` and ``scale`` are used; flips and quarter turns are not.
    patch_shape : (P_h, P_w)

    Returns
    -------
    image : (C, P_h, P_w) float32, linear interpolation, 0 outside the crop
    labels : (P_h, P_w) int32, nearest neighbour, 0 outside the crop
    ignore : (P_h, P_w) bool, nearest neighbour, True outside the crop
    """
    ph, pw = patch_shape
    h, w = labels.shape
    cos, sin = math.cos(geometry.angle), math.sin(geometry.angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) / geometry.scale  # output (row, col) -> source
    out_center = np.array([(ph - 1) / 2.0, (pw - 1) / 2.0])
    offset = np.array([(h - 1) / 2.0, (w - 1) / 2.0]) - matrix @ out_center
    # skimage's warp takes the same map in (x, y) = (col, row) order; its 2D affine path is fast.
    xy_map = np.array([[matrix[1, 1], matrix[1, 0], offset[1]],
                       [matrix[0, 1], matrix[0, 0], offset[0]],
                       [0.0, 0.0, 1.0]])
    warped = np.empty((image.shape[0], ph, pw), np.float32)
    for channel in range(image.shape[0]):
        warped[channel] = warp(image[channel], xy_map, output_shape=(ph, pw), order=1, mode="constant",
                               cval=0.0, clip=False, preserve_range=True)
    # Nearest neighbour by rounding the same source coordinates: exact ids, no smoothing.
    matrix32, offset32 = matrix.astype(np.float32), offset.astype(np.float32)
    rows = np.arange(ph, dtype=np.float32)[:, None]
    cols = np.arange(pw, dtype=np.float32)[None, :]
    src_r = np.rint(offset32[0] + matrix32[0, 0] * rows + matrix32[0, 1] * cols).astype(np.intp)
    src_c = np.rint(offset32[1] + matrix32[1, 0] * rows + matrix32[1, 1] * cols).astype(np.intp)
    outside = (src_r < 0) | (src_r >= h) | (src_c < 0) | (src_c >= w)
    np.clip(src_r, 0, h - 1, out=src_r)
    np.clip(src_c, 0, w - 1, out=src_c)
    warped_labels = labels[src_r, src_c].astype(np.int32, copy=False)
    warped_ignore = outside if ignore is None else (ignore[src_r, src_c] | outside)
    if outside.any():
        warped_labels[outside] = 0
    return warped, warped_labels, warped_ignore


def jitter_intensity(image: np.ndarray, augmentation: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """Random gain, offset and gamma per channel; returns a new float32 array.

    Parameters
    ----------
    image : (C, H, W) ndarray
        Not modified.

    Notes
    -----
    ``out = gamma_curve(gain * x + offset)`` where the gamma curve maps the
    channel's range ``[m, M]`` in the patch onto itself: ``m + (M - m) t**gamma``
    with ``t = (x - m) / (M - m)``. Normalised intensities can be negative, so
    gamma is applied to this range rather than to ``x`` itself.
    """
    channels = image.shape[0]
    shape = (channels,) + (1,) * (image.ndim - 1)
    gain = _log_uniform(rng, augmentation.gain_range, channels) if _active(augmentation.gain_range, 1.0) \
        else np.ones(channels)
    offset = rng.uniform(*augmentation.offset_range, channels) if _active(augmentation.offset_range, 0.0) \
        else np.zeros(channels)
    out = image * gain.astype(np.float32).reshape(shape)
    out += offset.astype(np.float32).reshape(shape)
    if _active(augmentation.gamma_range, 1.0):
        gamma = _log_uniform(rng, augmentation.gamma_range, channels)
        for channel in range(channels):
            plane = out[channel]
            low, high = float(plane.min()), float(plane.max())
            if high > low:
                plane -= low
                plane *= 1.0 / (high - low)
                np.power(plane, np.float32(gamma[channel]), out=plane)
                plane *= high - low
                plane += low
    return out.astype(np.float32, copy=False)
