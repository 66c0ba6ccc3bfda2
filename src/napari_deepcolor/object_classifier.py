"""The object classifier as the model file keeps it: a random forest as plain arrays, walked with NumPy.

The forest is fitted with scikit-learn (:class:`sklearn.ensemble.RandomForestClassifier`) and kept
as plain arrays (each tree's children, split feature, threshold and class fractions per node), which
the model file stores as tensors beside the weights (:meth:`ObjectClassifier.to_tensors`). Loading
reads arrays and JSON only, and prediction walks the trees with NumPy (:meth:`ObjectClassifier.predict_proba`):
no pickle, no code from the file, no scikit-learn needed to predict. The walk reproduces scikit-learn's
``predict_proba`` exactly (features cast to float32 first, as scikit-learn does; ``x <= threshold``
goes left; the trees' class fractions averaged in tree order).

It knows nothing of nets or predictions, so the model file and the inference can use it; training it
from a model's objects is :mod:`napari_deepcolor.object_classes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DeepColorError

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
