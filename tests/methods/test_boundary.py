"""The 3-class U-Net baseline: targets, loss and decoder."""

import numpy as np
import pytest
import torch

from napari_deepcolor.methods import get_method
from napari_deepcolor.methods.boundary import BACKGROUND, BOUNDARY, INTERIOR, three_class_target

METHOD = get_method("boundary")


def touching_squares():
    labels = np.zeros((20, 30), np.int64)
    labels[4:14, 4:14] = 1
    labels[4:14, 14:24] = 2
    return labels


def test_target_marks_object_borders_including_between_touching_objects():
    target = three_class_target(touching_squares())
    assert target[0, 0] == BACKGROUND
    assert target[8, 8] == INTERIOR
    assert target[4, 8] == BOUNDARY  # against background
    assert target[8, 13] == BOUNDARY and target[8, 14] == BOUNDARY  # between the two objects


def test_loss_up_weights_the_boundary_and_skips_ignored_pixels():
    labels = touching_squares()
    ignore = np.zeros(labels.shape, bool)
    targets = METHOD.collate([METHOD.prepare_targets(labels, ignore, METHOD.options())])
    wrong_on_boundary = torch.zeros(1, 3, *labels.shape)
    wrong_on_boundary[0, INTERIOR] = 5.0  # predicts interior everywhere
    heavy = METHOD.loss(wrong_on_boundary, targets, METHOD.options({"boundary_weight": 10.0}))
    light = METHOD.loss(wrong_on_boundary, targets, METHOD.options({"boundary_weight": 1.0}))
    assert heavy > light
    ignore_all_but_interior = three_class_target(labels) != INTERIOR
    targets = METHOD.collate([METHOD.prepare_targets(labels, ignore_all_but_interior, METHOD.options())])
    # only interior pixels count, where the prediction is right: -log(e^5 / (e^5 + 2)) = 0.0134
    assert float(METHOD.loss(wrong_on_boundary, targets, METHOD.options())) == pytest.approx(np.log1p(2 * np.exp(-5)), rel=1e-4)


def test_decode_separates_touching_objects_and_grows_them_back():
    target = three_class_target(touching_squares())
    output = np.eye(3, dtype=np.float32)[target].transpose(2, 0, 1)
    instances = METHOD.decode(output, size_threshold=1)
    assert instances.count == 2
    # the grown instances cover the objects' boundary ring too
    assert (instances.labels > 0).sum() == (touching_squares() > 0).sum()
    assert instances.labels[8, 8] != instances.labels[8, 20]
    assert np.allclose(instances.scores, 1.0)


def test_a_higher_foreground_threshold_draws_the_outline_tighter():
    labels = touching_squares()
    output = np.eye(3, dtype=np.float32)[three_class_target(labels)].transpose(2, 0, 1)
    ring = (labels == 0) & (np.abs(np.subtract.outer(np.arange(20), 8.5)) < 7)[:, None] \
        & (np.abs(np.subtract.outer(np.arange(30), 13.5)) < 12)[None, :]  # one pixel outside both squares
    output[:, ring] = np.array([0.4, 0.0, 0.6], np.float32)[:, None]  # a weighted loss's halo: p(background) 0.4 just outside the objects
    loose = METHOD.decode(output, size_threshold=1)  # default 0.5: the halo is object
    tight = METHOD.decode(output, size_threshold=1, foreground_threshold=0.7)
    assert (loose.labels > 0).sum() == (labels > 0).sum() + ring.sum()
    assert (tight.labels > 0).sum() == (labels > 0).sum() and tight.count == 2


def test_seeds_grow_a_few_pixels_into_the_allowed_pixels_and_never_jump_a_gap():
    from scipy import ndimage as ndi

    from napari_deepcolor.methods.components import grow_into

    seeds = np.zeros((40, 40), np.int32)
    seeds[10, 10] = 1
    seeds[10, 30] = 2
    allowed = np.ones_like(seeds, bool)
    allowed[:, 20] = False  # a wall of background between the seeds
    grown = grow_into(seeds, allowed, steps=3)
    distance = ndi.distance_transform_edt(seeds != 1)
    one = grown == 1
    assert one[distance <= 2].all() and not one[distance > 3.2].any()  # about a disc of radius 3
    assert grown[10, 13] == 1 and grown[10, 14] == 0
    assert seeds.sum() == 3  # the input is not changed

    allowed[:] = True
    allowed[10, 15:25] = False
    allowed[11:, :] = False
    allowed[:9, :] = False  # a corridor along row 10, cut at column 15: the seed cannot reach past the cut
    corridor = grow_into(seeds, allowed, steps=10)
    assert corridor[10, 14] == 1 and (corridor[10, 15:25] == 0).all() and corridor[10, 25] == 2


def test_unlimited_growth_gives_every_reachable_pixel_to_its_nearest_seed():
    from napari_deepcolor.methods.components import grow_into

    seeds = np.zeros((20, 41), np.int32)
    seeds[10, 5], seeds[10, 35] = 1, 2
    allowed = np.ones_like(seeds, bool)
    allowed[:, 38:] = False
    island = np.zeros_like(allowed)
    island[2:5, 39:41] = True  # allowed pixels no seed can reach
    grown = grow_into(seeds, allowed | island, steps=None)
    assert (grown[allowed] > 0).all() and (grown[island] == 0).all()
    assert (grown[:, :18] == 1).all() and (grown[:, 23:38] == 2).all()  # the halfway line splits the two
