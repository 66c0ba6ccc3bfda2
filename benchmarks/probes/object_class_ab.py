"""A/B of the object classifier's forest on BBBC010, judged on the training split only (never the test split).

    python benchmarks/probes/object_class_ab.py --model /path/to/bbbc010_boundary_s0.safetensors

The net runs once per training image; the found objects' features are measured once; then each variant of
the forest (scikit-learn's RandomForestClassifier keywords, beside benchmarks/object_classes.py's) is scored
three ways, each the class accuracy of matched worms (IoU > 0.5) or of objects, as a mean over forest seeds:
trained on the training split less its validation part and scored on that part (what chose the training
objects in benchmarks/object_classes.py: 6 images, about 35 worms); the out-of-bag accuracy of all found
training objects (430, each with its well's class); and 5-fold cross-validation over the training images
(the images in name order, every 5th to a fold; trained on the found objects of four folds, scored on the
matched worms of the fifth: about 200 worms). Prints a markdown table and writes
benchmarks/results/object_classes_ab_bbbc010.json. The test split is scored only by benchmarks/object_classes.py,
once a variant is adopted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/probes/
import object_classes as bench  # noqa: E402  (benchmarks/object_classes.py)
from classes_bbbc010 import CLASS_NAMES, well_class  # noqa: E402
from object_class_errors import matched_objects  # noqa: E402

from napari_deepcolor.checkpoint import load_model  # noqa: E402
from napari_deepcolor.object_features import object_features  # noqa: E402

RESULT = bench.RESULTS / "object_classes_ab_bbbc010.json"
#: the variants: RandomForestClassifier keywords over the library's (200 trees, sqrt(F) features per split)
VARIANTS = {"baseline": {}, "500 trees": {"n_estimators": 500}, "all features at every split": {"max_features": None}}
FOLDS = 5


def measured(predicted) -> dict:
    """``name -> (features of every found object, its well's class id, ids of the objects matched to a worm)``."""
    out = {}
    for name in predicted.train_names:
        labels, image = predicted.decoded[name].labels, predicted.predictions[name].image
        matched = np.asarray([found for _, found, _ in matched_objects(predicted.masks[name], labels)], np.int64)
        out[name] = (object_features(labels, image), CLASS_NAMES.index(well_class(name)) + 1, matched)
    return out


def fit(objects: dict, names, keywords: dict, seed: int, oob: bool = False):
    from sklearn.ensemble import RandomForestClassifier

    features = np.concatenate([objects[n][0] for n in names])
    classes = np.concatenate([np.full(len(objects[n][0]), objects[n][1]) for n in names])
    forest = RandomForestClassifier(**{"n_estimators": 200, "random_state": seed, "n_jobs": 2, "oob_score": oob,
                                       **keywords})
    return forest.fit(np.nan_to_num(features.astype(np.float32), nan=0.0), classes)


def right_and_matched(forest, objects: dict, names) -> tuple[int, int]:
    right = total = 0
    for name in names:
        features, cls, matched = objects[name]
        if matched.size:
            found = forest.predict(np.nan_to_num(features[matched - 1].astype(np.float32), nan=0.0))
            right, total = right + int((found == cls).sum()), total + matched.size
    return right, total


def scores(objects: dict, predicted, keywords: dict, seeds) -> dict:
    fit_names, validation, train = predicted.fit_names, predicted.validation_names, predicted.train_names
    folds = [train[k::FOLDS] for k in range(FOLDS)]
    rows = {"validation": [], "out_of_bag": [], "cross_validation": []}
    for seed in seeds:
        right, total = right_and_matched(fit(objects, fit_names, keywords, seed), objects, validation)
        rows["validation"].append(right / total)
        rows["out_of_bag"].append(fit(objects, train, keywords, seed, oob=True).oob_score_)
        pooled = np.zeros(2, int)
        for fold in folds:
            rest = [n for n in train if n not in fold]
            pooled += right_and_matched(fit(objects, rest, keywords, seed), objects, fold)
        rows["cross_validation"].append(pooled[0] / pooled[1])
        rows.setdefault("n_validation_worms", total)
        rows.setdefault("n_cross_validation_worms", int(pooled[1]))
    return {k: (round(float(np.mean(v)), 4) if isinstance(v, list) else v) for k, v in rows.items()} | \
        {f"{k}_per_seed": [round(float(x), 4) for x in v] for k, v in rows.items() if isinstance(v, list)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--seed", type=int, default=0, help="the split's seed (as the model's training)")
    parser.add_argument("--forest-seeds", type=int, default=3, help="forests per variant (seeds 0..N-1)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predicted = bench.predict_split(load_model(args.model), args.seed)
    objects = measured(predicted)
    result = {name: scores(objects, predicted, keywords, range(args.forest_seeds)) | {"keywords": keywords}
              for name, keywords in VARIANTS.items()}
    RESULT.write_text(json.dumps({"model": Path(args.model).name, "forest_seeds": args.forest_seeds,
                                  "variants": result}, indent=1, default=str))
    first = next(iter(result.values()))
    print(f"| forest | validation part ({first['n_validation_worms']} worms) | out of bag "
          f"({sum(len(o[0]) for o in objects.values())} objects) | 5-fold CV ({first['n_cross_validation_worms']} worms) |")
    print("|---|---|---|---|")
    for name, row in result.items():
        print(f"| {name} | {row['validation']:.3f} | {row['out_of_bag']:.3f} | {row['cross_validation']:.3f} |")


if __name__ == "__main__":
    main()
