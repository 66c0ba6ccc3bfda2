"""Intensity normalisation and channel layout."""

import numpy as np
import pytest

from napari_deepcolor.data import as_channels_last, normalize_percentile
from napari_deepcolor.errors import DeepColorError


def test_full_range_percentiles_map_min_to_0_and_max_to_1():
    image = np.array([[0, 50], [100, 200]], dtype=np.uint16)
    out = normalize_percentile(image, low=0, high=100)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0.25], [0.5, 1.0]])


def test_values_beyond_the_percentiles_are_not_clipped():
    image = np.arange(1000, dtype=np.float64).reshape(20, 50)
    out = normalize_percentile(image, low=1, high=99)
    assert out.min() < 0 and out.max() > 1


def test_each_channel_is_normalised_on_its_own():
    rng = np.random.default_rng(0)
    grey = rng.random((16, 16))
    image = np.stack([grey, 10 * grey + 3], axis=-1)
    out = normalize_percentile(image)
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)
    # the same with channels first
    out_first = normalize_percentile(np.moveaxis(image, -1, 0), channel_axis=0)
    np.testing.assert_allclose(out_first[0], out_first[1], atol=1e-5)


def test_constant_image_becomes_zeros_and_input_is_untouched():
    image = np.full((8, 8), 7, dtype=np.uint8)
    before = image.copy()
    out = normalize_percentile(image)
    assert np.all(out == 0) and out.dtype == np.float32
    np.testing.assert_array_equal(image, before)


def test_sparse_image_falls_back_to_min_max():
    image = np.zeros((100, 100), np.uint16)
    image[0, 0] = 500  # fewer than 0.2 % bright pixels: both percentiles are 0
    out = normalize_percentile(image)
    assert out.max() == pytest.approx(1.0) and out.min() == 0


def test_bool_image_is_accepted():
    out = normalize_percentile(np.eye(4, dtype=bool), low=0, high=100)
    np.testing.assert_array_equal(out, np.eye(4))


@pytest.mark.parametrize("kwargs", [{"low": 50, "high": 10}, {"low": -1}, {"high": 101}])
def test_bad_percentiles_are_refused(kwargs):
    with pytest.raises(DeepColorError, match="percentiles"):
        normalize_percentile(np.ones((4, 4)), **kwargs)


def test_nan_is_refused():
    image = np.ones((4, 4))
    image[1, 1] = np.nan
    with pytest.raises(DeepColorError, match="NaN"):
        normalize_percentile(image)


def test_grey_image_gets_one_channel():
    assert as_channels_last(np.zeros((5, 7), np.uint16)).shape == (5, 7, 1)


def test_rgba_loses_alpha():
    assert as_channels_last(np.zeros((5, 7, 4), np.uint8)).shape == (5, 7, 3)


def test_channels_first_is_moved_last():
    image = np.arange(2 * 5 * 7).reshape(2, 5, 7)
    out = as_channels_last(image, spatial_shape=(5, 7))
    assert out.shape == (5, 7, 2)
    np.testing.assert_array_equal(out[..., 1], image[1])
    assert as_channels_last(np.zeros((3, 40, 50))).shape == (40, 50, 3)
    # with the spatial shape known, any channel count works, and 4 channels first stay 4
    assert as_channels_last(np.zeros((6, 5, 7)), spatial_shape=(5, 7)).shape == (5, 7, 6)
    assert as_channels_last(np.zeros((4, 5, 7)), spatial_shape=(5, 7)).shape == (5, 7, 4)


def test_ambiguous_layout_asks_for_spatial_shape():
    with pytest.raises(DeepColorError, match="spatial_shape"):
        as_channels_last(np.zeros((10, 20, 30)))


def test_transposed_image_is_reported():
    with pytest.raises(DeepColorError, match="transposed"):
        as_channels_last(np.zeros((7, 5)), spatial_shape=(5, 7))
