"""Out-of-core planes linked through Z and T and measured band by band: the same as the in-memory route."""

import numpy as np
import pytest

from napari_deepcolor.batch import Source, plan_layout
from napari_deepcolor.batch.out_of_core_stacks import PlaneStore, link_planes, measure_planes
from napari_deepcolor.stacks import tracks_rows
from napari_deepcolor.measure import measure_objects
from napari_deepcolor.methods.base import Instances
from napari_deepcolor.stacks import link_labels, relabel_instances, tracks_table

from .test_stacks import CENTRES, discs, ids_per_disc, shuffled_planes

BAND = 7  # rows per band: several bands per 60-row plane, the last one short


def z_stack():
    labels = shuffled_planes(4)
    labels[3][discs((60, 64), [(52, 56)], 4) > 0] = 9  # appears in the last plane only
    return labels, "ZYX"


def time_lapse_with_a_division():
    mother = discs((60, 64), [(30, 30)], 12)
    daughters = discs((60, 64), [(30, 24), (30, 37)], 7)
    moving = discs((60, 64), [(8, 8)], 5)
    return np.stack([mother + (moving > 0) * 7, daughters + 4 * (np.roll(moving, 1, axis=1) > 0)]), "TYX"


def time_lapse_of_z_stacks():
    frames = [np.stack([np.roll(p, 2 * t, axis=1) for p in shuffled_planes(3, seed=t)]) for t in range(3)]
    return np.stack(frames), "TZYX"


def in_memory_ids(labels):
    """Per-plane labels with ids unique across the planes, as inference.stack_instances numbers them."""
    planes = labels.reshape((-1,) + labels.shape[-2:]).astype(np.int64)
    offsets = np.cumsum([0] + [int(p.max()) for p in planes[:-1]])
    return np.stack([np.where(p > 0, p + o, 0) for p, o in zip(planes, offsets)]).reshape(labels.shape)


def out_of_core_store(labels, axes, image):
    """A PlaneStore filled as the out-of-core route fills it: provisional ids (here even numbers in a shuffled
    order, as block-wise decoding leaves them) and a lookup to each plane's labels 1..count."""
    layout = plan_layout(axes + "C", image.shape, image.dtype, 1, channel=0)  # measured: every channel
    store = PlaneStore(layout, BAND)
    rng = np.random.default_rng(1)
    for plane in labels.reshape((-1,) + labels.shape[-2:]):
        count = int(plane.max())
        provisional = np.concatenate([[0], 2 * rng.permutation(count) + 2])
        lookup = np.zeros(2 * count + 3, np.int64)
        lookup[provisional] = np.arange(count + 1)
        store.add(provisional[plane], lookup, count)
    return store


def assert_same_table(got, expected):
    assert list(got) == list(expected)
    for column, values in expected.items():
        assert np.allclose(got[column], values, atol=1e-4), column


@pytest.mark.parametrize("make", [z_stack, time_lapse_with_a_division, time_lapse_of_z_stacks])
def test_out_of_core_linking_and_measurements_equal_the_in_memory_route(make):
    labels, axes = make()
    unique = in_memory_ids(labels)
    image = np.random.default_rng(0).random(labels.shape + (2,))
    scores = np.random.default_rng(2).random(int(unique.max())).astype(np.float32)
    linked = link_labels(unique, axes)
    expected = relabel_instances(Instances(unique, scores), linked.lookup, linked.labels)

    store = out_of_core_store(labels, axes, image)
    table, linked_scores, parents = link_planes(store, scores, stitch_threshold=0.25, track_threshold=0.1)
    planes = [np.concatenate([band for _, band in store.bands(plane, table)]) for plane in range(len(store.planes))]
    assert np.array_equal(np.stack(planes).reshape(labels.shape), linked.labels)
    assert parents == linked.parents and np.allclose(linked_scores, expected.scores)

    measured = measure_planes(store, table, source=Source(image, axes + "C", "test"), scores=linked_scores)
    assert_same_table(measured, measure_objects(linked.labels, axes, image=image, instances=expected))
    if "T" in axes:
        rows, reference = tracks_rows(measured, parents), tracks_table(linked.labels, axes, parents)
        assert [list(r) for r in rows] == [list(r) for r in reference]
        assert np.allclose([list(r.values()) for r in rows], [list(r.values()) for r in reference])


def test_out_of_core_planes_are_linked_not_just_numbered_on():
    labels, axes = z_stack()
    store = out_of_core_store(labels, axes, np.zeros(labels.shape + (1,)))
    table, _, _ = link_planes(store, np.ones(store.total, np.float32), stitch_threshold=0.25, track_threshold=0.1)
    stitched = np.stack([np.concatenate([band for _, band in store.bands(plane, table)]) for plane in range(4)])
    assert all(len(ids) == 1 for ids in ids_per_disc(stitched))  # one id per disc through the planes
    assert table.max() == len(CENTRES) + 1 < store.total
    unlinked, _, _ = link_planes(store, np.ones(store.total, np.float32), stitch_threshold=0, track_threshold=0.1)
    assert unlinked.max() == 4 * len(CENTRES) + 1  # 0 links nothing: every disc of every plane is an object
