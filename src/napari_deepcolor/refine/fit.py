"""Learning the instance CRF's weights, eq. (7) of Arnab and Torr (2017), with the network frozen.

The refined labelling is matched to the ground truth by maximum IoU
(Hungarian matching, scipy.optimize.linear_sum_assignment), which removes the
arbitrariness of instance ids; the cross-entropy of the CRF's marginals
against the matched ground truth is then minimised over the CRF's weights and
bandwidths (kept positive by optimising their logarithms) with Adam.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import DeepColorError
from ..methods.base import Instances
from .crf import CrfParameters, CrfProblem, build_problem, infer, labels_from_marginals

log = logging.getLogger(__name__)

#: target value of pixels that count in no way in the loss
IGNORE = -1


def match_instances(prediction: np.ndarray, ground_truth: np.ndarray) -> dict[int, int]:
    """Eq. (7): the ground-truth-to-prediction matching with the largest total IoU.

    Parameters
    ----------
    prediction, ground_truth : (H, W) int label images, 0 = background.

    Returns
    -------
    dict
        ground-truth id -> predicted id, for the pairs that overlap; the other
        objects of either side are matched to the paper's "dummy" nodes (absent).

    Examples
    --------
    >>> match_instances(np.array([[5, 5, 0, 7]]), np.array([[1, 1, 0, 2]]))
    {1: 5, 2: 7}
    """
    from ..metrics import iou_matrix

    gt_ids = np.unique(ground_truth[ground_truth > 0])
    pred_ids = np.unique(prediction[prediction > 0])
    if gt_ids.size == 0 or pred_ids.size == 0:
        return {}
    # iou_matrix orders objects by id, but takes any ids: map both sides to 1..n first
    gt_dense = np.searchsorted(gt_ids, ground_truth) + 1
    gt_dense[ground_truth == 0] = 0
    pred_dense = np.searchsorted(pred_ids, prediction) + 1
    pred_dense[prediction == 0] = 0
    iou = iou_matrix(gt_dense, pred_dense)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return {int(gt_ids[r]): int(pred_ids[c]) for r, c in zip(rows, cols) if iou[r, c] > 0}


def matched_targets(problem: CrfProblem, prediction: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """Per-pixel target channel (H, W) of the CRF's marginals: the matched ground truth G*.

    Background pixels of the ground truth aim at channel 0; the pixels of a
    ground-truth object matched to predicted instance k aim at k's slot where
    k's support covers them; unmatched objects and pixels beyond the support
    are :data:`IGNORE` (no label of this CRF can be right there).
    """
    targets = np.full(ground_truth.shape, IGNORE, np.int64)
    targets[ground_truth == 0] = 0
    matching = match_instances(prediction, ground_truth)
    for gt_id, pred_id in matching.items():
        obj = ground_truth == gt_id
        for s in range(problem.n_slots):
            here = obj & (problem.owner[s] == pred_id)
            targets[here] = s + 1
    return targets


def matched_loss(problem: CrfProblem, parameters: CrfParameters, ground_truth: np.ndarray, tensors=None,
                 ignore: np.ndarray | None = None):
    """Cross-entropy of the CRF's marginals against the matched ground truth (a torch scalar).

    The matching uses the CRF's own MAP labelling (the paper's prediction P),
    so the loss does not depend on the order of the instances.
    """
    import torch

    q = infer(problem, parameters, tensors)
    prediction = labels_from_marginals(problem, q.detach().numpy())
    targets = matched_targets(problem, prediction, np.asarray(ground_truth))
    if ignore is not None:
        targets[np.asarray(ignore, bool)] = IGNORE
    targets = torch.from_numpy(targets)
    valid = targets != IGNORE
    if not bool(valid.any()):
        return q.sum() * 0.0
    chosen = torch.gather(q, 0, targets.clamp(min=0)[None])[0]
    return -torch.log(chosen[valid] + 1e-6).mean()


@dataclass(frozen=True)
class CrfExample:
    """One annotated image for fitting: its decoded instances, Q, normalised image and ground truth."""

    instances: Instances
    foreground: np.ndarray
    image: np.ndarray
    ground_truth: np.ndarray
    ignore: np.ndarray | None = None  # (H, W) bool: pixels out of the loss (e.g. overlapping objects)


def fit_crf(examples: Sequence[CrfExample], *, start: CrfParameters | None = None, steps: int = 40,
            learning_rate: float = 0.05, tile: int = 192, max_tiles: int = 24,
            seed: int = 0) -> tuple[CrfParameters, dict]:
    """Fit the CRF weights of :attr:`CrfParameters.FITTED` on annotated examples.

    Each example is cut into tiles of ``tile`` pixels (the loss of a tile is an
    independent CRF: the kernel is local); at most ``max_tiles`` of the tiles that
    hold an object are drawn (``seed``), and each full-batch Adam step averages the
    matched loss over them. Returns ``(parameters, report)``,
    the report holding the loss before and after.

    Notes
    -----
    The paper learns w1, w2, w3 and the pairwise weights by backpropagation
    through the unrolled mean field, with the cross-entropy after matching
    (eq. 7); here the network is frozen ("piecewise" training in its Table 1),
    so only the CRF's handful of parameters move.
    """
    import torch

    start = start or CrfParameters()
    tiles = list(_tiles(examples, tile))
    if len(tiles) > max_tiles:
        chosen = np.random.default_rng(seed).choice(len(tiles), max_tiles, replace=False)
        tiles = [tiles[i] for i in sorted(chosen)]
    problems = [(build_problem(instances, q, image, start), truth, ignore)
                for instances, q, image, truth, ignore in tiles]
    if not problems:
        raise DeepColorError("fitting the CRF needs annotated images with objects that the model finds; "
                             "none of the validation images has any.")
    logs = {name: torch.tensor(float(np.log(getattr(start, name))), requires_grad=True) for name in start.FITTED}
    optimizer = torch.optim.Adam(list(logs.values()), lr=learning_rate)

    def total_loss():
        tensors = {name: value.exp() for name, value in logs.items()}
        return sum(matched_loss(p, start, truth, tensors, ignore) for p, truth, ignore in problems) / len(problems)

    history = []
    for _ in range(steps):
        loss = total_loss()
        history.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fitted = dataclasses.replace(start, **{name: float(value.detach().exp()) for name, value in logs.items()})
    with torch.no_grad():
        final = float(total_loss())
    if history and final > history[0]:  # never hand back worse than we started from
        fitted, final = start, history[0]
    log.info("CRF fitted on %d tiles: matched cross-entropy %.4f -> %.4f", len(problems),
             history[0] if history else final, final)
    return fitted, {"tiles": len(problems), "loss_before": history[0] if history else final, "loss_after": final}


def _tiles(examples: Sequence[CrfExample], tile: int):
    """(instances, Q, image, ground truth, ignore) per tile, instances renumbered, tiles without objects skipped."""
    from ..methods.components import relabel_by_lookup

    for example in examples:
        labels = np.asarray(example.instances.labels)
        height, width = labels.shape
        for y in range(0, height, tile):
            for x in range(0, width, tile):
                crop = (slice(y, min(y + tile, height)), slice(x, min(x + tile, width)))
                truth, cut = np.asarray(example.ground_truth)[crop], labels[crop]
                if not truth.any() or not cut.any():
                    continue
                present = np.bincount(cut.ravel().astype(np.int64), minlength=example.instances.count + 1) > 0
                present[0] = False
                renumbered, _ = relabel_by_lookup(cut, present)
                scores = np.asarray(example.instances.scores)[present[1:]]
                ignore = None if example.ignore is None else np.asarray(example.ignore)[crop]
                yield Instances(renumbered, scores), example.foreground[crop], example.image[crop], truth, ignore
