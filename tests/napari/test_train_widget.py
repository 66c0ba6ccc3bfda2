"""The Train widget: layers in, a few steps, live loss, preview, a saved model; errors as notifications."""

import numpy as np

from napari_deepcolor.checkpoint import load_model
from napari_deepcolor.training import Finished

from .conftest import COLORING_DECODE, add_widget, errors, nuclei_layers


def tiny_settings(widget, iterations=4):
    widget.method.setCurrentIndex(widget.method.findData("coloring"))
    widget.patch_size.setValue(64)
    widget.batch_size.setValue(2)
    widget.budget_unit.setCurrentText("iterations")
    widget.iterations.setValue(iterations)
    widget.net_depth.setValue(2)
    widget.net_width.setValue(8)
    widget.options_form.editors["halo_margin"].value = 5
    widget.device.setCurrentText("cpu")
    widget.preview_seconds.setValue(0)


def test_training_on_layers_plots_the_loss_previews_and_saves_a_model(make_napari_viewer, qtbot, tmp_path,
                                                                      notifications):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((160, 160), np.int32), name="earlier segmentation",
                      metadata={"napari_deepcolor": "segmentation"})  # made by the Segment widget
    nuclei_layers(viewer)
    viewer.add_labels(np.zeros((90, 90), np.int32), name="another image's labels")
    widget = add_widget(viewer, "Train")
    assert widget.pairs.rows[0].image.value == "nuclei"
    assert widget.pairs.rows[0].labels.value == "nuclei labels"
    # only labels of the image's shape, the annotation before the segmentation
    assert widget.pairs.rows[0].labels.choices == ("nuclei labels", "earlier segmentation")
    assert widget.method.currentData() == "boundary"  # the CLI's default too
    tiny_settings(widget, iterations=4)
    widget.validation_fraction.setValue(0.25)
    widget.validate_every.setValue(2)
    widget.output.set_path(str(tmp_path / "trained.safetensors"))

    widget.train_button.click()
    assert widget.request_preview()  # the region in view, segmented after the next step
    qtbot.waitUntil(lambda: widget.job is None, timeout=60_000)

    assert not errors(notifications)
    assert widget.plot.iterations == [1, 2, 3, 4] and len(widget.plot.losses) == 4
    assert widget.plot.validations  # validation markers on the plot
    assert "validation" in widget.scores.text()
    assert isinstance(widget.finished, Finished) and widget.finished.reason == "done"
    assert load_model(tmp_path / "trained.safetensors").provenance["iterations"] == 4
    preview = viewer.layers["training preview"]
    assert preview.data.shape == (160, 160) and preview.metadata["iteration"] >= 1
    assert preview.contour > 0  # outlines: the annotation underneath stays visible
    assert "training preview" not in widget.pairs.rows[0].labels.choices  # never offered as labels
    assert widget.progress.value() == 1000 and widget.train_button.isEnabled()

    saved = widget.save_model(str(tmp_path / "copy.safetensors"))
    assert load_model(saved).method_name == "coloring"


def test_stop_keeps_a_usable_model_and_a_partial_annotation_is_cropped(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    image, labels = nuclei_layers(viewer)
    partial = labels.data.copy()
    partial[:, 80:] = 0  # only the left half annotated
    labels.data = partial
    widget = add_widget(viewer, "Train")
    tiny_settings(widget, iterations=10_000)
    widget.validation_fraction.setValue(0)
    widget.output.set_path(str(tmp_path / "stopped.safetensors"))
    widget.train_button.click()
    qtbot.waitUntil(lambda: len(widget.plot.losses) >= 2, timeout=60_000)
    widget.stop_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=60_000)
    assert widget.finished.reason == "stopped"
    model = load_model(tmp_path / "stopped.safetensors")
    assert model.provenance["iterations"] == widget.finished.iteration
    # the training image was the box around the annotation (the left half), not the whole image
    status = [e.message for e in widget.events_seen if type(e).__name__ == "Status"]
    assert any("1 annotated image(s) (1" in m for m in status), status
    assert not any("160x160" in m for m in status)


def test_bad_inputs_are_notifications_and_the_widget_stays_usable(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    widget = add_widget(viewer, "Train")
    widget.train_button.click()  # no layers at all
    assert any("choose an image layer" in e for e in errors(notifications))
    assert widget.job is None and widget.train_button.isEnabled()

    viewer.add_image(np.random.default_rng(0).random((50, 60)), name="image")
    viewer.add_labels(np.ones((60, 50), np.int32), name="labels")  # transposed: not offered
    assert widget.pairs.rows[0].image.value == "image" and widget.pairs.rows[0].labels.choices == ()
    widget.train_button.click()
    assert any("shape (60, 50)" in e and "transposed" in e for e in errors(notifications))
    assert widget.job is None and widget.train_button.isEnabled()

    viewer.add_labels(np.zeros((50, 60), np.int32), name="empty")  # offered; an empty annotation fails in the worker
    assert widget.pairs.rows[0].labels.value == "empty"
    tiny_settings(widget)
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=30_000)
    assert any("empty" in e for e in errors(notifications))
    assert "failed" in widget.status.text() and widget.train_button.isEnabled()


