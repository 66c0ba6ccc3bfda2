"""Reading annotated datasets from disk in each supported folder layout."""

import logging

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_deepcolor.data import describe_layout, detect_layout, read_annotated_folder, read_object_masks
from napari_deepcolor.errors import DeepColorError



def _check(samples, channels=1):
    assert samples
    for s in samples:
        assert s.image.dtype == np.float32 and s.image.ndim == 3 and s.image.shape[2] == channels
        assert s.labels.dtype == np.int32 and s.labels.shape == s.image.shape[:2]
        ids = np.unique(s.labels)
        np.testing.assert_array_equal(ids, np.arange(ids.size))  # consecutive from 0


# --- real data (read-only; only a couple of files each) ----------------------------------------

@pytest.mark.parametrize("name", ["bbbc039", "ecoli_synth"])
def test_images_and_labels_subfolders(shared_data, name):
    assert "subfolders" in detect_layout(shared_data / name).kind
    samples = read_annotated_folder(shared_data / name, limit=2)
    assert len(samples) == 2
    _check(samples)
    assert all(s.num_objects > 10 for s in samples)


def test_usiigaci_tif_images_with_png_labels(shared_data):
    [sample] = read_annotated_folder(shared_data / "usiigaci", limit=1)
    _check([sample])
    assert sample.shape == (1022, 1024) and sample.num_objects > 10


def test_bbbc010_object_masks_overlaps_are_ignored(shared_data):
    layout = detect_layout(shared_data / "bbbc010")
    assert layout.kind == "object-masks"
    assert "object" in describe_layout(shared_data / "bbbc010")
    [sample] = read_annotated_folder(shared_data / "bbbc010", limit=1)
    _check([sample])
    masks = read_object_masks(layout.pairs[0].object_masks)
    assert masks.dtype == bool and masks.shape[1:] == sample.shape
    overlap = masks.sum(axis=0) > 1
    assert overlap.any()
    np.testing.assert_array_equal(sample.ignore, overlap)
    assert np.all(sample.labels[overlap] == 0)
    assert sample.num_objects == np.count_nonzero(masks.any(axis=(1, 2)))


def test_two_files(shared_data):
    folder = shared_data / "dsb2018_sample"
    assert detect_layout(folder / "img2d.tif", folder / "mask2d.tif").kind == "files"
    [sample] = read_annotated_folder(folder / "img2d.tif", folder / "mask2d.tif")
    _check([sample])
    assert sample.num_objects == 125


# --- synthetic layouts -----------------------------------------------------------------------------

def _labels(shape=(24, 32), seed=0):
    labels = np.zeros(shape, np.uint8)
    rng = np.random.default_rng(seed)
    for i in range(1, 4):
        r, c = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 6)
        labels[r:r + 5, c:c + 5] = i
    return labels


def _image(shape=(24, 32), seed=0):
    return np.random.default_rng(seed).integers(0, 60000, shape).astype(np.uint16)


def _palette_png(path, indices):
    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    palette = np.random.default_rng(1).integers(0, 256, 768).astype(np.uint8)
    palette[:3] = 0
    img.putpalette(palette.tolist())
    img.save(path)


def test_cvppp_layout_with_subfolders(tmp_path):
    for sub, plants in (("A1", (1, 2)), ("A2", (1,))):
        folder = tmp_path / sub
        folder.mkdir()
        for n in plants:
            rgb = np.random.default_rng(n).integers(0, 255, (24, 32, 4)).astype(np.uint8)
            Image.fromarray(rgb, mode="RGBA").save(folder / f"plant{n:03d}_rgb.png")
            _palette_png(folder / f"plant{n:03d}_label.png", _labels(seed=n) * 3)  # leaf ids 3, 6, 9
            Image.fromarray((_labels(seed=n) > 0).astype(np.uint8) * 255).save(folder / f"plant{n:03d}_fg.png")
    layout = detect_layout(tmp_path)
    assert layout.kind == "cvppp"
    assert [p.name for p in layout.pairs] == ["A1/plant001", "A1/plant002", "A2/plant001"]
    samples = read_annotated_folder(tmp_path)
    _check(samples, channels=3)
    expected = _labels(seed=1)
    np.testing.assert_array_equal(samples[0].labels > 0, expected > 0)  # palette indices, not colours
    assert samples[0].num_objects == len(np.unique(expected)) - 1


