"""Pieces shared by the embedding methods: semiconv, dcme and metric_learning.

Training side (torch, whole batches at once, no Python loop over objects or pixels):

* :func:`flat_object_ids`: batch-global object ids per pixel (the pattern of
  ``coloring._flatten_batch``: label + number of objects in the patches before);
* :func:`object_means`: per-object means by ``index_add``;
* :func:`score_weighted_means`: per-object expectations under a softmax of
  per-pixel scores (a differentiable soft argmax);
* :func:`patch_coordinates`: the pixel coordinates u-hat in embedding units;
* :func:`sample_object_pixels` / :func:`collate_samples`: K random pixels per
  object (ragged, batch-global ids, as ``ColoringMethod.collate`` does for halos);
* :func:`pairwise_squared_distances` and :func:`grown_mask_ious`: the IoU of the
  mask each sampled seed would grow, which trains the seediness heads.

Decoding side (NumPy):

* :func:`grow_from_seeds`: the greedy seed-and-grow decoder (a seed claims the
  unclaimed points within a radius of its embedding); its ``diversity_weight``
  adds the embedding-space diversity term of Fathi et al. (sec. 3.3);
* :func:`instances_from_assignment`: size / score threshold and relabelling;
* :func:`displacement_vectors` and :func:`embedding_rgb`: preview layers.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy import ndimage as ndi

from .base import Instances, PreviewLayer
from .components import relabel_by_lookup

#: pixels per embedding unit. The semi-convolutional coordinates u-hat and the
#: DCME displacements are expressed in units of this many pixels, so that the
#: net's outputs stay O(1) for objects up to ~100 px across. It is a constant
#: and not a training option because the decoder, which does not see the
#: training options, must undo it.
PIXELS_PER_UNIT = 16.0

# the greedy decoder never takes more seeds than this (a bound for untrained nets)
MAX_SEEDS = 5000


# -- training (torch) ----------------------------------------------------------
def flat_object_ids(labels, ignore):
    """Batch-global object ids of every pixel of a batch.

    Parameters
    ----------
    labels : (B, H, W) long; objects 1..K_b in each patch, 0 background.
    ignore : (B, H, W) bool.

    Returns
    -------
    ids : (B*H*W,) long; 0 background, 1..K objects (label + objects of the
        patches before), -1 ignored pixels.
    image_of_pixel : (B*H*W,) long.
    object_image : (K,) long; the patch each object is in.
    n_objects : int, K.
    """
    import torch

    batch = labels.shape[0]
    per_image = labels.reshape(batch, -1).amax(dim=1).clamp(min=0)
    offsets = torch.cumsum(per_image, 0) - per_image
    image_of_pixel = torch.arange(batch, device=labels.device).repeat_interleave(labels[0].numel())
    flat = labels.reshape(-1)
    ids = torch.where(flat > 0, flat + offsets[image_of_pixel], torch.zeros_like(flat))
    ids = ids.masked_fill(ignore.reshape(-1), -1)
    object_image = torch.arange(batch, device=labels.device).repeat_interleave(per_image)
    return ids, image_of_pixel, object_image, int(per_image.sum())


def object_means(values, ids, n_objects: int):
    """Means of the rows of ``values`` (N, C) per id in 0..n_objects-1, and the counts.

    Returns ``(means (n_objects, C), counts (n_objects,))``; an id without rows has mean 0, count 0.
    """
    import torch

    sums = torch.zeros(n_objects, values.shape[1], device=values.device, dtype=values.dtype)
    sums = sums.index_add(0, ids, values)
    counts = torch.bincount(ids, minlength=n_objects)
    return sums / counts.clamp(min=1).unsqueeze(1).to(values.dtype), counts


def score_weighted_means(values, scores, ids, n_objects: int):
    """Per-object expectations of the rows of ``values`` under a softmax of ``scores`` over the object's rows.

    The differentiable soft maximum of Novotny et al., sec. 3.5: ``p(u) = softmax(s)(u)`` over the rows
    ``u`` of each object, and the expectation ``sum_u p(u) values_u``. Gradients reach both ``values``
    and ``scores``.

    Parameters
    ----------
    values : (N, C) tensor; scores : (N,) tensor (logits); ids : (N,) long, object ids 0..n_objects-1.

    Returns
    -------
    means : (n_objects, C) tensor; an id without rows has mean 0.
    weights : (N,) tensor, p(u): the softmax weight of each row within its object (summing to 1 per object).

    Examples
    --------
    >>> import torch
    >>> means, weights = score_weighted_means(torch.tensor([[0.0], [2.0], [5.0]]),
    ...                                       torch.tensor([0.0, 0.0, 3.0]), torch.tensor([0, 0, 1]), 2)
    >>> means.squeeze(1).tolist(), weights.tolist()
    ([1.0, 5.0], [0.5, 0.5, 1.0])
    """
    import torch

    peak = torch.full((n_objects,), float("-inf"), device=scores.device, dtype=scores.dtype)
    peak = peak.scatter_reduce(0, ids, scores.detach(), "amax")  # softmax is shift-invariant: no gradient needed
    exp = (scores - peak[ids]).exp()
    total = torch.zeros(n_objects, device=scores.device, dtype=scores.dtype).index_add(0, ids, exp)
    weights = exp / total[ids]
    means = torch.zeros(n_objects, values.shape[1], device=values.device, dtype=values.dtype)
    return means.index_add(0, ids, weights.unsqueeze(1) * values), weights


def patch_coordinates(height: int, width: int, *, device=None, dtype=None):
    """u-hat of eq. (6) restricted to its two non-zero rows: (2, H, W) = (y, x) / PIXELS_PER_UNIT."""
    import torch

    ys = torch.arange(height, device=device, dtype=dtype or torch.float32) / PIXELS_PER_UNIT
    xs = torch.arange(width, device=device, dtype=dtype or torch.float32) / PIXELS_PER_UNIT
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


def sample_object_pixels(labels: np.ndarray, ignore: np.ndarray, per_object: int, *,
                         background: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_object`` random non-ignored pixels of every object (without replacement).

    The random generator is seeded from the patch's content, so a patch always
    gets the same samples: training stays reproducible without global seeds.

    Parameters
    ----------
    labels : (H, W) int; 0 background.
    ignore : (H, W) bool.
    per_object : int, K.
    background : bool
        Also sample K background pixels, as group 0.

    Returns
    -------
    pixels, groups : (M,) int64; flat pixel index and the label it has (0 = background).
    """
    flat = labels.ravel().astype(np.int64)
    usable = ~ignore.ravel() & ((flat > 0) | background)
    index = np.flatnonzero(usable)
    if index.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(labels).tobytes()))
    groups = flat[index]
    order = np.lexsort((rng.random(index.size), groups))  # by group, random within a group
    groups, index = groups[order], index[order]
    first = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    rank = np.arange(groups.size) - np.repeat(first, np.diff(np.r_[first, groups.size]))
    keep = rank < per_object
    return index[keep].astype(np.int64), groups[keep].astype(np.int64)


