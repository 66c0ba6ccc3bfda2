"""Objects through z: a 2D model plane by plane, then stitched, scored in 3D.

    python benchmarks/stacks3d.py                 # measure, write benchmarks/results/stacks3d.json
    python benchmarks/stacks3d.py --report        # print the docs table from that file

1. The synthetic 3D nuclei of StarDist (``../shared/data/stardist3d_sample``: 31 x 61 x 57
   voxels, 52 nuclei): each of the 31 planes is segmented by a 2D model (a starter, never
   trained on this volume), the planes are stitched (:func:`napari_deepcolor.stacks.link_labels`)
   at several IoU thresholds, and the 3D labels are scored against the 3D ground truth with the
   DSB AP (3D IoU, 0.50:0.95) and F1@0.5. Two references: the mean 2D AP of the planes (the
   segmentation alone) and the ground truth's own planes stitched back (the stitching alone: what
   is lost when perfect 2D labels are stitched).
2. Stacks built from the 2D sets: BBBC039 nuclei images shifted by ``s`` pixels per plane (5
   planes), the share of annotated nuclei that keep one id in every plane.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile

from napari_deepcolor.checkpoint import load_model
from napari_deepcolor.inference import predict
from napari_deepcolor.metrics import average_precision, f1_score
from napari_deepcolor.stacks import link_labels

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULT = Path(__file__).parent / "results" / "stacks3d.json"
THRESHOLDS = (0.1, 0.25, 0.5, 0.75)


def unique_per_plane(labels: np.ndarray) -> np.ndarray:
    out, offset = np.zeros(labels.shape, np.int64), 0
    for z, plane in enumerate(labels):
        out[z] = np.where(plane > 0, plane.astype(np.int64) + offset, 0)
        offset += int(plane.max(initial=0))
    return out


def gt_planes(truth: np.ndarray) -> np.ndarray:
    """The ground truth cut into planes: every plane's objects with ids of their own."""
    return unique_per_plane(truth)


def scores(truth, labels) -> dict:
    ap = average_precision(truth, labels)
    return {"ap": round(ap["ap"], 4), "ap50": round(ap["ap_per_threshold"][0.5], 4),
            "f1": round(f1_score(truth, labels), 4), "objects": int(len(np.unique(labels)) - 1)}


def sample_3d(model_name: str, diameters) -> dict:
    folder = DATA / "stardist3d_sample"
    image, truth = tifffile.imread(folder / "img3d.tif"), tifffile.imread(folder / "mask3d.tif")
    model = load_model(model_name)
    out = {"model": model_name, "shape": list(image.shape), "gt_objects": int(len(np.unique(truth)) - 1),
           "stitched_ground_truth": {str(t): scores(truth, link_labels(gt_planes(truth), "ZYX",
                                                                       stitch_threshold=t).labels)
                                     for t in THRESHOLDS},
           "runs": []}
    for diameter in diameters:
        started = time.perf_counter()
        planes = predict(model, image, stack=True, device="cpu", object_diameter=diameter).decode().labels
        seconds = time.perf_counter() - started
        plane_ap = float(np.mean([average_precision(t, p)["ap"] for t, p in zip(truth, planes)
                                  if t.any() or p.any()]))
        run = {"object_diameter": diameter, "seconds": round(seconds, 1), "mean_plane_ap_2d": round(plane_ap, 4),
               "unstitched": scores(truth, planes), "stitched": {}}
        for threshold in THRESHOLDS:
            run["stitched"][str(threshold)] = scores(truth, link_labels(planes, "ZYX",
                                                                        stitch_threshold=threshold).labels)
        out["runs"].append(run)
        print(json.dumps(run), flush=True)
    return out


def kept_share(labels, truth, shift) -> tuple[int, int]:
    found = kept = 0
    for nucleus in np.unique(truth[truth > 0]):
        mask = truth == nucleus
        ids = []
        for z in range(labels.shape[0]):
            inside = labels[z][np.roll(mask, z * shift, axis=1)]
            ids.append(int(np.bincount(inside).argmax()))
        if ids[0]:
            found += 1
            kept += len(set(ids)) == 1
    return kept, found


def shifted_stacks(model_name: str, images: int, shifts) -> dict:
    folder = DATA / "bbbc039"
    names = sorted(p.name for p in (folder / "images").glob("*.tif"))[:images]
    model, out = load_model(model_name), {}
    for shift in shifts:
        kept = found = 0
        for name in names:
            image, truth = tifffile.imread(folder / "images" / name), tifffile.imread(folder / "labels" / name)
            stack = np.stack([np.roll(image, z * shift, axis=1) for z in range(5)])
            planes = predict(model, stack, stack=True, device="cpu").decode().labels
            k, f = kept_share(link_labels(planes, "ZYX").labels, truth, shift)
            kept, found = kept + k, found + f
        out[str(shift)] = {"kept": kept, "found": found, "share": round(kept / found, 4), "images": len(names)}
        print(shift, out[str(shift)], flush=True)
    return out


def report(result: dict) -> str:
    s = result["sample_3d"]
    lines = [f"StarDist's synthetic 3D nuclei ({' x '.join(map(str, s['shape']))} voxels, {s['gt_objects']} nuclei), "
             f"'{s['model']}' starter (2D, trained on BBBC039) plane by plane, then stitched; 3D IoU.", "",
             "| object diameter | stitch threshold | 3D AP 0.5:0.95 | 3D AP50 | 3D F1@0.5 | objects | mean 2D AP of the planes |",
             "|---|---|---|---|---|---|---|"]
    for run in s["runs"]:
        d = "model's own" if run["object_diameter"] is None else f"{run['object_diameter']:g} px"
        u = run["unstitched"]
        lines.append(f"| {d} | none (planes apart) | {u['ap']:.3f} | {u['ap50']:.3f} | {u['f1']:.3f} | "
                     f"{u['objects']} | {run['mean_plane_ap_2d']:.3f} |")
        for t, v in run["stitched"].items():
            lines.append(f"| {d} | {float(t):g} | {v['ap']:.3f} | {v['ap50']:.3f} | {v['f1']:.3f} | {v['objects']} | |")
    lines += ["", "The ground truth's own planes, stitched back (what stitching alone loses):", "",
              "| stitch threshold | 3D AP 0.5:0.95 | 3D AP50 | objects |", "|---|---|---|---|"]
    for t, v in s["stitched_ground_truth"].items():
        lines.append(f"| {float(t):g} | {v['ap']:.3f} | {v['ap50']:.3f} | {v['objects']} |")
    if "shifted" in result:
        lines += ["", "BBBC039 images made into 5-plane stacks, shifted by s px per plane ('nuclei' starter, "
                  "default stitch threshold): annotated nuclei that keep one id in every plane.", "",
                  "| shift per plane | nuclei kept / found | share |", "|---|---|---|"]
        for shift, v in result["shifted"].items():
            lines.append(f"| {shift} px | {v['kept']} / {v['found']} ({v['images']} images) | {v['share']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--diameters", type=float, nargs="*", default=[None, 12.0, 16.0])
    parser.add_argument("--images", type=int, default=5, help="BBBC039 images for the shifted stacks")
    parser.add_argument("--shifts", type=int, nargs="*", default=[1, 3, 6])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="print the table of the saved results")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(RESULT.read_text())))
        return
    import torch

    torch.set_num_threads(args.threads)
    result = {"sample_3d": sample_3d(args.model, args.diameters),
              "shifted": shifted_stacks(args.model, args.images, args.shifts)}
    RESULT.write_text(json.dumps(result, indent=2))
    print(report(result))


if __name__ == "__main__":
    main()
