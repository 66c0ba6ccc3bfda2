"""Decodes of an output larger than memory, block by block.

The out-of-core counterparts of two in-memory decodes, whose labels they equal up to a renumbering:

* deep coloring's :meth:`~napari_deepcolor.methods.coloring.ColoringMethod.decode` without the merge
  stage: components of equal colour are found per block and joined across block borders
  (:func:`label_color_blocks`, :func:`resolve_components`);
* the 3-class baseline's :meth:`~napari_deepcolor.methods.boundary.BoundaryMethod.decode`: its interior
  cores are labelled the same way, then grown over the foreground one block at a time, each block
  read with a margin of :data:`GROWTH_REACH` pixels around it (:func:`grow_seeds_blockwise`).

Memory is bounded by one block (with its margin) and the table of components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ComponentTable:
    """What the block-wise labelling of one plane found.

    ``sizes[i]`` is the pixel count of provisional component ``i`` (0: background);
    ``links`` (E, 2) holds pairs of components of equal colour that touch
    across a block border and so are one object; ``score_sums[i]`` is the sum
    over the component's pixels of the probability of its colour;
    ``first_pixels[i]`` is the flat index (row * width + column) of its first
    pixel in raster order.
    """

    sizes: np.ndarray
    links: np.ndarray
    score_sums: np.ndarray
    first_pixels: np.ndarray


def label_color_blocks(output, ids, *, block: int, size_threshold: int = 0, colours=None) -> ComponentTable:
    """Connected components of equal colour of a (C, H, W) output, block by block.

    The out-of-core counterpart of the first stage of
    :meth:`~napari_deepcolor.methods.coloring.ColoringMethod.decode`: argmax per
    block, components of equal colour (4-connected) per block, written with
    ids unique across blocks into ``ids`` (an (H, W) array-like, e.g. zarr).
    Components of equal colour facing each other across a block border are
    recorded in ``links``; :func:`resolve_components` joins them. A component
    wholly inside a block is complete, so one under ``size_threshold`` pixels
    is dropped at once (as the decode would): the table then grows with the
    objects and the pieces on block borders, not with every speck of noise.
    Memory is bounded by one block of ``output`` and that table. ``colours``, a function of a block of
    ``output`` to its ``(colour, score)`` images, replaces the argmax (colour 0 is background).
    """
    from skimage.measure import label as connected_label

    from .components import argmax_channels

    colours = colours or argmax_channels
    _, height, width = output.shape
    sizes, score_sums, firsts, offset, links = [np.zeros(1, np.int64)], [np.zeros(1)], [np.zeros(1, np.int64)], 0, []
    above = {}  # x0 -> (ids, colours) of the last row of the block above
    for y0 in range(0, height, block):
        left = None  # (ids, colours) of the last column of the block to the left
        for x0 in range(0, width, block):
            rows, cols = slice(y0, min(y0 + block, height)), slice(x0, min(x0 + block, width))
            color, peak = colours(np.asarray(output[:, rows, cols]))
            local = connected_label(color, background=0, connectivity=1)
            local_sizes = np.bincount(local.ravel())
            # labels are numbered in raster order, so each one's first pixel is where the running maximum rises:
            # one pass, not the sort of np.unique's first indices
            rises = np.flatnonzero(np.diff(np.maximum.accumulate(local.ravel()), prepend=0))
            first_row, first_col = np.divmod(np.concatenate([[0], rises]), local.shape[1])
            keep = local_sizes >= max(size_threshold, 1)
            for edge in (local[0], local[-1], local[:, 0], local[:, -1]):
                keep[edge] = True  # may continue in the next block: decided after joining
            keep[0] = False
            kept = int(keep.sum())
            new_id = np.zeros(keep.size, ids.dtype)
            new_id[keep] = np.arange(offset + 1, offset + kept + 1)
            here = new_id[local]
            ids[rows, cols] = here
            sizes.append(local_sizes[keep])
            score_sums.append(np.bincount(local.ravel(), weights=peak.ravel(), minlength=keep.size)[keep])
            firsts.append(((y0 + first_row) * width + x0 + first_col)[keep])
            if y0 > 0:
                links.append(_face_links(*above[x0], here[0], color[0]))
            if x0 > 0:
                links.append(_face_links(*left, here[:, 0], color[:, 0]))
            above[x0], left = (here[-1], color[-1]), (here[:, -1], color[:, -1])
            offset += kept
    links = np.unique(np.concatenate(links), axis=0) if links else np.zeros((0, 2), np.int64)
    return ComponentTable(np.concatenate(sizes), links, np.concatenate(score_sums), np.concatenate(firsts))


def _face_links(ids_a, colors_a, ids_b, colors_b) -> np.ndarray:
    touching = (ids_a > 0) & (ids_b > 0) & (colors_a == colors_b)
    return np.stack([ids_a[touching], ids_b[touching]], axis=1).astype(np.int64)


def resolve_components(table: ComponentTable, *, size_threshold: int) -> tuple[np.ndarray, int]:
    """Join linked components and drop objects under ``size_threshold`` (tau) pixels.

    Returns ``(lookup, count)``: ``lookup[provisional_id]`` is the final label
    (1..count, 0 for background and dropped objects), as the size stage of
    :meth:`~napari_deepcolor.methods.coloring.ColoringMethod.decode` keeps them.
    """
    from .components import relabel_by_lookup

    group = _joined(table)
    group_sizes = np.bincount(group, weights=table.sizes)
    keep = group_sizes[group] >= max(size_threshold, 1)
    keep[0] = False
    _, lookup = relabel_by_lookup(np.zeros(0, np.intp), keep, group)
    return lookup, int(lookup.max(initial=0))


def object_scores(table: ComponentTable, lookup: np.ndarray, count: int) -> np.ndarray:
    """(count,) float32: each object's mean probability of its colour over its pixels, the score of
    :meth:`~napari_deepcolor.methods.coloring.ColoringMethod.decode` (``lookup`` from :func:`resolve_components`)."""
    score_sum = np.bincount(lookup, weights=table.score_sums, minlength=count + 1)[1:count + 1]
    size_sum = np.bincount(lookup, weights=table.sizes, minlength=count + 1)[1:count + 1]
    return (score_sum / np.maximum(size_sum, 1)).astype(np.float32)


def _joined(table: ComponentTable) -> np.ndarray:
    """``group[i]``: the object provisional component ``i`` belongs to, once its ``links`` are followed."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n, links = table.sizes.shape[0], table.links
    graph = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


