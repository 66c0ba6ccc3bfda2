"""Label images that are masks (0/255, 0/1, one label over many objects) are told apart from instance
labels: refused with a message that says what was seen, or, when asked, cut into connected pieces."""

import numpy as np
import pytest
import tifffile

from napari_deepcolor import synthetic
from napari_deepcolor.data import from_arrays, read_annotated_folder
from napari_deepcolor.data.masks import label_pieces, mask_like_labels
from napari_deepcolor.errors import DeepColorError


def _nuclei(seed=0):
    image, labels = synthetic.nuclei((128, 128), count=14, radius=(5, 8), seed=seed)
    return image, labels


@pytest.mark.parametrize("value", [1, 255])
def test_a_binary_mask_is_recognised_and_says_what_was_seen(value):
    _, labels = _nuclei()
    mask = np.where(labels > 0, value, 0).astype(np.uint8)
    seen = mask_like_labels(mask)
    assert seen is not None and f"the value {value} covers" in seen and "binary mask" in seen


def test_instance_labels_are_not_a_mask_even_with_an_object_cut_in_pieces():
    _, labels = _nuclei()
    assert mask_like_labels(labels) is None
    cut = labels.copy()
    cut[labels == 3] = 0
    cut[:, 60:62][labels[:, 60:62] > 0] = 0  # a column cut through some objects: two pieces each
    biggest = np.bincount(labels.ravel())[1:].argmax() + 1
    cut[(labels == biggest) & (np.arange(128)[:, None] % 12 == 0)] = 0  # one object striped into pieces
    assert mask_like_labels(cut) is None  # the ids in pieces hold a small share of the objects
    assert mask_like_labels(np.zeros((10, 10), np.uint8)) is None


def test_one_label_painted_over_several_objects_is_a_mask_beside_other_labels():
    """A napari Labels layer painted with label 1 everywhere but one object."""
    _, labels = _nuclei()
    painted = np.where(labels > 0, 1, 0).astype(np.int32)
    painted[labels == 1] = 2
    assert "the value 1 covers" in mask_like_labels(painted)


def test_label_pieces_gives_each_separate_piece_its_own_id():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = mask[2:6, 12:16] = mask[12:16, 2:6] = 255
    mask[12:16, 12:16] = 7
    mask[12:16, 16:18] = 255  # touches the 7: two values stay two objects
    pieces = label_pieces(mask)
    assert pieces.dtype == np.int32 and len(np.unique(pieces[pieces > 0])) == 5
    assert mask_like_labels(pieces) is None


def test_from_arrays_refuses_a_mask_and_cuts_it_into_pieces_when_asked():
    image, labels = _nuclei()
    mask = np.where(labels > 0, 255, 0).astype(np.uint8)
    with pytest.raises(DeepColorError) as error:
        from_arrays(image, mask, names="plate 1")
    message = str(error.value)
    assert "plate 1" in message and "the value 255 covers" in message and "binary mask" in message
    assert "--labels-are-masks" in message and "Labels are masks" in message
    sample, = from_arrays(image, mask, labels_are_masks=True)
    expected = len(np.unique(label_pieces(labels > 0))) - 1
    assert sample.num_objects == expected > 5


def test_a_folder_of_masks_is_refused_by_file_and_read_with_the_opt_in(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(2):
        image, labels = _nuclei(seed=i)
        tifffile.imwrite(tmp_path / "images" / f"img{i}.tif", (image * 1000).astype(np.uint16))
        tifffile.imwrite(tmp_path / "labels" / f"img{i}.tif", np.where(labels > 0, 255, 0).astype(np.uint8))
    with pytest.raises(DeepColorError, match=r"img0.tif: the value 255 covers \d+ separate pieces"):
        read_annotated_folder(tmp_path / "images", tmp_path / "labels")
    samples = read_annotated_folder(tmp_path / "images", tmp_path / "labels", labels_are_masks=True)
    assert [s.num_objects > 5 for s in samples] == [True, True]
