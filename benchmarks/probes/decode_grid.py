"""Does the decode tuner's grid cut off the best thresholds? Saved 3-class models re-tuned three ways.

    python benchmarks/probes/decode_grid.py --out benchmarks/results/ab/decode_grid.json \
        bbbc039:WORK/models/bbbc039_boundary_cl_s0.safetensors:0 ...

Each model (``dataset:file:seed``, the seed of the run that trained it, which decides its validation
images) runs once on its validation and test images (accuracy.py's split); the decode is then tuned on the
validation images (``tuning.tune_predictions``, no refinement, no flips) with

- ``before``: the grid up to session 13, interior and foreground thresholds ending at 0.8;
- ``shipped``: the grid of today's code (:data:`~napari_deepcolor.methods.boundary.INTERIOR_TUNE_VALUES`,
  :data:`~napari_deepcolor.methods.boundary.FOREGROUND_TUNE_VALUES`);
- ``fine``: steps of 0.05 for the foreground threshold and 0.85 added to the interior's,

and each choice is scored on the test images (AP 0.5:0.95, F1@0.5).

    python benchmarks/probes/decode_grid.py --report [--write]

prints (and puts between the decode-grid-table markers of docs/benchmarks.md) the table of the result file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import accuracy  # noqa: E402
from napari_deepcolor.checkpoint import load_model  # noqa: E402
from napari_deepcolor.inference import predict  # noqa: E402
from napari_deepcolor.methods.boundary import BoundaryMethod  # noqa: E402
from napari_deepcolor.metrics import evaluate, summarize  # noqa: E402
from napari_deepcolor.training import TrainingConfig  # noqa: E402
from napari_deepcolor.tuning import tune_predictions  # noqa: E402

RESULT = accuracy.RESULTS / "ab" / "decode_grid.json"
GRIDS = {
    "before": {"interior_threshold": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8), "foreground_threshold": (0.5, 0.6, 0.7, 0.8)},
    "shipped": {},
    "fine": {"interior_threshold": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9),
             "foreground_threshold": (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)},
}


def with_grid(grid: dict) -> tuple:
    """The baseline's decode parameters with the tune values of ``grid`` (the shipped ones elsewhere)."""
    return tuple(dataclasses.replace(p, tune_values=grid.get(p.name, p.tune_values))
                 for p in BoundaryMethod.decode_parameters)


def report(path: Path = RESULT) -> str:
    """The markdown table of the result file: one row per model and grid."""
    lines = ["| dataset | model | grid | interior / foreground threshold chosen | validation AP | test AP 0.5:0.95 "
             "| test F1@0.5 |", "|---" * 7 + "|"]
    for row in json.loads(path.read_text()):
        chosen = row["parameters"]
        lines.append(f"| {row['dataset']} | {row['model']} | {row['grid']} | {chosen['interior_threshold']:g} / "
                     f"{chosen['foreground_threshold']:g} | {row['validation_ap']:.3f} | {row['test_ap']:.3f} | "
                     f"{row['test_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def main():
    if "--report" in sys.argv[1:]:
        from docs_table import write_between

        text = report()
        print(text, end="")
        if "--write" in sys.argv[1:]:
            page = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
            write_between(page, "<!-- decode-grid-table", "<!-- /decode-grid-table -->", text)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="dataset:model file:seed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    shipped, rows = BoundaryMethod.decode_parameters, []
    for spec in args.models:
        dataset, path, seed = spec.split(":")
        data = accuracy.split(dataset, TrainingConfig.validation_fraction, int(seed))
        model = load_model(path)
        validation = [predict(model, s.image, stack=False, device="cpu") for s in data.validation]
        test = [predict(model, data.test[p.name].image, stack=False, device="cpu") for p in data.test_pairs]
        truths = [accuracy.ground_truth(p) for p in data.test_pairs]
        for grid_name, grid in GRIDS.items():
            BoundaryMethod.decode_parameters = with_grid(grid)
            try:
                parameters, validation_ap = tune_predictions(validation, [s.labels for s in data.validation])
            finally:
                BoundaryMethod.decode_parameters = shipped
            score = summarize([evaluate(t, p.decode(**parameters).labels) for p, t in zip(test, truths)])
            rows.append({"dataset": dataset, "model": Path(path).stem, "seed": int(seed), "grid": grid_name,
                         "parameters": parameters, "validation_ap": round(validation_ap, 4),
                         "test_ap": round(score["ap"], 4), "test_f1": round(score["f1"], 4)})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
