"""How a deep coloring model uses its colours on the held-out images of a dataset.

    python benchmarks/probes/color_usage.py --dataset usiigaci --model m1.safetensors [m2.safetensors ...]

For each model: the share of annotated object pixels whose maximal object colour (1..C-1) is each
colour, how many colours hold at least 5 % of them, and the share of touching annotated pairs
(within 2 px) whose majority colours are equal: those pairs the colours alone cannot separate.
With a semantic head, also the mean AP 0.5:0.95 of the model's tuned decode and of the same decode with
``split_by_color=1`` (the paper's fusion: the colours' own instances). With ``--seed S`` (the seed the
model trained with), also what eq. (2) makes of the trained net on a few training batches: the share of
touching objects (one in the other's halo) given the same target colour, as training would give them now.
Prints one JSON line per model. With ``--picture PNG``: the first held-out image, its ground truth, and
for each model the maximal colour of every pixel that its semantic head (or, without one, its colours)
calls foreground, one hue per colour.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: accuracy.py and friends
from accuracy import DATASETS, ground_truth, held_out, split
from qualitative import centre_window, grey, overlay
from napari_deepcolor.checkpoint import load_model
from napari_deepcolor.data import detect_layout, read_image
from napari_deepcolor.inference import predict
from napari_deepcolor.methods import get_method
from napari_deepcolor.methods.coloring import _flatten_batch, assign_colors, touching_pairs as halo_pairs
from napari_deepcolor.metrics import evaluate
from napari_deepcolor.nets.position import random_origins
from napari_deepcolor.training import Training, TrainingConfig, _PatchBatches


def majority_colours(colour: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Most frequent colour of each object 1..K (index 0 unused)."""
    n = int(labels.max())
    counts = np.zeros((n + 1, int(colour.max()) + 1), np.int64)
    np.add.at(counts, (labels.ravel(), colour.ravel()), 1)
    return counts.argmax(axis=1)


def touching_pairs(labels: np.ndarray, gap: int = 2) -> np.ndarray:
    """(M, 2) pairs of objects closer than ``gap`` px (a grey dilation of one reaches the other)."""
    grown = ndi.grey_dilation(labels, size=2 * gap + 1)
    mask = (labels > 0) & (grown != labels)
    pairs = np.sort(np.stack([labels[mask], grown[mask]], axis=1), axis=1)
    return np.unique(pairs, axis=0) if pairs.size else pairs.reshape(0, 2)


#: one hue per object colour 1..8 (colour 0, the background, stays black)
HUES = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                 [145, 30, 180], [70, 240, 240], [240, 50, 230]], np.uint8)


def colour_picture(model, image: np.ndarray, window) -> np.ndarray:
    """(h, w, 3) picture of the model's maximal colour on its foreground, in the ``window`` of ``image``."""
    n_colors = model.method_options.n_colors
    output = predict(model, image, stack=False, device="cpu").output
    foreground = (output[n_colors:].argmax(0) != 0) if model.method_options.semantic_head else output[0] < 0.5
    colour = np.where(foreground, output[1:n_colors].argmax(0) + 1, 0)
    return HUES[colour[window] % len(HUES)]


def colour_usage(model, pairs) -> dict:
    n_colors = model.method_options.n_colors
    share = np.zeros(n_colors)
    same, total = 0, 0
    fused = model.method_options.semantic_head
    ap = {"ap_tuned": [], "ap_split_by_color": []}
    for pair in pairs:
        truth = ground_truth(pair)
        labels = truth if truth.ndim == 2 else np.where(truth.any(0), truth.argmax(0) + 1, 0)
        prediction = predict(model, read_image(pair.image), stack=False, device="cpu")
        output = prediction.output
        if fused:
            ap["ap_tuned"].append(evaluate(truth, prediction.decode().labels)["ap"])
            ap["ap_split_by_color"].append(evaluate(truth, prediction.decode(split_by_color=1).labels)["ap"])
        colour = output[1:n_colors].argmax(axis=0) + 1
        share += np.bincount(colour[labels > 0], minlength=n_colors)
        majority = majority_colours(colour * (labels > 0), labels)
        for a, b in touching_pairs(labels):
            total += 1
            same += majority[a] == majority[b]
    share = share / max(share.sum(), 1)
    return {"colour_share": [round(float(s), 3) for s in share[1:]], "colours_used": int((share >= 0.05).sum()),
            "touching_pairs": total, "touching_pairs_same_colour": round(same / max(total, 1), 3),
            **({k: round(float(np.mean(v)), 3) for k, v in ap.items()} if fused else {})}


def training_choices(model, dataset: str, seed: int, batches: int = 3) -> dict:
    """Eq. (2)'s colours for the objects of a few training batches, with the model's own options."""
    data = split(dataset, TrainingConfig.validation_fraction, seed)
    config = TrainingConfig(method="coloring", iterations=1, batch_size=4)
    training = Training(config, data.train, validation=data.validation)
    training.model = model
    options, n_colors = model.method_options, model.method_options.n_colors
    stream = iter(_PatchBatches(training._at_net_scale(model), get_method("coloring"), options, config, seed=seed))
    same, total, counts = 0, 0, np.zeros(n_colors - 1, np.int64)
    places = torch.Generator().manual_seed(seed)  # random places of the patches, as training gives them
    for _ in range(batches):
        images, t = next(stream)
        with torch.no_grad():
            raw = model.net(images, random_origins(len(images), model.net_config.position_periods, places))[:, :n_colors]
            colors, _ = assign_colors(raw, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"],
                                      halo_weight=options.halo_weight, color_choice=options.color_choice)
            _, global_id, _, _ = _flatten_batch(raw, t["labels"], t["ignore"])
            pairs = halo_pairs(global_id, t["halo_pixels"], t["halo_objects"]).numpy()
        c = colors.numpy()
        same += int((c[pairs[:, 0]] == c[pairs[:, 1]]).sum())
        total += len(pairs)
        counts += np.bincount(c - 1, minlength=n_colors - 1)
    return {"training_colours_chosen": counts.tolist(), "training_halo_pairs": total,
            "training_halo_pairs_same_colour": round(same / max(total, 1), 3)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--model", type=Path, nargs="+", required=True)
    parser.add_argument("--images", type=int, default=4, help="held-out images to look at")
    parser.add_argument("--seed", type=int, default=None, help="the models' training seed: also report eq. (2)'s "
                        "choices on training batches")
    parser.add_argument("--picture", type=Path, default=None, help="also write this PNG of the models' colours")
    parser.add_argument("--crop", type=int, default=384, help="side of the picture's square crop, from the centre")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = held_out(detect_layout(*DATASETS[args.dataset]).pairs)[:args.images]
    if args.picture is not None:
        image = read_image(pairs[0].image)
        window = centre_window(*image.shape[:2], args.crop)
        panels = [overlay(grey(image[window]), ground_truth(pairs[0])[(...,) + window])]
    for path in args.model:
        model = load_model(path)
        if args.picture is not None:
            panels.append(colour_picture(model, image, window))
        options = model.method_options
        print(json.dumps({"model": "/".join(path.parts[-2:]),
                          "options": {k: getattr(options, k) for k in ("n_colors", "halo_weight", "color_choice",
                                                                       "semantic_head", "semantic_weight")},
                          "position_input": options.position_input,
                          **colour_usage(model, pairs),
                          **(training_choices(model, args.dataset, args.seed) if args.seed is not None else {})}))
    if args.picture is not None:
        Image.fromarray(np.concatenate(panels, axis=1)).save(args.picture)


if __name__ == "__main__":
    main()
