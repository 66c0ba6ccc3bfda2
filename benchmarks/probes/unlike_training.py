"""The nuclei starter on nuclei unlike its training set, and what a minute of fine-tuning does there (session 16).

    python benchmarks/probes/unlike_training.py [--minutes 1] [--seeds 0 1 2]
    python benchmarks/probes/unlike_training.py --score MODEL [MODEL ...]   # only score models on the right half

The DSB2018 sample of ../shared/data (one 512 x 512 fluorescence image from the 2018 Data Science Bowl,
125 nuclei, another lab and microscope than BBBC039) is cut into a left half, the user's annotated image,
and a right half, scored. Rows: Otsu + watershed; the starter as shipped; the starter told the objects'
diameter (as a user may); the starter fine-tuned on the left half as ``train --fine-tune`` does
(validation share, decode tuning, the keep-the-starter guard), one row per seed; and the same from
scratch. Writes benchmarks/results/unlike_training_dsb2018.json.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accuracy import DATA  # noqa: E402
from fine_tune_curve import train_side  # noqa: E402
from napari_deepcolor.baseline import otsu_watershed  # noqa: E402
from napari_deepcolor.checkpoint import load_model  # noqa: E402
from napari_deepcolor.data import from_arrays  # noqa: E402
from napari_deepcolor.data.io import read_image, read_labels  # noqa: E402
from napari_deepcolor.metrics import evaluate  # noqa: E402
from napari_deepcolor.scale import object_diameter  # noqa: E402
from napari_deepcolor.segment import segment  # noqa: E402

RESULT = ROOT / "results" / "unlike_training_dsb2018.json"


def score(truth, labels) -> dict:
    scores = evaluate(truth, labels)
    return {k: round(float(scores[k]), 4) for k in ("ap", "f1", "sbd")} | {"n_pred": int(scores["n_pred"])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--score", nargs="+", metavar="MODEL", help="only score these models on the right half")
    parser.add_argument("--keep-fine-tune", action="store_true",
                        help="fine-tune only, keeping the new weights whatever the validation strip says (as train "
                             "--keep-fine-tune): what the guard's choice cost or saved")
    parser.add_argument("--fine-tune-rates", type=float, nargs="+", default=[None],
                        help="fine-tune at these learning rates (default: the package's, 1e-5), no scratch side")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    folder = DATA / "dsb2018_sample"
    image, truth = read_image(folder / "img2d.tif"), read_labels(folder / "mask2d.tif")
    half = image.shape[1] // 2
    if args.score:
        scores = {model: score(truth[:, half:], segment(load_model(model), image[:, half:], device="cpu").labels)
                  for model in args.score}
        print(json.dumps(scores, indent=1))
        return scores
    train_image, train_truth = image[:, :half], truth[:, :half]
    test_image, test_truth = image[:, half:], truth[:, half:]
    starter = load_model("nuclei")
    diameter = object_diameter([train_truth])
    rows = [{"name": "Otsu + watershed", **score(test_truth, otsu_watershed(test_image))},
            {"name": "starter as shipped", **score(test_truth, segment(starter, test_image, device="cpu").labels)},
            {"name": f"starter told the diameter ({diameter:.1f} px, from the left half)",
             **score(test_truth, segment(starter, test_image, device="cpu", object_diameter=diameter).labels)}]
    for row in rows:
        print(row, flush=True)
    data = from_arrays([train_image], [train_truth], names=["dsb2018_left_half"])
    rates = args.fine_tune_rates
    keep = args.keep_fine_tune
    sides = [("fine-tuned, kept" if keep else "fine-tuned", "nuclei", rate) for rate in rates] + \
        ([("from scratch", None, None)] if rates == [None] and not keep else [])
    for seed in args.seeds:
        for start, init_from, rate in sides:
            finished, seconds = train_side(data, args.minutes, seed, init_from, rate, keep_starter_unless_beaten=not keep)
            start += f" at {rate:g}" if rate else ""
            rows.append({"name": f"{start} {args.minutes:g} min, seed {seed}", "iterations": finished.iteration,
                         "train_seconds": seconds, "decode_parameters": finished.model.decode_parameters(),
                         "starter_or_fine_tune": finished.model.provenance.get("starter_or_fine_tune"),
                         **score(test_truth, segment(finished.model, test_image, device="cpu").labels)})
            print(rows[-1], flush=True)
    result = {"image": "dsb2018_sample/img2d.tif", "train": "left half", "test": "right half",
              "n_test_objects": int(len(np.unique(test_truth)) - 1), "minutes": args.minutes, "rows": rows}
    out = RESULT.with_name(f"{RESULT.stem}_kept.json") if keep else \
        RESULT if rates == [None] else RESULT.with_name(f"{RESULT.stem}_rates.json")
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
