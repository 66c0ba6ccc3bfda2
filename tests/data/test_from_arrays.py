"""Building training samples from in-memory arrays (napari layer data)."""

import numpy as np
import pytest

from napari_deepcolor.data import AnnotatedImage, combine_object_masks, from_arrays, relabel_consecutive
from napari_deepcolor.errors import DeepColorError


def _pair(shape=(20, 30), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 4000, shape).astype(np.uint16)
    labels = np.zeros(shape[:2], np.uint16)
    labels[2:6, 3:9] = 7
    labels[10:15, 12:20] = 300
    return image, labels


def test_relabel_consecutive_keeps_order_and_background():
    labels = np.array([[0, 9, 9], [4, 0, 1000]], dtype=np.uint64)
    np.testing.assert_array_equal(relabel_consecutive(labels), [[0, 2, 2], [1, 0, 3]])
    assert relabel_consecutive(labels).dtype == np.int32
    np.testing.assert_array_equal(relabel_consecutive(np.array([[0, 2**40]])), [[0, 1]])


def test_annotated_image_converts_and_checks():
    image, labels = _pair()
    sample = AnnotatedImage(image, labels, None, "a")
    assert sample.image.shape == (20, 30, 1) and sample.image.dtype == np.float32
    assert sample.labels.dtype == np.int32 and sample.num_objects == 2
    assert set(np.unique(sample.labels)) == {0, 1, 2}
    with pytest.raises(DeepColorError, match="transposed"):
        AnnotatedImage(image, labels.T, None, "a")
    with pytest.raises(DeepColorError, match="ignore"):
        AnnotatedImage(image, labels, np.zeros((3, 3), bool), "a")


def test_single_pair_gives_one_normalised_sample():
    image, labels = _pair()
    before = image.copy(), labels.copy()
    [sample] = from_arrays(image, labels, names="cells")
    assert sample.name == "cells"
    assert sample.image.shape == (20, 30, 1) and sample.image.dtype == np.float32
    assert -0.1 < np.median(sample.image) < 1.1
    np.testing.assert_array_equal(np.unique(sample.labels), [0, 1, 2])
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(labels, before[1])


def test_lists_of_pairs_and_background_only_image_are_kept():
    (image, labels), (image2, _) = _pair(seed=1), _pair(seed=2)
    samples = from_arrays([image, image2], [labels, np.zeros_like(labels)])
    assert [s.num_objects for s in samples] == [2, 0]
    assert [s.name for s in samples] == ["image 0", "image 1"]


def test_rgb_image_with_2d_labels_has_three_channels():
    image, labels = _pair((20, 30, 3))
    [sample] = from_arrays(image, labels)
    assert sample.image.shape == (20, 30, 3)


def test_stack_gives_one_sample_per_annotated_plane():
    image = np.random.default_rng(0).random((3, 20, 30))
    labels = np.zeros((3, 20, 30), np.int32)
    labels[0, :5, :5] = 1
    labels[2, 5:9, 5:9] = 4
    samples = from_arrays(image, labels, names="stack")
    assert [s.name for s in samples] == ["stack [z=0]", "stack [z=2]"]  # plane 1 not annotated
    assert all(s.image.shape == (20, 30, 1) for s in samples)
    assert len(from_arrays(image, labels, skip_empty_planes=False)) == 3


def test_multichannel_stack():
    image = np.random.default_rng(0).random((2, 20, 30, 2))
    labels = np.ones((2, 20, 30), np.uint8)
    samples = from_arrays(image, labels)
    assert len(samples) == 2 and samples[0].image.shape == (20, 30, 2)


def test_object_masks_overlap_becomes_ignore():
    image = np.random.default_rng(0).random((10, 10))
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 4:8, 4:8] = True
    [sample] = from_arrays(image, masks)
    overlap = masks[0] & masks[1]
    np.testing.assert_array_equal(sample.ignore, overlap)
    assert np.all(sample.labels[overlap] == 0) and sample.num_objects == 2
    [first] = from_arrays(image, masks, overlap="first")
    assert first.ignore is None and np.all(first.labels[overlap] == 1)


def test_combine_object_masks_rules():
    masks = np.zeros((3, 4, 4), np.uint8)
    masks[0, :2] = 255
    masks[2, 1:3] = 255
    labels, ignore = combine_object_masks(masks, overlap="last")
    assert ignore is None
    np.testing.assert_array_equal(labels[:, 0], [1, 3, 3, 0])
    labels, ignore = combine_object_masks(masks)
    np.testing.assert_array_equal(labels[:, 0], [1, 0, 3, 0])
    np.testing.assert_array_equal(ignore[:, 0], [False, True, False, False])
    with pytest.raises(DeepColorError, match="'ignore'"):
        combine_object_masks(masks, overlap="union")


def test_whole_float_labels_are_accepted_and_fractions_refused():
    image, labels = _pair()
    [sample] = from_arrays(image, labels.astype(np.float32))
    assert sample.num_objects == 2
    with pytest.raises(DeepColorError, match="integer"):
        from_arrays(image, labels.astype(np.float32) + 0.5)


def test_no_object_at_all_is_refused():
    image, labels = _pair()
    with pytest.raises(DeepColorError, match="no annotated objects"):
        from_arrays(image, np.zeros_like(labels))


def test_transposed_labels_are_reported_with_both_shapes():
    image, labels = _pair()
    with pytest.raises(DeepColorError, match=r"\(20, 30\).*\(30, 20\).*transpose"):
        from_arrays(image, labels.T)


def test_mixed_channel_counts_are_refused():
    (grey, labels), (rgb, labels2) = _pair(), _pair((20, 30, 3))
    with pytest.raises(DeepColorError, match="channels"):
        from_arrays([grey, rgb], [labels, labels2], names=["grey", "rgb"])


def test_mismatched_list_lengths_are_refused():
    image, labels = _pair()
    with pytest.raises(DeepColorError, match="one label image per image"):
        from_arrays([image, image], [labels])
    with pytest.raises(DeepColorError, match="alike"):
        from_arrays([image], labels)


def test_ignore_mask_is_kept():
    image, labels = _pair()
    ignore = np.zeros(labels.shape, bool)
    ignore[0, :] = True
    [sample] = from_arrays(image, labels, ignore=ignore)
    np.testing.assert_array_equal(sample.ignore, ignore)


def test_rgb_coloured_labels_are_refused():
    image, labels = _pair()
    colours = np.stack([labels % 256, labels // 256, labels % 7], axis=-1).astype(np.uint8)
    with pytest.raises(DeepColorError, match="RGB colouring"):
        from_arrays(image, colours)
