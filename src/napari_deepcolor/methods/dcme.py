"""Distance to centre of mass encoding, DCME (Watanabe and Wolf, 2018/2019).

Every object pixel regresses the 2D displacement to its object's centre of
mass; each output pixel and channel is an independent regression target
(sec. IV-A, eq. 5), and the error fed back is clipped by the translated
logistic of eq. (6), f(x) = A (1 / (1 + e^-x) - 1/2), whose amplitude A/2
keeps the long vectors at the borders of large objects from dominating
(sec. IV-B). A foreground output says which pixels vote. Instances are the
clusters of the votes u + d_u: peaks of the vote density seed them and every
foreground pixel joins the seed nearest to its vote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max

from ..errors import DeepColorError
from .base import DecodeParameter, Instances, Method, PreviewLayer, memo, size_threshold
from .embedding import PIXELS_PER_UNIT, displacement_vectors, instances_from_assignment


@dataclass(frozen=True)
class DcmeOptions:
    """Training options of DCME.

    Attributes
    ----------
    clip_amplitude : float
        Limit in pixels on how hard a large error of a predicted displacement
        pulls during training [A, eq. 6; paper: 4]. The error fed back per output is at most A/2 pixels in
        magnitude, and equals A/4 times the error near zero. The paper uses
        A = 4 at 512 x 1024 (so small errors get the gradient of the squared
        error of eq. 4) and says A must follow the image resolution: lower it
        for large objects, raise it for small ones.
    """

    clip_amplitude: float = 4.0

    def __post_init__(self):
        if not 0 < self.clip_amplitude <= 1000:
            raise DeepColorError(f"clip_amplitude must be in (0, 1000] pixels (got {self.clip_amplitude}); "
                                 "the paper uses 4.")


def centre_of_mass_displacement(labels: np.ndarray) -> np.ndarray:
    """The DCME target: for every object pixel u, (c_k - u) in pixels, c_k its object's centre of mass.

    Parameters
    ----------
    labels : (H, W) int, 0 background.

    Returns
    -------
    (2, H, W) float32 (dy, dx); 0 on the background.
    """
    height, width = labels.shape
    flat = labels.ravel().astype(np.int64)
    n = int(flat.max(initial=0)) + 1
    ys, xs = np.divmod(np.arange(flat.size), width)
    counts = np.maximum(np.bincount(flat, minlength=n), 1)
    centre_y = np.bincount(flat, weights=ys, minlength=n) / counts
    centre_x = np.bincount(flat, weights=xs, minlength=n) / counts
    inside = flat > 0
    displacement = np.zeros((2, flat.size), np.float32)
    displacement[0, inside] = centre_y[flat[inside]] - ys[inside]
    displacement[1, inside] = centre_x[flat[inside]] - xs[inside]
    return displacement.reshape(2, height, width)


def clipped_error(error, amplitude: float):
    """Eq. (6): f(x) = A (sigmoid(x) - 1/2) = (A/2) tanh(x/2)."""
    import torch

    return amplitude * (torch.sigmoid(error) - 0.5)


def clipped_regression_loss(predicted, target, mask, *, amplitude: float):
    """The loss whose gradient is the clipped error of eq. (6), every output independent (eq. 5).

    ``L = (1/N) sum A log cosh(x / 2)``, x = predicted - target in pixels, over
    the 2 channels of the N/2 pixels in ``mask``; dL/dx = f(x) / N exactly.

    Parameters
    ----------
    predicted, target : (B, 2, H, W) displacements in pixels.
    mask : (B, H, W) bool; the pixels that have a target.

    Notes
    -----
    The paper clips the error after computing the loss value as the mean
    squared error; here value and gradient come from one function, the
    integral of f, a log-cosh loss: quadratic (A x^2 / 8) near zero and
    linear (A |x| / 2) for large errors.
    """
    x = (predicted - target).movedim(1, -1)[mask]  # (N/2, 2)
    if x.numel() == 0:
        return predicted.sum() * 0.0
    z = x.abs() / 2
    log_cosh = z + (-2 * z).exp().log1p() - math.log(2.0)
    return amplitude * log_cosh.sum() / x.numel()


class DcmeMethod(Method):
    name = "dcme"
    title = "Distance to centre of mass (DCME)"
    paper = "Watanabe and Wolf: Instance Segmentation as Image Segmentation Annotation (2019)"
    Options = DcmeOptions
    decode_parameters = (
        DecodeParameter("foreground_threshold", 0.5, 0.05, 0.95, 0.05,
                        help="pixels whose probability of being inside an object is above this (0-1) vote "
                             "for a centre and are segmented",
                        tune_values=(0.3, 0.4, 0.5, 0.6, 0.7)),
        DecodeParameter("vote_smoothing", 2.0, 0.5, 10.0, 0.5,
                        help="blur in pixels that turns the votes into a density; also the smallest "
                             "distance between two object centres [sigma]",
                        tune_values=(1.0, 1.5, 2.0, 3.0, 4.0, 6.0)),
        DecodeParameter("min_votes", 10, 1, 1000, 1, integer=True,
                        help="an object centre needs about this many votes (pixels) within the vote "
                             "smoothing distance",
                        tune_values=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4), tune_unit="area"),
        DecodeParameter("assign_radius", 8.0, 1.0, 100.0, 0.5,
                        help="a pixel joins the centre nearest to its vote if it is at most this many pixels away",
                        tune_values=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5), tune_unit="diameter"),
        size_threshold(),
    )

    def out_channels(self, options) -> int:
        return 3

    def prepare_targets(self, labels, ignore, options):
        return {"labels": labels.astype(np.int64), "ignore": ignore,
                "displacement": centre_of_mass_displacement(labels) / np.float32(PIXELS_PER_UNIT)}

    def loss(self, raw, targets, options):
        """Clipped displacement regression on the object pixels plus foreground cross-entropy.

        The net predicts displacements in units of ``PIXELS_PER_UNIT`` (16) px
        so that its outputs stay O(1); the error is clipped in pixels, so A
        keeps the paper's meaning.
        """
        import torch.nn.functional as F

        raw = raw.float()
        labels, ignore = targets["labels"], targets["ignore"]
        objects = (labels > 0) & ~ignore
        regression = clipped_regression_loss(raw[:, :2] * PIXELS_PER_UNIT, targets["displacement"] * PIXELS_PER_UNIT,
                                             objects, amplitude=options.clip_amplitude)
        valid = ~ignore
        foreground = F.binary_cross_entropy_with_logits(raw[:, 2][valid], (labels[valid] > 0).float()) \
            if valid.any() else raw.sum() * 0.0
        return regression + foreground

    def activate(self, raw, options=None):
        """Displacement (dy, dx) in pixels and P(foreground): (B, 3, H, W)."""
        import torch

        raw = raw.float()
        return torch.cat([raw[:, :2] * PIXELS_PER_UNIT, torch.sigmoid(raw[:, 2:3])], dim=1)

    def output_to_image_scale(self, output, image_pixels_per_net_pixel):
        """Displacements are lengths in pixels: they scale with the image."""
        import torch

        return torch.cat([output[:, :2] * image_pixels_per_net_pixel, output[:, 2:]], dim=1)

    def foreground(self, output, options=None):
        return output[2]

    def decode(self, output, *, cache=None, options=None, foreground_threshold=None, vote_smoothing=None, min_votes=None,
               assign_radius=None, size_threshold=None) -> Instances:
        """Cached output (3, H, W) to instances by clustering the votes.

        Stages, each remembered in ``cache``: votes u + d_u of the pixels above
        ``foreground_threshold`` -> vote density, the votes histogram smoothed
        by a Gaussian of ``vote_smoothing`` px, scaled so a tight cluster of n
        votes peaks at n -> centres, its local maxima of at least
        ``min_votes`` -> every voting pixel joins the centre nearest its vote
        within ``assign_radius`` px -> drop instances under
        ``size_threshold`` pixels. Scores are the instances' mean foreground
        probability.

        Notes
        -----
        The paper does not describe its clustering of the votes. Seeds from the
        vote density and nearest-seed assignment are the Hough-voting reading
        of the encoding; pixels whose vote is far from every centre are left
        as background rather than forced into an instance.
        """
        params = self.resolve_decode_parameters({
            "foreground_threshold": foreground_threshold, "vote_smoothing": vote_smoothing, "min_votes": min_votes,
            "assign_radius": assign_radius, "size_threshold": size_threshold})
        output = np.asarray(output, dtype=np.float32)
        if output.ndim != 3 or output.shape[0] != 3:
            raise DeepColorError(f"a 'dcme' output must have shape (3, H, W) (got {output.shape}); was it "
                                 "predicted by a 'dcme' model?")
        shape = output.shape[1:]
        key = (params["foreground_threshold"],)
        pixels, votes = memo(cache, "votes", key, lambda: _votes(output, params["foreground_threshold"]))
        key += (params["vote_smoothing"],)
        density = memo(cache, "density", key, lambda: vote_density(votes, shape, params["vote_smoothing"]))
        key += (params["min_votes"],)
        centres = memo(cache, "centres", key, lambda: peak_local_max(
            density, min_distance=max(1, int(round(params["vote_smoothing"]))), threshold_abs=params["min_votes"],
            exclude_border=False).astype(np.float32))
        key += (params["assign_radius"],)
        assignment = memo(cache, "assign", key, lambda: _nearest_centre(votes, centres, params["assign_radius"]))
        fg = output[2].ravel()[pixels]
        sums = np.bincount(assignment, weights=fg, minlength=centres.shape[0] + 1)
        sizes = np.maximum(np.bincount(assignment, minlength=centres.shape[0] + 1), 1)
        return instances_from_assignment(shape, pixels, assignment, (sums / sizes)[1:].astype(np.float32),
                                         size_threshold=params["size_threshold"])

    def preview(self, output, options=None):
        output = np.asarray(output)
        shape = output.shape[1:]
        pixels, votes = _votes(output, 0.5)
        return [
            PreviewLayer(vote_density(votes, shape, 2.0), "vote density", "image",
                         {"colormap": "inferno", "blending": "additive"}),
            PreviewLayer(output[2], "foreground", "image",
                         {"colormap": "gray", "contrast_limits": (0.0, 1.0), "visible": False}),
            displacement_vectors(output[:2], output[2], name="displacement to centre (px)"),
        ]


def _votes(output: np.ndarray, threshold: float):
    """Flat indices of the foreground pixels and their votes (N, 2) = u + d_u in pixels."""
    width = output.shape[2]
    pixels = np.flatnonzero(output[2].ravel() > threshold)
    ys, xs = np.divmod(pixels, width)
    votes = np.stack([ys + output[0].ravel()[pixels], xs + output[1].ravel()[pixels]], axis=1)
    return pixels, votes.astype(np.float32)


def vote_density(votes: np.ndarray, shape: tuple[int, int], smoothing: float) -> np.ndarray:
    """Votes (N, 2) in pixels accumulated on the image grid and smoothed by a Gaussian of ``smoothing`` px.

    Scaled so that n votes on one pixel give a peak of n. Votes outside the image are not counted.
    """
    height, width = shape
    cell = np.rint(votes).astype(np.int64)
    inside = (cell[:, 0] >= 0) & (cell[:, 0] < height) & (cell[:, 1] >= 0) & (cell[:, 1] < width)
    histogram = np.bincount(cell[inside, 0] * width + cell[inside, 1], minlength=height * width)
    density = ndi.gaussian_filter(histogram.reshape(height, width).astype(np.float32), smoothing, mode="constant")
    radius = int(4 * smoothing + 0.5)
    impulse = np.zeros((2 * radius + 1,) * 2, np.float32)
    impulse[radius, radius] = 1
    return density / ndi.gaussian_filter(impulse, smoothing, mode="constant")[radius, radius]


def _nearest_centre(votes: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """1 + index of the centre nearest each vote within ``radius``; 0 if none."""
    if centres.shape[0] == 0 or votes.shape[0] == 0:
        return np.zeros(votes.shape[0], np.int32)
    distance, nearest = cKDTree(centres).query(votes, distance_upper_bound=radius)
    return np.where(np.isfinite(distance), nearest + 1, 0).astype(np.int32)
