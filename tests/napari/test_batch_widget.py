"""The Batch widget: a folder in, label files out, progress and a summary naming what failed."""

import numpy as np
import tifffile

from napari_deepcolor import synthetic

from .conftest import COLORING_DECODE, add_widget, errors


def test_batch_writes_labels_and_reports_failures(make_napari_viewer, qtbot, tmp_path, tiny_model_path,
                                                  notifications):
    source = tmp_path / "in"
    source.mkdir()
    for i in range(2):
        tifffile.imwrite(source / f"cells{i}.tif", synthetic.nuclei((96, 96), count=8, seed=i)[0])
    (source / "broken.tif").write_bytes(b"II*\x00 truncated")
    viewer = make_napari_viewer()
    widget = add_widget(viewer, "Batch")
    widget.input.set_path(str(source))
    widget.output.set_path(str(tmp_path / "out"))
    widget.model.set_path(str(tiny_model_path))
    assert set(widget.sliders.sliders) == COLORING_DECODE
    widget.sliders.sliders["size_threshold"].value = 10
    widget.device.setCurrentText("cpu")
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)

    assert widget.finished is not None and not widget.finished.stopped
    text = widget.summary.toPlainText()
    assert "2 written" in text and "1 failed" in text and "broken.tif" in text
    for i in range(2):
        labels = tifffile.imread(tmp_path / "out" / f"cells{i}.tif")
        assert labels.shape == (96, 96) and np.issubdtype(labels.dtype, np.unsignedinteger)
    assert (tmp_path / "out" / "batch_summary.csv").is_file()


def test_batch_without_folders_or_model_is_a_notification(make_napari_viewer, tmp_path, notifications):
    viewer = make_napari_viewer()
    widget = add_widget(viewer, "Batch")
    widget.run_button.click()
    assert any("input folder" in e for e in errors(notifications))
    widget.input.set_path(str(tmp_path))
    widget.output.set_path(str(tmp_path / "out"))
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    widget.model.set_path(str(tmp_path / "bad.safetensors"))
    assert any("not a napari-deepcolor model" in e for e in errors(notifications))
    assert widget.worker is None and widget.run_button.isEnabled()


def test_batch_takes_the_values_last_used_in_the_segment_widget(make_napari_viewer, tiny_model_path):
    from napari_deepcolor._napari._session import session

    viewer = make_napari_viewer()
    widget = add_widget(viewer, "Batch")
    widget.model.set_path(str(tiny_model_path))
    assert not widget.from_segment.isEnabled()
    remembered = {"size_threshold": 77, "merge_radius": 3.0, "interior_threshold": 0.35, "split_by_color": 0,
                  "foreground_threshold": 0.65}
    session.remember_decode_values(tiny_model_path, remembered)
    assert widget.from_segment.isEnabled()
    widget.from_segment.click()
    assert widget.sliders.values() == remembered


def test_batch_offers_the_segment_widgets_model_chooser_and_runs_a_starter(make_napari_viewer, qtbot, tmp_path,
                                                                           notifications):
    from importlib.resources import files

    source = tmp_path / "in"
    source.mkdir()
    tifffile.imwrite(source / "a.tif", tifffile.imread(  # a real BBBC039 image shipped with the package
        files("napari_deepcolor") / "sample_data" / "bbbc039_A09_s1.tif")[:160, :160])
    viewer = make_napari_viewer()
    segment, widget = add_widget(viewer, "Segment"), add_widget(viewer, "Batch")
    choices = [widget.model.combo.itemText(i) for i in range(widget.model.combo.count())]
    assert choices == [segment.model_choice.itemText(i) for i in range(segment.model_choice.count())]
    assert choices[0].startswith("nuclei (starter") and choices[-1] == "a model file…"
    assert widget.model.starter == "nuclei" and not widget.model.path_edit.isEnabled()
    assert "size_threshold" in widget.sliders.sliders  # the starter's sliders, before any file is given
    assert ".zip" in widget.model.path_edit.line.placeholderText()
    widget.input.set_path(str(source))
    widget.output.set_path(str(tmp_path / "out"))
    widget.device.setCurrentText("cpu")
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert not errors(notifications)
    assert tifffile.imread(tmp_path / "out" / "a.tif").max() > 5  # the nuclei starter found nuclei
