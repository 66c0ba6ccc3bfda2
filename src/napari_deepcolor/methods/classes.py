"""Semantic instances: a class head beside any method, and the class of each decoded instance.

A model trained on class annotations (live / dead worms, cell types) predicts K + 1 more channels
after its method's own: a softmax over background and the K classes, trained with pixel-wise
cross-entropy. This is deep coloring's "separate semantic head" (Kulikov et al. 2018, Cityscapes
section, "+ separate semantic head"), here with the object classes rather than the 3-class
background / interior / boundary target, and it is what gives the embedding methods and the
3-class baseline their classes too (as Fathi et al. 2017 take the class from a semantic
segmentation, and Arnab and Torr 2017 build their instances on one). Every method's own channels
and decoder stay as they are: the class head is split off before them (:func:`split_channels`).

At decode time each instance takes the class of largest mean probability over its pixels,
with that mean as its class score (:func:`classify_instances`).
"""

from __future__ import annotations

import numpy as np

from ..errors import DeepColorError

__all__ = ["class_head_channels", "class_head_loss", "class_color_owners", "classify_instances"]


def class_head_channels(class_names) -> int:
    """Channels of the class head: background + one per class; 0 for a model without classes."""
    return len(class_names) + 1 if class_names else 0


def class_head_loss(logits, classes, ignore):
    """Pixel-wise cross-entropy of the class head (B, K + 1, H, W) on class ids (B, H, W), 0 = background."""
    import torch.nn.functional as F

    target = classes.long().masked_fill(ignore, -100)
    return F.cross_entropy(logits.float(), target, ignore_index=-100)


def classify_instances(labels: np.ndarray, probabilities: np.ndarray, n_instances: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The class of each instance: the argmax of the class head's mean probability over its pixels.

    Parameters
    ----------
    labels : (H, W) int, instances 1..N, 0 = background.
    probabilities : (K + 1, H, W) float, the class head's softmax; channel 0 is background.
    n_instances : N (default ``labels.max()``).

    Returns
    -------
    classes : (N,) int32, class ids 1..K (``classes[i - 1]`` is the class of instance i).
    scores : (N,) float32, the winning class's mean probability over the instance (0 to 1).

    Notes
    -----
    The mean over the instance rather than a vote of per-pixel argmaxes: a pixel that is unsure
    weighs less, and the score says how sure the head is about the instance as a whole. The
    background channel is left out, so every instance gets an object class.
    """
    n = int(labels.max(initial=0)) if n_instances is None else int(n_instances)
    flat = np.asarray(labels).ravel().astype(np.int64)
    sizes = np.maximum(np.bincount(flat, minlength=n + 1)[1:n + 1], 1)
    means = np.stack([np.bincount(flat, weights=np.asarray(p, np.float64).ravel(), minlength=n + 1)[1:n + 1]
                      for p in probabilities[1:]], axis=1) / sizes[:, None] if n else np.zeros((0, 1))
    best = means.argmax(axis=1) if n else np.zeros(0, np.int64)
    scores = means[np.arange(n), best] if n else np.zeros(0)
    return (best + 1).astype(np.int32), scores.astype(np.float32)


def class_color_owners(n_colors: int, n_classes: int) -> np.ndarray:
    """Which class owns each colour: (n_colors,) int, 0 for the background colour 0.

    The object colours 1..C-1 are cut into ``n_classes`` contiguous blocks of nearly equal size,
    earlier classes taking the one left over (9 colours, 2 classes: colours 1-4 and 5-8). The paper
    assigned its Cityscapes colours by hand ("the assignment was done heuristically"); an equal
    split is the neutral choice when nothing says one class crowds more than another.
    """
    per_class = (n_colors - 1) // max(n_classes, 1)
    if n_classes and per_class < 2:
        raise DeepColorError(f"{n_classes} classes need at least {2 * n_classes + 1} colours (two per class, "
                             f"so that touching objects of one class can differ, and the background); "
                             f"this model has n_colors={n_colors}. Raise n_colors.")
    owners = np.zeros(n_colors, np.int64)
    for k, block in enumerate(np.array_split(np.arange(1, n_colors), n_classes), start=1):
        owners[block] = k
    return owners
