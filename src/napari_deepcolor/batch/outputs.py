"""Writing label images atomically, as TIFF or zarr, whole or band by band."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..data.io import atomic_write, atomic_write_folder
from .config import FileTask
from .sources import Layout


def _write_output(task: FileTask, layout: Layout, dtype, tile: int, *, labels=None, bands=None) -> None:
    """Write labels atomically as TIFF or zarr, with the input's axes minus the channels.

    Either ``labels``, the whole label image, or ``bands``, an iterator over the
    planes' bands of ``tile`` rows in order, so that an image larger than memory
    is written as a tiled TIFF or a chunked zarr array.
    """
    shape, axes, height, width = layout.out_shape, layout.out_axes, layout.height, layout.width
    target, overwrite = Path(task.target), task.config.overwrite
    if task.config.format == "zarr":
        def write(tmp: Path) -> None:
            import zarr

            chunks = (1,) * (len(shape) - 2) + (min(tile, height), min(tile, width))
            out = zarr.create_array(store=str(tmp), shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                    dimension_names=[a.lower() for a in axes],
                                    attributes={"axes": axes, "source": task.file}, overwrite=True)
            if labels is not None:
                out[...] = labels
                return
            per_plane = -(-height // tile)
            for number, band in enumerate(bands):
                plane, y0 = divmod(number, per_plane)
                index = tuple(int(i) for i in np.unravel_index(plane, layout.plane_shape)) if layout.plane_axes else ()
                out[index + (slice(y0 * tile, y0 * tile + band.shape[0]),)] = band

        atomic_write_folder(target, write, overwrite=overwrite)
        return

    def write(tmp: Path) -> None:
        import tifffile

        options = dict(compression="zlib", photometric="minisblack", metadata={"axes": axes},
                       bigtiff=math.prod(shape) * np.dtype(dtype).itemsize > 2**31)
        if labels is not None:
            tifffile.imwrite(tmp, labels, **options)
        else:
            tiles = (band[:, x0:x0 + tile] for band in bands for x0 in range(0, width, tile))
            tifffile.imwrite(tmp, tiles, shape=shape, dtype=dtype, tile=(tile, tile), **options)

    atomic_write(target, write, overwrite=overwrite)
