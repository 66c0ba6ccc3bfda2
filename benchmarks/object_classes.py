"""Live and dead worms told apart by the object classifier of a one-class model (BBBC010).

    python benchmarks/object_classes.py --model /path/to/bbbc010_boundary_s0.safetensors
    python benchmarks/object_classes.py --report     # print the markdown table of docs/benchmarks.md from the JSON
    python benchmarks/object_classes.py --report --write   # and write it into docs/benchmarks.md

The model is a one-class segmentation model trained by benchmarks/accuracy.py on BBBC010 (its split:
pairs in name order, every 5th held out for testing; seed 0 for the validation part). Nothing of the
net is retrained: every image is predicted once, and a random forest on the found objects' shape and
intensity (napari_deepcolor.object_classes) learns the class of each worm from the training split.
A worm's class is its well's (columns 01-12 alive, 13-24 dead: benchmarks/classes_bbbc010.py).

Which objects train the forest is chosen on the validation part of the training split (trained on
the rest, scored on it): the annotated worms' own masks (``truth``), the objects the model finds in
the training images with their well's class (``found``: what the forest meets at test time, merged
worms included), or both. The chosen source then trains on the whole training split, and the test
split is scored as benchmarks/classes_bbbc010.py scores it: per-class AP and F1 of the class-labelled
objects, the class accuracy of matched worms (IoU >= 0.5, overlaps as per-object masks), and the
single-class F1 of the same objects without classes. Writes benchmarks/results/object_classes_<model name>.json;
the table has one row per model scored.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402  (benchmarks/accuracy.py: the split of every benchmark here)
from classes_bbbc010 import CLASS_NAMES, well_class  # noqa: E402
from docs_table import write_between  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RESULT_GLOB = "object_classes_bbbc010_*.json"  # one per model: object_classes_<model file stem>.json
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SOURCES = ("truth", "found", "both")


def _examples(names, predictions, decoded, masks, source: str):
    """AnnotatedObjects of the images ``names``: the worms' masks and/or the found objects, each with the
    class of its well."""
    from napari_deepcolor.object_classes import AnnotatedObjects

    examples = []
    for name in names:
        cls = well_class(name)
        if source in ("found", "both"):
            labels = decoded[name].labels
            examples.append(AnnotatedObjects(predictions[name], labels,
                                             {k: cls for k in range(1, int(labels.max()) + 1)}))
        if source in ("truth", "both"):
            for mask in masks[name]:  # overlapping worms: one label image per worm
                examples.append(AnnotatedObjects(predictions[name], mask.astype(np.int32), {1: cls}))
    return examples


def _score(model, names, predictions, masks) -> tuple[dict, list]:
    """Test scores of ``model`` (its object classifier set) on the images ``names``."""
    from napari_deepcolor.metrics import evaluate, evaluate_classes, pooled_class_accuracy, summarize

    rows = []
    for name in names:
        prediction = predictions[name]
        instances = prediction.decode()
        truth = np.full(masks[name].shape[0] + 1, CLASS_NAMES.index(well_class(name)) + 1)
        row = {"name": name, "class": well_class(name), **evaluate(masks[name], instances.labels)}
        row.update(evaluate_classes(masks[name], instances.labels, gt_classes=truth,
                                    pred_classes=np.r_[0, instances.classes], class_names=CLASS_NAMES))
        row["found"] = {c: int(np.sum(instances.classes == k)) for k, c in enumerate(CLASS_NAMES, start=1)}
        rows.append(row)
    mean = summarize([{k: v for k, v in r.items() if k != "found"} for r in rows])
    summary = {k: mean[k] for k in ("ap", "ap50", "f1", "sbd")}
    for name in CLASS_NAMES:  # per class over the images that hold that class
        own = [r for r in rows if r["class"] == name]
        summary[f"ap_{name}"] = float(np.mean([r[f"ap_{name}"] for r in own]))
        summary[f"f1_{name}"] = float(np.mean([r[f"f1_{name}"] for r in own]))
        summary[f"f1_one_class_{name}"] = float(np.mean([r["f1"] for r in own]))
    summary["class_accuracy"] = pooled_class_accuracy(rows)
    summary["n_matched"] = sum(r["n_matched"] for r in rows)
    return summary, rows


@dataclass
class Predicted:
    """BBBC010's split (as benchmarks/accuracy.py's, ``seed``) with every image predicted once."""

    train_names: list  # the whole training split, validation part included
    validation_names: list
    test_names: list
    predictions: dict  # name -> Prediction
    decoded: dict  # name -> Instances of the model's own decode (its classes not used)
    masks: dict  # name -> (K, H, W) bool: the worms' masks (they overlap)
    seconds: float

    @property
    def fit_names(self) -> list:
        """The training images outside the validation part."""
        return [n for n in self.train_names if n not in self.validation_names]


def predict_split(model, seed: int) -> Predicted:
    from napari_deepcolor.data import detect_layout
    from napari_deepcolor.data.io import read_object_masks
    from napari_deepcolor.inference import predict

    split = accuracy.split("bbbc010", seed=seed)
    pairs = {p.name: p for p in detect_layout(accuracy.DATASETS["bbbc010"][0]).pairs}
    train_names = sorted({s.name for s in split.train})
    test_names = sorted(p.name for p in split.test_pairs)
    images = {s.name: s.image for s in split.train} | {n: s.image for n, s in split.test.items()}
    started = time.perf_counter()
    predictions, decoded, masks = {}, {}, {}
    for name in train_names + test_names:
        predictions[name] = predict(model, images[name], stack=False, device="cpu")
        decoded[name] = predictions[name].decode()
        masks[name] = read_object_masks(pairs[name].object_masks)
    return Predicted(train_names, sorted({s.name for s in split.validation}), test_names, predictions, decoded,
                     masks, time.perf_counter() - started)


def run(args) -> dict:
    from napari_deepcolor.checkpoint import load_model
    from napari_deepcolor.object_classes import train_object_classifier

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    predicted = predict_split(model, args.seed)
    train_names, validation_names, test_names = predicted.train_names, predicted.validation_names, \
        predicted.test_names
    fit_names = predicted.fit_names
    predictions, decoded, masks = predicted.predictions, predicted.decoded, predicted.masks
    predict_seconds = predicted.seconds

    choice = {}
    for source in SOURCES:  # trained on the rest of the training split, scored on its validation part
        started = time.perf_counter()
        model.object_classifier = train_object_classifier(
            model, _examples(fit_names, predictions, decoded, masks, source), class_names=CLASS_NAMES,
            n_trees=args.trees, seed=args.seed)
        fit_seconds = time.perf_counter() - started
        summary, _ = _score(model, validation_names, predictions, masks)
        choice[source] = {"class_accuracy": summary["class_accuracy"], "n_matched": summary["n_matched"],
                          "fit_seconds": round(fit_seconds, 2)}
        print("validation", source, json.dumps(choice[source]), flush=True)
    chosen = max(SOURCES, key=lambda s: (choice[s]["class_accuracy"], -SOURCES.index(s)))
    started = time.perf_counter()
    examples = _examples(train_names, predictions, decoded, masks, chosen)
    model.object_classifier = train_object_classifier(model, examples, class_names=CLASS_NAMES,
                                                      n_trees=args.trees, seed=args.seed)
    fit_seconds = time.perf_counter() - started
    summary, rows = _score(model, test_names, predictions, masks)
    forest = model.object_classifier
    result = {"dataset": "bbbc010 (two classes from the well column)", "model": Path(args.model).name,
              "model_method": model.method_name, "model_iterations": model.provenance.get("iterations"),
              "model_train_seconds": model.provenance.get("train_seconds"),
              "trees": args.trees, "seed": args.seed, "threads": args.threads,
              "n_train_images": len(train_names), "n_validation_images": len(validation_names),
              "n_test_images": len(test_names), "validation_choice": choice, "training_objects": chosen,
              "n_training_objects": forest.scores.get("n_objects"),
              "out_of_bag_accuracy": forest.scores.get("out_of_bag_accuracy"),
              "predict_seconds": round(predict_seconds, 1), "fit_seconds": round(fit_seconds, 2),
              "test_mean": summary, "per_image": rows,
              "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"object_classes_{Path(args.model).stem}.json").write_text(json.dumps(result, indent=1, default=float))
    print("test", json.dumps(summary, default=float), flush=True)
    return result


def table(results: list[dict]) -> str:
    """The markdown table of docs/benchmarks.md: per model, the object classifier's row and its one-class F1
    per class."""
    lines = ["| classes from | model | AP 0.5:0.95 | AP50 | F1@0.5 | AP alive | F1 alive | AP dead | F1 dead | "
             "class accuracy |", "|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        s = result["test_mean"]
        lines += [f"| object classifier ({result['trees']} trees, {result['n_training_objects']} training objects: "
                  f"{result['training_objects']}) | `{result['model']}`: {result['model_method']}, one class, "
                  f"{result['model_iterations']} steps | {s['ap']:.3f} | {s['ap50']:.3f} | {s['f1']:.3f} | "
                  f"{s['ap_alive']:.3f} | {s['f1_alive']:.3f} | {s['ap_dead']:.3f} | {s['f1_dead']:.3f} | "
                  f"{s['class_accuracy']:.3f} ({s['n_matched']} matched worms) |",
                  f"| none (one class: F1 of the same objects) | same | | | {s['f1']:.3f} | | "
                  f"{s['f1_one_class_alive']:.3f} | | {s['f1_one_class_dead']:.3f} | |"]
    for result in results:
        choice = ", ".join(f"{k} {v['class_accuracy']:.3f}" for k, v in result["validation_choice"].items())
        lines += ["", f"`{result['model']}`: {result['n_train_images']} training images ({result['n_validation_images']} "
                      f"of them the validation part that chose the training objects by class accuracy: {choice}), "
                      f"{result['n_test_images']} test images (every 5th in name order). The forest trained in "
                      f"{result['fit_seconds']:.1f} s on 1 CPU thread; the net ran once per image "
                      f"({result['predict_seconds']:.0f} s for all {result['n_train_images'] + result['n_test_images']})."]
    return "\n".join(lines) + "\n"


def report(write: bool) -> str:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(RESULT_GLOB))]
    text = table(sorted(results, key=lambda r: r["model_iterations"]))
    if write:
        write_between(PAGE, "<!-- object-classes-table", "<!-- /object-classes-table -->", text)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a one-class model trained by benchmarks/accuracy.py on bbbc010")
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="the split's seed (as the model's training) and the forest's")
    parser.add_argument("--report", action="store_true", help="only print the table from the result JSON")
    parser.add_argument("--write", action="store_true", help="with --report: also write it into docs/benchmarks.md")
    args = parser.parse_args()
    if args.report:
        print(report(args.write), end="")
        return
    if args.model is None:
        parser.error("--model is needed (or --report)")
    run(args)
    report(write=True)


if __name__ == "__main__":
    main()
