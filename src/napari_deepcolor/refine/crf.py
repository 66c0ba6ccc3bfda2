"""The dynamically instantiated instance CRF of Arnab and Torr (2017), as a refinement stage.

Any method's decoded instances become the CRF's label set {0 = background,
1..D}, built per image; the method's foreground probability Q and the image
give the unaries and the pairwise term; a few mean-field iterations, written
as a differentiable torch computation, give the refined labels.

The paper's detections come from an object detector; ours are the decoded
instances, each with its bounding box B_k, its mask and its score s_k (the
method's own instance score, see :class:`~napari_deepcolor.methods.base.Instances`).

Efficiency: a pixel can only take a label whose *support* (its box grown by
``reach`` pixels) covers it. Instances whose supports are far enough apart
never interact (the pairwise kernel is a local window, as in ConvCRF), so
they share one channel ("slot"); a greedy colouring of the supports' overlap
graph packs D instances into a few slots, and mean field runs densely on
(1 + slots, H, W) arrays whatever D is.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..errors import DeepColorError
from ..methods.base import Instances

#: energy of a label outside its support: exp(-OUTSIDE) is ~1e-22, zero in practice
OUTSIDE = 50.0
#: added inside the logarithm of eq. (2) so that -ln(0) stays finite
EPSILON = 1e-6


@dataclass(frozen=True)
class CrfParameters:
    """Weights and settings of the instance CRF; the first eight are fitted by :func:`~.fit.fit_crf`.

    ``box_weight``, ``global_weight``, ``shape_weight`` are w1, w2, w3 of eq. (2);
    ``spatial_weight`` and ``bilateral_weight`` weigh the Gaussian and the
    bilateral (appearance) Potts kernels, whose bandwidths are
    ``spatial_sigma`` (pixels), ``bilateral_sigma_xy`` (pixels) and
    ``bilateral_sigma_intensity`` (normalised intensity, images span about 0..1).
    The rest are fixed settings: the box term's dilation ``box_margin``, the
    support ``reach`` around a box (how far the global term reaches), the blur
    ``shape_softness`` of the decoded mask used as shape prior, the kernel's
    ``window`` radius and the number of mean-field ``iterations``.
    """

    box_weight: float = 1.0
    global_weight: float = 0.2
    shape_weight: float = 1.0
    spatial_weight: float = 0.5
    bilateral_weight: float = 1.0
    spatial_sigma: float = 1.5
    bilateral_sigma_xy: float = 3.0
    bilateral_sigma_intensity: float = 0.1
    box_margin: int = 2
    reach: int = 6
    shape_softness: float = 1.5
    window: int = 3
    iterations: int = 5

    FITTED = ("box_weight", "global_weight", "shape_weight", "spatial_weight", "bilateral_weight",
              "spatial_sigma", "bilateral_sigma_xy", "bilateral_sigma_intensity")
    #: the lengths, in pixels: they scale with the image (:meth:`rescaled`); the rest are weights and counts
    LENGTHS = ("spatial_sigma", "bilateral_sigma_xy", "shape_softness", "box_margin", "reach", "window")

    def __post_init__(self):
        for name in self.FITTED:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise DeepColorError(f"CRF parameter {name} must be a positive number (got {value!r}).")
        for name, low, high in (("box_margin", 0, 100), ("reach", 0, 200), ("window", 1, 10), ("iterations", 0, 50)):
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= high):
                raise DeepColorError(f"CRF setting {name} must be an integer in [{low}, {high}] (got {value!r}).")
        if not self.shape_softness >= 0:
            raise DeepColorError(f"CRF setting shape_softness must be >= 0 (got {self.shape_softness!r}).")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def rescaled(self, factor: float) -> "CrfParameters":
        """The same CRF for an image enlarged ``factor`` times: every length times ``factor`` (the integer
        ones rounded, the window kept within 1..10 pixels, the reach within 200)."""
        lengths = {name: getattr(self, name) * factor for name in self.LENGTHS}
        for name, low, high in (("box_margin", 0, 100), ("reach", 0, 200), ("window", 1, 10)):
            lengths[name] = int(min(max(round(lengths[name]), low), high))
        return dataclasses.replace(self, **lengths)

    @classmethod
    def from_dict(cls, values: dict | None) -> "CrfParameters":
        """Parameters from a model file's JSON; unknown keys are refused with the known ones."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DeepColorError(f"unknown CRF parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}. "
                                 "Was the model written by a newer napari-deepcolor?")
        return cls(**values)


