"""Semi-convolutional embeddings (Novotny, Albanie, Larlus and Vedaldi, 2018).

A convolutional net gives identical copies of an object identical colours
(sec. 3.6). Adding each pixel's own coordinates to the net's output breaks
that symmetry: Psi_u = Phi_u + u-hat (eqs. 3 and 6), so that the first two
embedding dimensions become a displacement towards an instance-specific
point c_k (eq. 4, a Hough vote) and the others stay appearance features.
The embedding is trained by pulling every pixel of an object towards the
object's mean embedding (eq. 5), and pixels are compared with the steered
Laplacian kernel K(u, v) = exp(-||Psi_u - Psi_v|| / sigma) (eq. 10), which is
trained to cut each object out of the patch from a seed (sec. 3.5): the object's
mean embedding, or (``seed_rule="score"``, the paper's) the expectation of the
embedding under a softmax of the seediness scores over the object's pixels.

The paper decodes with Mask R-CNN; we are proposal-free, so the net also
predicts what a decoder needs: a foreground probability, the kernel width
sigma and a seediness score. Decoding takes greedy seeds by seediness and
lets each cut out its kernel mask (sec. 3.5's "seed point, whose affinity with
other pixels cuts out the foreground region").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DeepColorError
from .base import DecodeParameter, Instances, Method, PreviewLayer, memo, size_threshold
from .embedding import (PIXELS_PER_UNIT, collate_sampled_batch, displacement_vectors, embedding_rgb, flat_object_ids,
                        grow_from_seeds, grown_mask_ious, instances_from_assignment, object_means,
                        patch_coordinates, sample_object_pixels, score_weighted_means)

# sigma = exp(raw), raw clamped to this range (embedding units of PIXELS_PER_UNIT px)
LOG_SIGMA_RANGE = (-6.0, 3.0)
# the kernel value above which a pixel is in a seed's mask when training the seediness
TRAINING_MASK_THRESHOLD = 0.5
# the kernel's background term looks at this many pixels per patch at most (evenly strided)
NEGATIVE_PIXELS = 4096
# the kernel's background term looks at the pixels within this many object diameters of an object's box
NEIGHBOURHOOD_MARGIN = 1.0
#: how the kernel term's seed is chosen in training (``SemiconvOptions.seed_rule``)
SEED_RULES = ("mean", "score")


@dataclass(frozen=True)
class SemiconvOptions:
    """Training options of the semi-convolutional embedding.

    Attributes
    ----------
    embedding_dims : int
        Number of embedding values the net predicts per pixel [d, the
        dimension of Psi; paper: 8]. The first two are the geometric
        part, added to the pixel coordinates; the other d - 2 are appearance.
    coordinates : bool
        Add each pixel's coordinates to its embedding, so that objects that
        look alike can still be told apart [u-hat, eq. 3]. False gives a
        plain convolutional embedding Psi = Phi, the control of the paper's
        synthetic experiment (fig. 3): it cannot separate identical objects.
    samples_per_object : int
        Pixels per object whose mask is grown at each step to teach the net
        which pixels make good seeds. Their kernel mask gives the seediness
        its target (the IoU of that mask with the object).
    seed_rule : {"mean", "score"}
        Which seed each object's kernel mask (eq. 10) is trained from: "mean"
        (the object's mean embedding) or "score" (where the seediness puts it,
        as in the paper, sec. 3.5). "mean": the object's
        mean Psi and mean sigma. "score": a soft maximum of the seediness
        logits s over the object's pixels, p_s = softmax(s), and the
        expectations of Psi and sigma under p_s, so that the seediness also
        learns, end to end, which pixels make good seeds. A model file saved
        before this option existed trained with "mean" and loads as "mean".
    """

    embedding_dims: int = 8
    coordinates: bool = True
    samples_per_object: int = 8
    seed_rule: str = "mean"

    def __post_init__(self):
        if not 2 <= self.embedding_dims <= 64:
            raise DeepColorError(f"embedding_dims must be in [2, 64] (got {self.embedding_dims}); the paper uses 8.")
        if not 1 <= self.samples_per_object <= 256:
            raise DeepColorError(f"samples_per_object must be in [1, 256] (got {self.samples_per_object}).")
        if self.seed_rule not in SEED_RULES:
            raise DeepColorError(f"unknown seed_rule {self.seed_rule!r}; choose one of: {', '.join(SEED_RULES)}.")


def semiconv_embedding(phi, *, coordinates: bool = True):
    """Psi = Phi + u-hat, eqs. (3) and (6): the pixel coordinates added to the first two channels.

    Parameters
    ----------
    phi : (B, D, H, W) tensor, D >= 2; the net's embedding output Phi.

    Returns
    -------
    (B, D, H, W) tensor. Coordinates are (y, x) in units of
    ``PIXELS_PER_UNIT`` (16) pixels, so Phi stays O(1): it is the displacement
    to the object's point c_k in those units.
    """
    if not coordinates:
        return phi
    u_hat = patch_coordinates(phi.shape[-2], phi.shape[-1], device=phi.device, dtype=phi.dtype)
    return phi + _pad_channels(u_hat, phi.shape[1])


def _pad_channels(u_hat, n_channels):
    import torch

    zeros = torch.zeros((n_channels - 2,) + tuple(u_hat.shape[1:]), device=u_hat.device, dtype=u_hat.dtype)
    return torch.cat([u_hat, zeros])


def pull_loss(psi, ids, n_objects: int):
    """Eq. (5): per object, the mean (non-squared) distance of its pixels' embeddings to their mean.

    Parameters
    ----------
    psi : (N, D) pixel embeddings; ids : (N,) batch-global object ids (0 background, -1 ignored).

    Returns
    -------
    The mean over the objects (the paper sums; see :func:`semiconv_loss_terms`),
    the object means (n_objects, D) and the pixel counts (n_objects,).
    """
    import torch

    inside = ids > 0
    values, object_index = psi[inside], ids[inside] - 1
    means, counts = object_means(values, object_index, n_objects)
    distance = ((values - means[object_index]).pow(2).sum(1) + 1e-8).sqrt()
    per_object = torch.zeros(n_objects, device=psi.device, dtype=psi.dtype).index_add(0, object_index, distance)
    present = counts > 0
    return (per_object[present] / counts[present]).mean(), means, counts


def semiconv_loss_terms(raw, labels, ignore, sample_pixels, sample_images, *, embedding_dims: int,
                        coordinates: bool = True, seed_rule: str = "mean") -> dict:
    """All terms of the training loss, for a whole batch.

    Parameters
    ----------
    raw : (B, D + 3, H, W) net output: Phi (D), log sigma, foreground logit, seediness logit.
    labels : (B, H, W) long, objects 1..K_b per patch; ignore : (B, H, W) bool.
    sample_pixels, sample_images : (M,) long; pixels sampled in the objects
        (flat index into B*H*W) and their patch, from :meth:`SemiconvMethod.collate`.
    seed_rule : {"mean", "score"}
        The kernel term's seed (:class:`SemiconvOptions`); see :func:`kernel_seeds`.

    Returns
    -------
    dict of scalar tensors: ``pull`` (eq. 5), ``sigma`` (sigma constant within
    an object), ``foreground``, ``kernel`` (sec. 3.5), ``seediness``.

    Notes
    -----
    * ``pull`` is eq. (5) averaged over objects instead of summed, so that its
      weight against the other terms does not depend on how many objects a
      patch holds.
    * ``kernel``: for each object, the kernel of eq. (10) between a seed
      embedding Psi_us (:func:`kernel_seeds`: the object's mean embedding, or
      the paper's soft maximum of the seediness scores) and every pixel of the
      patch, with the seed's sigma, against the object mask, by binary
      cross-entropy (sec. 3.5). The paper
      learns one scalar sigma; ours is an output channel (per pixel), because
      a method's only trainable parameters are the net's, and it lets sigma
      follow the object size. The object's pixels and the other pixels weigh
      half each: the paper's BCE is inside a Mask R-CNN box, where they are
      about balanced, while an object covers little of a patch. The mean over
      the other pixels is restricted to the object's neighbourhood (its bounding
      box grown by one equivalent diameter, ``NEIGHBOURHOOD_MARGIN``), where
      the paper's proposal puts it, and taken on an evenly strided subset of
      at most 4096 pixels per patch, which keeps the term O(objects x 4096).
    * ``sigma``: the squared deviation of each pixel's sigma from its object's
      mean (detached), so that a seed's own sigma, which the decoder uses, is
      the one the kernel was trained with (as in Neven et al., CVPR 2019).
    * ``seediness`` (not in the paper): at the sampled pixels, the seediness
      is regressed (binary cross-entropy with soft targets) to the IoU with
      the best-matching object of the mask that pixel would cut out as a seed:
      the predicted-foreground pixels with K > 0.5 under the seed's own sigma.
      It is kept with ``seed_rule="score"``, on the same channel (see
      :func:`kernel_seeds`).
    """
    import torch
    import torch.nn.functional as F

    raw = raw.float()
    batch, dims = raw.shape[0], embedding_dims
    psi = semiconv_embedding(raw[:, :dims], coordinates=coordinates)
    psi = psi.permute(0, 2, 3, 1).reshape(-1, dims)
    log_sigma = raw[:, dims].clamp(*LOG_SIGMA_RANGE).reshape(-1)
    sigma = log_sigma.exp()
    fg_logit = raw[:, dims + 1].reshape(-1)
    seed_logit = raw[:, dims + 2].reshape(-1)
    ids, image_of_pixel, object_image, n_objects = flat_object_ids(labels, ignore)
    valid = ids >= 0
    zero = raw.sum() * 0.0

    foreground = F.binary_cross_entropy_with_logits(fg_logit[valid], (ids[valid] > 0).float()) if valid.any() \
        else zero
    if n_objects == 0 or not (ids > 0).any():
        return {"pull": zero, "sigma": zero, "foreground": foreground, "kernel": zero, "seediness": zero}

    pull, centres, counts = pull_loss(psi, ids, n_objects)
    inside = ids > 0
    sigma_mean, _ = object_means(sigma[inside].unsqueeze(1), ids[inside] - 1, n_objects)
    sigma_mean = sigma_mean.squeeze(1)
    sigma_term = (sigma[inside] - sigma_mean.detach()[ids[inside] - 1]).pow(2).mean()

    # kernel, object pixels: -log K(us, u) = ||Psi_u - Psi_us|| / sigma_us for every pixel u of object k
    object_index = ids[inside] - 1
    seed_psi, seed_sigma = kernel_seeds(psi[inside], sigma[inside], seed_logit[inside], object_index, n_objects,
                                      rule=seed_rule, means=(centres, sigma_mean))
    x_own = ((psi[inside] - seed_psi[object_index]).pow(2).sum(1) + 1e-8).sqrt() / seed_sigma[object_index]
    positive_mean = torch.zeros_like(sigma_mean).index_add(0, object_index, x_own) / counts.clamp(min=1)
    negative_mean = torch.zeros_like(sigma_mean)

    fg_prob = torch.sigmoid(fg_logit.detach())
    ious = torch.zeros(sample_pixels.numel(), device=raw.device)
    for b in range(batch):
        pixels = torch.nonzero(valid & (image_of_pixel == b)).squeeze(1)
        objects = torch.nonzero((object_image == b) & (counts > 0)).squeeze(1)
        if pixels.numel() == 0 or objects.numel() == 0:
            continue
        within = pixels % labels[0].numel()
        positions = torch.stack([within // labels.shape[2], within % labels.shape[2]], 1).to(psi.dtype)
        negative_mean[objects] = _negative_kernel_term(seed_psi[objects], seed_sigma[objects], objects + 1,
                                                       psi[pixels], ids[pixels], positions)
        mine = torch.nonzero(sample_images == b).squeeze(1)
        if mine.numel():
            position = torch.full((ids.numel(),), -1, dtype=torch.long, device=raw.device)
            position[pixels] = torch.arange(pixels.numel(), device=raw.device)
            seeds = position[sample_pixels[mine]]
            radius = sigma[sample_pixels[mine]].detach() * math.log(1 / TRAINING_MASK_THRESHOLD)
            ious[mine] = grown_mask_ious(psi[pixels].detach(), labels.reshape(-1)[pixels], seeds,
                                         radius.pow(2).unsqueeze(1), eligible=fg_prob[pixels] > 0.5)[:, 0]
    present = counts > 0
    kernel = 0.5 * (positive_mean[present] + negative_mean[present]).mean()
    seediness = F.binary_cross_entropy_with_logits(seed_logit[sample_pixels], ious) if sample_pixels.numel() \
        else zero
    return {"pull": pull, "sigma": sigma_term, "foreground": foreground, "kernel": kernel, "seediness": seediness}


def kernel_seeds(psi, sigma, seed_logit, object_index, n_objects: int, *, rule: str = "mean", means=None):
    """Each object's seed for the kernel term: its embedding Psi_us and its sigma.

    Parameters
    ----------
    psi : (N, D), sigma : (N,), seed_logit : (N,) of the objects' pixels; object_index : (N,) long, 0..n_objects-1.
    rule : {"mean", "score"}
        "mean": the object's mean Psi and mean sigma (``means``, given, or computed here).
        "score": sec. 3.5's soft maximum of the scores, p_s = softmax(s) over the object's
        pixels, and the expectations Psi_us = sum_u p_s(u) Psi_u and sigma_us = sum_u p_s(u) sigma_u.

    Returns
    -------
    (n_objects, D) seed embeddings and (n_objects,) seed sigmas.

    Notes
    -----
    The paper's score map s is Mask R-CNN's foreground logit inside a proposal box, and its seed is
    the argmax of s at test time. Proposal-free, the region is the object's annotated pixels (the
    training-time analogue of the matched box) and s is the seediness logit, whose peaks the decoder
    takes as seeds (:meth:`SemiconvMethod.decode`). The expectation of sigma under p_s (the paper has
    one scalar sigma) is the sigma of the pixel the decoder would seed from, as the softmax sharpens.

    The seediness is still regressed to the IoU of the mask each sampled pixel cuts out, on the same
    channel: a softmax alone is shift-invariant within each object, so it would leave the seediness's
    level, its comparison between objects and its value on the background free, while the decoder
    needs them (greedy seeds highest first, ``seed_threshold`` read as an expected IoU, tuned and
    stored in model files). The two agree on what a good seed is (a pixel whose kernel mask covers
    its object); the softmax adds the gradient of the kernel's own loss to the seediness.
    """
    if rule not in SEED_RULES:
        raise DeepColorError(f"unknown seed_rule {rule!r}; choose one of: {', '.join(SEED_RULES)}.")
    if rule == "score":
        seeds, weights = score_weighted_means(psi, seed_logit, object_index, n_objects)
        seed_sigma = sigma.new_zeros(n_objects).index_add(0, object_index, weights * sigma)
        return seeds, seed_sigma
    if means is None:
        centres, _ = object_means(psi, object_index, n_objects)
        sigma_mean, _ = object_means(sigma.unsqueeze(1), object_index, n_objects)
        return centres, sigma_mean.squeeze(1)
    return means


def _negative_kernel_term(centres, sigmas, object_ids, psi, ids, positions=None, *,
                          max_pixels: int = NEGATIVE_PIXELS, margin: float = NEIGHBOURHOOD_MARGIN):
    """Per object k of one patch, the mean over the other pixels v near k of -log(1 - K(c_k, v)).

    centres (n, D), sigmas (n,), object_ids (n,) the objects' ids; psi (P, D), ids (P,) and positions
    (P, 2, pixels) of the patch's non-ignored pixels. "Near k" is k's bounding box grown on every side by
    ``margin`` times k's equivalent diameter; without ``positions``, every pixel of the patch. The mean is
    taken over an evenly strided subset of at most ``max_pixels`` pixels.

    Notes
    -----
    The paper's BCE runs inside a Mask R-CNN proposal, where the other pixels are mostly the object's
    neighbours. Averaged over a whole patch, the far background (easy, and most of the pixels) drowned
    the few neighbours that a mask actually leaks into; the grown box gives back the proposal's mix.
    """
    import torch

    if positions is not None:
        near = _near_object(positions, ids, object_ids, margin)
    step = -(-psi.shape[0] // max_pixels)
    psi, ids = psi[::step], ids[::step]
    x = ((centres.unsqueeze(1) - psi.unsqueeze(0)).pow(2).sum(2) + 1e-8).sqrt() / sigmas.unsqueeze(1)
    log_not_k = (-(-x.clamp(min=1e-6)).expm1()).log()  # log(1 - K)
    negative = ids.unsqueeze(0) != object_ids.unsqueeze(1)
    if positions is not None:
        negative = negative & near[:, ::step]
    negative = negative.to(x.dtype)
    return -(log_not_k * negative).sum(1) / negative.sum(1).clamp(min=1)


def _near_object(positions, ids, object_ids, margin):
    """(n, P) bool: pixel within object k's bounding box grown by ``margin`` equivalent diameters."""
    import torch

    n = object_ids.numel()
    index = torch.full((int(ids.max()) + 2,), -1, dtype=torch.long, device=ids.device)
    index[object_ids] = torch.arange(n, device=ids.device)
    own = index[ids.clamp(min=0)].masked_fill(ids <= 0, -1)
    inside = own >= 0
    big = torch.full((n, 2), float("inf"), device=positions.device)
    low = big.scatter_reduce(0, own[inside].unsqueeze(1).expand(-1, 2), positions[inside], "amin")
    high = (-big).scatter_reduce(0, own[inside].unsqueeze(1).expand(-1, 2), positions[inside], "amax")
    area = torch.bincount(own[inside], minlength=n).to(positions.dtype)
    grow = (margin * 2 * torch.sqrt(area / math.pi)).unsqueeze(1)
    low, high = low - grow, high + grow
    return ((positions.unsqueeze(0) >= low.unsqueeze(1)) & (positions.unsqueeze(0) <= high.unsqueeze(1))).all(2)


