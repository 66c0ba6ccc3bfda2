"""The Segment widget: one network run, live sliders from the cache, tuning, export, clear errors."""

import numpy as np
import pytest
import tifffile
import zarr

from napari_deepcolor.inference import Prediction
from napari_deepcolor.nets.unet import UNet

from .conftest import COLORING_DECODE, PLUGIN, add_widget, errors


@pytest.fixture
def forward_calls(monkeypatch):
    calls = []
    original = UNet.forward

    def counted(self, x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(UNet, "forward", counted)
    return calls


def segment_sample(viewer, qtbot, model_path, *, preview=False):
    """The Segment widget run as a user would: a model file, the synthetic sample, Segment."""
    viewer.open_sample(PLUGIN, "synthetic-nuclei")
    widget = add_widget(viewer, "Segment")
    widget.model_edit.set_path(str(model_path))
    widget.image_combo.value = "nuclei (synthetic)"
    widget.device.setCurrentText("cpu")
    widget.show_preview.setChecked(preview)
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None and (not preview or bool(widget.preview_layer_names)), timeout=30_000)
    return widget


@pytest.fixture
def segmented(make_napari_viewer, qtbot, tiny_model_path, forward_calls):
    viewer = make_napari_viewer()
    return viewer, segment_sample(viewer, qtbot, tiny_model_path)


