"""Where a 3-class model's outlines go: matched objects' size against their annotation, per decode variant.

    python benchmarks/outline_bias.py --dataset bbbc039 --model nuclei
    python benchmarks/outline_bias.py --dataset usiigaci --model WORK/boundary.safetensors --out result.json

The net runs once per test image (accuracy.py's split); each variant only decodes its cached output:

- ``stored``: the model's stored decode parameters (foreground ``1 - p_background > 0.5``);
- ``fg=T``: the same with ``foreground_threshold`` T;
- ``unweighted``: the probabilities with the boundary class's loss weight taken back out before the
  decode (p_c proportional to q_c / w_c, the prior correction of a class-weighted cross-entropy, whose
  minimiser is q_c proportional to w_c p_c); the stored thresholds.

For each: AP 0.5:0.95, F1@0.5, and over the objects matched at IoU > 0.5 the median of predicted area /
annotated area and the mean IoU of the matches: a median above 1 means outlines drawn outside the
annotation, which costs AP at the high IoU thresholds while the count (F1) stays.

    python benchmarks/outline_bias.py --report [--write]

prints (and puts between the outline-table markers of docs/benchmarks.md) the table of the result files
``benchmarks/results/ab/outline_<dataset>_<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402  (the split and the ground truth every benchmark here uses)
from napari_deepcolor.checkpoint import load_model, model_file  # noqa: E402
from napari_deepcolor.inference import Prediction, predict  # noqa: E402
from napari_deepcolor.methods.boundary import BACKGROUND, BOUNDARY, INTERIOR  # noqa: E402
from napari_deepcolor.metrics import evaluate, iou_matrix, summarize  # noqa: E402
from napari_deepcolor.metrics.instances import _matched_pairs  # noqa: E402

FOREGROUND_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)


def unweighted(output: np.ndarray, boundary_weight: float) -> np.ndarray:
    """(3, H, W) probabilities of a net trained with the boundary class weighted ``boundary_weight``,
    that weight taken back out: p_c = (q_c / w_c) / sum_k (q_k / w_k)."""
    corrected = output.copy()
    corrected[BOUNDARY] /= boundary_weight
    return corrected / corrected[[BACKGROUND, INTERIOR, BOUNDARY]].sum(axis=0, keepdims=True)


def matched_sizes(truth: np.ndarray, labels: np.ndarray) -> tuple[list[float], list[float]]:
    """(predicted / annotated area, IoU) of each pair matched at IoU > 0.5."""
    iou = iou_matrix(truth, labels)
    rows, cols = _matched_pairs(iou, 0.5)
    if truth.ndim == 3:
        gt_areas = truth.reshape(truth.shape[0], -1).astype(bool).sum(axis=1)
    else:
        gt_areas = np.bincount(truth.ravel().astype(np.int64))[1:]
        gt_areas = gt_areas[gt_areas > 0]
    pred_areas = np.bincount(labels.ravel().astype(np.int64))[1:]
    pred_areas = pred_areas[pred_areas > 0]
    return list(pred_areas[cols] / gt_areas[rows]), list(iou[rows, cols])


def score(predictions, truths, **parameters) -> dict:
    rows, ratios, ious = [], [], []
    for prediction, truth in zip(predictions, truths):
        labels = prediction.decode(**parameters).labels
        rows.append(evaluate(truth, labels))
        r, i = matched_sizes(truth, labels)
        ratios += r
        ious += i
    summary = summarize(rows)
    return {"ap": round(summary["ap"], 4), "f1": round(summary["f1"], 4),
            "median_area_ratio": round(float(np.median(ratios)), 4) if ratios else None,
            "mean_matched_iou": round(float(np.mean(ious)), 4) if ious else None, "matched": len(ratios)}


def report(folder: Path = accuracy.RESULTS / "ab") -> str:
    """The markdown table of every ``outline_*.json`` in ``folder``: one row per model and variant."""
    lines = ["| dataset | model | decode | AP 0.5:0.95 | F1@0.5 | median area / annotated | mean IoU of matches |",
             "|---" * 7 + "|"]
    for path in sorted(folder.glob("outline_*.json")):
        result = json.loads(path.read_text())
        for name, v in result["variants"].items():
            lines.append(f"| {result['dataset']} | {result['model']} | {name} | {v['ap']:.3f} | {v['f1']:.3f} | "
                         f"{v['median_area_ratio']:.3f} | {v['mean_matched_iou']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    if argv is None and "--report" in sys.argv[1:]:
        from docs_table import write_between

        text = report()
        print(text, end="")
        if "--write" in sys.argv[1:]:
            page = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
            write_between(page, "<!-- outline-table", "<!-- /outline-table -->", text)
        return {}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=accuracy.DATASETS, required=True)
    parser.add_argument("--model", required=True, help="a 3-class (boundary) model file or starter name")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(model_file(args.model))
    if model.method_name != "boundary":
        raise SystemExit(f"{args.model} is a '{model.method_name}' model; this probe reads 3-class outputs")
    data = accuracy.split(args.dataset)
    truths = [accuracy.ground_truth(pair) for pair in data.test_pairs]
    predictions = [predict(model, data.test[pair.name].image, stack=False, device="cpu") for pair in data.test_pairs]
    variants = {"stored": score(predictions, truths)}
    for threshold in FOREGROUND_THRESHOLDS:
        variants[f"fg={threshold}"] = score(predictions, truths, foreground_threshold=threshold)
    weight = model.method_options.boundary_weight
    corrected = [Prediction(model, unweighted(p.output, weight)) for p in predictions]
    variants["unweighted"] = score(corrected, truths)
    name = Path(args.model).name if Path(args.model).suffix else args.model  # a file's name, no folder of this machine
    result = {"dataset": args.dataset, "model": name, "decode_defaults": model.decode_defaults,
              "boundary_weight": weight, "n_test_images": len(truths), "variants": variants}
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
