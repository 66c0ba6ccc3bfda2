"""A picture of what each method makes of one held-out test image: image, ground truth, then each model.

    python benchmarks/qualitative.py --dataset usiigaci --methods coloring,boundary,semiconv,dcme,metric

Uses the models that benchmarks/run_accuracy_steps.sh keeps in $MODELS (default /tmp/deepcolor-models)
and their tuned decode. Objects get random colours (the same id, the same colour); outlines in white.
Writes docs/images/accuracy-<dataset>.png, or ``--out``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from napari_deepcolor.checkpoint import load_model
from napari_deepcolor.data import detect_layout, read_annotated_folder
from napari_deepcolor.data.io import read_labels, read_object_masks
from napari_deepcolor.inference import predict

from accuracy import DATASETS, held_out  # noqa: E402  (run from benchmarks/ or the repository root)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


def grey(image: np.ndarray) -> np.ndarray:
    """An (H, W[, C]) image as (H, W, 3) uint8, stretched between its 1st and 99.8th percentiles."""
    image = image.astype(np.float32)
    image = image.mean(axis=-1) if image.ndim == 3 else image
    lo, hi = np.percentile(image, [1, 99.8])
    g = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=-1)


def centre_window(height: int, width: int, crop: int) -> tuple[slice, slice]:
    """The (rows, columns) of the centred square crop of side ``crop`` (or the image's shorter side)."""
    side = min(crop, height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    return slice(y0, y0 + side), slice(x0, x0 + side)


def overlay(background: np.ndarray, labels: np.ndarray, seed: int = 1) -> np.ndarray:
    """Labels (H, W) or per-object masks (K, H, W) in random colours over a dimmed image, outlines white."""
    masks = labels if labels.ndim == 3 else None
    flat = masks.argmax(0) + masks.any(0) if masks is not None else labels  # overlaps: first object shows
    flat = flat.astype(np.int64)
    colours = np.random.default_rng(seed).integers(60, 256, (int(flat.max()) + 1, 3)).astype(np.uint8)
    out = (background * 0.45).astype(np.uint8)
    inside = flat > 0
    out[inside] = (0.35 * background[inside] + 0.65 * colours[flat[inside]]).astype(np.uint8)
    edges = (ndi.grey_dilation(flat, size=3) != ndi.grey_erosion(flat, size=3)) & (ndi.grey_dilation(flat, size=3) > 0)
    out[edges] = 255
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--methods", default="coloring,boundary,semiconv,dcme,metric")
    parser.add_argument("--index", type=int, default=0, help="which held-out test image (in name order)")
    parser.add_argument("--crop", type=int, default=384, help="side of the square crop shown, from the centre")
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("MODELS", "/tmp/deepcolor-models")))
    parser.add_argument("--out", type=Path, default=None, help="the PNG to write (default: docs/images/accuracy-<dataset>.png)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    images, labels = DATASETS[args.dataset]
    pair = held_out(detect_layout(images, labels).pairs)[args.index]
    sample = next(s for s in read_annotated_folder(images, labels) if s.name == pair.name)
    truth = read_labels(pair.labels) if pair.labels is not None else read_object_masks(pair.object_masks)
    window = centre_window(*sample.image.shape[:2], args.crop)
    side = window[0].stop - window[0].start
    base = grey(sample.image[window])

    panels = [("image", base), ("ground truth", overlay(base, truth[(...,) + window]))]
    for method in args.methods.split(","):
        model = load_model(args.models / f"{args.dataset}_{method}.safetensors")
        instances = predict(model, sample.image, stack=False).decode()
        panels.append((f"{method}: {instances.count} objects", overlay(base, instances.labels[window])))

    gap, title = 6, 22
    canvas = Image.new("RGB", (len(panels) * (side + gap) - gap, side + title), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (name, panel) in enumerate(panels):
        canvas.paste(Image.fromarray(panel), (i * (side + gap), title))
        draw.text((i * (side + gap) + 4, 4), name, fill="black")
    out = args.out or DOCS / f"accuracy-{args.dataset}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)
    print(f"{pair.name}: wrote {out}")


if __name__ == "__main__":
    main()
