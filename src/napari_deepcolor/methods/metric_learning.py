"""Semantic instance segmentation via deep metric learning (Fathi et al., 2017), class-agnostic.

The net embeds every pixel; two pixels are alike with probability
sigma(p, q) = 2 / (1 + exp(||e_p - e_q||^2)) (eq. 1), trained by a pairwise
cross-entropy over K sampled pixels per instance (sec. 3.2). A second head
rates, for each similarity threshold tau in T, whether the mask
m(p, tau) = {q : sigma(p, q) >= tau} grown from pixel p would be a good
instance (sec. 3.4); its maximum over tau is the seediness S_p. Decoding
picks seeds greedily by log S_p + alpha log D, D the squared embedding
distance to the seeds already taken (sec. 3.3), and grows their masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DeepColorError
from .base import DecodeParameter, Instances, Method, PreviewLayer, memo, size_threshold
from .embedding import (collate_sampled_batch, embedding_rgb, flat_object_ids, grow_from_seeds, grown_mask_ious,
                        instances_from_assignment, pairwise_squared_distances, sample_object_pixels)

#: T, the similarity thresholds the seediness head is trained for (paper, sec. 3.4). A constant, not an
#: option: the decoder must know it and does not see the training options.
SIMILARITY_THRESHOLDS = (0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class MetricLearningOptions:
    """Training options of deep metric learning.

    Attributes
    ----------
    embedding_dims : int
        Number of embedding values the net predicts per pixel [d]. The paper found 64 best on PASCAL VOC
        (20 classes, cluttered scenes); 8 is plenty for one kind of object and
        keeps decoding fast on a CPU.
    samples_per_object : int
        Pixels sampled per object at each step, the background counting as
        one object [K; paper: 10]. They feed both losses; the paper uses K = 10
        for the classification loss.
    classification_weight : float
        Weight of the loss that teaches the net to score seeds, next to the
        embedding loss [lambda, sec. 3.5]. It is lambda of L = L_e + lambda L_cls. The paper ramps it from 0
        up to 0.2 so the embedding settles first; ours is constant, because a
        method's loss does not see the iteration (early on the head simply
        learns that few masks are good yet).
    good_seed_iou : float
        With ``soft_seed_targets`` off, a seed's grown mask counts as good when
        its overlap (IoU, 0-1) with an annotated object is above this (the paper).
    soft_seed_targets : bool
        Train the seediness towards the IoU itself instead of IoU > ``good_seed_iou``.
        Ours: early in training ~98 % of the paper's hard targets are 0, and the
        head learns little more than "no seed anywhere"; the IoU ranks the seeds.
    seed_targets : int
        At most this many of a patch's sampled pixels have their seediness
        trained at each step, drawn at random among them (ours: the paper
        trains all). Each target grows a mask over the whole patch, so the
        cost grows with the objects in a patch: a crowded E. coli patch
        samples ~800 pixels, and the loss took 5.7 s of a 7.8 s step (2.2 of
        4.3 s with 256; docs/benchmarks.md).
    """

    embedding_dims: int = 8
    samples_per_object: int = 10
    classification_weight: float = 0.2
    good_seed_iou: float = 0.5
    soft_seed_targets: bool = True
    seed_targets: int = 256

    def __post_init__(self):
        if not 1 <= self.embedding_dims <= 256:
            raise DeepColorError(f"embedding_dims must be in [1, 256] (got {self.embedding_dims}); the paper uses 64.")
        if not 2 <= self.samples_per_object <= 256:
            raise DeepColorError(f"samples_per_object must be in [2, 256] (got {self.samples_per_object}).")
        if not 0 <= self.classification_weight <= 10:
            raise DeepColorError(f"classification_weight must be in [0, 10] (got {self.classification_weight}).")
        if not 0 < self.good_seed_iou < 1:
            raise DeepColorError(f"good_seed_iou must be in (0, 1) (got {self.good_seed_iou}).")
        if self.seed_targets < 1:
            raise DeepColorError(f"seed_targets must be at least 1 (got {self.seed_targets}).")


def squared_radius(tau):
    """||e_p - e_q||^2 below which sigma(p, q) > tau: log(2 / tau - 1)."""
    return np.log(2.0 / np.asarray(tau, np.float64) - 1.0)


def pair_weights(objects, images, positions=None, near_length=None, *, positive_share: float = 0.5):
    """w_pq of the embedding loss for samples with instance ids ``objects`` in patches ``images``.

    Parameters
    ----------
    objects, images : (M,) long; the instance (0 = background) and patch of every sample.
    positions : (M, 2) float, optional; the (y, x) pixel position of every sample.
    near_length : (M,) float, optional; a typical object diameter (pixels) in each sample's patch.
    positive_share : float
        Share of each patch's weight on the same-instance pairs; the other pairs get the rest.

    Returns
    -------
    (M, M) tensor, symmetric, 0 on the diagonal and between patches, summing to 1 per patch.

    Notes
    -----
    The paper sets w_pq "inversely proportional to the size of the instances
    p and q belong to" and normalises them to sum to 1. We measure the size in
    the sampled set S (K pixels per instance, fewer for a tiny one), so every
    pair of instances carries the same total weight. Two departures, both
    because with that rule alone same-instance pairs got ~4 % of the loss in a
    patch of 24 nuclei and far-apart look-alike pairs ~88 % (metric learning
    scored AP 0 on two of three sets):

    * same-instance and different-instance pairs get ``positive_share`` and
      ``1 - positive_share`` of the patch's weight (all of it when only one
      kind exists), each split by the paper's 1 / (n_p n_q);
    * given ``positions``, a different-instance pair is further weighted by
      ``exp(-||u_p - u_q|| / near_length)``, so that near neighbours (which the
      decoder must separate) dominate, not far-apart look-alikes (which
      ``connected_masks`` separates anyway).
    """
    import torch

    key = images * (int(objects.max()) + 1 if objects.numel() else 1) + objects
    size = torch.bincount(key)[key].to(torch.float32)
    same_image = images.unsqueeze(0) == images.unsqueeze(1)
    same_object = same_image & (objects.unsqueeze(0) == objects.unsqueeze(1))
    base = (1.0 / (size.unsqueeze(0) * size.unsqueeze(1))) * same_image
    base.fill_diagonal_(0)
    negative = base * ~same_object
    if positions is not None:
        distance = torch.cdist(positions.float(), positions.float())
        length = near_length.float().clamp(min=1.0).unsqueeze(1) if near_length is not None else 1.0
        negative = negative * torch.exp(-distance / length)
    positive = base * same_object
    n_images = int(images.max()) + 1 if images.numel() else 1
    totals = []
    for part in (positive, negative):
        totals.append(torch.zeros(n_images, device=base.device).index_add(0, images, part.sum(1)))
    share_pos = torch.where(totals[1] > 0, torch.full_like(totals[0], positive_share), torch.ones_like(totals[0]))
    share_pos = torch.where(totals[0] > 0, share_pos, torch.zeros_like(share_pos))
    weights = positive * (share_pos / totals[0].clamp(min=1e-12))[images].unsqueeze(1) \
        + negative * ((1 - share_pos) / totals[1].clamp(min=1e-12))[images].unsqueeze(1)
    return weights


def embedding_loss(embeddings, objects, images, positions=None, near_length=None):
    """L_e of sec. 3.2: weighted pairwise cross-entropy on sigma(p, q), averaged over the patches.

    embeddings (M, d) of the sampled pixels; objects (M,) instance id (0 = background); images (M,);
    positions (M, 2) and near_length (M,) optional, see :func:`pair_weights`.
    """
    import torch.nn.functional as F

    d2 = pairwise_squared_distances(embeddings, embeddings)
    log_similar = math.log(2.0) - F.softplus(d2)  # log sigma
    safe = d2.clamp(min=1e-6)
    log_dissimilar = safe + (-(-safe).expm1()).log() - F.softplus(d2)  # log(1 - sigma) = log(e^d2 - 1) - log(1 + e^d2)
    same = (objects.unsqueeze(0) == objects.unsqueeze(1)) & (images.unsqueeze(0) == images.unsqueeze(1))
    cross_entropy = -(same * log_similar + (~same) * log_dissimilar)
    weights = pair_weights(objects, images, positions, near_length).to(embeddings.dtype)
    n_images = images[weights.sum(1) > 0].unique().numel()  # patches with at least one pair
    return (weights * cross_entropy).sum() / max(n_images, 1)


def metric_loss_terms(raw, labels, ignore, sample_pixels, sample_objects, sample_images, *, embedding_dims: int,
                      good_seed_iou: float = 0.5, soft_seed_targets: bool = True,
                      seed_targets: int | None = None) -> dict:
    """``embedding`` (L_e) and ``classification`` (L_cls) for a batch.

    raw : (B, d + |T| + 1, H, W): the embedding, one seed logit per tau in T, a foreground logit.

    Notes
    -----
    L_cls (sec. 3.4) for our one class is a binary cross-entropy per tau: the
    target at a sampled pixel p is the best IoU with an object of m(p, tau),
    grown over the patch's non-ignored pixels with the current embedding
    (``soft_seed_targets``, ours), or as in the paper whether that IoU is above
    ``good_seed_iou``. L_e weighs near different-instance pairs most, with the
    patch's median object diameter as length (:func:`pair_weights`). Background pixels are sampled too, as one more
    instance: the embedding must push them away from the objects, and their
    masks are bad proposals, so their seediness is trained low. With
    ``seed_targets``, only that many random samples of each patch get a target.

    ``foreground`` (ours, not in the paper): binary cross-entropy of the
    foreground logit against object-vs-background on the non-ignored pixels.
    K background samples a patch left the seediness at ~0.3 on the background
    (~0.02 on objects) and the decoder seeded there; the decoder now seeds
    and grows only where this head says "object".
    """
    import torch
    import torch.nn.functional as F

    raw = raw.float()
    batch = raw.shape[0]
    dims = embedding_dims
    embedding = raw[:, :dims].permute(0, 2, 3, 1).reshape(-1, dims)
    n_tau = len(SIMILARITY_THRESHOLDS)
    seed_logits = raw[:, dims:dims + n_tau].permute(0, 2, 3, 1).reshape(-1, n_tau)
    fg_logit = raw[:, dims + n_tau].reshape(-1)
    valid = ~ignore.reshape(-1)
    zero = raw.sum() * 0.0
    foreground = F.binary_cross_entropy_with_logits(fg_logit[valid], (labels.reshape(-1)[valid] > 0).float()) \
        if valid.any() else zero
    if sample_pixels.numel() < 2:
        return {"embedding": zero, "classification": zero, "foreground": foreground}
    sampled = embedding[sample_pixels]
    positions, near_length = _sample_positions(labels, sample_pixels, sample_images)
    loss_e = embedding_loss(sampled - sampled.detach().mean(0), sample_objects, sample_images, positions, near_length)

    ids, image_of_pixel, _, _ = flat_object_ids(labels, ignore)
    radii = torch.as_tensor(squared_radius(SIMILARITY_THRESHOLDS), dtype=torch.float32, device=raw.device)
    good = torch.zeros(sample_pixels.numel(), len(SIMILARITY_THRESHOLDS), device=raw.device)
    targeted = torch.zeros(sample_pixels.numel(), dtype=torch.bool, device=raw.device)
    flat_labels = labels.reshape(-1)
    for b in range(batch):
        mine = torch.nonzero(sample_images == b).squeeze(1)
        if mine.numel() == 0:
            continue
        if seed_targets is not None and mine.numel() > seed_targets:
            mine = mine[torch.randperm(mine.numel(), device=raw.device)[:seed_targets]]
        targeted[mine] = True
        pixels = torch.nonzero((ids >= 0) & (image_of_pixel == b)).squeeze(1)
        position = torch.full((ids.numel(),), -1, dtype=torch.long, device=raw.device)
        position[pixels] = torch.arange(pixels.numel(), device=raw.device)
        iou = grown_mask_ious(embedding[pixels].detach(), flat_labels[pixels], position[sample_pixels[mine]],
                              radii.expand(mine.numel(), -1))
        good[mine] = iou.float() if soft_seed_targets else (iou > good_seed_iou).float()
    loss_cls = F.binary_cross_entropy_with_logits(seed_logits[sample_pixels[targeted]], good[targeted])
    return {"embedding": loss_e, "classification": loss_cls, "foreground": foreground}


def _sample_positions(labels, sample_pixels, sample_images):
    """(y, x) pixel position of every sample and the median object diameter of its patch (pixels)."""
    import torch

    height, width = labels.shape[1:]
    within = sample_pixels % (height * width)
    positions = torch.stack([within // width, within % width], 1).float()
    diameters = []
    for b in range(labels.shape[0]):
        areas = torch.bincount(labels[b].reshape(-1).clamp(min=0))[1:]
        areas = areas[areas > 0].float()
        diameters.append(2 * torch.sqrt(areas.median() / math.pi) if areas.numel() else torch.tensor(float(width)))
    return positions, torch.stack(diameters).to(positions.device)[sample_images]


class MetricLearningMethod(Method):
    name = "metric"
    title = "Deep metric learning"
    paper = "Fathi et al.: Semantic Instance Segmentation via Deep Metric Learning (2017)"
    Options = MetricLearningOptions
    decode_parameters = (
        DecodeParameter("foreground_threshold", 0.5, 0.05, 0.95, 0.05,
                        help="pixels whose probability of being inside an object is above this (0-1) "
                             "are segmented; seeds are taken among them only",
                        tune_values=(0.3, 0.4, 0.5, 0.6, 0.7)),
        DecodeParameter("seed_diversity", 0.3, 0.0, 2.0, 0.05,
                        help="how strongly the next seed is chosen far (in the embedding) from the seeds "
                             "already taken [alpha; paper: 0.3]", tune_values=(0.0, 0.1, 0.3, 0.5, 1.0)),
        DecodeParameter("max_seeds", 300, 1, 5000, 1, integer=True,
                        help="at most this many objects per image [paper: 100]",
                        tune_values=(50, 100, 300, 1000)),
        DecodeParameter("similarity_threshold", 0.0, 0.0, 0.95, 0.05,
                        help="an object is the pixels whose similarity to its seed is above this (0-1); "
                             "0 lets each seed use the threshold its score head rates best, as the paper "
                             "[tau, sigma(seed, q) > tau]",
                        tune_values=(0.0, 0.25, 0.5, 0.75, 0.9)),
        DecodeParameter("score_threshold", 0.5, 0.0, 0.95, 0.05,
                        help="seeds whose predicted chance of giving a good mask (0-1) is below this are "
                             "not used",
                        tune_values=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
        size_threshold(),
        DecodeParameter("connected_masks", 1, 0, 1, 1, integer=True,
                        help="1: an object is only the part of its mask connected to its seed, leaving "
                             "look-alike objects elsewhere to their own seeds; 0: masks may be disconnected, "
                             "as in the paper",
                        tune_values=(0, 1)),
    )

    def out_channels(self, options) -> int:
        return options.embedding_dims + len(SIMILARITY_THRESHOLDS) + 1

    def prepare_targets(self, labels, ignore, options):
        pixels, groups = sample_object_pixels(labels, ignore, options.samples_per_object, background=True)
        return {"labels": labels.astype(np.int64), "ignore": ignore, "sample_pixels": pixels, "sample_groups": groups}

    collate = staticmethod(collate_sampled_batch)

    def loss(self, raw, targets, options):
        terms = metric_loss_terms(raw, targets["labels"], targets["ignore"], targets["sample_pixels"],
                                  targets["sample_objects"], targets["sample_images"],
                                  embedding_dims=options.embedding_dims, good_seed_iou=options.good_seed_iou,
                                  soft_seed_targets=options.soft_seed_targets, seed_targets=options.seed_targets)
        return terms["embedding"] + options.classification_weight * terms["classification"] + terms["foreground"]

    def activate(self, raw, options=None):
        """The embedding (d channels), C^tau (the chance that the mask at each tau in T is good), P(foreground)."""
        import torch

        raw = raw.float()
        dims = raw.shape[1] - len(SIMILARITY_THRESHOLDS) - 1
        return torch.cat([raw[:, :dims], torch.sigmoid(raw[:, dims:])], dim=1)

    def decode(self, output, *, cache=None, options=None, foreground_threshold=None, seed_diversity=None,
               max_seeds=None, similarity_threshold=None, score_threshold=None, size_threshold=None,
               connected_masks=None) -> Instances:
        """Cached output (d + |T| + 1, H, W) to instances.

        Stages, each remembered in ``cache``: the foreground pixels
        (``foreground_threshold``; ours: only they can be seeds or be claimed)
        -> their scores
        -> greedy seeds (sec. 3.3), each the unclaimed pixel maximising
        log s_p + alpha log D(p, earlier seeds), among the pixels whose score
        s_p is at least ``score_threshold``, for at most ``max_seeds`` seeds;
        each claims the unclaimed pixels of m(p, tau) -> drop instances under
        ``size_threshold`` pixels. With ``similarity_threshold`` 0, tau and
        s_p are the paper's (tau_p, s_p = max_tau C^tau_p = S_p); with a fixed
        tau, s_p = C^tau_p of the trained tau nearest to it. With
        ``connected_masks`` 1 a seed claims only the part of m(p, tau)
        8-connected to it in the image.

        Notes
        -----
        The paper returns overlapping proposals ranked by score. A label image
        is a partition, so a seed claims only pixels no earlier mask took, and
        seeds are drawn from unclaimed pixels. Pixels scoring below the
        threshold are not seed candidates at all: their masks would be dropped
        anyway, and skipping them saves the seed budget for good ones.

        ``connected_masks`` is ours. A convolutional embedding gives look-alike
        objects look-alike embeddings wherever they are (the "convolutional
        coloring dilemma" of Novotny et al., sec. 3.6), so in a crowded image a
        mask m(p, tau) also takes pieces of distant objects. On a synthetic
        image of 40 disks (a small net after 400 iterations) keeping only the
        part connected to the seed raised the AP from 0.07 to 0.16; 0 gives
        back the paper's masks, which can span an occluder.
        """
        params = self.resolve_decode_parameters({
            "seed_diversity": seed_diversity, "max_seeds": max_seeds, "similarity_threshold": similarity_threshold,
            "score_threshold": score_threshold, "size_threshold": size_threshold,
            "connected_masks": connected_masks, "foreground_threshold": foreground_threshold})
        output = np.asarray(output, dtype=np.float32)
        n_tau = len(SIMILARITY_THRESHOLDS)
        if output.ndim != 3 or output.shape[0] < n_tau + 2:
            raise DeepColorError(f"a 'metric' output must have shape (C, H, W) with C > {n_tau + 1} "
                                 f"(got {output.shape}); was it predicted by a 'metric' model?")
        dims = output.shape[0] - n_tau - 1
        key = (params["foreground_threshold"],)
        pixels = memo(cache, "foreground", key,
                      lambda: np.flatnonzero(output[dims + n_tau].ravel() > params["foreground_threshold"]))
        points = memo(cache, "points", key,
                      lambda: np.ascontiguousarray(output[:dims].reshape(dims, -1)[:, pixels]))
        tau = params["similarity_threshold"]
        key += (tau,)
        score, radius = memo(cache, "scores", key,
                             lambda: _seed_scores(output[dims:dims + n_tau].reshape(n_tau, -1)[:, pixels], tau))
        key += (params["seed_diversity"], params["max_seeds"], params["score_threshold"], params["connected_masks"])

        def grow():
            candidates = np.flatnonzero(score >= max(params["score_threshold"], 1e-6))
            spatial = {"pixels": pixels, "width": output.shape[2]} \
                if params["connected_masks"] else {}
            assignment, seeds = grow_from_seeds(points, candidates, np.log(score[candidates]), radius[candidates],
                                                diversity_weight=params["seed_diversity"],
                                                max_seeds=params["max_seeds"], **spatial)
            return assignment, score[seeds].astype(np.float32)

        assignment, scores = memo(cache, "grow", key, grow)
        return instances_from_assignment(output.shape[1:], pixels, assignment, scores,
                                         size_threshold=params["size_threshold"])

    def preview(self, output, options=None):
        output = np.asarray(output)
        n_tau = len(SIMILARITY_THRESHOLDS)
        dims = output.shape[0] - n_tau - 1
        seediness = output[dims:dims + n_tau].max(0)
        return [embedding_rgb(output[:dims], None, name="embedding (PCA)"),
                PreviewLayer(seediness, "seediness", "image", {"colormap": "magma", "contrast_limits": (0.0, 1.0),
                                                               "visible": False})]


def _seed_scores(classification: np.ndarray, tau: float):
    """Per pixel: the score s_p and the squared mask radius, for a fixed tau or (tau = 0) the best one."""
    if tau <= 0:
        best = classification.argmax(0)
        score = np.take_along_axis(classification, best[None], 0)[0]
        radius = squared_radius(SIMILARITY_THRESHOLDS)[best]
    else:
        nearest = int(np.argmin(np.abs(np.asarray(SIMILARITY_THRESHOLDS) - tau)))
        score = classification[nearest].copy()
        radius = np.full(score.shape, squared_radius(tau))
    return score.astype(np.float64), radius.astype(np.float32)
