"""Object classes: whole objects' features, the forest that classifies them, and the model file that keeps it."""

import csv
import pickle

import numpy as np
import pytest
import tifffile
import torch

from napari_deepcolor import DeepColorError, synthetic
from napari_deepcolor.checkpoint import load_model, new_model, read_model_config, save_model
from napari_deepcolor.inference import Prediction, prepare_image
from napari_deepcolor.methods.base import Instances
from napari_deepcolor.object_classes import AnnotatedObjects, objects_from_points, train_object_classifier
from napari_deepcolor.object_classifier import _from_forest, classify_objects, fit_object_classifier
from napari_deepcolor.object_features import feature_names, object_features

from .conftest import TINY_NET

NAMES = synthetic.TWO_CLASS_NAMES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rod_and_arc():
    """A straight rod (label 1) and a half ring of the same thickness (label 2)."""
    labels = np.zeros((80, 120), np.int32)
    labels[10:15, 10:70] = 1
    yy, xx = np.mgrid[:80, :120]
    radius = np.hypot(yy - 40, xx - 80)
    labels[(radius >= 25) & (radius < 30) & (yy > 40)] = 2
    return labels


def test_a_curved_object_is_more_tortuous_and_less_solid_than_a_straight_one():
    labels = rod_and_arc()
    image = np.stack([np.where(labels == 1, 1.0, 0.0), np.where(labels == 2, 0.5, 0.0)], axis=-1)
    rows = object_features(labels, image)
    names = feature_names(2)
    assert rows.shape == (2, len(names))
    rod, arc = (dict(zip(names, row)) for row in rows)
    assert rod["tortuosity"] == pytest.approx(1.0, abs=0.05) and arc["tortuosity"] > 1.3
    assert arc["solidity"] < 0.6 < rod["solidity"] and arc["bend"] > 0.2 > rod["bend"]
    assert rod["skeleton_length"] == pytest.approx(60, abs=6) and arc["skeleton_length"] == pytest.approx(85, abs=10)
    assert rod["mean_0"] == 1.0 and rod["mean_1"] == 0.0 and arc["mean_1"] == 0.5


def test_ids_missing_from_the_labels_get_rows_of_nan_and_3d_labels_are_refused():
    rows = object_features(rod_and_arc(), ids=[2, 5])
    assert not np.isnan(rows[0]).any() and np.isnan(rows[1]).all()
    with pytest.raises(DeepColorError, match="2D"):
        object_features(np.zeros((2, 8, 8), int))


def scene_features(seed, count=12):
    image, labels, classes = synthetic.round_and_elongated((96, 96), count=count, seed=seed)
    per_object = np.array([classes[labels == k][0] for k in range(1, labels.max() + 1)])
    return object_features(labels, image[..., None].astype(np.float32)), per_object


def test_the_numpy_tree_walk_predicts_exactly_as_scikit_learn():
    from sklearn.ensemble import RandomForestClassifier

    features, classes = scene_features(0, count=30)
    forest = RandomForestClassifier(n_estimators=25, random_state=0).fit(features.astype(np.float32), classes)
    classifier = _from_forest(forest, NAMES, feature_names(1))
    unseen, _ = scene_features(1, count=30)
    np.testing.assert_array_equal(classifier.predict_proba(unseen), forest.predict_proba(unseen.astype(np.float32)))
    assert (classifier.predict(unseen)[0] == forest.predict(unseen.astype(np.float32))).all()


def test_a_forest_on_object_features_tells_round_from_elongated_objects():
    train = [scene_features(s) for s in range(3)]
    classifier = fit_object_classifier(np.concatenate([f for f, _ in train]), np.concatenate([c for _, c in train]),
                                       NAMES, feature_names(1), n_trees=50)
    features, truth = scene_features(7, count=20)
    assert np.mean(classifier.predict(features)[0] == truth) >= 0.9
    assert classifier.scores["n_objects"] >= 20 and classifier.scores["out_of_bag_accuracy"] >= 0.8


