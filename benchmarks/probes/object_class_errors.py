"""Which worms the object classifier gets wrong on BBBC010's test split, and what they look like.

    python benchmarks/probes/object_class_errors.py --model /path/to/bbbc010_boundary_s0.safetensors \
        --picture docs/images/object_class_errors_bbbc010.png

Trains the forest as benchmarks/object_classes.py's result did (the objects the model finds in all
training images, each with its well's class), then for the test split lists every matched worm (IoU > 0.5
with an annotated worm) whose class is wrong: image, object, true and predicted class, the forest's
confidence, whether the object touches the image border, whether its annotated worm crosses another
worm, and the values of the features the forest leans on most (scikit-learn's impurity importances of
the same forest) beside their medians over the training objects of each class. Then the same for the
training objects themselves: how many the forest gets wrong out of bag, split into objects that match
an annotated worm and those that do not (merged worms, fragments), which carry their well's class all
the same. With ``--picture``: one crop per wrong worm, the annotated worm outlined in green and the
found object in the colour of its predicted class (orange alive, blue dead).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: object_classes.py and friends
import object_classes as bench  # noqa: E402  (benchmarks/object_classes.py)
from classes_bbbc010 import CLASS_NAMES, well_class  # noqa: E402

from napari_deepcolor.checkpoint import load_model  # noqa: E402
from napari_deepcolor.metrics.instances import _iou, _matched_pairs, _overlap  # noqa: E402
from napari_deepcolor.object_classes import _features_and_classes, train_object_classifier  # noqa: E402
from napari_deepcolor.object_features import feature_names, object_features  # noqa: E402

TOP = 6  # features shown per worm
PAD = 12  # px around a worm's crop
COLOURS = {"alive": (1.0, 0.55, 0.0), "dead": (0.2, 0.45, 1.0)}


def matched_objects(masks: np.ndarray, labels: np.ndarray) -> list[tuple[int, int, float]]:
    """``(worm index, found label id, IoU)`` of the one-to-one matches with IoU > 0.5."""
    iou = _iou(*_overlap(masks, labels))
    ids = [int(i) for i in np.unique(labels) if i > 0]
    worms = [k for k in range(masks.shape[0]) if masks[k].any()]
    rows, cols = _matched_pairs(iou, 0.5)
    return [(worms[r], ids[c], float(iou[r, c])) for r, c in zip(rows, cols)]


def crosses_another(masks: np.ndarray, worm: int) -> bool:
    others = np.delete(masks, worm, axis=0)
    return bool((others.any(axis=0) & masks[worm]).any())


def touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def forest_importances(examples, trees: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(importances, training features, their classes, out-of-bag class fractions) of the forest that
    fit_object_classifier fits on ``examples`` (same data, same seed: the same trees)."""
    from sklearn.ensemble import RandomForestClassifier

    features, classes = _features_and_classes(examples, CLASS_NAMES)
    forest = RandomForestClassifier(n_estimators=trees, random_state=seed, bootstrap=True, oob_score=True, n_jobs=1)
    forest.fit(np.nan_to_num(features.astype(np.float32), nan=0.0), classes)
    return forest.feature_importances_, features, classes, forest.oob_decision_function_


def training_errors(predicted, oob_fractions, classes) -> dict:
    """Out-of-bag errors of the training objects (found objects, in _examples' order), split by whether the
    object matches an annotated worm."""
    matched = []
    for name in predicted.train_names:
        labels = predicted.decoded[name].labels
        hits = {found for _, found, _ in matched_objects(predicted.masks[name], labels)}
        matched += [k in hits for k in range(1, int(labels.max()) + 1)]
    matched = np.asarray(matched)
    assert matched.size == classes.size, "decoded ids are not consecutive: the rows do not line up"
    wrong = np.argmax(oob_fractions, axis=1) + 1 != classes
    return {"objects": int(classes.size), "matched": int(matched.sum()), "unmatched": int((~matched).sum()),
            "wrong_matched": int((wrong & matched).sum()), "wrong_unmatched": int((wrong & ~matched).sum())}


def test_worms(model, predicted) -> list[dict]:
    """Every matched test worm with its classes and features."""
    names = feature_names(predicted.predictions[predicted.test_names[0]].image.shape[-1])
    worms = []
    for name in predicted.test_names:
        prediction, masks = predicted.predictions[name], predicted.masks[name]
        instances = prediction.decode()
        features = object_features(instances.labels, prediction.image)
        for worm, found, iou in matched_objects(masks, instances.labels):
            worms.append({"image": name, "worm": worm + 1, "object": found, "iou": iou, "truth": well_class(name),
                          "predicted": CLASS_NAMES[int(instances.classes[found - 1]) - 1],
                          "confidence": float(instances.class_scores[found - 1]),
                          "border": touches_border(instances.labels == found),
                          "crosses": crosses_another(masks, worm),
                          "features": dict(zip(names, features[found - 1])),
                          "mask": masks[worm], "labels": instances.labels, "image_data": prediction.image})
    return worms


