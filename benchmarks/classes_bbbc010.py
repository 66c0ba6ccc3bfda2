"""Two-class worms: BBBC010's live and dead C. elegans, with classes against one class, same split and steps.

    python benchmarks/classes_bbbc010.py --iterations 250 --threads 1 --method boundary
    python benchmarks/classes_bbbc010.py --report      # the markdown table of docs/benchmarks.md from the JSONs

BBBC010 needs no new annotation for two classes: the wells of columns 01-12 are ampicillin-treated
positive controls (alive, curved) and columns 13-24 untreated negative controls (dead, rod-like), so
the column in each file name gives every worm of the image its class. :func:`write_bbbc010_classes`
writes that as a ``classes/`` folder (one ``WELL.csv`` of mask number and class per image, plus
``classes.json``) into a work folder, never into the data or the package.

Split as benchmarks/accuracy.py: pairs in name order, every 5th held out for testing. Both models
(``--method`` with the class head, and for coloring class-specific colours; the same method on one
class) train for the same steps on the same images; the test scores are AP and F1 of both, and per-class AP / F1 and the class
accuracy of matched worms for the class model (metrics.evaluate_classes, overlapping worms scored as
per-object masks). Writes benchmarks/results/classes_bbbc010_<method>.json and, with --picture, a
picture of a test image coloured by predicted class into docs/images/classes_bbbc010_<method>.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402  (benchmarks/accuracy.py: held_out, the split of every benchmark here)
from docs_table import write_between  # noqa: E402  (benchmarks/docs_table.py)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbbc010"
RESULTS = Path(__file__).parent / "results"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
CLASS_NAMES = ("alive", "dead")
_WELL = re.compile(r"^[A-P](?P<column>\d{2})$")


def well_class(well: str) -> str:
    """The class of a BBBC010 well from its column: 01-12 alive (ampicillin, positive control), 13-24 dead."""
    match = _WELL.match(well)
    if match is None:
        raise ValueError(f"{well!r} is not a BBBC010 well name like A01")
    return CLASS_NAMES[0] if int(match["column"]) <= 12 else CLASS_NAMES[1]


def write_bbbc010_classes(data: Path, folder: Path) -> Path:
    """Write ``folder/classes/`` for BBBC010: ``WELL.csv`` (label = mask number from 1 in name order, class)."""
    from napari_deepcolor.data import detect_layout

    out = Path(folder) / "classes"
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.json").write_text(json.dumps({str(k): n for k, n in enumerate(CLASS_NAMES, start=1)}))
    for pair in detect_layout(data).pairs:
        with open(out / f"{pair.name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "class"])
            writer.writerows([k, well_class(pair.name)] for k in range(1, len(pair.object_masks) + 1))
    return out


def _train(samples, method: str, iterations: int, seed: int, patch_size: int, batch_size: int):
    from napari_deepcolor.training import Finished, Training, TrainingConfig

    config = TrainingConfig(method=method, iterations=iterations, device="cpu",
                            patch_size=patch_size, batch_size=batch_size, validate_every=10**9, seed=seed)
    started = time.perf_counter()
    finished = [e for e in Training(config, samples).run() if isinstance(e, Finished)][0]
    return finished.model, time.perf_counter() - started


def _score(model, test, test_samples, with_classes: bool):
    from napari_deepcolor.data.io import read_object_masks
    from napari_deepcolor.inference import predict
    from napari_deepcolor.metrics import evaluate, evaluate_classes, pooled_class_accuracy, summarize

    rows, first = [], None
    for pair in test:
        sample = test_samples[pair.name]
        masks = read_object_masks(pair.object_masks)
        instances = predict(model, sample.image, stack=False, device="cpu").decode()
        row = {"name": pair.name, "class": well_class(pair.name), **evaluate(masks, instances.labels)}
        if with_classes:
            truth = np.full(masks.shape[0] + 1, CLASS_NAMES.index(well_class(pair.name)) + 1)
            row.update(evaluate_classes(masks, instances.labels, gt_classes=truth,
                                        pred_classes=np.r_[0, instances.classes], class_names=CLASS_NAMES))
            first = first or (sample, instances)
        rows.append(row)
    mean = summarize(rows)
    summary = {k: mean[k] for k in ("ap", "ap50", "f1", "sbd")}
    if with_classes:
        for name in CLASS_NAMES:  # per class over the images that hold that class (the others have none)
            own = [r for r in rows if r["class"] == name]
            summary[f"ap_{name}"] = float(np.mean([r[f"ap_{name}"] for r in own]))
            summary[f"f1_{name}"] = float(np.mean([r[f"f1_{name}"] for r in own]))
        summary["class_accuracy"] = pooled_class_accuracy(rows)
        summary["n_matched"] = sum(r["n_matched"] for r in rows)
    return summary, rows, first


def _picture(sample, instances, path: Path) -> None:
    """The image with each predicted worm's outline and fill in its class's colour (alive green, dead magenta)."""
    from PIL import Image
    from skimage.segmentation import find_boundaries

    grey = np.clip(sample.image[..., 0], 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    colours = {1: np.array([0.1, 0.9, 0.2]), 2: np.array([0.95, 0.1, 0.85])}
    classes = np.r_[0, instances.classes]
    per_pixel = classes[instances.labels]
    edges = find_boundaries(instances.labels, mode="inner")
    for k, colour in colours.items():
        inside = per_pixel == k
        rgb[inside] = 0.6 * rgb[inside] + 0.4 * colour
        rgb[inside & edges] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)


def run(args) -> dict:
    from napari_deepcolor.data import detect_layout, read_annotated_folder

    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="bbbc010-classes-"))
    classes = write_bbbc010_classes(DATA, work)
    pairs = detect_layout(DATA).pairs
    test = accuracy.held_out(pairs)
    test_names = {p.name for p in test}
    with_classes = read_annotated_folder(DATA, classes=classes)
    one_class = read_annotated_folder(DATA)
    result = {"dataset": "bbbc010 (two classes from the well column)", "method": args.method,
              "iterations": args.iterations,
              "threads": args.threads, "patch_size": args.patch_size, "batch_size": args.batch_size,
              "n_train_images": len(pairs) - len(test), "n_test_images": len(test),
              "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}"}
    picture = None
    for key, samples in (("classes", with_classes), ("one_class", one_class)):
        train = [s for s in samples if s.name not in test_names]
        model, seconds = _train(train, args.method, args.iterations, args.seed, args.patch_size, args.batch_size)
        summary, rows, first = _score(model, test, {s.name: s for s in samples}, key == "classes")
        result[key] = {"train_seconds": round(seconds, 1), "test_mean": summary, "per_image": rows,
                       "decode_parameters": model.decode_parameters()}
        picture = picture or first
        print(key, json.dumps(summary, default=float), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"classes_bbbc010_{args.method}.json").write_text(json.dumps(result, indent=1, default=float))
    if args.picture and picture is not None:
        _picture(*picture, IMAGES / f"classes_bbbc010_{args.method}.png")
    return result


def table(results: list[dict]) -> str:
    """The markdown table of docs/benchmarks.md from the result JSONs (one per method)."""
    lines = ["| method | steps | AP 0.5:0.95 | AP50 | F1@0.5 | AP alive | F1 alive | AP dead | F1 dead | "
             "class accuracy |", "|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        c, o, method = result["classes"]["test_mean"], result["one_class"]["test_mean"], result["method"]
        lines += [f"| {method}, two classes | {result['iterations']} | {c['ap']:.3f} | {c['ap50']:.3f} | "
                  f"{c['f1']:.3f} | {c['ap_alive']:.3f} | {c['f1_alive']:.3f} | {c['ap_dead']:.3f} | "
                  f"{c['f1_dead']:.3f} | {c['class_accuracy']:.3f} ({c['n_matched']} matched worms) |",
                  f"| {method}, one class | {result['iterations']} | {o['ap']:.3f} | {o['ap50']:.3f} | "
                  f"{o['f1']:.3f} | | | | | |"]
    if results:
        r = results[0]
        lines += ["", f"Patch {r['patch_size']}, batch {r['batch_size']}, {r['threads']} CPU thread(s); "
                      f"{r['n_train_images']} training and {r['n_test_images']} test images (every 5th in name order)."]
    return "\n".join(lines) + "\n"


def write_report() -> str:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("classes_bbbc010_*.json"))]
    text = table(results)
    write_between(PAGE, "<!-- classes-table", "<!-- /classes-table -->", text)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="coloring", help="coloring (class-specific colours) or any other method")
    parser.add_argument("--iterations", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the classes/ annotations (default: a temp folder)")
    parser.add_argument("--picture", action="store_true", help="also draw a test image coloured by class")
    parser.add_argument("--report", action="store_true", help="only write the table from the result JSON")
    args = parser.parse_args()
    if args.report:
        print(write_report(), end="")
        return
    run(args)


if __name__ == "__main__":
    main()