def test_one_class_of_annotations_is_refused_with_what_to_do():
    with pytest.raises(DeepColorError, match="at least two classes"):
        fit_object_classifier(np.zeros((3, 2)), np.ones(3, int), NAMES, ("a", "b"))


def classifier_model():
    """An (untrained) one-class model with an object classifier fitted on three synthetic scenes."""
    model = new_model("boundary", {}, TINY_NET, 1)
    examples = []
    for seed in range(3):
        image, labels, classes = synthetic.round_and_elongated((96, 96), count=12, seed=seed)
        prediction = Prediction(model, np.zeros((3, 96, 96), np.float32), image=prepare_image(model, image))
        examples.append(AnnotatedObjects(prediction, labels, {k: NAMES[classes[labels == k][0] - 1]
                                                              for k in range(1, labels.max() + 1)}))
    model.object_classifier = train_object_classifier(model, examples, n_trees=30)
    return model


def test_a_model_file_keeps_its_object_classifier_and_loads_it_without_pickle(tmp_path, monkeypatch):
    model = classifier_model()
    save_model(model, tmp_path / "m.safetensors")

    def refuse(*args, **kwargs):
        raise AssertionError("loading a model must not unpickle anything")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    again = load_model(tmp_path / "m.safetensors")
    monkeypatch.undo()
    assert again.output_class_names == NAMES and again.class_names == ()
    assert read_model_config(tmp_path / "m.safetensors")["object_classifier"]["use"] == "object"
    features, _ = scene_features(9, count=20)
    np.testing.assert_array_equal(again.object_classifier.predict_proba(features),
                                  model.object_classifier.predict_proba(features))
    for key, value in model.net.state_dict().items():  # the weights load as before
        assert torch.equal(again.net.state_dict()[key], value)


def test_a_model_file_without_object_classifier_still_loads(tmp_path):
    save_model(new_model("boundary", {}, TINY_NET, 1), tmp_path / "old.safetensors")
    model = load_model(tmp_path / "old.safetensors")
    assert model.object_classifier is None and model.output_class_names == ()
    assert "object_classifier" not in read_model_config(tmp_path / "old.safetensors")


def test_decoded_objects_take_their_class_from_the_object_classifier():
    model = classifier_model()
    image, labels, classes = synthetic.round_and_elongated((96, 96), count=12, seed=5)
    prediction = Prediction(model, np.zeros((3, 96, 96), np.float32), image=prepare_image(model, image))
    n = int(labels.max())
    instances = prediction.with_classes(Instances(labels, np.ones(n, np.float32)))
    truth = np.array([classes[labels == k][0] for k in range(1, n + 1)])
    assert np.mean(instances.classes == truth) >= 0.9 and instances.class_scores.shape == (n,)
    direct, _ = classify_objects(model.object_classifier, labels, prediction.image)
    assert (direct == instances.classes).all()


def test_a_pixel_head_that_measures_better_is_kept(monkeypatch):
    """With a class head the validation objects choose; a head that is always right beats a forest
    that learnt from the wrong classes."""
    model = new_model("boundary", {}, TINY_NET, 1, class_names=NAMES)
    examples = []
    for seed in range(3):
        image, labels, classes = synthetic.round_and_elongated((96, 96), count=12, seed=seed)
        head = np.stack([classes == 0, classes == 1, classes == 2]).astype(np.float32)
        prediction = Prediction(model, np.zeros((3, 96, 96), np.float32), class_output=head,
                                image=prepare_image(model, image))
        wrong = {k: NAMES[2 - classes[labels == k][0]] for k in range(1, labels.max() + 1)}
        right = {k: NAMES[classes[labels == k][0] - 1] for k in range(1, labels.max() + 1)}
        examples.append((AnnotatedObjects(prediction, labels, wrong), AnnotatedObjects(prediction, labels, right)))
    classifier = train_object_classifier(model, [w for w, _ in examples], validation=[r for _, r in examples],
                                         n_trees=20)
    assert classifier.use == "pixel" and classifier.scores["pixel_accuracy"] == 1.0
    model.object_classifier = classifier
    assert not model.uses_object_classifier and model.output_class_names == NAMES