def test_fine_tuning_on_an_annotated_folder(make_napari_viewer, qtbot, tmp_path, tiny_model_path, notifications):
    import tifffile

    from napari_deepcolor import synthetic

    for name, seed in (("a", 0), ("b", 1)):
        image, labels = synthetic.nuclei((96, 96), count=10, radius=(6, 9), seed=seed)
        tifffile.imwrite(tmp_path / f"{name}.tif", image)
        tifffile.imwrite(tmp_path / f"{name}_masks.tif", labels)
    viewer = make_napari_viewer()
    widget = add_widget(viewer, "Train")
    widget.source.setCurrentIndex(1)
    widget.folder.set_path(str(tmp_path / "missing"))
    widget.train_button.click()
    assert errors(notifications)  # a folder that does not exist: said so, nothing starts
    widget.folder.set_path(str(tmp_path))
    assert "2" in widget.layout_info.text()  # the layout found, with its number of images
    widget.start_from.setCurrentIndex(1)
    widget.init_model.set_path(str(tiny_model_path))
    assert widget.options_form.values()["halo_margin"] == 5 and not widget.method.isEnabled()
    tiny_settings(widget, iterations=2)
    widget.validation_fraction.setValue(0)
    widget.output.set_path(str(tmp_path / "tuned.safetensors"))
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=60_000)
    assert widget.finished is not None, widget.status.text()
    model = load_model(tmp_path / "tuned.safetensors")
    assert model.provenance["fine_tuned_from"] == str(tiny_model_path)


def test_stop_then_skip_returns_control_within_5_s_with_a_loadable_model(make_napari_viewer, qtbot, tmp_path):
    import time

    viewer = make_napari_viewer()
    nuclei_layers(viewer, shape=(256, 256), count=40)
    widget = add_widget(viewer, "Train")
    tiny_settings(widget, iterations=100_000)
    widget.validation_fraction.setValue(0.5)  # a large validation part: tuning it takes a while
    widget.validate_every.setValue(100_000)
    widget.output.set_path(str(tmp_path / "stopped.safetensors"))
    widget.train_button.click()
    qtbot.waitUntil(lambda: len(widget.plot.losses) >= 2, timeout=60_000)
    stopped_at = time.perf_counter()
    widget.stop_button.click()
    qtbot.waitUntil(lambda: widget.stop_button.text() == "Skip" and widget.stop_button.isEnabled(), timeout=5_000)
    assert "tuning the decode" in widget.status.text()
    widget.stop_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=5_000)
    assert time.perf_counter() - stopped_at < 5
    assert widget.finished.reason == "stopped" and widget.train_button.isEnabled()
    assert widget.stop_button.text() == "Stop" and not widget.stop_button.isEnabled()
    model = load_model(tmp_path / "stopped.safetensors")
    assert model.provenance["iterations"] == widget.finished.iteration
    assert model.provenance["decode_tuning_skipped"] is True
    assert set(model.decode_defaults) == COLORING_DECODE


def test_start_from_offers_the_starters(make_napari_viewer):
    from napari_deepcolor.starters import starter_names

    viewer = make_napari_viewer()
    widget = add_widget(viewer, "Train")
    offered = [widget.start_from.itemData(i) for i in range(widget.start_from.count())]
    assert offered[2:] == starter_names()
    widget.start_from.setCurrentIndex(offered.index("nuclei"))
    assert widget.fine_tune_source() == "nuclei"
    assert widget.method.currentData() == "boundary" and not widget.method.isEnabled()
    assert not widget.init_model.isEnabled()  # no file to choose for a starter
    widget.start_from.setCurrentIndex(0)
    assert widget.fine_tune_source() is None and widget.method.isEnabled()


def test_export_button_writes_a_bioimageio_package_of_the_trained_model(make_napari_viewer, qtbot, tmp_path,
                                                                         notifications):
    from ..conftest import skip_or_fail_in_ci

    try:
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        skip_or_fail_in_ci(f'the bioimageio extra is missing ({exc}): pip install -e ".[testing]"')
    viewer = make_napari_viewer()
    nuclei_layers(viewer)
    widget = add_widget(viewer, "Train")
    assert widget.export_bioimageio(str(tmp_path / "none.zip")) is None  # nothing trained yet: said so
    assert errors(notifications)
    tiny_settings(widget, iterations=1)
    widget.validation_fraction.setValue(0)
    widget.output.set_path(str(tmp_path / "trained.safetensors"))
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=60_000)
    package = widget.export_bioimageio(str(tmp_path / "trained.zip"))
    assert package is not None and package.is_file(), widget.status.text()
    assert load_model(package).method_name == "coloring"


