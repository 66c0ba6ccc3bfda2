"""Accuracy with and without the instance CRF refinement, on one dataset of ../shared/data.

    python benchmarks/refine_crf.py --dataset bbbc039 --method coloring --model bbbc039_coloring.safetensors

The model is one saved by ``accuracy.py --model-out`` (same split: every 5th
image held out for testing, 15 % of the rest for validation). The CRF's
weights are fitted on the validation images with the net frozen (eq. 7 of
Arnab and Torr), then the held-out images are scored three ways: decoded
labels, refined with the default CRF parameters, refined with the fitted
ones. Reports Matching IoU, AP at IoU 0.5, 0.75 and 0.9, AP 0.5:0.95, and the
refinement's cost in CPU ms per megapixel (time.process_time: not inflated by
other work on a shared machine). Writes
benchmarks/results/refine_crf_<dataset>_<method>.json.

    python benchmarks/refine_crf.py --report

prints the table of docs/benchmarks.md from those files.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from accuracy import DATASETS, ground_truth, split
from napari_deepcolor.checkpoint import load_model
from napari_deepcolor.inference import predict, prepare_image
from napari_deepcolor.metrics import average_precision, matching_iou
from napari_deepcolor.refine import crf_foreground, crf_parameters, fit_model_crf
from napari_deepcolor.refine.crf import CrfParameters, refine_instances

RESULTS = Path(__file__).parent / "results"
THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))


def scores(truth, labels) -> dict:
    ap = average_precision(truth, labels, thresholds=THRESHOLDS)["ap_per_threshold"]
    return {"matching_iou": matching_iou(truth, labels), "ap50": ap[0.5], "ap75": ap[0.75], "ap90": ap[0.9],
            "ap": float(np.mean(list(ap.values())))}


VARIANTS = (("decoded", "decoded"), ("crf_default", "+ CRF, default weights"), ("crf_fitted", "+ CRF, fitted weights"))


def report() -> str:
    """The markdown table of every results/refine_crf_*.json: one row per dataset, method and variant."""
    lines = ["| dataset | method | steps | test images | labels | matching IoU | AP50 | AP75 | AP90 | AP 0.5:0.95 "
             "| CRF CPU ms/MP |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("refine_crf_*.json")):
        result = json.loads(path.read_text())
        for key, title in VARIANTS:
            m = result["test_mean"][key]
            cost = "" if key == "decoded" else f"{result['median_ms_per_megapixel']:.0f}"
            lines.append(f"| {result['dataset']} | {result['method']} | {result['model_iterations']} | "
                         f"{result['n_test_images']} | {title} | {m['matching_iou']:.3f} | {m['ap50']:.3f} | "
                         f"{m['ap75']:.3f} | {m['ap90']:.3f} | {m['ap']:.3f} | {cost} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", action="store_true", help="print the docs table from the result files")
    parser.add_argument("--dataset", choices=DATASETS)
    parser.add_argument("--method")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--fit-steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.report:
        print(report(), end="")
        return
    if not (args.dataset and args.method and args.model):
        parser.error("give --dataset, --method and --model (or --report)")
    torch.set_num_threads(args.threads)

    data = split(args.dataset)
    validation = data.validation

    model = load_model(args.model)
    if model.method_name != args.method:
        raise SystemExit(f"{args.model} is a '{model.method_name}' model, not '{args.method}'")
    t0 = time.process_time()
    fit_report = fit_model_crf(model, validation, device="cpu", steps=args.fit_steps)
    fit_seconds = time.process_time() - t0
    # in the test images' pixels (predict's default scale); the defaults are in net pixels, as stored ones
    fitted, default = crf_parameters(model), CrfParameters().rescaled(1 / model.scale_factor())

    rows, ms_per_mp = [], []
    for pair in data.test_pairs:
        sample = data.test[pair.name]
        prediction = predict(model, sample.image, stack=False, device="cpu")
        decoded = prediction.decode()
        q, image = crf_foreground(model, prediction.output), prepare_image(model, sample.image)
        truth = ground_truth(pair)
        t = time.process_time()
        refined = refine_instances(decoded, q, image, fitted)
        ms_per_mp.append((time.process_time() - t) * 1e3 / (q.size / 1e6))
        with_defaults = refine_instances(decoded, q, image, default)
        rows.append({"name": pair.name, "n_instances": decoded.count, "decoded": scores(truth, decoded.labels),
                     "crf_default": scores(truth, with_defaults.labels), "crf_fitted": scores(truth, refined.labels)})
    mean = {variant: {k: float(np.mean([r[variant][k] for r in rows])) for k in rows[0][variant]}
            for variant in ("decoded", "crf_default", "crf_fitted")}
    result = {"dataset": args.dataset, "method": args.method, "model": args.model.name,
              "model_iterations": model.provenance.get("iterations"), "n_validation_images": len(validation),
              "n_test_images": len(rows), "fit": {**fit_report, "seconds": round(fit_seconds, 1),
                                                  "steps": args.fit_steps}, "fitted_parameters": model.crf,
              "test_mean": mean, "median_ms_per_megapixel": float(np.median(ms_per_mp)), "per_image": rows,
              "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                         f"{args.threads} thread(s)"}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"refine_crf_{args.dataset}_{args.method}.json"
    out.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=1, default=float))


if __name__ == "__main__":
    main()
