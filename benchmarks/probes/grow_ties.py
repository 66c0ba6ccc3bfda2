"""Why our objects sit a fraction of a pixel above their annotations, and whether it costs AP.

    python benchmarks/probes/grow_ties.py DATASET:MODEL:SEED ... > log

Over the objects matched at IoU > 0.5 on the test images (accuracy.py's split), the mean offset (rows, cols)
of the predicted centroid from the annotated one. The 3-class decode grows the cores over the foreground
one pixel a step, and a pixel reached by two cores in the same step goes to the larger label
(``components.grow_into``); labels count in raster order, so the lower of two touching objects takes every
tied pixel. The probe decodes each cached output twice: with that rule (``largest``) and with a
checkerboard of largest and smallest (``checkerboard``: ties split evenly), and prints AP, F1 and the mean
offset of each. (Session 14: the E. coli rods' offset of -0.11 to -0.15 rows went to 0.00-0.01 with the
checkerboard, at the same AP; benchmarks/results/ab/grow_ties.json.)
"""

import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import accuracy  # noqa: E402
import napari_deepcolor.methods.boundary as boundary  # noqa: E402
from napari_deepcolor.checkpoint import load_model  # noqa: E402
from napari_deepcolor.inference import Prediction, predict  # noqa: E402
from napari_deepcolor.methods import components  # noqa: E402
from napari_deepcolor.metrics import evaluate, iou_matrix, summarize  # noqa: E402
from napari_deepcolor.metrics.instances import _matched_pairs  # noqa: E402


def offsets(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n, 2) predicted minus annotated centroid of each pair matched at IoU > 0.5 (label images only)."""
    if truth.ndim == 3:
        return np.zeros((0, 2))
    iou = iou_matrix(truth, labels)
    rows, cols = _matched_pairs(iou, 0.5)
    t_ids, p_ids = np.unique(truth[truth > 0]), np.unique(labels[labels > 0])
    annotated = np.array(ndi.center_of_mass(np.ones_like(truth), truth, t_ids[rows]))
    predicted = np.array(ndi.center_of_mass(np.ones_like(labels), labels, p_ids[cols]))
    return predicted - annotated


def grow_checkerboard(seeds, allowed, steps=3, regions=None):
    """``components.grow_into`` (without ``regions``) with ties going to the largest label on one colour of a
    checkerboard and to the smallest on the other."""
    padded = np.pad(seeds, 1)
    flat, stride = padded.ravel(), seeds.shape[1] + 2
    free = np.flatnonzero(np.pad(allowed & (seeds == 0), 1))
    rows, cols = np.divmod(np.arange(flat.size), stride)
    odd = (rows + cols) % 2 == 1
    none = np.iinfo(flat.dtype).max
    step = 0
    while free.size and (steps is None or step < steps):
        around = [flat[free + dy * stride + dx]
                  for dy, dx in (components._SIDES if step % 2 == 0 else components._SIDES + components._CORNERS)]
        largest = np.maximum.reduce(around)
        smallest = np.minimum.reduce([np.where(v > 0, v, none) for v in around])
        neighbour = np.where(odd[free], np.where(smallest == none, 0, smallest), largest)
        taken = neighbour > 0
        if not taken.any() and step % 2 == 1:
            break
        step += 1
        flat[free[taken]] = neighbour[taken]
        free = free[~taken]
    return padded[1:-1, 1:-1]


def main():
    torch.set_num_threads(2)
    shipped = components.grow_into
    for spec in sys.argv[1:]:
        dataset, path, _ = spec.split(":")
        data, model = accuracy.split(dataset), load_model(path)
        truths = [accuracy.ground_truth(p) for p in data.test_pairs]
        outputs = [predict(model, data.test[p.name].image, stack=False, device="cpu").output for p in data.test_pairs]
        for name, grow in (("largest", shipped), ("checkerboard", grow_checkerboard)):
            boundary.grow_into = grow
            labels = [Prediction(model, o).decode().labels for o in outputs]  # a fresh decode cache each
            score = summarize([evaluate(t, l) for t, l in zip(truths, labels)])
            shift = np.concatenate([offsets(t, l) for t, l in zip(truths, labels)]).mean(axis=0)
            print(dataset, Path(path).name, name, "AP %.4f F1 %.4f" % (score["ap"], score["f1"]), "dy dx",
                  shift.round(3), flush=True)
        boundary.grow_into = shipped


if __name__ == "__main__":
    main()
