"""Decode parameters as sliders show them: a size in pixels spans what the model's objects make useful."""

import pytest

from napari_deepcolor.methods import get_method, method_names
from napari_deepcolor.methods.base import size_threshold


def _parameter(method, name):
    return next(p for p in get_method(method).decode_parameters if p.name == name)


def test_a_size_threshold_spans_the_median_object_area_not_the_declared_5000_px():
    size = size_threshold()
    assert (size.minimum, size.maximum) == (0, 5000)
    low, high = size.useful_range(28.25)  # the nuclei starter's objects: 627 px in area
    assert low == 0 and 627 <= high <= 700
    assert size.useful_range(28.25, value=900)[1] >= 900  # a model's own value stays on the slider
    assert size.useful_range(None)[1] == 500  # no object size known: still not 5000
    assert size.useful_range(200.0)[1] == 5000  # never past the declared maximum


def test_radii_span_one_and_a_half_object_diameters_and_other_values_keep_their_range():
    assert _parameter("dcme", "assign_radius").useful_range(20.0) == (1.0, 30.0)
    assert _parameter("coloring", "merge_radius").useful_range(20.0) == (0, 30.0)
    assert _parameter("coloring", "interior_threshold").useful_range(20.0) == (0.05, 0.95)
    assert _parameter("metric", "max_seeds").useful_range(20.0) == (1, 5000)  # a count, not pixels


@pytest.mark.parametrize("method", method_names())
def test_every_useful_range_holds_the_default_and_lies_in_the_declared_range(method):
    for p in get_method(method).decode_parameters:
        for diameter in (None, 5.0, 30.0, 120.0):
            low, high = p.useful_range(diameter)
            assert p.minimum <= low <= p.default <= high <= p.maximum, (p.name, diameter)