@dataclass(frozen=True)
class CrfProblem:
    """One image's CRF, built from its instances: what mean field needs besides the weights.

    ``features`` (3, 1 + S, H, W): the box, global and shape potentials (eqs. 3, 4, 6)
    before weighting, per slot (channel 0 is background); ``outside`` (1 + S, H, W)
    bool: where a slot has no label; ``owner`` (S, H, W): which instance (1..D)
    a slot's channel stands for at each pixel (0 none); ``offsets``,
    ``distance2`` and ``intensity2``: the kernel window's offsets (dy, dx), their
    squared lengths and the squared intensity differences (O, H, W) to the
    pixel at each offset (beyond the image edge: to the edge pixel).
    """

    features: np.ndarray
    outside: np.ndarray
    owner: np.ndarray
    offsets: tuple[tuple[int, int], ...]
    distance2: np.ndarray
    intensity2: np.ndarray
    scores: np.ndarray

    @property
    def n_slots(self) -> int:
        return self.owner.shape[0]


def _boxes(labels: np.ndarray, count: int) -> np.ndarray:
    """(D, 4) int boxes (y0, x0, y1, x1), end exclusive, of labels 1..count (empty ones: zeros)."""
    boxes = np.zeros((count, 4), np.int64)
    for index, box in enumerate(ndi.find_objects(labels, max_label=count)):
        if box is not None:
            boxes[index] = (box[0].start, box[1].start, box[0].stop, box[1].stop)
    return boxes


def _grow(boxes: np.ndarray, margin: int, shape: tuple[int, int]) -> np.ndarray:
    grown = boxes + np.array([-margin, -margin, margin, margin])
    return np.clip(grown, 0, [shape[0], shape[1], shape[0], shape[1]])


def assign_slots(supports: np.ndarray, separation: int) -> np.ndarray:
    """Greedy colouring: a slot (0..S-1) per box such that boxes sharing a slot are more than
    ``separation`` pixels apart, so a kernel window never sees two of them.

    Parameters
    ----------
    supports : (D, 4) int boxes (y0, x0, y1, x1), end exclusive.
    separation : int, the kernel window radius.

    Returns
    -------
    slots : (D,) int.
    """
    n = supports.shape[0]
    slots = np.full(n, -1, np.int64)
    if n == 0:
        return slots
    y0, x0, y1, x1 = (supports[:, i][:, None] for i in range(4))
    gap = separation
    conflict = ((y0 < y1.T + gap) & (y0.T < y1 + gap) & (x0 < x1.T + gap) & (x0.T < x1 + gap))
    for k in range(n):
        taken = set(slots[conflict[k] & (slots >= 0)].tolist())
        slot = 0
        while slot in taken:
            slot += 1
        slots[k] = slot
    return slots


