"""The synthetic experiment of Novotny et al. (fig. 3): identical dots on a regular grid.

Trains the "semiconv" method twice on the same image of identical disks, once
semi-convolutional (Psi = Phi + u) and once plain convolutional (Psi = Phi,
``coordinates=False``), and reports for each the final training loss, the
number of instances decoded and the AP against the dots (each at its best
seed and mask thresholds on a small grid). The convolutional
embedding gives identical dots identical embeddings (away from the borders,
where zero padding leaks position), so its kernel masks merge dots; the
semi-convolutional one separates them.

    python benchmarks/probes/semiconv_dots.py [--iterations 300] [--out docs/benchmarks/semiconv_dots.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_deepcolor.data import from_arrays
from napari_deepcolor.inference import predict
from napari_deepcolor.methods import get_method
from napari_deepcolor.metrics import evaluate
from napari_deepcolor.training import Finished, Step, Training, TrainingConfig


def dots(size: int = 96, spacing: int = 12, radius: int = 3) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    k = 0
    for cy in range(spacing // 2, size, spacing):
        for cx in range(spacing // 2, size, spacing):
            k += 1
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = k
    return labels


def run(coordinates: bool, labels: np.ndarray, iterations: int) -> dict:
    image = (labels > 0).astype(np.float32)
    config = TrainingConfig(method="semiconv", method_options={"coordinates": coordinates}, iterations=iterations,
                            patch_size=64, batch_size=4, net={"depth": 2, "width": 16}, validation_fraction=0,
                            augment=False, learning_rate=3e-3)
    t0 = time.perf_counter()
    losses, model = [], None
    for event in Training(config, from_arrays(image, labels)).run():
        if isinstance(event, Step):
            losses.append(event.loss)
        elif isinstance(event, Finished):
            model = event.model
    prediction = predict(model, image, stack=False)
    method = get_method("semiconv")
    grid = [{"seed_threshold": s, "mask_threshold": m} for s in (0.0, 0.3, 0.5) for m in (0.3, 0.5, 0.7, 0.9)]
    scored = [(evaluate(labels, method.decode(prediction.output, options=model.method_options, **p).labels)["ap"], i)
              for i, p in enumerate(grid)]
    ap, best = max(scored)
    instances = method.decode(prediction.output, options=model.method_options, **grid[best])
    return {"coordinates": coordinates, "final_loss": float(np.mean(losses[-20:])), "instances": instances.count,
            "objects": int(labels.max()), "ap": round(ap, 3), "decode": grid[best],
            "train_seconds": round(time.perf_counter() - t0, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    labels = dots()
    rows = [run(flag, labels, args.iterations) for flag in (True, False)]
    print(f"{'embedding':<22}{'loss':>8}{'found':>7}{'dots':>6}{'AP':>7}")
    for row in rows:
        name = "semi-convolutional" if row["coordinates"] else "convolutional"
        print(f"{name:<22}{row['final_loss']:>8.3f}{row['instances']:>7}{row['objects']:>6}{row['ap']:>7.3f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
