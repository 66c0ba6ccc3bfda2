"""Which nuclei run should be the starter: each candidate on its own test split and on nuclei unlike it (session 17).

    python benchmarks/probes/nuclei_candidates.py RUN.json:MODEL.safetensors [...]

A candidate is a ``benchmarks/accuracy.py`` result (its BBBC039 validation and test scores) and the model it
saved. Beside those it is scored, as ``predict`` would segment, on the two sets of nuclei in ../shared/data
that no nuclei run trained on: the DSB2018 image (another lab and microscope), each half on its own (the
demo fine-tunes on the left half and scores the right), and the 31 planes of the StarDist synthetic 3D
volume, each plane a 2D image, segmented told the nuclei's diameter there (they are a third of BBBC039's; mean
AP over the planes that hold nuclei). Prints a markdown table and
writes benchmarks/results/nuclei_candidates.json.
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
from napari_deepcolor.checkpoint import load_model  # noqa: E402
from napari_deepcolor.data.io import read_image, read_labels  # noqa: E402
from napari_deepcolor.metrics import evaluate  # noqa: E402
from napari_deepcolor.scale import object_diameter  # noqa: E402
from napari_deepcolor.segment import segment  # noqa: E402

RESULT = ROOT / "results" / "nuclei_candidates.json"


def ap(truth, image, model, diameter=None) -> float:
    labels = segment(model, image, stack=False, device="cpu", object_diameter=diameter).labels
    return round(float(evaluate(truth, labels)["ap"]), 4)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidates", nargs="+", metavar="RESULT.json:MODEL.safetensors")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    dsb, dsb_truth = read_image(DATA / "dsb2018_sample" / "img2d.tif"), read_labels(DATA / "dsb2018_sample" / "mask2d.tif")
    half = dsb.shape[1] // 2
    volume = read_image(DATA / "stardist3d_sample" / "img3d.tif")
    volume_truth = read_labels(DATA / "stardist3d_sample" / "mask3d.tif")
    planes = [z for z in range(volume.shape[0]) if volume_truth[z].any()]
    diameter = object_diameter([volume_truth[z] for z in planes])
    rows = []
    for candidate in args.candidates:
        result_path, model_path = candidate.split(":")
        result, model = json.loads(Path(result_path).read_text()), load_model(model_path)
        rows.append({"run": Path(result_path).name, "steps": result["iterations"], "seed": result["seed"],
                     "intensity_augmentation": result.get("intensity_augmentation"),
                     "validation_ap": round(result["validation"]["ap"], 4), "test_ap": round(result["test_mean"]["ap"], 4),
                     "dsb2018_left_ap": ap(dsb_truth[:, :half], dsb[:, :half], model),
                     "dsb2018_right_ap": ap(dsb_truth[:, half:], dsb[:, half:], model),
                     "stardist3d_planes_ap": round(float(np.mean([ap(volume_truth[z], volume[z], model, diameter)
                                                                  for z in planes])), 4)})
        print(rows[-1], flush=True)
    print("| run | steps | seed | BBBC039 validation AP | BBBC039 test AP | DSB2018 left | DSB2018 right | "
          "StarDist 3D planes |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['steps']} | {r['seed']} | {r['validation_ap']:.3f} | {r['test_ap']:.3f} | "
              f"{r['dsb2018_left_ap']:.3f} | {r['dsb2018_right_ap']:.3f} | {r['stardist3d_planes_ap']:.3f} |")
    RESULT.write_text(json.dumps({"stardist3d_planes": len(planes), "stardist3d_diameter": round(diameter, 1),
                                  "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
