"""The tile grid both routes share: the context margin around each tile, the decode blocks, the tile size.

The names here are read as module attributes (``tiling.MARGIN``) by the modules that use them, so that
a test may shrink them in one place.
"""

from __future__ import annotations

#: side in pixels of the blocks a large image is scanned and decoded in (rounded down to the tile grid);
#: a block of a 9-colour output costs about 150 bytes per pixel while it is decoded
DECODE_BLOCK = 1024
#: context in pixels around each tile (as :func:`~napari_deepcolor.inference.predict`'s default)
MARGIN = 64


def tile_with_margins(tile_size: int, divisor: int) -> int:
    """A tile whose core (tile minus margins) is a multiple of 16 and of the net's divisor.

    The cores are the grid of the out-of-core route's chunks and TIFF tiles
    (which must be multiples of 16); both routes use the same tiles.
    """
    multiple = max(16, divisor)
    return -(-(tile_size - 2 * MARGIN) // multiple) * multiple + 2 * MARGIN