def test_cellpose_layout_skips_images_without_masks(tmp_path, caplog):
    for n in range(2):
        tifffile.imwrite(tmp_path / f"cells{n}.tif", _image(seed=n))
        tifffile.imwrite(tmp_path / f"cells{n}_masks.tif", _labels(seed=n).astype(np.uint16))
    tifffile.imwrite(tmp_path / "lonely.tif", _image())
    (tmp_path / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        samples = read_annotated_folder(tmp_path)
    assert [s.name for s in samples] == ["cells0", "cells1"]
    assert "lonely.tif" in caplog.text
    assert "Cellpose" in describe_layout(tmp_path) and "1 image(s) without labels" in describe_layout(tmp_path)


def test_two_folders_matched_by_stem_with_label_suffix(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "gt").mkdir()
    for name in ("a", "b"):
        Image.fromarray((_image() // 256).astype(np.uint8)).save(tmp_path / "raw" / f"{name}.png")
        tifffile.imwrite(tmp_path / "gt" / f"{name}_label.tif", _labels())
    samples = read_annotated_folder(tmp_path / "raw", tmp_path / "gt")
    assert [s.name for s in samples] == ["a", "b"]
    _check(samples)


def test_masks_subfolder_and_progress(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("x", "y", "z"):
        tifffile.imwrite(tmp_path / "images" / f"{name}.tif", _image())
        tifffile.imwrite(tmp_path / "masks" / f"{name}.tif", _labels())
    calls = []
    samples = read_annotated_folder(tmp_path, limit=2, progress=lambda done, total: calls.append((done, total)))
    assert len(samples) == 2 and calls == [(1, 2), (2, 2)]


# --- what users get wrong --------------------------------------------------------------------------

def _subfolders(tmp_path, image, labels, label_name="a.tif"):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    tifffile.imwrite(tmp_path / "labels" / label_name, labels)
    return tmp_path


def test_missing_folder(tmp_path):
    with pytest.raises(DeepColorError, match="does not exist"):
        read_annotated_folder(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(DeepColorError, match="no image files"):
        read_annotated_folder(tmp_path)


def test_images_without_any_labels(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", _image())
    with pytest.raises(DeepColorError, match="no label files"):
        describe_layout(tmp_path)


def test_label_without_image_is_named(tmp_path):
    _subfolders(tmp_path, _image(), _labels())
    tifffile.imwrite(tmp_path / "labels" / "ghost_masks.tif", _labels())
    with pytest.raises(DeepColorError, match="ghost_masks.tif"):
        read_annotated_folder(tmp_path)


def test_shape_mismatch_names_both_shapes_and_suggests_transposing(tmp_path):
    _subfolders(tmp_path, _image(), _labels().T)
    with pytest.raises(DeepColorError, match=r"\(24, 32\).*\(32, 24\).*transpose"):
        read_annotated_folder(tmp_path)


def test_shape_mismatch_says_which_file_is_the_image_and_which_the_labels(tmp_path):
    _subfolders(tmp_path, _image((26, 34)), _labels((24, 32)))
    with pytest.raises(DeepColorError) as error:
        read_annotated_folder(tmp_path)
    message = str(error.value)
    image_file, label_file = next((tmp_path / "images").iterdir()), next((tmp_path / "labels").iterdir())
    assert f"the image {image_file} has shape (26, 34)" in message
    assert f"the labels {label_file} have shape (24, 32)" in message


def test_fractional_float_labels(tmp_path):
    _subfolders(tmp_path, _image(), _labels().astype(np.float32) / 2)
    with pytest.raises(DeepColorError, match="integer"):
        read_annotated_folder(tmp_path)


def test_truncated_file(tmp_path):
    _subfolders(tmp_path, _image(), _labels(), label_name="a.png")
    path = tmp_path / "labels" / "a.png"
    Image.fromarray(_labels()).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DeepColorError, match="could not be read"):
        read_annotated_folder(tmp_path)


def test_no_objects_anywhere(tmp_path):
    _subfolders(tmp_path, _image(), np.zeros((24, 32), np.uint8))
    with pytest.raises(DeepColorError, match="no annotated objects"):
        read_annotated_folder(tmp_path)


def test_mixed_channels_name_the_files(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "images" / "grey.tif", _image())
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "images" / "colour.png")
    for name in ("grey", "colour"):
        tifffile.imwrite(tmp_path / "labels" / f"{name}.tif", _labels())
    with pytest.raises(DeepColorError, match=r"channels.*colour.*grey"):
        read_annotated_folder(tmp_path)


def test_a_file_needs_its_labels(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", _image())
    with pytest.raises(DeepColorError, match="label"):
        read_annotated_folder(tmp_path / "a.tif")
    with pytest.raises(DeepColorError, match="two files"):
        read_annotated_folder(tmp_path / "a.tif", tmp_path)


def test_unknown_overlap_rule_lists_the_options(tmp_path):
    with pytest.raises(DeepColorError, match="'first'"):
        read_annotated_folder(tmp_path, overlap="merge")