def picture(wrong: list[dict], path: Path, *, columns: int = 4, cell: int = 220) -> None:
    """One crop per worm in a grid, each scaled to fit ``cell`` px, with a caption above it."""
    from PIL import Image, ImageDraw
    from skimage.segmentation import find_boundaries

    caption = 30
    rows = -(-len(wrong) // columns)
    canvas = Image.new("RGB", (columns * cell, rows * (cell + caption)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, worm in enumerate(wrong):
        found = worm["labels"] == worm["object"]
        ys, xs = np.nonzero(found | worm["mask"])
        y0, y1 = max(ys.min() - PAD, 0), min(ys.max() + PAD + 1, found.shape[0])
        x0, x1 = max(xs.min() - PAD, 0), min(xs.max() + PAD + 1, found.shape[1])
        grey = worm["image_data"][y0:y1, x0:x1, 0]
        low, high = np.percentile(grey, [1, 99])
        rgb = np.repeat(np.clip((grey - low) / max(high - low, 1e-6), 0, 1)[..., None], 3, axis=-1)
        rgb[find_boundaries(worm["mask"][y0:y1, x0:x1], mode="inner")] = (0.1, 0.9, 0.1)
        rgb[find_boundaries(found[y0:y1, x0:x1], mode="inner")] = COLOURS[worm["predicted"]]
        crop = Image.fromarray((rgb * 255).astype(np.uint8))
        crop = crop.resize((max(1, round(crop.width * min(cell / crop.width, cell / crop.height))),
                            max(1, round(crop.height * min(cell / crop.width, cell / crop.height)))), Image.NEAREST)
        left, top = (k % columns) * cell, (k // columns) * (cell + caption)
        canvas.paste(crop, (left, top + caption))
        flags = ", ".join(f for f, on in (("border", worm["border"]), ("crosses", worm["crosses"])) if on)
        draw.text((left + 4, top + 2), f"{worm['image']} worm {worm['worm']}: {worm['truth']} -> {worm['predicted']}",
                  fill="black")
        draw.text((left + 4, top + 15), f"votes {worm['confidence']:.2f}{', ' + flags if flags else ''}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--picture", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    predicted = bench.predict_split(model, args.seed)
    examples = bench._examples(predicted.train_names, predicted.predictions, predicted.decoded, predicted.masks,
                               "found")
    model.object_classifier = train_object_classifier(model, examples, class_names=CLASS_NAMES, n_trees=args.trees,
                                                      seed=args.seed)
    importances, features, classes, oob = forest_importances(examples, args.trees, args.seed)
    names = model.object_classifier.feature_names
    top = [names[i] for i in np.argsort(importances)[::-1][:TOP]]
    print("feature importances:", ", ".join(f"{names[i]} {importances[i]:.3f}"
                                            for i in np.argsort(importances)[::-1][:12]))
    for k, name in enumerate(CLASS_NAMES, start=1):
        medians = np.nanmedian(features[classes == k], axis=0)
        print(f"training median {name}:", ", ".join(f"{f} {medians[names.index(f)]:.3g}" for f in top))
    print("training objects out of bag:", training_errors(predicted, oob, classes))

    worms = test_worms(model, predicted)
    wrong = [w for w in worms if w["predicted"] != w["truth"]]
    print(f"\ntest: {len(worms)} matched worms, {len(wrong)} wrong; border {sum(w['border'] for w in worms)} "
          f"(wrong {sum(w['border'] for w in wrong)}), crossing another worm {sum(w['crosses'] for w in worms)} "
          f"(wrong {sum(w['crosses'] for w in wrong)})")
    print("| image | worm | object | IoU | true | predicted | confidence | border | crosses | "
          + " | ".join(top) + " |")
    print("|" + "---|" * (9 + len(top)))
    for w in wrong:
        print(f"| {w['image']} | {w['worm']} | {w['object']} | {w['iou']:.2f} | {w['truth']} | {w['predicted']} | "
              f"{w['confidence']:.2f} | {'yes' if w['border'] else ''} | {'yes' if w['crosses'] else ''} | "
              + " | ".join(f"{w['features'][f]:.3g}" for f in top) + " |")
    for name in CLASS_NAMES:
        right = [w for w in worms if w["truth"] == name and w["predicted"] == name]
        print(f"right {name} ({len(right)}) medians:",
              ", ".join(f"{f} {np.median([w['features'][f] for w in right]):.3g}" for f in top),
              f"border {sum(w['border'] for w in right)}, crosses {sum(w['crosses'] for w in right)}")
    if args.picture is not None and wrong:
        picture(wrong, args.picture)
        print("picture:", args.picture)


if __name__ == "__main__":
    main()