def test_labels_painted_with_one_label_are_a_notification_and_the_masks_box_trains_on_their_pieces(
        make_napari_viewer, qtbot, tmp_path, notifications):
    viewer = make_napari_viewer()
    image, labels = nuclei_layers(viewer)
    labels.data = (labels.data > 0).astype(np.int32)  # one label over every nucleus
    widget = add_widget(viewer, "Train")
    tiny_settings(widget, iterations=1)
    widget.output.set_path(str(tmp_path / "m.safetensors"))
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=30_000)
    assert any("the value 1 covers" in e and "Labels are masks" in e for e in errors(notifications))
    assert widget.train_button.isEnabled()
    notifications.clear()
    widget.labels_are_masks.setChecked(True)
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=60_000)
    assert not errors(notifications) and widget.finished.reason == "done"
    assert load_model(tmp_path / "m.safetensors").provenance["iterations"] == 1


def test_a_class_layer_also_trains_the_object_classifier_and_the_widget_says_which_gives_the_classes(
        make_napari_viewer, qtbot, tmp_path, notifications):
    from napari_deepcolor import synthetic

    viewer = make_napari_viewer()
    image, labels, classes = synthetic.round_and_elongated((192, 192), count=30, seed=0)
    viewer.add_image(image, name="scene")
    viewer.add_labels(labels, name="scene labels")
    viewer.add_labels(classes, name="scene classes")
    widget = add_widget(viewer, "Train")
    row = widget.pairs.rows[0]
    row.labels.value = "scene labels"
    row.reset_choices()  # the class layer is offered once it is not the labels
    row.classes.value = "scene classes"
    tiny_settings(widget, iterations=2)
    widget.validation_fraction.setValue(0.3)
    widget.output.set_path(str(tmp_path / "classes.safetensors"))
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=60_000)

    assert not errors(notifications) and widget.finished.reason == "done"
    model = load_model(tmp_path / "classes.safetensors")
    choice = model.provenance["object_classes"]
    assert model.class_names == ("class 1", "class 2") and model.object_classifier.use == choice["use"]
    source = "object classifier" if choice["use"] == "object" else "pixel class head"
    assert f"classes come from the {source}" in widget.scores.text()


def test_a_two_channel_layer_trains_a_two_channel_model_that_segments_it(make_napari_viewer, qtbot, tmp_path,
                                                                         notifications):
    viewer = make_napari_viewer()
    image, labels = nuclei_layers(viewer)
    second = np.random.default_rng(1).random(image.data.shape).astype(image.data.dtype)  # e.g. a cytoplasm stain
    viewer.layers.remove(image)
    viewer.add_image(np.stack([image.data, second]), name="nuclei + second channel")  # (C, Y, X)
    widget = add_widget(viewer, "Train")
    widget.pairs.rows[0].image.value = "nuclei + second channel"
    widget.pairs.rows[0].reset_choices()
    assert widget.pairs.rows[0].labels.choices == ("nuclei labels",)  # (Y, X) labels annotate a (C, Y, X) image
    widget.pairs.rows[0].labels.value = "nuclei labels"
    tiny_settings(widget, iterations=1)
    widget.output.set_path(str(tmp_path / "two.safetensors"))
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=60_000)
    assert not errors(notifications) and widget.finished.reason == "done"
    assert load_model(tmp_path / "two.safetensors").net_config.in_channels == 2

    segment = add_widget(viewer, "Segment")
    segment.model_choice.setCurrentIndex(segment.model_choice.count() - 1)  # a model file
    segment.model_edit.set_path(str(tmp_path / "two.safetensors"))
    assert segment.load_model()
    segment.image_combo.value = "nuclei + second channel"
    assert segment.axes_choice.currentData() == "CYX" and not segment.channel.isEnabled()  # both channels, no pick
    segment.device.setCurrentText("cpu")
    segment.run_button.click()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=60_000)
    assert not errors(notifications)
    assert segment.labels_layer().data.shape == labels.data.shape  # one 2D image, not two planes


def test_a_fine_tune_that_loses_to_its_starter_says_so_and_keeps_the_starter(make_napari_viewer, qtbot, tmp_path,
                                                                             notifications):
    viewer = make_napari_viewer()
    nuclei_layers(viewer)
    widget = add_widget(viewer, "Train")
    offered = [widget.start_from.itemData(i) for i in range(widget.start_from.count())]
    widget.start_from.setCurrentIndex(offered.index("nuclei"))
    widget.patch_size.setValue(64)
    widget.batch_size.setValue(2)
    widget.budget_unit.setCurrentText("iterations")
    widget.iterations.setValue(3)
    widget.learning_rate.setValue(0.05)  # wrecks the starter in three steps
    widget.validation_fraction.setValue(0.3)
    widget.device.setCurrentText("cpu")
    widget.preview_seconds.setValue(0)
    widget.output.set_path(str(tmp_path / "tuned.safetensors"))
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.job is None, timeout=60_000)

    assert not errors(notifications) and widget.finished.reason == "done"
    assert "keeps the starter's weights" in widget.scores.text()
    assert load_model(tmp_path / "tuned.safetensors").provenance["starter_or_fine_tune"]["kept"] == "starter"