class SemiconvMethod(Method):
    name = "semiconv"
    title = "Semi-convolutional embedding"
    paper = "Novotny, Albanie, Larlus and Vedaldi: Semi-convolutional Operators for Instance Segmentation (2018)"
    Options = SemiconvOptions
    decode_parameters = (
        DecodeParameter("foreground_threshold", 0.5, 0.05, 0.95, 0.05,
                        help="pixels whose probability of being inside an object is above this (0-1) "
                             "are segmented",
                        tune_values=(0.3, 0.4, 0.5, 0.6, 0.7)),
        DecodeParameter("seed_threshold", 0.5, 0.0, 0.95, 0.05,
                        help="a pixel may start an object if its predicted mask quality (expected IoU, "
                             "0-1) is above this [seediness]",
                        tune_values=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7)),
        DecodeParameter("mask_threshold", 0.5, 0.05, 0.95, 0.05,
                        help="an object is the foreground pixels whose similarity to its seed pixel is above "
                             "this (0-1) [kernel K of eq. 10]",
                        tune_values=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
        size_threshold(),
    )

    def out_channels(self, options) -> int:
        return options.embedding_dims + 3

    def prepare_targets(self, labels, ignore, options):
        pixels, groups = sample_object_pixels(labels, ignore, options.samples_per_object)
        return {"labels": labels.astype(np.int64), "ignore": ignore, "sample_pixels": pixels, "sample_groups": groups}

    collate = staticmethod(collate_sampled_batch)

    def loss(self, raw, targets, options):
        terms = semiconv_loss_terms(raw, targets["labels"], targets["ignore"], targets["sample_pixels"],
                                    targets["sample_images"], embedding_dims=options.embedding_dims,
                                    coordinates=options.coordinates, seed_rule=options.seed_rule)
        return sum(terms.values())

    def activate(self, raw, options=None):
        """Phi (D channels, the displacement part in units of 16 px), sigma, P(foreground), seediness.

        The coordinates are added at decoding: the output is computed tile by
        tile and must not depend on where a tile starts.
        """
        import torch

        raw = raw.float()
        dims = raw.shape[1] - 3
        return torch.cat([raw[:, :dims], raw[:, dims:dims + 1].clamp(*LOG_SIGMA_RANGE).exp(),
                          torch.sigmoid(raw[:, dims + 1:])], dim=1)

    def output_to_image_scale(self, output, image_pixels_per_net_pixel):
        """Phi and sigma scale with the coordinates they are added to, so the kernel (eq. 10) is unchanged."""
        import torch

        dims = output.shape[1] - 3
        return torch.cat([output[:, :dims + 1] * image_pixels_per_net_pixel, output[:, dims + 1:]], dim=1)

    def foreground(self, output, options=None):
        return output[output.shape[0] - 2]  # P(foreground), before the seediness

    def decode(self, output, *, cache=None, options=None, foreground_threshold=None, seed_threshold=None,
               mask_threshold=None, size_threshold=None) -> Instances:
        """Cached output (D + 3, H, W) to instances.

        Stages, each remembered in ``cache``: foreground pixels and their
        embeddings Psi = Phi + u-hat (``foreground_threshold``) -> greedy seeds
        by seediness, highest first among the pixels not yet claimed, each
        claiming the unclaimed foreground pixels v with K(seed, v) >
        ``mask_threshold``, i.e. ||Psi_seed - Psi_v|| < -sigma_seed log
        ``mask_threshold`` (``seed_threshold`` ends the seeds) -> drop
        instances under ``size_threshold`` pixels. Scores are the seeds'
        seediness.

        ``options`` are the model's training options (only ``coordinates`` is
        used); the default assumes the semi-convolutional embedding.
        """
        params = self.resolve_decode_parameters({"foreground_threshold": foreground_threshold,
                                                 "seed_threshold": seed_threshold, "mask_threshold": mask_threshold,
                                                 "size_threshold": size_threshold})
        output = _check_output(output, extra=3, name=self.name)
        coordinates = True if options is None else bool(options.coordinates)
        fg_key = (params["foreground_threshold"], coordinates)
        pixels, points, sigma, seediness = memo(cache, "points", fg_key, lambda: _foreground_points(
            output, params["foreground_threshold"], coordinates))
        grow_key = fg_key + (params["seed_threshold"], params["mask_threshold"])

        def grow():
            candidates = np.flatnonzero(seediness > params["seed_threshold"])
            radius = sigma[candidates] * -math.log(params["mask_threshold"])
            assignment, seeds = grow_from_seeds(points, candidates, seediness[candidates], radius ** 2)
            return assignment, seediness[seeds].astype(np.float32)

        assignment, scores = memo(cache, "grow", grow_key, grow)
        return instances_from_assignment(output.shape[1:], pixels, assignment, scores,
                                         size_threshold=params["size_threshold"])

    def preview(self, output, options=None):
        output = np.asarray(output)
        dims = output.shape[0] - 3
        foreground = output[dims + 1]
        psi = output[:dims].copy()
        ys, xs = np.mgrid[:output.shape[1], :output.shape[2]]
        psi[0] += ys / PIXELS_PER_UNIT
        psi[1] += xs / PIXELS_PER_UNIT
        return [
            embedding_rgb(psi, foreground > 0.5, name="embedding Psi (PCA)"),
            PreviewLayer(output[dims + 2], "seediness", "image",
                         {"colormap": "magma", "contrast_limits": (0.0, 1.0), "visible": False}),
            displacement_vectors(output[:2] * PIXELS_PER_UNIT, foreground, name="displacement Phi (px)"),
        ]


def _check_output(output, *, extra: int, name: str) -> np.ndarray:
    output = np.asarray(output, dtype=np.float32)
    if output.ndim != 3 or output.shape[0] < extra + 2:
        raise DeepColorError(f"a '{name}' output must have shape (C, H, W) with C >= {extra + 2} "
                             f"(got {output.shape}); was it predicted by a '{name}' model?")
    return output


def _foreground_points(output: np.ndarray, threshold: float, coordinates: bool):
    """Flat indices of the foreground pixels, their Psi (D, N), sigma (N,) and seediness (N,)."""
    dims = output.shape[0] - 3
    height, width = output.shape[1:]
    pixels = np.flatnonzero(output[dims + 1].ravel() > threshold)
    points = output[:dims].reshape(dims, -1)[:, pixels]
    if coordinates:
        points[0] += (pixels // width) / PIXELS_PER_UNIT
        points[1] += (pixels % width) / PIXELS_PER_UNIT
    return (pixels, np.ascontiguousarray(points, dtype=np.float32), output[dims].ravel()[pixels],
            output[dims + 2].ravel()[pixels])
