"""Object classes: a small random forest on each segmented object's shape and intensity features.

Beside (or instead of) a model's pixel class head: once the net has segmented the objects, each
object's features (:mod:`napari_deepcolor.object_features`: length, tortuosity, solidity,
intensity, ...) go into a random forest trained on a few annotated objects. It trains in seconds,
without retraining the net, from objects a user clicks in napari, or from class annotations
(:func:`fit_object_classifier`, :func:`train_object_classifier`).

The forest is fitted with scikit-learn (:class:`sklearn.ensemble.RandomForestClassifier`) and kept
as plain arrays (each tree's children, split feature, threshold and class fractions per node), which
the model file stores as tensors beside the weights (:meth:`ObjectClassifier.to_tensors`). Loading
reads arrays and JSON only, and prediction walks the trees with NumPy (:meth:`ObjectClassifier.predict_proba`):
no pickle, no code from the file, no scikit-learn needed to predict. The walk reproduces scikit-learn's
``predict_proba`` exactly (features cast to float32 first, as scikit-learn does; ``x <= threshold``
goes left; the trees' class fractions averaged in tree order).

A model with a pixel class head keeps it where it measures better: the validation objects' class
accuracy of both decides (:func:`choose_classes_source`), and ``use`` records the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DeepColorError

__all__ = ["AnnotatedObjects", "ObjectClassifier", "TENSOR_PREFIX", "annotated_objects", "choose_classes_source",
           "classify_objects",
           "fit_object_classifier", "objects_from_points", "train_object_classifier"]

#: the model file's tensors of the object classifier are named ``object_classifier.<array>``
TENSOR_PREFIX = "object_classifier."
_ARRAYS = ("tree_offsets", "children_left", "children_right", "feature", "threshold", "leaf_fractions")
#: where object classes come from: the forest on object features, or the net's pixel class head
USES = ("object", "pixel")


@dataclass(eq=False)
class ObjectClassifier:
    """A fitted random forest over object features, as arrays.

    Nodes of all trees are concatenated: tree ``t`` owns nodes ``tree_offsets[t]`` to
    ``tree_offsets[t + 1] - 1``, its root first; child indices are within the tree (-1: a leaf).
    ``leaf_fractions[n]`` holds node ``n``'s fraction of training objects per class.
    """

    class_names: tuple
    feature_names: tuple
    tree_offsets: np.ndarray  # (T + 1,) int64
    children_left: np.ndarray  # (nodes,) int64
    children_right: np.ndarray  # (nodes,) int64
    feature: np.ndarray  # (nodes,) int64
    threshold: np.ndarray  # (nodes,) float64
    leaf_fractions: np.ndarray  # (nodes, K) float64
    #: "object" (this forest gives the classes) or "pixel" (the model's class head measured better)
    use: str = "object"
    #: what the choice and the fit measured: e.g. ``{"object_accuracy": 0.93, "pixel_accuracy": 0.6,
    #: "n_objects": 412, "out_of_bag_accuracy": 0.91}``
    scores: dict = field(default_factory=dict)

    def __post_init__(self):
        self.class_names, self.feature_names = tuple(self.class_names), tuple(self.feature_names)
        if self.use not in USES:
            raise DeepColorError(f"object classifier 'use' must be one of {', '.join(USES)} (got {self.use!r}).")

    @property
    def n_trees(self) -> int:
        return int(self.tree_offsets.size - 1)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class fractions per object, ``(N, K)``, from features ``(N, F)`` (columns as ``feature_names``)."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise DeepColorError(f"the object classifier takes {len(self.feature_names)} features per object "
                                 f"(got an array of shape {features.shape}); was it trained on images with "
                                 "another number of channels?")
        features = np.nan_to_num(features.astype(np.float32), nan=0.0).astype(np.float64)
        rows = np.arange(features.shape[0])
        total = np.zeros((features.shape[0], len(self.class_names)))
        for t in range(self.n_trees):
            offset = int(self.tree_offsets[t])
            node = np.full(features.shape[0], offset)
            while True:
                inner = self.children_left[node] >= 0
                if not inner.any():
                    break
                at = node[inner]
                left = features[rows[inner], self.feature[at]] <= self.threshold[at]
                node[inner] = offset + np.where(left, self.children_left[at], self.children_right[at])
            total += self.leaf_fractions[node]
        return total / max(self.n_trees, 1)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class ids 1..K and their fractions (the forest's confidence) per object."""
        fractions = self.predict_proba(features)
        best = np.argmax(fractions, axis=1)
        return (best + 1).astype(np.int32), fractions[np.arange(best.size), best].astype(np.float32)

    # -- the model file ---------------------------------------------------------------
    def to_tensors(self) -> dict:
        """The arrays as torch tensors named ``object_classifier.<array>``, for the model's safetensors."""
        import torch

        return {TENSOR_PREFIX + name: torch.from_numpy(np.ascontiguousarray(getattr(self, name)))
                for name in _ARRAYS}

    def config(self) -> dict:
        """What the model's JSON configuration keeps of it (the arrays are tensors)."""
        return {"class_names": list(self.class_names), "feature_names": list(self.feature_names),
                "use": self.use, "scores": self.scores, "n_trees": self.n_trees}

    @classmethod
    def from_file_parts(cls, config: dict, tensors: dict, *, where: str = "the model file") -> "ObjectClassifier":
        """Rebuild from :meth:`config` and the tensors of :meth:`to_tensors` (arrays only, no code)."""
        missing = [name for name in _ARRAYS if TENSOR_PREFIX + name not in tensors]
        if missing:
            raise DeepColorError(f"{where}: the object classifier is incomplete (missing {', '.join(missing)}); "
                                 "the file is damaged, use another copy.")
        arrays = {name: np.asarray(tensors[TENSOR_PREFIX + name].numpy()) for name in _ARRAYS}
        classifier = cls(config["class_names"], config["feature_names"], use=config.get("use", "object"),
                         scores=dict(config.get("scores", {})), **arrays)
        nodes = classifier.children_left.size
        if classifier.leaf_fractions.shape != (nodes, len(classifier.class_names)) or \
                int(classifier.tree_offsets[-1]) != nodes:
            raise DeepColorError(f"{where}: the object classifier's arrays do not fit together; the file is "
                                 "damaged, use another copy.")
        return classifier