def collate_samples(targets: list[dict], n_pixels: int) -> dict:
    """Concatenate per-patch ``sample_pixels``/``sample_groups`` into batch-global tensors.

    Returns ``sample_pixels`` (flat index into the batch's B*H*W pixels),
    ``sample_objects`` (batch-global object id, 0 = background) and
    ``sample_images`` (the patch of each sample).
    """
    import torch

    offsets = np.cumsum([0] + [int(t["labels"].max(initial=0)) for t in targets[:-1]])
    pixels = np.concatenate([t["sample_pixels"] + i * n_pixels for i, t in enumerate(targets)])
    objects = np.concatenate([np.where(t["sample_groups"] > 0, t["sample_groups"] + offsets[i], 0)
                              for i, t in enumerate(targets)])
    images = np.concatenate([np.full(t["sample_pixels"].size, i) for i, t in enumerate(targets)])
    return {"sample_pixels": torch.from_numpy(pixels.astype(np.int64)),
            "sample_objects": torch.from_numpy(objects.astype(np.int64)),
            "sample_images": torch.from_numpy(images.astype(np.int64))}


def collate_sampled_batch(targets: list[dict]) -> dict:
    """A batch of targets holding ``labels``, ``ignore`` and sampled pixels: stacked
    labels and ignore masks plus the batch-global samples of :func:`collate_samples`."""
    import torch

    labels = np.stack([t["labels"] for t in targets])
    ignore = np.stack([t["ignore"] for t in targets])
    return {"labels": torch.from_numpy(labels), "ignore": torch.from_numpy(ignore),
            **collate_samples(targets, labels[0].size)}


