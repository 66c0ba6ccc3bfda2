"""Why a method loses: how many objects it splits and how many it merges, on the held-out test images.

    python benchmarks/probes/split_merge.py --dataset usiigaci --methods boundary,coloring,semiconv

A ground-truth object is *split* when two predictions each cover at least 20 % of it; a prediction
*merges* when it covers at least 20 % of each of two ground-truth objects. Uses the models kept by
benchmarks/run_accuracy_steps.sh in $MODELS (default /tmp/deepcolor-models) with their tuned decode.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from napari_deepcolor.checkpoint import load_model
from napari_deepcolor.data import detect_layout, read_annotated_folder
from napari_deepcolor.inference import predict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: accuracy.py and friends
from accuracy import DATASETS, held_out  # noqa: E402  (run from benchmarks/ or with it on the path)

SHARE = 0.2


def split_and_merged(truth: np.ndarray, prediction: np.ndarray) -> tuple[int, int]:
    """(ground-truth objects split, predictions merging objects) of two label images."""
    truth, prediction = truth.astype(np.int64), prediction.astype(np.int64)
    n_truth, n_pred = truth.max() + 1, prediction.max() + 1
    overlap = np.bincount((truth * n_pred + prediction).ravel(), minlength=n_truth * n_pred).reshape(n_truth, n_pred)
    of_truth = (overlap / np.maximum(overlap.sum(1, keepdims=True), 1))[1:, 1:]  # shares of whole areas
    of_prediction = (overlap / np.maximum(overlap.sum(0, keepdims=True), 1))[1:, 1:]
    return int(((of_truth >= SHARE).sum(1) >= 2).sum()), int(((of_prediction >= SHARE).sum(0) >= 2).sum())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--methods", default="boundary,coloring,semiconv,dcme,metric")
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("MODELS", "/tmp/deepcolor-models")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels = DATASETS[args.dataset]
    test = {p.name for p in held_out(detect_layout(images, labels).pairs)}
    samples = [s for s in read_annotated_folder(images, labels) if s.name in test]
    print("| method | objects | predictions | objects split | predictions merging objects |")
    print("|---|---|---|---|---|")
    for method in args.methods.split(","):
        model = load_model(args.models / f"{args.dataset}_{method}.safetensors")
        counts = np.zeros(4, int)
        for sample in samples:
            prediction = predict(model, sample.image, stack=False).decode().labels
            split, merged = split_and_merged(sample.labels, prediction)
            counts += [len(np.unique(sample.labels[sample.labels > 0])), int(prediction.max()), split, merged]
        print(f"| {method} | " + " | ".join(map(str, counts)) + " |", flush=True)


if __name__ == "__main__":
    main()
