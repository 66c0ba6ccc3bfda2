"""The Segment widget's object classes: click two objects into two classes, train, every object classified."""

import numpy as np

from napari_deepcolor.checkpoint import load_model

from .conftest import errors
from .test_segment_widget import segment_sample


def centre_of(labels, label):
    return np.argwhere(labels == label).mean(axis=0)


def test_two_clicked_objects_in_two_classes_classify_every_object(make_napari_viewer, qtbot, tiny_model_path,
                                                                  notifications, tmp_path):
    viewer = make_napari_viewer()
    widget = segment_sample(viewer, qtbot, tiny_model_path)
    labels_layer = widget.labels_layer()
    labels = np.asarray(labels_layer.data)
    sizes = np.bincount(labels.ravel())
    small, large = int(np.argmin(np.where(sizes[1:] > 0, sizes[1:], 10**9))) + 1, int(np.argmax(sizes[1:])) + 1
    box = widget.object_classes
    box.names_edit.setText("small, large")
    box.names_edit.editingFinished.emit()
    box.points_button.click()
    points = box.points_layer()
    assert points is not None and points.mode == "add"

    box.class_choice.setCurrentText("small")  # as a user: pick the class, then click an object
    points.add(centre_of(labels, small))
    box.class_choice.setCurrentText("large")
    points.add(centre_of(labels, large))
    assert list(points.features["class"]) == ["small", "large"]

    shown = widget.decode_count
    box.train_button.click()
    qtbot.waitUntil(lambda: box.worker is None and widget.decode_count > shown and not widget.decoding,
                    timeout=30_000)
    assert not errors(notifications)
    features = labels_layer.features
    classes = dict(zip(features["index"].tolist(), features["class"].tolist()))
    assert set(classes) == set(np.unique(labels[labels > 0]).tolist())  # every object has a class
    assert classes[small] == "small" and classes[large] == "large"
    counts = {name: list(classes.values()).count(name) for name in ("small", "large")}
    assert f"(small {counts['small']}, large {counts['large']})" in widget.status.text()

    written = box.save_model(str(tmp_path / "with_classes.safetensors"))
    again = load_model(written)
    assert again.output_class_names == ("small", "large") and again.uses_object_classifier


def test_training_without_points_says_what_to_do(make_napari_viewer, qtbot, tiny_model_path, notifications):
    viewer = make_napari_viewer()
    widget = segment_sample(viewer, qtbot, tiny_model_path)
    widget.object_classes.train_button.click()
    assert any("click a few objects of each class" in e for e in errors(notifications))
    assert widget.object_classes.worker is None
