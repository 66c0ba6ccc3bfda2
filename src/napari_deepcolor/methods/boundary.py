"""The 3-class U-Net baseline of the deep coloring paper (sec. 4.2).

Background / interior / boundary with the boundary class up-weighted (as
Ronneberger et al. suggest); instances are connected components of the
interior, grown back over the predicted foreground (the boundary ring).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.measure import label as connected_label
from skimage.segmentation import find_boundaries

from .base import DecodeParameter, Instances, Method, PreviewLayer, memo, size_threshold
from .components import grow_into, relabel_by_lookup

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


@dataclass(frozen=True)
class BoundaryOptions:
    """Training options of the 3-class baseline.

    Attributes
    ----------
    boundary_weight : float
        Weight of the boundary class in the cross-entropy loss; raise it when
        touching objects merge [paper: tuned on validation].
    """

    boundary_weight: float = 5.0

    def __post_init__(self):
        from ..errors import DeepColorError

        if not 0 < self.boundary_weight <= 100:
            raise DeepColorError(f"boundary_weight must be in (0, 100] (got {self.boundary_weight}).")


def three_class_target(labels: np.ndarray) -> np.ndarray:
    """0 background, 1 interior, 2 boundary (object pixels touching another id or background)."""
    target = np.where(labels > 0, INTERIOR, BACKGROUND).astype(np.int64)
    target[find_boundaries(labels, mode="inner") & (labels > 0)] = BOUNDARY
    return target


def three_class_loss(raw, target, ignore, boundary_weight: float):
    """Pixel-wise cross-entropy of (B, 3, H, W) logits against :func:`three_class_target` (B, H, W),
    the boundary class weighted ``boundary_weight``; ``ignore`` (B, H, W) pixels left out."""
    import torch
    import torch.nn.functional as F

    weight = torch.tensor([1.0, 1.0, boundary_weight], device=raw.device)
    return F.cross_entropy(raw.float(), target.masked_fill(ignore, -100), weight=weight, ignore_index=-100)


#: The tuner's candidates for the thresholds on the 3-class probabilities. They reach 0.9: with the grid
#: ending at 0.8 the tuner chose 0.8 for both thresholds on all three 15-minute BBBC039 models, and
#: re-tuned with 0.9 on offer two of them chose an interior threshold of 0.9 (more touching nuclei
#: split) and gained 0.013 and 0.011 of test AP (benchmarks/probes/decode_grid.py; docs/benchmarks.md).
INTERIOR_TUNE_VALUES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FOREGROUND_TUNE_VALUES = (0.5, 0.6, 0.7, 0.8, 0.9)

#: Where an object ends. 0.5 would be the plain argmax, but the loss weighs the boundary class
#: ``boundary_weight`` times, which pulls p(boundary) up on the background just outside each object:
#: at 0.5 the starters' nuclei came out 8 % larger than annotated and their rods 6 %; tuned, the
#: threshold gave AP 0.684 -> 0.732 (nuclei) and 0.819 -> 0.876 (rods) on the test splits
#: (benchmarks/outline_bias.py, docs/benchmarks.md "Where the outlines went").
FOREGROUND_THRESHOLD = DecodeParameter(
    "foreground_threshold", 0.5, 0.05, 0.95, 0.05,
    help="a pixel whose probability of belonging to an object (interior or boundary) is above this (0-1) is "
         "part of one; raise it when outlines come out too large",
    tune_values=FOREGROUND_TUNE_VALUES)


def grown_cores(semantic: np.ndarray, interior_threshold: float, foreground_threshold: float = 0.5) -> np.ndarray:
    """The baseline's instances (H, W) from (background, interior, boundary) probabilities (3, H, W):
    components of ``p_interior > interior_threshold``, grown over all of the foreground
    (``1 - p_background > foreground_threshold``) they reach, each foreground pixel to its nearest core."""
    seeds = connected_label(semantic[INTERIOR] > interior_threshold, connectivity=1)
    return grow_into(seeds, semantic[BACKGROUND] < 1.0 - foreground_threshold, steps=None)


class BoundaryMethod(Method):
    name = "boundary"
    title = "3-class U-Net (baseline)"
    paper = "Ronneberger et al. 2015 as the baseline of Kulikov et al. 2018, sec. 4.2"
    Options = BoundaryOptions
    decode_parameters = (
        size_threshold(),
        DecodeParameter("interior_threshold", 0.5, 0.05, 0.95, 0.05,
                        help="a pixel whose probability of being an object's interior is above this (0-1) "
                             "starts an object",
                        tune_values=INTERIOR_TUNE_VALUES),
        FOREGROUND_THRESHOLD,
    )

    def unflip(self, output, dims):
        return output.flip(dims)  # per-pixel class probabilities: a mirror image's are mirrored

    def out_channels(self, options) -> int:
        return 3

    def prepare_targets(self, labels, ignore, options):
        return {"target": three_class_target(labels), "ignore": ignore}

    def loss(self, raw, targets, options):
        return three_class_loss(raw, targets["target"], targets["ignore"], options.boundary_weight)

    def activate(self, raw, options=None):
        return raw.float().softmax(dim=1)

    def foreground(self, output, options=None):
        return 1.0 - output[BACKGROUND]  # p(interior) + p(boundary)

    def decode(self, output, *, cache=None, options=None, size_threshold=None, interior_threshold=None,
               foreground_threshold=None) -> Instances:
        """Components of ``p_interior > interior_threshold``, grown over all of the foreground
        (``1 - p_background > foreground_threshold``) they reach, each foreground pixel to its
        nearest seed; then the size threshold.

        Growing all the way rather than by the one-pixel ring of the target: a young net
        calls far more than that ring boundary (on Usiigaci cells a 800-step model gave 34 %
        of object pixels to the boundary class, against ~13 % in the target), and a growth
        of 3 px left 35 % of the object pixels unlabelled (A/B in docs/benchmarks.md).
        """
        params = self.resolve_decode_parameters(
            {"size_threshold": size_threshold, "interior_threshold": interior_threshold,
             "foreground_threshold": foreground_threshold})

        def grow():
            grown = grown_cores(output, params["interior_threshold"], params["foreground_threshold"])
            sizes = np.bincount(grown.ravel()).astype(np.float64)
            scores = np.bincount(grown.ravel(), weights=1.0 - output[BACKGROUND].ravel(), minlength=sizes.size)
            return grown, sizes, scores

        grown, sizes, scores = memo(cache, "grow", (params["interior_threshold"], params["foreground_threshold"]), grow)
        keep = sizes >= max(params["size_threshold"], 1)
        keep[0] = False
        labels, lookup = relabel_by_lookup(grown, keep)
        kept = np.flatnonzero(lookup)
        order = np.argsort(lookup[kept])
        return Instances(labels, (scores[kept] / sizes[kept])[order].astype(np.float32))

    def blockwise_limitation(self, parameters, options=None):
        return None

    def decode_blocks(self, output, ids, *, block, size_threshold, interior_threshold, foreground_threshold):
        """:meth:`decode` of an output larger than memory: the interior's components labelled block by
        block and joined across block borders, then grown over the foreground a block at a time
        (:mod:`.blockwise`; exact for pixels within its ``GROWTH_REACH`` of their seed)."""
        from .blockwise import grow_seeds_blockwise, label_color_blocks, seeds_in_raster_order

        def is_core(window):
            return window[INTERIOR] > interior_threshold

        def cores(window):  # as label_color_blocks takes colours: one colour, no score
            core = is_core(window)
            return core.astype(np.uint8), np.zeros(core.shape, np.float32)

        table = label_color_blocks(output, ids, block=block, colours=cores)
        return grow_seeds_blockwise(output, ids, seeds_in_raster_order(table), block=block, seeds=is_core,
                                    allowed=lambda window: window[BACKGROUND] < 1.0 - foreground_threshold,
                                    weights=lambda window: 1.0 - window[BACKGROUND],
                                    size_threshold=size_threshold)

    def preview(self, output, options=None):
        return [PreviewLayer(output[INTERIOR], "interior", "image", {"colormap": "green", "blending": "additive",
                                                                     "contrast_limits": (0.0, 1.0)}),
                PreviewLayer(output[BOUNDARY], "boundary", "image", {"colormap": "magenta", "blending": "additive",
                                                                     "contrast_limits": (0.0, 1.0)})]