def build_problem(instances: Instances, foreground: np.ndarray, image: np.ndarray,
                  parameters: CrfParameters) -> CrfProblem:
    """The CRF of one image: its label set from ``instances`` and its potentials.

    Parameters
    ----------
    instances : the decoded instances (labels (H, W), scores (D,)); they define D.
    foreground : (H, W) float, Q: the method's foreground probability.
    image : (H, W) or (H, W, C) float, normalised (about 0..1): the appearance in
        the bilateral kernel.
    parameters : :class:`CrfParameters` (the fixed settings are used here).

    Notes
    -----
    Per detection k with box B_k (grown by ``box_margin``) and score s_k, and with
    Q_i the foreground probability at pixel i:

    * box term, eq. (3): psi_Box(V_i = k) = Q_i s_k if i in B_k, else 0;
    * global term, eq. (4): psi_Global(V_i = k) = Q_i, within the support;
    * shape term, eq. (6): psi_Shape(V_i = k) = Q_i t_k(i), where the shape prior
      t_k is the decoded mask itself blurred by a Gaussian of ``shape_softness``
      pixels. The paper matches one of ~250 clustered exemplars per box by normalised
      cross-correlation (eq. 5); the method's own mask is the exemplar that matches
      best by construction, and blurring leaves the CRF room at its edge.

    The background label 0 gets 1 - Q_i in all three terms (the paper adds a
    whole-image "background detection" of score 1 for the box term).
    """
    labels = np.asarray(instances.labels)
    foreground = np.clip(np.asarray(foreground, np.float32), 0.0, 1.0)
    if labels.ndim != 2 or foreground.shape != labels.shape:
        raise DeepColorError(f"the CRF needs 2D labels and a foreground of the same shape (got {labels.shape} "
                             f"and {foreground.shape}); refine stacks plane by plane.")
    image = np.asarray(image, np.float32)
    image = image[..., None] if image.ndim == 2 else image
    if image.shape[:2] != labels.shape:
        raise DeepColorError(f"image (shape {image.shape[:2]}) must match the labels' shape {labels.shape}.")
    count = instances.count
    scores = np.clip(np.asarray(instances.scores, np.float32), 0.0, 1.0)
    shape = labels.shape
    boxes = _boxes(labels, count)
    supports = _grow(boxes, parameters.reach, shape)
    slots = assign_slots(supports, parameters.window)
    n_slots = int(slots.max(initial=-1)) + 1
    features = np.zeros((3, 1 + n_slots) + shape, np.float32)
    features[:, 0] = 1.0 - foreground
    outside = np.ones((1 + n_slots,) + shape, bool)
    outside[0] = False
    owner = np.zeros((n_slots,) + shape, np.int32)
    box_boxes = _grow(boxes, parameters.box_margin, shape)
    for k in range(count):
        if boxes[k, 2] == 0:  # an empty label
            continue
        y0, x0, y1, x1 = supports[k]
        crop = (slice(y0, y1), slice(x0, x1))
        q = foreground[crop]
        mask = (labels[crop] == k + 1).astype(np.float32)
        prior = ndi.gaussian_filter(mask, parameters.shape_softness) if parameters.shape_softness > 0 else mask
        in_box = np.zeros_like(q)
        by0, bx0, by1, bx1 = box_boxes[k]
        in_box[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] = 1.0
        s = 1 + slots[k]
        features[0, s][crop] = q * scores[k] * in_box
        features[1, s][crop] = q
        features[2, s][crop] = q * prior
        outside[s][crop] = False
        owner[s - 1][crop] = k + 1
    offsets, distance2, intensity2 = _window(image, parameters.window)
    return CrfProblem(features, outside, owner, offsets, distance2, intensity2, scores)