#: how far (pixels, in steps of :func:`~napari_deepcolor.methods.components.grow_into`) a seed is grown
#: out of core exactly as in memory: each block is grown with this margin of its neighbours around it.
#: Objects are grown over their boundary ring, a few pixels at the net's scale; a pixel further than this
#: from every seed may go to another seed, or none, than in memory
GROWTH_REACH = 128


def seeds_in_raster_order(table: ComponentTable) -> np.ndarray:
    """``lookup[provisional id]``: seeds 1..S numbered by their first pixel in raster order, as
    :func:`skimage.measure.label` numbers the components of a whole plane (so that
    :func:`~napari_deepcolor.methods.components.grow_into`, which breaks ties by the larger id, grows them
    as in memory)."""
    group = _joined(table)  # the background, 0, is linked to nothing
    first = np.full(group.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, group[1:], table.first_pixels[1:])
    seeds = np.unique(group[1:])
    rank = np.zeros(first.size, np.int64)
    rank[seeds[np.argsort(first[seeds])]] = np.arange(1, seeds.size + 1)
    lookup = rank[group]
    lookup[0] = 0
    return lookup


def grow_seeds_blockwise(output, ids, seed_lookup: np.ndarray, *, block: int, seeds, allowed, weights,
                         size_threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow labelled seeds over the allowed pixels of a (C, H, W) output, block by block.

    ``ids`` holds the seeds' provisional ids (from :func:`label_color_blocks`) and ``seed_lookup`` their
    numbers 1..S (:func:`seeds_in_raster_order`); ``seeds``, ``allowed`` and ``weights`` are functions of a
    window of ``output``: its seed mask (the pixels :func:`label_color_blocks` labelled), the pixels seeds
    may grow into, and each pixel's score. Each block is grown with :data:`GROWTH_REACH` pixels of its
    neighbours around it, as :func:`~napari_deepcolor.methods.components.grow_into` grows a whole plane
    (``steps=None``), and its core is written back into ``ids`` as seed numbers. The blocks above and to
    the left hold grown numbers by then: a seed pixel's grown number is its own, so the seed mask reads
    them all. Returns ``(lookup, scores)`` as the in-memory decode keeps the grown objects: those of
    ``size_threshold`` pixels or more, numbered 1..N, each scored by its pixels' mean weight.
    """
    from .components import grow_into

    _, height, width = output.shape
    count = int(seed_lookup.max(initial=0))
    sizes, score_sums = np.zeros(count + 1, np.int64), np.zeros(count + 1)
    reach = GROWTH_REACH
    for y0 in range(0, height, block):
        for x0 in range(0, width, block):
            top, left = max(y0 - reach, 0), max(x0 - reach, 0)
            rows, cols = slice(top, min(y0 + block + reach, height)), slice(left, min(x0 + block + reach, width))
            window, numbers = np.asarray(output[:, rows, cols]), np.asarray(ids[rows, cols]).astype(np.int64)
            block_row = (np.arange(rows.start, rows.stop) // block)[:, None]
            block_col = (np.arange(cols.start, cols.stop) // block)[None, :]
            done = (block_row < y0 // block) | ((block_row == y0 // block) & (block_col < x0 // block))
            numbers = np.where(done, numbers, seed_lookup[np.where(done, 0, numbers)])
            grown = grow_into(np.where(seeds(window), numbers, 0), allowed(window), steps=None)
            core = grown[y0 - top:y0 - top + block, x0 - left:x0 - left + block]
            ids[y0:y0 + core.shape[0], x0:x0 + core.shape[1]] = core
            sizes += np.bincount(core.ravel(), minlength=count + 1)
            score_sums += np.bincount(core.ravel(), weights=weights(window)[y0 - top:y0 - top + block,
                                                                             x0 - left:x0 - left + block].ravel(),
                                      minlength=count + 1)
    keep = sizes >= max(size_threshold, 1)
    keep[0] = False
    lookup = np.zeros(count + 1, np.int64)
    lookup[keep] = np.arange(1, int(keep.sum()) + 1)
    return lookup, (score_sums[keep] / sizes[keep]).astype(np.float32)