def pairwise_squared_distances(a, b):
    """||a_i - b_j||^2 for rows of a (N, D) and b (M, D), as ||a||^2 + ||b||^2 - 2 a.b (clamped at 0).

    Centre both on a common point first when their values are large: the
    expansion loses about ``eps * ||a||^2`` of absolute precision.
    """
    squared = (a * a).sum(1, keepdim=True) + (b * b).sum(1).unsqueeze(0) - 2 * a @ b.T
    return squared.clamp(min=0)


def grown_mask_ious(points, labels, seeds, squared_radii, *, eligible=None, chunk: int = 64):
    """Best IoU with a ground-truth object of the masks that seeds would grow.

    The mask of seed ``s`` at radius ``r`` is ``{q : ||points_q - points_s||^2 < r^2}``
    over the given pixels (those the caller kept: e.g. the non-ignored ones).
    No gradient flows: this makes targets.

    Parameters
    ----------
    points : (P, D) tensor; the embeddings of one image's pixels.
    labels : (P,) long; object ids 1..N, 0 background.
    seeds : (S,) long; indices into ``points``.
    squared_radii : (S, R) tensor; R mask radii per seed.
    eligible : (P,) bool tensor, optional; only these pixels can be in a mask
        (e.g. the predicted foreground), while objects keep all their pixels.

    Returns
    -------
    (S, R) tensor: for every seed and radius, the largest IoU between the mask
    and a ground-truth object (0 when the mask holds no object pixel).

    Notes
    -----
    Dense, one distance matrix per chunk of seeds: the mask at each radius is a
    0/1 row per seed, and one matrix product with the labels' one-hot columns
    gives its intersection with every object. The cost does not depend on how
    large the masks are, which matters early in training, when an untrained
    embedding puts nearly the whole patch in every mask.
    """
    import torch

    with torch.no_grad():
        n_radii = squared_radii.shape[1]
        n_labels = int(labels.max()) + 1 if labels.numel() else 1
        centred = points - points.mean(0, keepdim=True)
        one_hot = torch.nn.functional.one_hot(labels, n_labels).to(points.dtype)  # (P, labels)
        object_size = one_hot.sum(0)
        if eligible is not None:
            one_hot = one_hot * eligible.unsqueeze(1).to(points.dtype)
        out = []
        for start in range(0, seeds.numel(), chunk):
            s = seeds[start:start + chunk]
            radii = squared_radii[start:start + chunk]
            d2 = pairwise_squared_distances(centred[s], centred)  # (s, P)
            inside = torch.stack([(d2 < radii[:, j:j + 1]).to(points.dtype) @ one_hot for j in range(n_radii)], 1)
            mask_size = inside.sum(2, keepdim=True)  # (s, R, 1)
            iou = inside / (mask_size + object_size - inside).clamp(min=1)
            out.append(iou[:, :, 1:].amax(2) if n_labels > 1 else torch.zeros_like(iou[:, :, 0]))
        return torch.cat(out) if out else torch.zeros(0, n_radii, device=points.device)