def _window(image: np.ndarray, radius: int):
    """Offsets of the (2r+1)^2 - 1 window, their squared lengths and squared intensity differences."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    offsets, distance2, intensity2 = [], [], []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx == 0:
                continue
            shifted = padded[radius + dy:radius + dy + height, radius + dx:radius + dx + width]
            diff = ((image - shifted) ** 2).sum(axis=-1)
            offsets.append((dy, dx))
            distance2.append(float(dy * dy + dx * dx))
            intensity2.append(diff)
    return tuple(offsets), np.asarray(distance2, np.float32), np.stack(intensity2).astype(np.float32)


# -- the differentiable part (torch) -------------------------------------------------------

def unary_energy(features, outside, weights):
    """Eq. (2): U(v_i = k) = -ln[w1 psi_Box + w2 psi_Global + w3 psi_Shape], (1 + S, H, W).

    ``weights`` is a (3,) tensor (w1, w2, w3); labels outside their support get
    the energy :data:`OUTSIDE`.
    """
    import torch

    mixture = torch.einsum("t,tshw->shw", weights, features)
    energy = -torch.log(mixture + EPSILON)
    return torch.where(outside, torch.full_like(energy, OUTSIDE), energy)


def kernel_planes(distance2, intensity2, spatial_weight, bilateral_weight, spatial_sigma, bilateral_sigma_xy,
                  bilateral_sigma_intensity):
    """The pairwise kernel k(i, i + o) per window offset o, (O, H, W).

    k = w_s exp(-|o|^2 / 2 theta_gamma^2) + w_b exp(-|o|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2),
    the dense CRF's Gaussian plus bilateral kernel (Kraehenbuehl and Koltun 2011),
    restricted to a local window as in ConvCRF (Teichmann and Cipolla 2018).
    Neighbours outside the image need no care: mean field pads Q with zeros.
    """
    import torch

    spatial = spatial_weight * torch.exp(-distance2 / (2 * spatial_sigma ** 2))
    reach = bilateral_weight * torch.exp(-distance2 / (2 * bilateral_sigma_xy ** 2))
    appearance = torch.exp(intensity2 * (-0.5 / bilateral_sigma_intensity ** 2))
    return spatial[:, None, None] + reach[:, None, None] * appearance


def mean_field(unary, kernel, offsets, iterations: int):
    """Mean-field inference of eq. (1) with Potts compatibility: Q (1 + S, H, W), differentiable.

    Q^0 = softmax(-U); then ``iterations`` times
    Q_i(l) <- softmax_l(-U_i(l) + sum_o k(i, i + o) Q_{i+o}(l)),
    the message passing of Kraehenbuehl and Koltun (a Potts model: a pixel pays
    k(i, j) for every neighbour j with another label, so neighbours' mass on l
    lowers the energy of l), unrolled as in CRF-as-RNN (Zheng et al. 2015).
    """
    import torch
    import torch.nn.functional as F

    radius = max(max(abs(dy), abs(dx)) for dy, dx in offsets) if offsets else 0
    height, width = unary.shape[-2:]
    q = torch.softmax(-unary, dim=0)
    for _ in range(iterations):
        padded = F.pad(q, (radius, radius, radius, radius))  # zeros: no neighbours outside the image
        message = torch.zeros_like(q)
        for index, (dy, dx) in enumerate(offsets):
            message.addcmul_(kernel[index], padded[:, radius + dy:radius + dy + height, radius + dx:radius + dx + width])
        q = torch.softmax(message - unary, dim=0)
    return q


def infer(problem: CrfProblem, parameters: CrfParameters, tensors: dict | None = None):
    """Q (1 + S, H, W) of a problem; ``tensors`` may hold trainable torch scalars for the fitted
    parameters (names of :attr:`CrfParameters.FITTED`), the rest come from ``parameters``."""
    import torch

    def value(name):
        given = (tensors or {}).get(name)
        return given if given is not None else torch.tensor(float(getattr(parameters, name)))

    weights = torch.stack([value("box_weight"), value("global_weight"), value("shape_weight")])
    features = torch.from_numpy(problem.features)
    outside = torch.from_numpy(problem.outside)
    kernel = kernel_planes(torch.from_numpy(problem.distance2), torch.from_numpy(problem.intensity2),
                           value("spatial_weight"), value("bilateral_weight"), value("spatial_sigma"),
                           value("bilateral_sigma_xy"), value("bilateral_sigma_intensity"))
    return mean_field(unary_energy(features, outside, weights), kernel, problem.offsets, parameters.iterations)


def labels_from_marginals(problem: CrfProblem, q: np.ndarray) -> np.ndarray:
    """MAP labels (H, W), instance ids 1..D of the label set (0 background), from Q (1 + S, H, W)."""
    best = np.asarray(q).argmax(axis=0)
    labels = np.zeros(best.shape, np.int64)
    for s in range(problem.n_slots):
        here = best == s + 1
        labels[here] = problem.owner[s][here]
    return labels


def refine_instances(instances: Instances, foreground: np.ndarray, image: np.ndarray,
                     parameters: CrfParameters | None = None) -> Instances:
    """Refine decoded instances with the instance CRF; returns new instances (inputs untouched).

    Parameters
    ----------
    instances : Instances, the decoded label image (H, W) and scores: the label set.
    foreground : (H, W) float, the method's foreground probability Q
        (:meth:`~napari_deepcolor.methods.base.Method.foreground`).
    image : (H, W[, C]) float, the image as the net saw it (normalised).
    parameters : CrfParameters, fitted ones from the model (default: the defaults).

    Returns
    -------
    Instances
        Labels 1..N in order of the input ids; instances that lose all their
        pixels are dropped (the label set shrinks, it never grows beyond D);
        each keeps its input score.

    Examples
    --------
    >>> from napari_deepcolor.methods.base import Instances
    >>> labels = np.zeros((20, 20), np.uint8); labels[5:15, 5:15] = 1
    >>> q = (labels > 0).astype(np.float32)
    >>> refine_instances(Instances(labels, np.ones(1, np.float32)), q, q).count
    1
    """
    import torch

    parameters = parameters or CrfParameters()
    if instances.count == 0:
        return instances
    problem = build_problem(instances, foreground, image, parameters)
    with torch.no_grad():
        q = infer(problem, parameters).numpy()
    return _renumber(labels_from_marginals(problem, q), instances.scores)


def _renumber(labels: np.ndarray, scores: np.ndarray) -> Instances:
    from ..methods.components import relabel_by_lookup

    present = np.bincount(labels.ravel(), minlength=scores.shape[0] + 1) > 0
    present[0] = False
    refined, _ = relabel_by_lookup(labels, present)
    return Instances(refined, np.asarray(scores, np.float32)[present[1:]])
