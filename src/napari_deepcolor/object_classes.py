"""Object classes: a small random forest on each segmented object's shape and intensity features.

Beside (or instead of) a model's pixel class head: once the net has segmented the objects, each
object's features (:mod:`napari_deepcolor.object_features`: length, tortuosity, solidity,
intensity, ...) go into a random forest trained on a few annotated objects. It trains in seconds,
without retraining the net, from objects a user clicks in napari, or from class annotations
(:func:`~napari_deepcolor.object_classifier.fit_object_classifier`, :func:`train_object_classifier`).
The forest itself, and how the model file keeps it without pickle: :mod:`napari_deepcolor.object_classifier`.

A model with a pixel class head keeps it where it measures better: the validation objects' class
accuracy of both decides (:func:`choose_classes_source`), and ``use`` records the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DeepColorError
from .object_classifier import (TENSOR_PREFIX, ObjectClassifier, classify_objects,
                                fit_object_classifier)

__all__ = ["AnnotatedObjects", "ObjectClassifier", "PreparedImage", "TENSOR_PREFIX", "annotated_objects",
           "choose_classes_source", "classes_choice_text", "classify_objects", "fit_object_classifier",
           "objects_from_points", "train_object_classifier"]


@dataclass
class AnnotatedObjects:
    """Objects of one image with known classes, for training or choosing.

    ``prediction`` is the net's cached output of the image (:class:`~napari_deepcolor.inference.Prediction`,
    its prepared ``image`` and, for models with a class head, ``class_output``); ``labels`` the 2D label
    image of the objects (decoded, or drawn); ``classes`` ``{label id: class name}`` of the annotated ones.
    """

    prediction: object
    labels: np.ndarray
    classes: dict


def _features_and_classes(examples, class_names) -> tuple[np.ndarray, np.ndarray]:
    from .object_features import object_features

    index = {name: k for k, name in enumerate(class_names, start=1)}
    rows, classes = [], []
    for example in examples:
        if example.prediction.image is None:
            raise DeepColorError("the prediction keeps no image to measure the objects' intensities; "
                                 "predict the image again.")
        ids = sorted(example.classes)
        if not ids:
            continue
        unknown = sorted({example.classes[i] for i in ids} - set(index))
        if unknown:
            raise DeepColorError(f"class(es) {', '.join(unknown)} are not among the model's classes "
                                 f"({', '.join(class_names)}); use those names.")
        rows.append(object_features(example.labels, _plane_image(example.prediction), ids=ids))
        classes += [index[example.classes[i]] for i in ids]
    if not classes:
        raise DeepColorError("no annotated objects: give at least one object of each class.")
    features, classes = np.concatenate(rows), np.asarray(classes)
    measured = ~np.isnan(features).any(axis=1)  # an annotated id that is not in its label image
    return features[measured], classes[measured]


def _plane_image(prediction) -> np.ndarray:
    if prediction.image.ndim != 3:
        raise DeepColorError("object classes are trained on 2D images (one plane of a stack at a time).")
    return prediction.image


def train_object_classifier(model, examples, *, validation=(), class_names=None, n_trees: int = 200,
                            seed: int = 0) -> ObjectClassifier:
    """Fit the object classifier of ``model`` on annotated objects, and choose it or the pixel head.

    Parameters
    ----------
    model : Model
        The segmentation model (not changed; set ``model.object_classifier`` to the result to use it).
    examples : sequence of AnnotatedObjects
        The training objects.
    validation : sequence of AnnotatedObjects
        Objects kept aside; for a model with a pixel class head they decide which of the two classifies
        (:func:`choose_classes_source`). Without them the forest's out-of-bag accuracy on the training objects
        stands in for the forest's.
    class_names : sequence of str, optional
        The classes 1..K; a model with a class head always uses its own. Default: the annotated names in
        order of first appearance.
    """
    from .object_features import feature_names

    examples = list(examples)
    if model.class_names:
        names = tuple(model.class_names)
    elif class_names is not None:
        names = tuple(class_names)
    else:
        names = tuple(dict.fromkeys(name for e in examples for _, name in sorted(e.classes.items())))
    features, classes = _features_and_classes(examples, names)
    channels = examples[0].prediction.image.shape[-1]
    classifier = fit_object_classifier(features, classes, names, feature_names(channels), n_trees=n_trees,
                                       seed=seed)
    if model.class_names:
        classifier.use, measured = choose_classes_source(classifier, list(validation) or examples,
                                                         out_of_bag=not validation)
        classifier.scores.update(measured)
    return classifier


def choose_classes_source(classifier: ObjectClassifier, examples, *, out_of_bag: bool = False
                          ) -> tuple[str, dict]:
    """``("object" | "pixel", scores)``: which classifies the annotated objects of ``examples`` better, the
    forest or the model's pixel class head (its class probabilities averaged over each object). Ties go to
    the forest. ``out_of_bag``: the examples trained the forest, so its out-of-bag accuracy stands for it."""
    from .methods.classes import classify_instances

    index = {name: k for k, name in enumerate(classifier.class_names, start=1)}
    hits = {"object": 0, "pixel": 0}
    total = 0
    for example in examples:
        ids = np.asarray(sorted(i for i in example.classes if (example.labels == i).any()), np.int64)
        if ids.size == 0 or example.prediction.class_output is None:
            continue
        truth = np.asarray([index[example.classes[i]] for i in ids])
        n = int(example.labels.max())
        pixel, _ = classify_instances(example.labels, example.prediction.class_output, n)
        hits["pixel"] += int((pixel[ids - 1] == truth).sum())
        if not out_of_bag:
            found, _ = classify_objects(classifier, example.labels, _plane_image(example.prediction), n)
            hits["object"] += int((found[ids - 1] == truth).sum())
        total += ids.size
    if total == 0:
        return "object", {}
    scores = {"pixel_accuracy": round(hits["pixel"] / total, 4), "n_choice_objects": total}
    scores["object_accuracy"] = classifier.scores.get("out_of_bag_accuracy", 1.0) if out_of_bag else \
        round(hits["object"] / total, 4)
    return ("object" if scores["object_accuracy"] >= scores["pixel_accuracy"] else "pixel"), scores


def classes_choice_text(choice: dict) -> str:
    """Where a trained model's classes come from, in words, from what its provenance keeps of the choice
    (``model.provenance["object_classes"]``: ``use`` and the validation accuracies, or ``skipped``: why none)."""
    if "skipped" in choice:
        return f"classes come from the pixel class head (no object classifier: {choice['skipped']})"
    source = "the object classifier" if choice["use"] == "object" else "the pixel class head"
    measured = f" (validation class accuracy: object classifier {choice['object_accuracy']:.3f}, pixel class " \
               f"head {choice['pixel_accuracy']:.3f})" if "pixel_accuracy" in choice else ""
    return f"classes come from {source}{measured}"


def objects_from_points(labels: np.ndarray, points: np.ndarray, point_classes) -> dict:
    """``{label id: class name}`` of the objects under points (napari's Points layer data, (N, 2) in the
    label image's pixels, and one class name per point). Points on the background are left out; an object
    with points of two classes is an error that says which."""
    labels = np.asarray(labels)
    points = np.round(np.asarray(points, np.float64)).astype(np.int64).reshape(-1, labels.ndim)
    found: dict[int, str] = {}
    for point, name in zip(points, point_classes):
        if ((point < 0) | (point >= labels.shape)).any():
            continue
        label = int(labels[tuple(point)])
        if label == 0:
            continue
        name = str(name)
        if found.get(label, name) != name:
            raise DeepColorError(f"object {label} has points of two classes, {found[label]!r} and {name!r}; "
                                 "remove one of them.")
        found[label] = name
    return found


@dataclass(frozen=True)
class PreparedImage:
    """An image as the net sees it (:func:`~napari_deepcolor.inference.prepare_image`), standing in for a
    prediction where only the objects' intensities are measured: objects that train the forest need no net
    output (only objects that choose against a pixel class head do)."""

    image: np.ndarray
    class_output: None = None


def annotated_objects(model, samples, *, device=None, predictions=None, run_net: bool = True
                      ) -> list[AnnotatedObjects]:
    """:class:`AnnotatedObjects` of annotated images with classes (:class:`~napari_deepcolor.data.AnnotatedImage`
    with ``object_classes``): each image predicted once, its annotated objects with their classes.

    ``predictions``: the images' predictions, one per sample, if they were made already (e.g. by the decode
    tuning after training). ``run_net=False``: no prediction, only the prepared image (:class:`PreparedImage`):
    enough to train the forest, not to choose it against a pixel class head.
    """
    from .inference import predict, prepare_image

    samples = list(samples)
    if predictions is not None and len(predictions) != len(samples):
        raise DeepColorError(f"{len(predictions)} predictions for {len(samples)} annotated images; give one each.")
    examples = []
    for k, sample in enumerate(samples):
        if not sample.has_classes:
            raise DeepColorError(f"{sample.name} has no class annotation; give a classes folder (classes.json "
                                 "and NAME.csv or class images) for every image.")
        names = sample.class_names
        classes = {i: names[int(c) - 1] for i, c in enumerate(sample.object_classes) if i > 0 and c > 0}
        if predictions is not None:
            prediction = predictions[k]
        elif run_net:
            prediction = predict(model, sample.image, stack=False, device=device)
        else:
            prediction = PreparedImage(prepare_image(model, sample.image))
        examples.append(AnnotatedObjects(prediction, np.asarray(sample.labels), classes))
    return examples