def test_points_give_their_class_to_the_object_under_them():
    labels = rod_and_arc()
    points = np.array([[12, 20], [12, 60], [69, 80], [0, 0], [500, 3]])
    assert objects_from_points(labels, points, ["dead", "dead", "alive", "alive", "alive"]) == \
        {1: "dead", 2: "alive"}
    with pytest.raises(DeepColorError, match="two classes"):
        objects_from_points(labels, points[:2], ["dead", "alive"])


def test_batch_counts_the_objects_of_each_class_of_the_object_classifier(tmp_path):
    from napari_deepcolor.batch import Batch, BatchConfig
    from napari_deepcolor.data.classes import class_table_path

    save_model(classifier_model(), tmp_path / "m.safetensors")
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", synthetic.round_and_elongated((96, 96), count=10, seed=12)[0])
    list(Batch(BatchConfig(model=str(tmp_path / "m.safetensors"), input=str(tmp_path / "in"),
                           output=str(tmp_path / "out"))).run())
    with open(class_table_path(tmp_path / "out" / "a.tif"), newline="") as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / "out" / "batch_summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))[0]
    assert int(summary["objects"]) == len(rows)
    for name in NAMES:
        assert int(summary[f"objects_{name}"]) == sum(r["class"] == name for r in rows)


def test_the_cli_trains_object_classes_from_a_classes_folder_into_a_new_model(tmp_path, capsys):
    from napari_deepcolor.cli import main

    from .test_classes import write_dataset

    root = write_dataset(tmp_path / "data", n=3, form="csv")
    save_model(new_model("boundary", {}, TINY_NET, 1), tmp_path / "m.safetensors")
    arguments = ["train-classes", "--model", str(tmp_path / "m.safetensors"), "--images", str(root / "images"),
                 "--labels", str(root / "labels"), "--classes", str(root / "classes"), "--output", str(tmp_path / "classes.safetensors"), "--trees", "20",
                 "--device", "cpu"]
    assert main(arguments) == 0
    model = load_model(tmp_path / "classes.safetensors")
    assert model.output_class_names == NAMES and model.object_classifier.scores["n_objects"] == 18
    assert "model saved to" in capsys.readouterr().out
    assert main(arguments) != 0  # an existing model file is not replaced without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_training_with_classes_keeps_an_object_classifier_chosen_on_the_validation_images(tmp_path, capsys):
    """``train --classes`` also fits the object classifier on the training images' objects; the validation
    images' objects choose it or the class head, whichever classifies more of them right, and the model file
    keeps the forest and the choice."""
    from napari_deepcolor.cli import main

    from .test_classes import write_dataset

    root = write_dataset(tmp_path / "data", n=5, form="csv")
    output = tmp_path / "m.safetensors"
    assert main(["train", "--images", str(root / "images"), "--labels", str(root / "labels"), "--classes",
                 str(root / "classes"), "--output", str(output), "--method", "boundary", "--iterations", "2",
                 "--patch-size", "64", "--batch-size", "2", "--depth", "2", "--width", "8", "--validation-fraction",
                 "0.4", "--no-choose-refinement", "--net-object-diameter", "0", "--device", "cpu"]) == 0
    model = load_model(output)
    choice = model.provenance["object_classes"]
    assert model.class_names == NAMES and model.object_classifier.class_names == NAMES
    assert choice["n_objects"] == 18 and choice["n_choice_objects"] == 12  # 3 training, 2 validation images
    better = "object" if choice["object_accuracy"] >= choice["pixel_accuracy"] else "pixel"
    assert choice["use"] == model.object_classifier.use == better
    assert model.uses_object_classifier == (better == "object")
    source = "the object classifier" if better == "object" else "the pixel class head"
    assert f"classes come from {source} (validation class accuracy" in capsys.readouterr().out
