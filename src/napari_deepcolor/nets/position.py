"""Position input channels: where each pixel lies in the whole image, as the net's extra input.

A convolutional net is translation invariant: two identical objects at different places get
identical outputs, so a net that must give touching, look-alike objects different colours (deep
coloring) cannot, by construction (Novotny et al. 2018, sec. 3.6, "the convolutional coloring
dilemma"). Giving the net the pixel's coordinates as extra input channels (as CoordConv, Liu et al.
2018) breaks that symmetry. The coordinates are encoded as ``sin`` and ``cos`` of ``2 pi u / P`` for
each axis u (y, x) and each period P (net pixels), four channels per period: bounded values whatever
the image's size, the same code at u and u + P, so the net only has to learn what a few object
diameters of phase mean.

The coordinates are those of the pixel in the *whole* image at the net's scale, not in the window
the net sees: a tiled prediction equals a whole-image one only if every window is told where it lies
(:func:`napari_deepcolor.inference.predict_output` passes each window's ``origin`` and ``spacing``).
Training patches get random origins (:func:`random_origins`): a patch's place in its image means
nothing the net should learn.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

#: channels per period: sin and cos of y, sin and cos of x
CHANNELS_PER_PERIOD = 4


def position_channels(shape: tuple[int, int, int], periods: Sequence[float], *, origin=None, spacing=None,
                      device=None, dtype=torch.float32) -> torch.Tensor:
    """The position channels (B, 4 * len(periods), H, W) of a batch of windows of ``shape`` (B, H, W).

    Parameters
    ----------
    shape : (B, H, W)
        Batch size and the windows' height and width in pixels.
    periods : sequence of float
        The periods P of the encoding, in net pixels.
    origin : None, (2,) or (B, 2) array-like
        Coordinates (y, x), in net pixels of the whole image, of each window's pixel [0, 0]; None: (0, 0).
    spacing : None, (2,) or (B, 2) array-like
        Coordinate step (y, x) from one window pixel to the next; None: 1 (the window is at the net's
        scale). Negative for a window flipped along that axis (:func:`flipped_grid`).

    Returns
    -------
    (B, 4 * len(periods), H, W) tensor: for each period ``sin(2 pi y / P), cos(2 pi y / P),
    sin(2 pi x / P), cos(2 pi x / P)``.

    Notes
    -----
    The phases are computed in float64, so coordinates of images many thousands of pixels wide keep
    their precision.
    """
    batch, height, width = shape
    origin = _per_window(origin, batch, 0.0)
    spacing = _per_window(spacing, batch, 1.0)
    rows = origin[:, 0:1] + spacing[:, 0:1] * torch.arange(height, dtype=torch.float64)  # (B, H)
    cols = origin[:, 1:2] + spacing[:, 1:2] * torch.arange(width, dtype=torch.float64)  # (B, W)
    channels = []
    for period in periods:
        y, x = 2 * math.pi * rows / period, 2 * math.pi * cols / period
        for along_y in (torch.sin(y), torch.cos(y)):
            channels.append(along_y[:, :, None].expand(batch, height, width))
        for along_x in (torch.sin(x), torch.cos(x)):
            channels.append(along_x[:, None, :].expand(batch, height, width))
    if not channels:
        return torch.zeros((batch, 0, height, width), dtype=dtype, device=device)
    return torch.stack(channels, dim=1).to(device=device, dtype=dtype)


def _per_window(value, batch: int, default: float) -> torch.Tensor:
    """``value`` ((2,), (B, 2) or None) as a (B, 2) float64 CPU tensor."""
    if value is None:
        return torch.full((batch, 2), default, dtype=torch.float64)
    value = torch.as_tensor(value, dtype=torch.float64).cpu()
    return value.reshape(1, 2).expand(batch, 2) if value.numel() == 2 else value.reshape(batch, 2)


def flipped_grid(origin, spacing, shape: tuple[int, int], dims: Sequence[int]) -> tuple[tuple, tuple]:
    """``(origin, spacing)`` of a window of ``shape`` (H, W) flipped along ``dims`` (-2: y, -1: x).

    Each pixel keeps its own coordinates: pixel ``j`` of the flipped axis is pixel ``n - 1 - j`` of the
    window, so the flipped axis starts at the window's last coordinate and runs backwards.
    """
    origin, spacing = list(origin), list(spacing)
    for dim in dims:
        axis = dim % 2
        origin[axis] += (shape[axis] - 1) * spacing[axis]
        spacing[axis] = -spacing[axis]
    return tuple(origin), tuple(spacing)


def random_origins(batch: int, periods: Sequence[float], generator: torch.Generator | None = None):
    """Random origins (B, 2) for training patches (uniform over 64 of the longest period, so over every
    combination of the periods' phases); None without periods."""
    if not periods:
        return None
    return torch.rand((batch, 2), generator=generator, dtype=torch.float64) * (64 * max(periods))


def window_grid(corner: tuple[int, int], size: tuple[int, int], net_size: tuple[int, int],
                factor: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(origin, spacing)`` at the net's scale of a window of an image, for :func:`position_channels`.

    The window starts at ``corner`` (y, x) and spans ``size`` (h, w) image pixels; it is resized to
    ``net_size`` (bilinear, pixel centres aligned) for a net that sees images enlarged ``factor`` times.
    Net pixel ``j`` then samples image coordinate ``corner + (j + 0.5) * size / net_size - 0.5``, whose
    coordinate at the net's scale is ``factor`` times that: the same for every tiling of the image.
    """
    spacing = tuple(factor * n / m for n, m in zip(size, net_size))
    origin = tuple(factor * (c - 0.5) + s / 2 for c, s in zip(corner, spacing))
    return origin, spacing
