"""Where the rods' outlines differ from their annotation: length or width, ours against Cellpose.

    python benchmarks/probes/rod_outlines.py --model M.safetensors --cellpose DIR [--model ... --cellpose ...] \
        [--picture out.png] [--out result.json]

For every test image of accuracy.py's ecoli_synth split, our model's labels (stored decode) and a Cellpose
run's saved labels (``DIR/<name>.tif``, written by cellpose_peer.py) are matched to the annotation at IoU > 0.5;
over the matched rods: mean IoU, median ratio of predicted to annotated area, major-axis length and
minor-axis width (regionprops' moment-based axes), so an outline that is off at the tips shows in the
length and one that is off along the sides in the width; and how many matches fall short of IoU 0.95, the
last threshold of AP 0.5:0.95. ``--picture``: the first test image's most crowded corner, ours (the first
``--model``) left and Cellpose (the first ``--cellpose``) right.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile
import torch
from skimage.measure import regionprops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import accuracy  # noqa: E402
from napari_deepcolor.checkpoint import load_model  # noqa: E402
from napari_deepcolor.inference import predict  # noqa: E402
from napari_deepcolor.metrics import evaluate, iou_matrix, summarize  # noqa: E402
from napari_deepcolor.metrics.instances import _matched_pairs  # noqa: E402


def axes(labels: np.ndarray) -> dict[int, tuple[float, float, float]]:
    return {r.label: (r.area, r.axis_major_length, r.axis_minor_length) for r in regionprops(labels)}


def shape_errors(truths, predictions) -> dict:
    ious, area, length, width, rows = [], [], [], [], []
    for truth, labels in zip(truths, predictions):
        rows.append(evaluate(truth, labels))
        iou = iou_matrix(truth, labels)
        t_ids = np.unique(truth[truth > 0])
        p_ids = np.unique(labels[labels > 0])
        r, c = _matched_pairs(iou, 0.5)
        ta, pa = axes(truth), axes(labels)
        for i, j in zip(r, c):
            t, p = ta[t_ids[i]], pa[p_ids[j]]
            ious.append(iou[i, j])
            area.append(p[0] / t[0])
            length.append(p[1] / t[1])
            width.append(p[2] / max(t[2], 1e-6))
    s = summarize(rows)
    return {"ap": round(s["ap"], 4), "f1": round(s["f1"], 4), "matched": len(ious),
            "mean_iou": round(float(np.mean(ious)), 4), "share_iou_below_0.95": round(float(np.mean(np.array(ious) < 0.95)), 4),
            "iou_percentiles_5_25_50_75": [round(float(q), 4) for q in np.percentile(ious, [5, 25, 50, 75])], "median_area_ratio": round(float(np.median(area)), 4),
            "median_length_ratio": round(float(np.median(length)), 4),
            "median_width_ratio": round(float(np.median(width)), 4),
            "width_ratio_iqr": [round(float(q), 4) for q in np.percentile(width, [25, 75])],
            "length_ratio_iqr": [round(float(q), 4) for q in np.percentile(length, [25, 75])]}


def picture(image, truth, ours, cellpose, path: Path, side: int = 112, zoom: int = 4) -> None:
    """Ours and Cellpose side by side on the most crowded ``side`` px square of the image, magnified:
    annotation outlines green, prediction magenta, both white."""
    from PIL import Image
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    image = image if image.ndim == 2 else image[..., 0]
    crowd = ndi.uniform_filter((truth > 0).astype(np.float32), side)
    y, x = np.unravel_index(np.argmax(crowd), crowd.shape)
    y0, x0 = (int(np.clip(c - side // 2, 0, n - side)) for c, n in zip((y, x), image.shape))
    window = (slice(y0, y0 + side), slice(x0, x0 + side))
    grey = image[window].astype(np.float32)
    grey = (grey - grey.min()) / (np.ptp(grey) + 1e-9)
    panels = []
    for labels in (ours, cellpose):
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        annotated, predicted = (find_boundaries(l[window], mode="inner") for l in (truth, labels))
        rgb[annotated], rgb[predicted], rgb[annotated & predicted] = (0, 1, 0), (1, 0, 1), (1, 1, 1)
        panels += [rgb, np.ones((side, 4, 3))]
    both = (np.concatenate(panels[:-1], axis=1) * 255).astype(np.uint8)
    Image.fromarray(both).resize((both.shape[1] * zoom, both.shape[0] * zoom), Image.NEAREST).save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", type=Path, required=True)
    parser.add_argument("--cellpose", action="append", type=Path, default=[])
    parser.add_argument("--dataset", default="ecoli_synth")
    parser.add_argument("--picture", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = accuracy.split(args.dataset)
    truths = [accuracy.ground_truth(pair) for pair in data.test_pairs]
    result = {}
    ours_first = None
    for path in args.model:
        model = load_model(path)
        labels = [predict(model, data.test[p.name].image, stack=False, device="cpu").decode().labels
                  for p in data.test_pairs]
        ours_first = ours_first if ours_first is not None else labels
        result[f"ours {path.stem}"] = shape_errors(truths, labels)
        print(path.stem, result[f"ours {path.stem}"], flush=True)
    cp_first = None
    for folder in args.cellpose:
        labels = [tifffile.imread(folder / f"{p.name}.tif") for p in data.test_pairs]
        cp_first = cp_first if cp_first is not None else labels
        result[f"cellpose {folder.parent.name}"] = shape_errors(truths, labels)
        print(folder.parent.name, result[f"cellpose {folder.parent.name}"], flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if args.picture and cp_first is not None:
        picture(data.test[data.test_pairs[0].name].image, truths[0], ours_first[0], cp_first[0], args.picture)


if __name__ == "__main__":
    main()
