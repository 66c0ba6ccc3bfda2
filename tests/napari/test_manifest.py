"""The plugin as napari sees it: widgets, sample data, the folder reader and the labels writer."""

import numpy as np
import pytest
import tifffile

from napari_deepcolor._napari.batch_widget import BatchWidget
from napari_deepcolor._napari.segment_widget import SegmentWidget
from napari_deepcolor._napari.train_widget import TrainWidget

from .conftest import PLUGIN, add_widget


def test_the_three_widgets_open_from_the_plugins_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    assert isinstance(add_widget(viewer, "Train"), TrainWidget)
    assert isinstance(add_widget(viewer, "Segment"), SegmentWidget)
    assert isinstance(add_widget(viewer, "Batch"), BatchWidget)


@pytest.mark.parametrize("key", ["bbbc039-nuclei", "synthetic-nuclei", "synthetic-bacteria", "synthetic-worms",
                                 "synthetic-leaves"])
def test_each_sample_opens_as_an_image_with_its_annotation(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, key)
    image, labels = viewer.layers
    assert type(image).__name__ == "Image" and type(labels).__name__ == "Labels"
    assert labels.data.shape == image.data.shape[:2] and labels.data.max() > 5


def test_an_annotated_folder_opens_as_image_and_labels_stacks(make_napari_viewer, tmp_path):
    from napari_deepcolor import synthetic

    for name, seed in (("a", 0), ("b", 1)):
        image, labels = synthetic.nuclei((64, 80), count=5, seed=seed)
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "labels").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / "images" / f"{name}.tif", image)
        tifffile.imwrite(tmp_path / "labels" / f"{name}.tif", labels)
    viewer = make_napari_viewer()
    layers = viewer.open(tmp_path, plugin=PLUGIN)
    assert [type(layer).__name__ for layer in layers] == ["Image", "Labels"]
    assert layers[0].data.shape == (2, 64, 80) and layers[1].data.shape == (2, 64, 80)


def test_the_folder_reader_leaves_single_files_to_napari(tmp_path):
    from npe2 import PluginManager

    image = tmp_path / "cells.tif"
    tifffile.imwrite(image, np.zeros((8, 8), np.uint8))
    readers = {r.plugin_name for r in PluginManager.instance().iter_compatible_readers([str(image)])}
    assert PLUGIN not in readers  # no "which reader?" question for every file a user opens
    assert PLUGIN in {r.plugin_name for r in PluginManager.instance().iter_compatible_readers([str(tmp_path)])}


def test_the_labels_writer_keeps_the_smallest_dtype_and_the_scale(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    labels = np.zeros((30, 40), np.int64)
    labels[5:10, 5:10], labels[20:25, 30:35] = 3, 300
    viewer.add_labels(labels, name="cells", scale=(0.5, 0.25))
    written = viewer.layers.save(str(tmp_path / "cells.tif"), plugin=PLUGIN)
    with tifffile.TiffFile(written[0]) as tif:
        back = tif.asarray()
        x_resolution = tif.pages[0].tags["XResolution"].value
    assert back.dtype == np.uint16 and np.array_equal(back, labels)
    assert x_resolution[0] / x_resolution[1] == pytest.approx(4.0)  # 1 / 0.25 pixels per unit