# -- decoding (NumPy) ----------------------------------------------------------
def grow_from_seeds(points: np.ndarray, candidates: np.ndarray, priority: np.ndarray,
                    squared_radius: np.ndarray, *, diversity_weight: float = 0.0, max_seeds: int = MAX_SEEDS,
                    pixels: np.ndarray | None = None, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy seed-and-grow clustering of embedded points.

    Repeatedly take the best seed among the candidates not yet claimed, and let
    it claim every unclaimed point within its radius in embedding space; the
    seed itself is always claimed. Stops when no candidate is left or after
    ``max_seeds`` seeds.

    Parameters
    ----------
    points : (D, N) float array; the embeddings of the N points, one row per dimension.
    candidates : (M,) int array; the points that may become seeds.
    priority : (M,) float array; seed quality, higher first (e.g. seediness, or log S_p).
    squared_radius : (M,) float array; the squared mask radius if candidate m is the seed.
    diversity_weight : float
        alpha of Fathi et al., eq. of sec. 3.3: the next seed maximises
        ``priority + alpha * log D`` where D is the squared embedding distance
        to the nearest seed taken so far. 0 takes the seeds in priority order.
    pixels, width : optional
        The flat pixel index (N,) of every point in an image ``width`` pixels
        wide. Given, a seed claims only the points of its mask that are
        8-connected to it in the image; the others stay unclaimed.

    Returns
    -------
    assignment : (N,) int32; 0 unclaimed, t for the mask of the t-th seed.
    seeds : (T,) int64; the point index of every seed, in order.

    Notes
    -----
    Vectorised per seed, with no per-point Python loop. The points are sorted
    once along their widest dimension, so a seed computes distances only in
    the slab of points within its radius along that dimension (for the
    semi-convolutional and DCME embeddings, whose first dimensions are image
    coordinates, a band of the image); claimed points are compacted away in
    batches.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    n_dims, n_points = points.shape
    assignment = np.zeros(n_points, np.int32)
    if n_points == 0:
        return assignment, np.zeros(0, np.int64)
    # points sorted along their widest dimension: a seed only looks at the slab within its radius there
    axis = int(np.argmax(points.std(axis=1)))
    order = np.argsort(points[axis])
    ordered = np.ascontiguousarray(points[:, order])
    free = np.ones(n_points, bool)  # aligned with ``order``: not claimed yet
    stale = 0
    if diversity_weight > 0:
        picker = _DiversePicker(points, candidates, priority, diversity_weight)
    else:
        picker = _OrderedPicker(candidates, priority)
    seeds = []
    while len(seeds) < max_seeds:
        pick = picker.next(assignment)
        if pick is None:
            break
        seed, m = pick
        label = len(seeds) + 1
        seeds.append(seed)
        centre, r2 = points[:, seed], float(squared_radius[m])
        reach = np.sqrt(max(r2, 0.0))
        lo = np.searchsorted(ordered[axis], np.float32(centre[axis] - reach), side="left")
        hi = np.searchsorted(ordered[axis], np.float32(centre[axis] + reach), side="right")
        if hi > lo:
            slab = ordered[:, lo:hi]
            d2 = np.square(slab[0] - centre[0])
            for j in range(1, n_dims):
                d2 += np.square(slab[j] - centre[j])
            within = np.flatnonzero((d2 < r2) & free[lo:hi]) + lo
            if pixels is not None:
                within = within[connected_to(pixels[order[within]], pixels[seed], width)]
            free[within] = False
            claimed = order[within]
            claimed = claimed[assignment[claimed] == 0]  # a seed claimed alone may still look free
            assignment[claimed] = label
            stale += within.size
        assignment[seed] = label
        picker.seed_taken(seed)
        stale += 1
        if stale * 3 > order.size:  # compact: drop the claimed points
            keep = free & (assignment[order] == 0)
            order, ordered = order[keep], np.ascontiguousarray(ordered[:, keep])
            free, stale = np.ones(order.size, bool), 0
    return assignment, np.asarray(seeds, np.int64)


def connected_to(pixels: np.ndarray, seed: int, width: int) -> np.ndarray:
    """Which of a set of pixels (flat indices) are 8-connected to pixel ``seed`` within the set.

    Labels the set's bounding box only, so a compact mask costs little
    whatever the image size. Returns (N,) bool.
    """
    if pixels.size == 0:
        return np.zeros(0, bool)
    ys, xs = np.divmod(pixels, width)
    y0, x0 = ys.min(), xs.min()
    grid = np.zeros((ys.max() - y0 + 1, xs.max() - x0 + 1), bool)
    grid[ys - y0, xs - x0] = True
    components, _ = ndi.label(grid, structure=np.ones((3, 3), bool))
    seed_y, seed_x = divmod(int(seed), width)
    inside = 0 <= seed_y - y0 < grid.shape[0] and 0 <= seed_x - x0 < grid.shape[1]
    target = components[seed_y - y0, seed_x - x0] if inside else 0
    if target == 0:
        return np.zeros(pixels.size, bool)
    return components[ys - y0, xs - x0] == target


class _OrderedPicker:
    """Candidates in decreasing priority, skipping the claimed ones."""

    def __init__(self, candidates, priority):
        self.order = candidates[np.argsort(-priority, kind="stable")]
        self.position = np.empty(candidates.max(initial=-1) + 1, np.int64)
        self.position[candidates] = np.arange(candidates.size)
        self.cursor = 0

    def next(self, assignment):
        while self.cursor < self.order.size:
            window = self.order[self.cursor:self.cursor + 256]
            free = np.flatnonzero(assignment[window] == 0)
            if free.size:
                seed = int(window[free[0]])
                self.cursor += int(free[0]) + 1
                return seed, int(self.position[seed])
            self.cursor += window.size
        return None

    def seed_taken(self, seed):
        pass


class _DiversePicker:
    """Fathi et al. sec. 3.3: argmax over unclaimed candidates of priority + alpha * log D."""

    def __init__(self, points, candidates, priority, alpha):
        self.points, self.alpha = points, alpha
        self.index = np.asarray(candidates, np.int64)  # point index of each candidate still in play
        self.slot = np.arange(self.index.size)  # its position in the caller's candidate arrays
        self.own = np.ascontiguousarray(points[:, self.index])
        self.score = np.asarray(priority, np.float64).copy()
        self.nearest = np.full(self.index.size, np.inf, np.float32)  # D, squared distance to the nearest seed
        self.log_d = np.zeros(self.index.size)
        self.first = True

    def next(self, assignment):
        live = assignment[self.index] == 0
        if 4 * (live.size - np.count_nonzero(live)) > live.size:  # compact
            self.index, self.slot, self.score, self.nearest, self.log_d = (
                a[live] for a in (self.index, self.slot, self.score, self.nearest, self.log_d))
            self.own = np.ascontiguousarray(self.own[:, live])
            live = live[live]
        if not live.any():
            return None
        total = self.score if self.first else self.score + self.alpha * self.log_d
        total = np.where(live, total, -np.inf)
        best = int(np.argmax(total))
        if not np.isfinite(total[best]):  # every candidate left sits exactly on an earlier seed
            best = int(np.argmax(np.where(live, self.score, -np.inf)))
        return int(self.index[best]), int(self.slot[best])

    def seed_taken(self, seed):
        self.first = False
        centre = self.points[:, seed]
        d2 = np.square(self.own[0] - centre[0])
        for j in range(1, self.own.shape[0]):
            d2 += np.square(self.own[j] - centre[j])
        closer = np.flatnonzero(d2 < self.nearest)
        self.nearest[closer] = d2[closer]
        with np.errstate(divide="ignore"):
            self.log_d[closer] = np.log(d2[closer])


def instances_from_assignment(shape: tuple[int, int], pixels: np.ndarray, assignment: np.ndarray,
                              seed_scores: np.ndarray, *, size_threshold: int) -> Instances:
    """Label image from a per-pixel assignment: drop masks under ``size_threshold`` pixels, relabel 1..N.

    Parameters
    ----------
    shape : (H, W).
    pixels : (N,) flat pixel indices the assignment refers to.
    assignment : (N,) int; 0 none, t = mask t.
    seed_scores : (T,) float; the score of mask t is ``seed_scores[t - 1]``.
    """
    n_masks = seed_scores.shape[0]
    sizes = np.bincount(assignment, minlength=n_masks + 1)
    keep = sizes >= max(size_threshold, 1)
    keep[0] = False
    components = np.zeros(int(np.prod(shape)), np.int64)
    components[pixels] = assignment
    labels, lookup = relabel_by_lookup(components.reshape(shape), keep)
    kept = np.flatnonzero(lookup)
    scores = np.zeros(int(lookup.max(initial=0)), np.float32)
    scores[lookup[kept].astype(np.int64) - 1] = seed_scores[kept - 1]
    return Instances(labels, scores)


# -- previews ------------------------------------------------------------------
def displacement_vectors(displacement: np.ndarray, weight: np.ndarray | None = None, *, step: int = 8,
                         name: str = "displacement", threshold: float = 0.5) -> PreviewLayer:
    """A napari Vectors layer of a displacement field, subsampled on a grid.

    Parameters
    ----------
    displacement : (2, H, W) in pixels, (dy, dx).
    weight : (H, W) optional foreground probability; vectors where it is below
        ``threshold`` get zero length (the grid stays fixed, so stacks line up).
    step : grid spacing in pixels.

    Returns
    -------
    PreviewLayer of data (N, 2, 2): [[y, x], [dy, dx]] per grid point.
    """
    height, width = displacement.shape[1:]
    ys, xs = np.meshgrid(np.arange(step // 2, height, step), np.arange(step // 2, width, step), indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    vectors = displacement[:, ys, xs].T.astype(np.float32)
    if weight is not None:
        vectors = vectors * (weight[ys, xs] >= threshold)[:, None]
    data = np.stack([np.stack([ys, xs], 1).astype(np.float32), vectors], axis=1)
    return PreviewLayer(data, name, "vectors", {"edge_width": 1.0, "vector_style": "arrow", "length": 1.0,
                                                "edge_color": "yellow"})


def embedding_rgb(embedding: np.ndarray, mask: np.ndarray | None = None, *, name: str = "embedding (PCA)",
                  max_points: int = 20000) -> PreviewLayer:
    """An RGB image of the first three principal components of an embedding (D, H, W), scaled to [0, 1].

    The components are fitted on the pixels in ``mask`` (e.g. the foreground;
    at most ``max_points`` of them, evenly spaced) and applied to all pixels;
    pixels outside ``mask`` are drawn at a quarter of their brightness.
    """
    n_dims, height, width = embedding.shape
    flat = embedding.reshape(n_dims, -1).T.astype(np.float64)
    fit = flat if mask is None or not mask.any() else flat[mask.ravel()]
    fit = fit[:: max(1, fit.shape[0] // max_points)]
    centre = fit.mean(0)
    if fit.shape[0] > 1 and n_dims > 1:
        _, _, components = np.linalg.svd(fit - centre, full_matrices=False)
    else:
        components = np.eye(n_dims)
    projected = (flat - centre) @ components[:3].T
    if projected.shape[1] < 3:
        projected = np.pad(projected, ((0, 0), (0, 3 - projected.shape[1])))
    fitted = (fit - centre) @ components[:3].T
    low = np.percentile(fitted, 1, axis=0) if fitted.size else np.zeros(3)
    high = np.percentile(fitted, 99, axis=0) if fitted.size else np.ones(3)
    low, high = np.pad(low, (0, 3 - low.size)), np.pad(high, (0, 3 - high.size), constant_values=1)
    rgb = np.clip((projected - low) / np.maximum(high - low, 1e-6), 0, 1).reshape(height, width, 3)
    if mask is not None:
        rgb = np.where(mask[..., None], rgb, rgb * 0.25)
    return PreviewLayer(rgb.astype(np.float32), name, "image", {"rgb": True})