def fit_object_classifier(features: np.ndarray, classes: np.ndarray, class_names, feature_names, *,
                          n_trees: int = 200, seed: int = 0) -> ObjectClassifier:
    """Fit a random forest on annotated objects.

    Parameters
    ----------
    features : ndarray, shape (N, F)
        One row per annotated object (:func:`napari_deepcolor.object_features.object_features`).
    classes : ndarray of int, shape (N,)
        The class id 1..K of each object.
    class_names : sequence of str
        The names of class ids 1..K.
    feature_names : sequence of str
        The names of the F columns.
    n_trees : int
        Trees of the forest.
    seed : int
        Seed of the forest's bootstrap and feature draws.

    Returns
    -------
    ObjectClassifier
        With ``scores["n_objects"]`` and, from 20 objects on, ``scores["out_of_bag_accuracy"]`` (each object
        classified by the trees that did not see it: an honest estimate without validation images).
    """
    from sklearn.ensemble import RandomForestClassifier

    features, classes = np.asarray(features, np.float64), np.asarray(classes, np.int64)
    class_names = tuple(class_names)
    if features.ndim != 2 or features.shape[0] != classes.size or features.shape[1] != len(feature_names):
        raise DeepColorError(f"features of shape {features.shape} do not fit {classes.size} classes and "
                             f"{len(feature_names)} feature names.")
    present = np.unique(classes)
    if present.size < 2:
        raise DeepColorError("the annotated objects hold "
                             f"{'no class' if present.size == 0 else 'one class only'}; give objects of at least "
                             "two classes (e.g. a few alive and a few dead worms).")
    if present.min() < 1 or present.max() > len(class_names):
        raise DeepColorError(f"class ids must be 1..{len(class_names)} (got {present.tolist()}).")
    many = classes.size >= 20
    forest = RandomForestClassifier(n_estimators=n_trees, random_state=seed, bootstrap=many, oob_score=many,
                                    n_jobs=1)
    forest.fit(np.nan_to_num(features.astype(np.float32), nan=0.0), classes)
    classifier = _from_forest(forest, class_names, feature_names)
    classifier.scores["n_objects"] = int(classes.size)
    if many:
        classifier.scores["out_of_bag_accuracy"] = round(float(forest.oob_score_), 4)
    return classifier


def _from_forest(forest, class_names, feature_names) -> ObjectClassifier:
    """The arrays of a fitted forest; classes the forest never saw get fraction 0 in every leaf."""
    columns = np.asarray(forest.classes_, np.int64) - 1
    offsets, left, right, feature, threshold, fractions = [0], [], [], [], [], []
    for estimator in forest.estimators_:
        tree = estimator.tree_
        value = tree.value[:, 0, :]
        full = np.zeros((tree.node_count, len(class_names)))
        full[:, columns] = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
        left.append(tree.children_left.astype(np.int64))
        right.append(tree.children_right.astype(np.int64))
        feature.append(np.where(tree.children_left >= 0, tree.feature, 0).astype(np.int64))
        threshold.append(tree.threshold.astype(np.float64))
        fractions.append(full)
        offsets.append(offsets[-1] + tree.node_count)
    return ObjectClassifier(class_names, feature_names, np.asarray(offsets, np.int64), np.concatenate(left),
                            np.concatenate(right), np.concatenate(feature), np.concatenate(threshold),
                            np.concatenate(fractions))


# -- classifying the objects of an image ---------------------------------------------------

def classify_objects(classifier: ObjectClassifier, labels: np.ndarray, image: np.ndarray,
                     n_objects: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The class id (1..K) and confidence of objects 1..``n_objects`` of a 2D label image.

    ``image`` is (H, W, C) as the net saw it (``Prediction.image``). Ids absent from ``labels`` get the
    class the forest gives an object of zeros (never shown: no pixel carries them).
    """
    from .object_features import object_features

    n = int(labels.max(initial=0)) if n_objects is None else int(n_objects)
    if n == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    return classifier.predict(object_features(labels, image, ids=np.arange(1, n + 1)))


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


def annotated_objects(model, samples, *, device=None) -> list[AnnotatedObjects]:
    """:class:`AnnotatedObjects` of annotated images with classes (:class:`~napari_deepcolor.data.AnnotatedImage`
    with ``object_classes``): each image predicted once, its annotated objects with their classes."""
    from .inference import predict

    examples = []
    for sample in samples:
        if not sample.has_classes:
            raise DeepColorError(f"{sample.name} has no class annotation; give a classes folder (classes.json "
                                 "and NAME.csv or class images) for every image.")
        names = sample.class_names
        classes = {k: names[int(c) - 1] for k, c in enumerate(sample.object_classes) if k > 0 and c > 0}
        examples.append(AnnotatedObjects(predict(model, sample.image, stack=False, device=device),
                                         np.asarray(sample.labels), classes))
    return examples