def test_segment_adds_labels_and_sliders_redecode_without_the_network(segmented, qtbot, forward_calls):
    viewer, widget = segmented
    layer = widget.labels_layer()
    assert layer.data.shape == (384, 384) and layer.data.max() > 0
    assert set(widget.sliders.sliders) == COLORING_DECODE
    runs = len(forward_calls)
    assert runs > 0

    reference = Prediction(widget.prediction.model, widget.prediction.output)  # own cache: no race
    before, shown = layer.data.copy(), widget.decode_count
    sizes = np.bincount(before.ravel())[1:]
    widget.sliders.sliders["size_threshold"].value = int(sizes[sizes > 0].min()) + 1  # drops the smallest
    qtbot.waitUntil(lambda: widget.decode_count > shown and not widget.decoding, timeout=10_000)
    assert not np.array_equal(layer.data, before)

    size = widget.sliders.sliders["size_threshold"]
    drag = list(range(0, size.max + 1, max(size.max // 20, 1)))
    for value in drag:  # a drag: many values quickly, the last one is what shows
        size.value = value
    expected = reference.decode(size_threshold=drag[-1],
                                merge_radius=widget.sliders.values()["merge_radius"]).labels
    qtbot.waitUntil(lambda: np.array_equal(layer.data, expected), timeout=10_000)
    assert len(forward_calls) == runs  # the network never ran for a slider


def test_tune_from_a_partial_annotation_moves_the_sliders(segmented, qtbot, forward_calls):
    viewer, widget = segmented
    runs = len(forward_calls)
    truth = viewer.layers["nuclei annotations"]
    partial = np.zeros_like(truth.data)
    partial[100:300, 50:250] = truth.data[100:300, 50:250]
    truth.data = partial
    viewer.add_labels(np.zeros((10, 10), np.int32), name="elsewhere")  # another shape: not offered
    assert widget.truth_combo.choices == ("nuclei annotations",)  # not the segmentation either
    widget.truth_combo.value = "nuclei annotations"
    size = widget.sliders.sliders["size_threshold"]
    size.value = size.max  # a threshold that removes most objects: tuning must bring it down
    widget.tune_button.click()
    qtbot.waitUntil(lambda: widget.tune_worker is None and not widget.decoding, timeout=60_000)
    parameters, score = widget.last_tuning
    assert "AP" in widget.tune_result.text() and 0 <= score <= 1
    assert widget.sliders.values() == parameters and parameters["size_threshold"] < size.max
    assert len(forward_calls) == runs


def test_export_reads_back_identical_labels(segmented, tmp_path):
    viewer, widget = segmented
    layer = widget.labels_layer()
    layer.scale = (0.5, 0.5)
    for name in ("labels.tif", "labels.png", "labels.zarr"):
        written = widget.export_labels(str(tmp_path / name))
        if name.endswith(".zarr"):
            back = zarr.open_array(str(written), mode="r")[...]
        elif name.endswith(".png"):
            from PIL import Image
            back = np.asarray(Image.open(written))
        else:
            back = tifffile.imread(written)
        assert np.array_equal(back, layer.data), name
        assert back.dtype == (np.uint8 if layer.data.max() < 256 else np.uint16)


def test_preview_layers_and_stacks(segmented, qtbot):
    viewer, widget = segmented
    widget.show_preview.setChecked(True)
    qtbot.waitUntil(lambda: len(widget.preview_layer_names) > 0, timeout=10_000)
    first = list(widget.preview_layer_names)
    assert any("colour 1" in name for name in first)
    assert not set(first) & set(widget.image_combo.choices)  # outputs are not offered as images to segment
    widget.run_button.click()  # the same image again: its previews are replaced, not added
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    qtbot.wait(1000)
    assert sum(layer.name in first for layer in viewer.layers) == len(first) and len(viewer.layers) == 3 + len(first)

    stack = np.stack([viewer.layers["nuclei (synthetic)"].data[:96, :96]] * 2)
    viewer.add_image(stack, name="stack")
    widget.image_combo.value = "stack"
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None and widget.labels_layer_name == "stack segmentation"
                    and widget.preview_layer_names != first, timeout=30_000)
    assert widget.labels_layer().data.shape == (2, 96, 96)
    assert not any(name in viewer.layers for name in first)  # the first image's previews made way
    widget.show_preview.setChecked(False)
    assert not any("colour" in layer.name for layer in viewer.layers)  # unticked: no preview layer left


def test_bad_inputs_are_notifications(make_napari_viewer, tmp_path, notifications, qtbot):
    viewer = make_napari_viewer()
    widget = add_widget(viewer, "Segment")
    widget.model_choice.setCurrentIndex(widget.model_choice.count() - 1)  # "a model file…", none given
    widget.run_button.click()
    assert any("model file" in e for e in errors(notifications))
    notifications.clear()
    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(b"this is not a model")
    widget.model_edit.set_path(str(corrupt))  # as the browse button does
    widget.model_edit.line.editingFinished.emit()  # then the field loses focus
    assert len(errors(notifications)) == 1 and "not a napari-deepcolor model" in errors(notifications)[0]
    assert widget.model is None and widget.run_button.isEnabled()
    assert widget.model_edit.path == str(corrupt)  # the bad path stays visible
    viewer.add_image(np.zeros((32, 32), np.float32), name="image")
    widget.run_button.click()  # says again why, once, instead of "choose a model file first"
    assert len(errors(notifications)) == 2 and "not a napari-deepcolor model" in errors(notifications)[1]
    assert widget.model_edit.path == str(corrupt) and widget.worker is None
    widget.tune_button.click()
    assert any("segment the image first" in e for e in errors(notifications))
    widget.export_labels(str(tmp_path / "x.tif"))
    assert any("no labels to export" in e for e in errors(notifications))


@pytest.mark.parametrize("method", ["semiconv", "dcme", "metric"])
def test_embedding_models_get_their_own_sliders_and_previews(
        method, make_napari_viewer, qtbot, tmp_path):
    from napari_deepcolor.checkpoint import new_model, save_model
    from napari_deepcolor.methods import get_method

    path = save_model(new_model(method, None, {"depth": 2, "width": 8}, in_channels=1), tmp_path / f"{method}.safetensors")
    viewer = make_napari_viewer()
    widget = segment_sample(viewer, qtbot, path, preview=True)
    assert set(widget.sliders.sliders) == {p.name for p in get_method(method).decode_parameters}
    assert widget.labels_layer().data.shape == viewer.layers["nuclei (synthetic)"].data.shape
    kinds = {type(viewer.layers[name]).__name__ for name in widget.preview_layer_names}
    assert "Image" in kinds
    assert ("Vectors" in kinds) == (method != "metric")  # metric learning's embedding has no displacement


def test_a_coloring_model_without_a_semantic_head_gets_no_interior_slider(make_napari_viewer, qtbot, tmp_path):
    from napari_deepcolor.checkpoint import new_model, save_model

    path = save_model(new_model("coloring", {"semantic_head": False}, {"depth": 2, "width": 8}, in_channels=1),
                      tmp_path / "plain.safetensors")
    widget = segment_sample(make_napari_viewer(), qtbot, path)
    head_only = {"interior_threshold", "split_by_color", "foreground_threshold"}
    assert set(widget.sliders.sliders) == COLORING_DECODE - head_only


def test_crf_checkbox_refines_without_the_network_and_export_saves_the_refined_labels(segmented, qtbot,
                                                                                      forward_calls, tmp_path):
    from napari_deepcolor.refine import refine_prediction

    viewer, widget = segmented
    layer, runs, shown = widget.labels_layer(), len(forward_calls), widget.decode_count
    reference = Prediction(widget.prediction.model, widget.prediction.output,
                           scale_factor=widget.prediction.scale_factor)  # the CRF's lengths follow the scale
    image = np.asarray(widget.source.image)  # what the net saw
    expected = refine_prediction(reference, image, reference.decode(**widget.sliders.values())).labels
    assert not np.array_equal(expected, layer.data)  # the refinement changes something here
    widget.refine_check.setChecked(True)
    qtbot.waitUntil(lambda: widget.decode_count > shown and not widget.decoding, timeout=30_000)
    assert len(forward_calls) == runs
    assert np.array_equal(layer.data, expected)
    back = tifffile.imread(widget.export_labels(str(tmp_path / "refined.tif")))
    assert np.array_equal(back, expected)
    widget.refine_check.setChecked(False)
    qtbot.waitUntil(lambda: not widget.decoding and not np.array_equal(layer.data, expected), timeout=30_000)


def test_the_model_chooser_offers_the_starters_first_and_segments_with_one(make_napari_viewer, qtbot, notifications):
    from napari_deepcolor.starters import starter_names

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic-nuclei")
    widget = add_widget(viewer, "Segment")
    offered = [widget.model_choice.itemData(i) for i in range(widget.model_choice.count())]
    assert offered == [*starter_names(), None]  # the starters, then "a model file…"
    assert widget.chosen_starter == "nuclei" and not widget.model_edit.isEnabled()
    widget.image_combo.value = "nuclei (synthetic)"
    widget.device.setCurrentText("cpu")
    widget.show_preview.setChecked(False)
    widget.run_button.click()  # no file chosen: the nuclei starter is loaded and run
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert not errors(notifications)
    assert widget.model.card["name"] == "nuclei" and "starter" in widget.model_info.text()
    assert widget.labels_layer().data.max() > 0


def test_a_model_file_given_after_a_starter_is_the_one_used(make_napari_viewer, tiny_model_path):
    viewer = make_napari_viewer()
    widget = add_widget(viewer, "Segment")
    widget.model_edit.set_path(str(tiny_model_path))
    assert widget.chosen_starter is None and widget.model_path == str(tiny_model_path)
    widget.model_choice.setCurrentIndex(0)  # back to a starter
    assert widget.model.card.get("name") == widget.chosen_starter


def test_a_class_model_gives_the_segmentation_layer_a_class_per_object(make_napari_viewer, qtbot, tmp_path):
    from napari_deepcolor import synthetic
    from napari_deepcolor.data import from_arrays
    from napari_deepcolor.training import TrainingConfig, train

    from .conftest import TINY_NET

    scenes = [synthetic.round_and_elongated((96, 96), count=10, seed=s) for s in range(2)]
    data = from_arrays([s[0] for s in scenes], [s[1] for s in scenes], classes=[s[2] for s in scenes],
                       class_names=synthetic.TWO_CLASS_NAMES)
    path = tmp_path / "classes.safetensors"
    train(TrainingConfig(method="boundary", net=TINY_NET, patch_size=64, batch_size=2, iterations=40,
                         learning_rate=3e-3, validation_fraction=0.0, device="cpu", augment=False), data, output=path)
    widget = segment_sample(make_napari_viewer(), qtbot, path)
    layer = widget.labels_layer()
    features = layer.features
    assert layer.data.max() > 0
    assert list(features["index"]) == list(range(1, int(layer.data.max()) + 1))  # one row per object
    assert set(features["class"]) <= set(synthetic.TWO_CLASS_NAMES)
    assert ((features["score"] >= 0) & (features["score"] <= 1)).all()


def test_flips_run_the_net_on_four_mirror_images_for_a_baseline_model_only(make_napari_viewer, qtbot,
                                                                            tiny_model_path, forward_calls):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic-nuclei")
    widget = add_widget(viewer, "Segment")
    widget.model_edit.set_path(str(tiny_model_path))  # deep coloring: colours differ between mirror images
    assert not widget.flips_check.isEnabled() and not widget.flips_check.isChecked()
    widget.model_choice.setCurrentIndex(0)  # the nuclei starter, a 3-class baseline
    assert widget.load_model() and widget.flips_check.isEnabled()
    widget.flips_check.setChecked(True)
    widget.image_combo.value = "nuclei (synthetic)"
    widget.device.setCurrentText("cpu")
    widget.show_preview.setChecked(False)
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert len(forward_calls) == 4 and widget.labels_layer().data.max() > 0  # one window, four flips
