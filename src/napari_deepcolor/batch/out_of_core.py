"""The out-of-core route: planes larger than memory allows, read, predicted and decoded block by block.

The plane is read window by window, normalised with percentiles estimated on a
regular subsample, predicted tile by tile into a chunked zarr store in a hidden
scratch folder inside the output folder, and decoded block by block (the
method's :meth:`~napari_deepcolor.methods.base.Method.decode_blocks`) so that
objects crossing block borders get one label. The planes' objects are then
linked through Z and T and measured band by band (:mod:`.out_of_core_stacks`).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..data.io import smallest_label_dtype
from ..errors import DeepColorError
from . import tiling
from .inputs import SCRATCH_PREFIX
from .outputs import _write_output

#: pixels of the subsample that estimates the normalisation percentiles of a large image
SUBSAMPLE_PIXELS = 4_000_000


class _PreparedWindows:
    """One plane of a lazily read image as the net's input (H, W, C), read window by window.

    Channels are matched to the model as for in-memory images; the percentile
    normalisation uses the fixed offset and scale estimated by :func:`_scan_plane`.
    """

    def __init__(self, model, source, layout, plane, offset, scale):
        self.model, self.source, self.layout, self.plane = model, source, layout, plane
        self.offset, self.scale = offset, scale
        self.shape = (layout.height, layout.width, model.net_config.in_channels)

    def __getitem__(self, key):
        from ..inference import match_channels

        rows, cols = key
        image = match_channels(self.model, self.source.read(self.layout, self.plane, rows, cols))
        out = image.astype(np.float32)  # the operations of normalize_percentile, in its order
        if not np.all(np.isfinite(out)):
            raise DeepColorError(f"{self.source.name}: the image holds NaN or infinite values; replace them first.")
        out -= self.offset
        out *= self.scale
        return out


def _scan_plane(model, source, layout, plane, block: int):
    """Normalisation ``(offset, scale)`` of one plane read block by block, or None if it is constant.

    Percentiles come from every k-th pixel in both directions (at most
    SUBSAMPLE_PIXELS pixels; every pixel for planes up to that size), the
    fallback minimum and maximum (for channels whose percentiles coincide) from
    every pixel, as :func:`~napari_deepcolor.data.normalize.normalize_percentile`.
    """
    from ..inference import match_channels

    height, width = layout.height, layout.width
    step = max(1, math.ceil(math.sqrt(height * width / SUBSAMPLE_PIXELS)))
    samples, lows, highs = [], [], []
    for y0 in range(0, height, block):
        for x0 in range(0, width, block):
            image = match_channels(model, source.read(layout, plane, slice(y0, y0 + block), slice(x0, x0 + block)))
            image = image.astype(np.float32) if image.dtype == bool else image
            lows.append(image.min(axis=(0, 1)))
            highs.append(image.max(axis=(0, 1)))
            samples.append(image[(-y0) % step::step, (-x0) % step::step].reshape(-1, image.shape[-1]))
    low, high = np.min(lows, axis=0).astype(np.float64), np.max(highs, axis=0).astype(np.float64)
    if np.all(low == high):
        return None
    norm = model.normalization or {}
    sample = np.concatenate(samples)
    lo, hi = np.percentile(sample, [norm.get("low", 1.0), norm.get("high", 99.8)], axis=0).astype(np.float64)
    collapsed = hi - lo <= 0
    lo, hi = np.where(collapsed, low, lo), np.where(collapsed, high, hi)
    span = hi - lo
    scale = np.where(span <= 0, 0.0, 1.0 / np.where(span <= 0, 1.0, span))
    return lo.astype(np.float32), scale.astype(np.float32)


def _segment_out_of_core(model, source, layout, parameters, task, tile, device):
    """Segment planes larger than memory allows, yielding per plane; returns the number of objects.

    As the in-memory route: objects are linked through Z and T, and the tracks
    table (time-lapses) and the measurements are written before the labels
    (:mod:`.out_of_core_stacks`), each a band of rows at a time.
    """
    from .out_of_core_stacks import PlaneStore, link_planes, write_tables

    config = task.config
    method, threshold = model.method, f"{config.large_image_megapixels:g} MP"
    if config.refine not in (None, "none"):  # the model's own choice of the CRF is left out here
        raise DeepColorError(f"{task.file}: planes over {threshold} are segmented out of core, where the "
                             f"'{config.refine}' refinement is not available (it needs the whole plane in "
                             "memory); segment without --refine, or raise the large-image threshold "
                             "(CLI: --large-image-mp) if the image fits in memory.")
    limitation = method.blockwise_limitation(parameters, model.method_options)
    if model.output_class_names:
        limitation = "is not implemented for models with classes (the class of each object needs the whole plane)"
    if limitation:
        raise DeepColorError(f"{task.file}: planes over {threshold} are decoded out of core, which {limitation}; "
                             "raise the large-image threshold (CLI: --large-image-mp) if the image fits in memory.")
    core = tile - 2 * tiling.MARGIN
    Path(task.target).parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=Path(task.target).parent))
    try:
        store, scores = PlaneStore(layout, core), []
        for plane in range(layout.n_planes):
            ids, lookup, plane_scores = _label_plane_out_of_core(model, source, layout, plane, parameters, scratch,
                                                                 tile, device, config.object_diameter,
                                                                 model.refinement(flips=config.flips)[1])
            store.add(ids, lookup, plane_scores.size)
            scores.append(plane_scores)
            yield plane + 1, layout.n_planes
        table, scores, parents = link_planes(store, np.concatenate(scores), stitch_threshold=config.stitch_threshold,
                                             track_threshold=config.track_threshold)
        write_tables(task, store, table, scores, parents, source)
        dtype = smallest_label_dtype(scores.size)
        bands = (labels.astype(dtype) for plane in range(layout.n_planes) for _, labels in store.bands(plane, table))
        _write_output(task, layout, dtype, core, bands=bands)
        return scores.size
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _label_plane_out_of_core(model, source, layout, plane, parameters, scratch: Path, tile: int, device,
                             object_diameter: float | None = None, flips: bool = False):
    """Predict one plane into ``scratch`` and label it: ``(ids, lookup, scores)``; labels are ``lookup[ids]``,
    1..N, and ``scores[i - 1]`` is label i's score."""
    import zarr
    from zarr.codecs import BloscCodec

    from ..inference import predict_output

    core, (height, width) = tile - 2 * tiling.MARGIN, (layout.height, layout.width)
    block = core * max(1, tiling.DECODE_BLOCK // core)
    scaling = _scan_plane(model, source, layout, plane, block)
    if scaling is None:  # a constant plane: no objects
        return None, np.zeros(1, np.int64), np.zeros(0, np.float32)
    fast = [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")]  # scratch: speed over size (zstd: 3x slower)
    channels = model.net_config.out_channels
    raw = zarr.create_array(store=str(scratch / "raw.zarr"), shape=(channels, height, width),
                            chunks=(channels, core, core), dtype="float32", compressors=fast, overwrite=True)
    predict_output(model, _PreparedWindows(model, source, layout, plane, *scaling), device=device, tile_size=tile,
                   margin=tiling.MARGIN, object_diameter=object_diameter, flips=flips, out=raw)
    ids = zarr.create_array(store=str(scratch / f"ids-{plane}.zarr"), shape=(height, width), chunks=(core, core),
                            dtype=np.uint32 if height * width < 2**32 else np.uint64, fill_value=0, compressors=fast)
    lookup, scores = model.method.decode_blocks(raw, ids, block=block, **parameters)
    return ids, lookup, scores
