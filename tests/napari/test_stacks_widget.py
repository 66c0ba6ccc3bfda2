"""The Segment widget on a 3D image: objects linked through z or time, a Tracks layer, measurements."""

import csv

import numpy as np

from .conftest import PLUGIN, add_widget, errors

PLANES = 4


def segment_stack(viewer, qtbot):
    viewer.open_sample(PLUGIN, "synthetic-nuclei")
    plane = viewer.layers["nuclei (synthetic)"].data[:192, :192]
    viewer.add_image(np.stack([np.roll(plane, z, axis=1) for z in range(PLANES)]), name="stack")
    widget = add_widget(viewer, "Segment")
    widget.model_choice.setCurrentIndex(0)  # the nuclei starter
    widget.image_combo.value = "stack"
    widget.device.setCurrentText("cpu")
    widget.show_preview.setChecked(False)
    assert widget.axes_choice.currentData() == "ZYX"  # a 3D image is a z-stack unless told otherwise
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None and widget.measured_count > 0, timeout=60_000)
    return widget


def test_a_3d_image_gets_one_id_per_object_through_the_planes(make_napari_viewer, qtbot, notifications, tmp_path):
    viewer = make_napari_viewer()
    widget = segment_stack(viewer, qtbot)
    assert not errors(notifications)
    labels = widget.labels_layer().data
    assert labels.shape == (PLANES, 192, 192)
    first = set(np.unique(labels[0])) - {0}
    assert len(first) >= 5
    kept = [i for i in first if all(i in np.unique(labels[z]) for z in range(PLANES))]
    # the same ids in every plane: linked, not counted up (np.roll carries a nucleus across the image's edge,
    # where it may split: 8 of 9 with the 15-minute nuclei starter)
    assert len(kept) >= 0.8 * len(first)
    assert labels.max() < 1.5 * len(first)
    features = widget.labels_layer().features
    assert list(features["index"]) == sorted(np.unique(labels[labels > 0]))
    assert {"volume", "centroid_z", "mean_intensity_0"} <= set(features.columns)

    written = widget.export_labels(str(tmp_path / "stack.tif"))
    assert written is not None and (tmp_path / "stack_objects.csv").is_file()
    table = widget.export_table(str(tmp_path / "table.csv"))
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(features) and "volume" in rows[0]


def test_a_time_lapse_gets_ids_that_follow_the_objects_and_a_tracks_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = segment_stack(viewer, qtbot)
    assert widget.tracks_layer() is None  # a z-stack has no tracks
    by_z = widget.labels_layer().data.copy()
    shown = widget.decode_count
    widget.axes_choice.setCurrentIndex(1)  # time-lapse: decoded again from the cache
    measured = widget.measured_count
    qtbot.waitUntil(lambda: widget.decode_count > shown and not widget.decoding and widget.measured_count > measured,
                    timeout=20_000)
    by_t = widget.labels_layer().data
    tracks = widget.tracks_layer()
    assert tracks is not None and tracks.data.shape[1] == 4  # track id, t, y, x
    assert set(np.unique(tracks.data[:, 0]).astype(int)) == set(np.unique(by_t[by_t > 0]))
    # shifted a pixel a frame: the same ids as through z, except where a nucleus cut in two in one frame
    # made a division (a mother and two daughters in time, one id and a new one through z)
    divided = set(tracks.graph) | {mother for mothers in tracks.graph.values() for mother in mothers}
    same = ~np.isin(by_t, list(divided))
    assert same.mean() > 0.9 and np.array_equal(by_t[same], by_z[same])
    assert "frames" in widget.labels_layer().features.columns
    widget.axes_choice.setCurrentIndex(2)  # planes on their own: ids count up, no tracks
    qtbot.waitUntil(lambda: widget.tracks_layer() is None and not widget.decoding, timeout=20_000)
    assert widget.labels_layer().data.max() > by_z.max()


def test_the_channel_chosen_in_a_two_channel_image_is_segmented_and_without_a_choice_it_is_an_error(
        make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic-nuclei")
    nuclei = viewer.layers["nuclei (synthetic)"].data[:160, :160]
    other = np.random.default_rng(0).random(nuclei.shape).astype(nuclei.dtype)  # e.g. a GFP channel without nuclei
    viewer.add_image(np.stack([nuclei, other], axis=-1), name="channels last")
    viewer.add_image(np.stack([other, nuclei]), name="dapi in channel 1")
    widget = add_widget(viewer, "Segment")
    widget.model_choice.setCurrentIndex(0)  # the nuclei starter: one channel
    widget.device.setCurrentText("cpu")
    widget.image_combo.value = "channels last"
    assert widget.axes_choice.currentData() == "YXC"  # a short last axis: channels, not 160 planes
    widget.image_combo.value = "dapi in channel 1"
    widget.axes_choice.setCurrentIndex(widget.axes_choice.findData("CYX"))
    assert widget.channel.isEnabled()

    widget.run_button.click()  # no channel chosen: an error that names the channels, nothing segmented
    assert any("2 channels (0, 1)" in e and "Channel" in e for e in errors(notifications))
    assert widget.worker is None and widget.labels_layer() is None

    widget.channel.setValue(1)
    notifications.clear()
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None and widget.measured_count > 0, timeout=60_000)
    assert not errors(notifications)
    picked = widget.labels_layer().data.copy()
    assert picked.shape == nuclei.shape and picked.max() >= 5  # one 2D image of that channel's nuclei
    assert {"mean_intensity_0", "mean_intensity_1"} <= set(widget.labels_layer().features.columns)

    viewer.add_image(nuclei, name="dapi alone")
    widget.image_combo.value = "dapi alone"
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None and widget.labels_layer_name == "dapi alone segmentation",
                    timeout=60_000)
    assert np.array_equal(widget.labels_layer().data, picked)  # the objects of channel 1, and only those
