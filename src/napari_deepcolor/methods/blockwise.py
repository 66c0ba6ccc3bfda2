"""Deep coloring's decode of an output larger than memory, block by block.

The out-of-core counterpart of :meth:`~napari_deepcolor.methods.coloring.ColoringMethod.decode`
without the merge stage: components of equal colour are found per block and
joined across block borders, so the labels equal the in-memory decode's up to
a renumbering. Memory is bounded by one block and the table of components.
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
    over the component's pixels of the probability of its colour.
    """

    sizes: np.ndarray
    links: np.ndarray
    score_sums: np.ndarray


def label_color_blocks(output, ids, *, block: int, size_threshold: int = 0) -> ComponentTable:
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
    Memory is bounded by one block of ``output`` and that table.
    """
    from skimage.measure import label as connected_label

    from .components import argmax_channels

    _, height, width = output.shape
    sizes, score_sums, offset, links = [np.zeros(1, np.int64)], [np.zeros(1)], 0, []
    above = {}  # x0 -> (ids, colours) of the last row of the block above
    for y0 in range(0, height, block):
        left = None  # (ids, colours) of the last column of the block to the left
        for x0 in range(0, width, block):
            rows, cols = slice(y0, min(y0 + block, height)), slice(x0, min(x0 + block, width))
            color, peak = argmax_channels(np.asarray(output[:, rows, cols]))
            local = connected_label(color, background=0, connectivity=1)
            local_sizes = np.bincount(local.ravel())
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
            if y0 > 0:
                links.append(_face_links(*above[x0], here[0], color[0]))
            if x0 > 0:
                links.append(_face_links(*left, here[:, 0], color[:, 0]))
            above[x0], left = (here[-1], color[-1]), (here[:, -1], color[:, -1])
            offset += kept
    links = np.unique(np.concatenate(links), axis=0) if links else np.zeros((0, 2), np.int64)
    return ComponentTable(np.concatenate(sizes), links, np.concatenate(score_sums))


def _face_links(ids_a, colors_a, ids_b, colors_b) -> np.ndarray:
    touching = (ids_a > 0) & (ids_b > 0) & (colors_a == colors_b)
    return np.stack([ids_a[touching], ids_b[touching]], axis=1).astype(np.int64)


def resolve_components(table: ComponentTable, *, size_threshold: int) -> tuple[np.ndarray, int]:
    """Join linked components and drop objects under ``size_threshold`` (tau) pixels.

    Returns ``(lookup, count)``: ``lookup[provisional_id]`` is the final label
    (1..count, 0 for background and dropped objects), as the size stage of
    :meth:`~napari_deepcolor.methods.coloring.ColoringMethod.decode` keeps them.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from .components import relabel_by_lookup

    n = table.sizes.shape[0]
    links = table.links
    graph = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
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
