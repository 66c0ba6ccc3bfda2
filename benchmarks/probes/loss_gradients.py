"""How much each term of coloring's loss pulls on the shared layers of a trained model.

    python benchmarks/probes/loss_gradients.py --dataset ecoli_synth --model coloring.safetensors

For a coloring model with a semantic head, on ``--batches`` batches of 4 training patches (accuracy.py's
split, at the model's scale): the colour loss (eqs. 2-3) and the semantic head's cross-entropy, the norms
of their gradients on every layer but the last 1x1 convolution, the ratio colour / semantic and the
cosine between the two gradients; the same for a freshly initialised net of the same shape. Medians over
the batches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: accuracy.py and friends
import accuracy  # noqa: E402  (run from benchmarks/ or with it on the path)
from napari_deepcolor.checkpoint import load_model, new_model
from napari_deepcolor.data.sampling import PatchSampler
from napari_deepcolor.methods.boundary import three_class_loss
from napari_deepcolor.methods.coloring import SEMANTIC_BOUNDARY_WEIGHT, coloring_loss
from napari_deepcolor.scale import rescale_sample


def term_gradients(model, patches) -> tuple[float, float, float, float, float]:
    """(colour loss, semantic loss, |grad colour|, |grad semantic|, cosine) on the shared layers."""
    method, options = model.method, model.method_options
    net = model.net.train()
    shared = [p for p in net.parameters() if p.requires_grad][:-2]  # all but the output convolution
    images = torch.from_numpy(np.stack([p.image for p in patches]))
    t = method.collate([method.prepare_targets(p.labels, p.ignore, options) for p in patches])
    raw = net(images)
    colour = coloring_loss(raw[:, :options.n_colors], t["labels"], t["ignore"], t["halo_pixels"],
                           t["halo_objects"], halo_weight=options.halo_weight)
    semantic = three_class_loss(raw[:, options.n_colors:], t["semantic"], t["ignore"], SEMANTIC_BOUNDARY_WEIGHT)
    g_colour = torch.autograd.grad(colour, shared, retain_graph=True)
    g_semantic = torch.autograd.grad(semantic, shared)
    n_colour = torch.sqrt(sum((g ** 2).sum() for g in g_colour))
    n_semantic = torch.sqrt(sum((g ** 2).sum() for g in g_semantic))
    cosine = sum((a * b).sum() for a, b in zip(g_colour, g_semantic)) / (n_colour * n_semantic)
    return tuple(float(x.detach()) for x in (colour, semantic, n_colour, n_semantic, cosine))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=accuracy.DATASETS, required=True)
    parser.add_argument("--model", type=Path, required=True, help="a coloring model with a semantic head")
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    trained = load_model(args.model, device="cpu")
    if trained.method_name != "coloring" or not trained.method_options.semantic_head:
        parser.error(f"{args.model} is not a coloring model with a semantic head")
    torch.manual_seed(0)
    fresh = new_model("coloring", vars(trained.method_options), {"width": trained.net_config.width},
                      trained.net_config.in_channels)
    samples = [rescale_sample(s, trained.scale_factor()) for s in accuracy.split(args.dataset).train]
    patches = iter(PatchSampler(samples, patch_size=256, seed=1))
    for name, model in (("random initialisation", fresh), ("trained", trained)):
        rows = np.array([term_gradients(model, [next(patches) for _ in range(4)]) for _ in range(args.batches)])
        c, s, nc, ns, _ = np.median(rows, axis=0)
        print(f"{name}: colour loss {c:.3f}, semantic {s:.3f}; gradient norms colour {nc:.3f}, semantic "
              f"{ns:.3f}, ratio {np.median(rows[:, 2] / rows[:, 3]):.2f}, cosine {np.median(rows[:, 4]):.3f}")


if __name__ == "__main__":
    main()
