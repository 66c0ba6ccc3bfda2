"""The per-object table: skimage's region properties, one row per object and frame, written atomically."""

import csv

import numpy as np
import pytest

from napari_deepcolor.errors import DeepColorError
from napari_deepcolor.measure import measure_objects, measurements_path, tracks_path, write_table
from napari_deepcolor.methods.base import Instances


def test_a_2d_table_has_position_box_area_and_intensity_of_each_channel():
    labels = np.zeros((6, 8), np.uint8)
    labels[1:3, 1:4] = 1  # 6 pixels
    labels[4:6, 5:8] = 2
    image = np.zeros((6, 8, 2))
    image[..., 0], image[..., 1] = 1.0, np.arange(8)[None, :]
    instances = Instances(labels, np.array([0.5, 0.9], np.float32), np.array([2, 1]), np.array([0.7, 0.8]))
    table = measure_objects(labels, "YX", image=image, instances=instances, class_names=("alive", "dead"),
                            channel_names=("DAPI", "GFP"))
    assert table["label"] == [1, 2] and table["area"] == [6, 6]
    assert table["centroid_y"] == [1.5, 4.5] and table["centroid_x"] == [2.0, 6.0]
    assert (table["bbox_y0"], table["bbox_x0"], table["bbox_y1"], table["bbox_x1"]) == ([1, 4], [1, 5], [3, 6], [4, 8])
    assert table["mean_intensity_GFP"] == [2.0, 6.0] and table["integrated_intensity_GFP"] == [12.0, 36.0]
    assert table["integrated_intensity_DAPI"] == [6.0, 6.0]
    assert table["instance_score"] == [0.5, 0.9]
    assert table["class"] == ["dead", "alive"] and table["class_score"] == [0.7, 0.8]


def test_a_z_stack_is_measured_in_3d_and_a_time_lapse_per_frame():
    volume = np.zeros((3, 5, 5), np.uint8)
    volume[0:2, 1:3, 1:3] = 1
    table = measure_objects(volume, "ZYX")
    assert table["volume"] == [8] and table["centroid_z"] == [0.5] and (table["bbox_z0"], table["bbox_z1"]) == ([0], [2])
    movie = measure_objects(volume, "TYX")
    assert movie["label"] == [1, 1] and movie["frame"] == [0, 1] and movie["area"] == [4, 4]


def test_mismatched_intensities_are_refused():
    with pytest.raises(DeepColorError, match="channel axis"):
        measure_objects(np.zeros((4, 4), int), "YX", image=np.zeros((4, 5, 1)))


def test_tables_are_written_atomically_beside_the_labels(tmp_path):
    assert measurements_path(tmp_path / "a.tif").name == "a_objects.csv"
    assert tracks_path(tmp_path / "a.zarr").name == "a_tracks.csv"
    path = write_table(measurements_path(tmp_path / "a.tif"), {"label": [1, 2], "area": [3, 4]})
    with open(path, newline="") as f:
        assert list(csv.DictReader(f)) == [{"label": "1", "area": "3"}, {"label": "2", "area": "4"}]
    with pytest.raises(DeepColorError, match="already exists"):
        write_table(path, {"label": []})
    write_table(path, {"label": [], "area": []}, overwrite=True)
    assert path.read_text().strip() == "label,area"
    assert [p.name for p in tmp_path.iterdir()] == ["a_objects.csv"]  # no temporary left
