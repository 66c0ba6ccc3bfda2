"""Do the colours help? A coloring model with a semantic head, decoded with and without the colour split.

    python benchmarks/probes/colour_split.py --dataset usiigaci --model m.safetensors

The fusion decode (sec. 4.3) splits each component of the semantic interior by its pixels' maximal
colour. Decoding the same cached output without that split is the 3-class baseline's decode of the
head's three channels. Both use the model's tuned size and interior thresholds, on the held-out test
images of benchmarks/accuracy.py; the gap between the rows is what the colours add (or cost). Also
prints the objects split and merged (benchmarks/probes/split_merge.py's rule) per decode.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: accuracy.py and friends
from accuracy import DATASETS, ground_truth, held_out
from napari_deepcolor.checkpoint import load_model
from napari_deepcolor.data import detect_layout, read_image
from napari_deepcolor.inference import predict
from napari_deepcolor.methods import get_method
from napari_deepcolor.metrics import evaluate, summarize
from split_merge import split_and_merged


def absorbed_decode(output, n_colors: int, size_threshold: float, interior_threshold: float) -> np.ndarray:
    """The fusion decode, but a colour piece under the size threshold joins the largest piece of its
    interior component instead of being dropped (a candidate departure: such a piece is colour noise
    inside one object, not an object)."""
    from skimage.measure import label as connected_label

    from napari_deepcolor.methods.coloring import _color_components
    from napari_deepcolor.methods.components import relabel_by_lookup

    color, pieces, sizes, _, _ = _color_components(output, n_colors, interior_threshold)
    from napari_deepcolor.methods.boundary import INTERIOR

    interior = output[n_colors + INTERIOR] > interior_threshold
    cores = connected_label(interior, connectivity=1)
    n = sizes.size - 1
    core_of = np.zeros(n + 1, np.int64)
    core_of[pieces[interior]] = cores[interior]  # each piece grew from the interior of one core
    group = np.arange(n + 1)
    order = np.argsort(-sizes[1:], kind="stable") + 1  # largest piece first: it owns its core
    owner = {}
    for piece in order:
        owner.setdefault(core_of[piece], piece)
        if sizes[piece] < size_threshold:
            group[piece] = owner[core_of[piece]]
    group_sizes = np.bincount(group, weights=sizes, minlength=n + 1)
    keep = group_sizes[group] >= max(size_threshold, 1)
    keep[0] = False
    return relabel_by_lookup(pieces, keep, group)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = load_model(args.model)
    if not getattr(model.method_options, "semantic_head", False):
        raise SystemExit(f"{args.model} has no semantic head: nothing to compare")
    n_colors = model.method_options.n_colors
    parameters = model.decode_parameters()
    boundary = get_method("boundary")
    rows = {"fused (colour split)": [], "fused, small pieces absorbed": [], "head only (no split)": []}
    counts = {name: [0, 0] for name in rows}
    for pair in held_out(detect_layout(*DATASETS[args.dataset]).pairs):
        truth = ground_truth(pair)
        prediction = predict(model, read_image(pair.image), stack=False, device="cpu")
        decoded = {"fused (colour split)": prediction.decode().labels,
                   "fused, small pieces absorbed": absorbed_decode(
                       prediction.output, n_colors, parameters["size_threshold"], parameters["interior_threshold"]),
                   "head only (no split)": boundary.decode(
                       prediction.output[n_colors:], size_threshold=parameters["size_threshold"],
                       interior_threshold=parameters["interior_threshold"]).labels}
        for name, labels in decoded.items():
            rows[name].append(evaluate(truth, labels))
            flat = truth if truth.ndim == 2 else (truth.argmax(0) + 1) * truth.any(0)  # BBBC010: first mask wins
            split, merged = split_and_merged(flat, labels)
            counts[name][0] += split
            counts[name][1] += merged
    for name, scores in rows.items():
        summary = summarize(scores)
        print(json.dumps({"dataset": args.dataset, "model": args.model.name, "decode": name,
                          **{k: round(float(summary[k]), 3) for k in ("ap", "ap50", "f1", "sbd")},
                          "split": counts[name][0], "merged": counts[name][1],
                          "n_gt": int(sum(r["n_gt"] for r in scores)),
                          "n_pred": int(sum(r["n_pred"] for r in scores)), "decode_parameters": parameters}))


if __name__ == "__main__":
    main()
