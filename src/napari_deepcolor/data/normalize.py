"""Intensity normalisation and channel layout of raw images."""

from __future__ import annotations

import numpy as np

from ..errors import DeepColorError

__all__ = ["normalize_percentile", "as_channels_last", "COLOUR_CHANNELS", "MAX_GUESSED_CHANNELS"]

#: The channel counts of colour images (RGB, RGBA): a grey image is repeated into them for a colour model;
#: models of other channel counts (e.g. nuclei + cytoplasm) refuse a grey image.
COLOUR_CHANNELS = (3, 4)
#: Without a known spatial shape, an axis of at most this length is taken for channels.
MAX_GUESSED_CHANNELS = 4


def normalize_percentile(
    image: np.ndarray,
    *,
    low: float = 1.0,
    high: float = 99.8,
    channel_axis: int | None = -1,
) -> np.ndarray:
    """Scale intensities so the ``low`` percentile maps to 0 and the ``high`` one to 1.

    Each channel is normalised on its own, over the whole image. Values are not
    clipped: a few pixels above the ``high`` percentile stay above 1.

    Parameters
    ----------
    image : ndarray
        Any numeric or bool dtype. Not modified.
    low, high : float
        Percentiles in [0, 100] with ``low < high``.
    channel_axis : int or None
        Axis holding the channels; None normalises the whole array as one
        channel. A 2D image is always one channel.

    Returns
    -------
    ndarray of float32, same shape as ``image``
        ``(x - p_low) / (p_high - p_low)`` per channel. When ``p_high == p_low``
        (a mostly constant channel) the min-max range is used instead, and a
        constant channel becomes all zeros.

    Raises
    ------
    DeepColorError
        If the percentiles are out of order or the image holds NaN/inf.

    Examples
    --------
    >>> normalize_percentile(np.array([[0, 50], [100, 200]]), low=0, high=100).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    """
    if not 0 <= low < high <= 100:
        raise DeepColorError(
            f"normalisation percentiles must satisfy 0 <= low < high <= 100; got low={low}, high={high}."
        )
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float32)
    if not (np.issubdtype(image.dtype, np.number)) or np.iscomplexobj(image):
        raise DeepColorError(f"image must hold real numbers; got dtype {image.dtype}.")
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise DeepColorError("image holds NaN or infinite values; replace them (e.g. with 0) first.")
    if image.size == 0:
        return image.astype(np.float32)
    if image.ndim <= 2 or channel_axis is None:
        reduce_axes = None
        keep_shape = (1,) * image.ndim
    else:
        channel_axis = channel_axis % image.ndim
        reduce_axes = tuple(a for a in range(image.ndim) if a != channel_axis)
        keep_shape = tuple(image.shape[a] if a == channel_axis else 1 for a in range(image.ndim))
    lo, hi = np.percentile(image, [low, high], axis=reduce_axes)
    lo = np.reshape(lo, keep_shape).astype(np.float64)
    hi = np.reshape(hi, keep_shape).astype(np.float64)
    collapsed = hi - lo <= 0
    if np.any(collapsed):  # fall back to the full range where the percentiles coincide
        mn = np.reshape(np.min(image, axis=reduce_axes), keep_shape).astype(np.float64)
        mx = np.reshape(np.max(image, axis=reduce_axes), keep_shape).astype(np.float64)
        lo = np.where(collapsed, mn, lo)
        hi = np.where(collapsed, mx, hi)
    span = hi - lo
    constant = span <= 0
    scale = np.where(constant, 0.0, 1.0 / np.where(constant, 1.0, span))
    out = image.astype(np.float32)  # a copy: the input is never touched
    out -= lo.astype(np.float32)
    out *= scale.astype(np.float32)
    return out


def as_channels_last(image: np.ndarray, *, spatial_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Return a 2D image as ``(H, W, C)``, whatever the channel layout it came in.

    Parameters
    ----------
    image : (H, W), (H, W, C) or (C, H, W) ndarray
        Any dtype (bool, integer, float). Not modified; the result may be a view.
    spatial_shape : (H, W), optional
        The spatial size the image must have, usually the label image's shape.
        It decides between ``(H, W, C)`` and ``(C, H, W)`` for any ``C``.
        Without it, a last axis of length <= 4 is channels, else a first axis
        of length <= 4 is channels.

    Returns
    -------
    (H, W, C) ndarray, same dtype
        A grey image gets ``C = 1``. An image stored channels-last with 4
        channels is taken for RGBA and loses its alpha channel (``C = 3``); a
        channels-first ``(4, H, W)`` image keeps its 4 channels.

    Raises
    ------
    DeepColorError
        If the layout cannot be matched to ``spatial_shape`` or guessed.
    """
    image = np.asarray(image)
    spatial = None if spatial_shape is None else tuple(int(s) for s in spatial_shape)
    if image.ndim == 2:
        if spatial is not None and image.shape != spatial:
            raise DeepColorError(_mismatch_message(image.shape, spatial))
        return image[..., np.newaxis]
    if image.ndim != 3:
        raise DeepColorError(
            f"expected a 2D image, (H, W), (H, W, C) or (C, H, W); got shape {image.shape}. "
            "For a stack, pass the planes one by one or use from_arrays with matching labels."
        )
    if spatial is not None:
        if image.shape[:2] == spatial:
            out = image
        elif image.shape[1:] == spatial:
            out = np.moveaxis(image, 0, -1)
        else:
            raise DeepColorError(_mismatch_message(image.shape, spatial))
    elif image.shape[-1] <= MAX_GUESSED_CHANNELS:
        out = image
    elif image.shape[0] <= MAX_GUESSED_CHANNELS:
        out = np.moveaxis(image, 0, -1)
    else:
        raise DeepColorError(
            f"cannot tell which axis of an image of shape {image.shape} holds the channels; "
            "pass spatial_shape=(H, W) or move the channels to the last axis."
        )
    if out.shape[-1] == 4 and out is image:  # stored RGBA (PNG): alpha says nothing about the sample
        out = out[..., :3]
    return out


def _mismatch_message(shape: tuple, spatial: tuple) -> str:
    message = f"image of shape {tuple(shape)} does not fit the labels' shape {spatial}"
    if spatial[::-1] in (tuple(shape[:2]), tuple(shape[-2:])):
        message += "; the labels look transposed (rows and columns swapped): transpose them"
    return message + "."
