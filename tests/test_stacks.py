"""Axes of stacks, and objects linked through z (stitching) and through time (tracks)."""

import numpy as np
import pytest
from skimage.draw import disk

from napari_deepcolor.errors import DeepColorError
from napari_deepcolor.methods.base import Instances
from napari_deepcolor.stacks import (axes_note, check_axes, link_labels, match_objects, napari_tracks,
                                     relabel_instances, resolve_axes, stitch_planes, track_frames, tracks_table)


def discs(shape, centres, radius, shift=0):
    """A label image of discs 1..N, shifted right by ``shift`` pixels."""
    labels = np.zeros(shape, np.int32)
    for i, (y, x) in enumerate(centres, start=1):
        rr, cc = disk((y, x + shift), radius, shape=shape)
        labels[rr, cc] = i
    return labels


CENTRES = [(15, 15), (15, 45), (45, 15), (45, 45), (30, 30)]


def shuffled_planes(planes=5, seed=0):
    """Discs shifted a pixel per plane, with the ids of each plane in a different (random) order."""
    rng = np.random.default_rng(seed)
    out = []
    for z in range(planes):
        order = np.concatenate([[0], rng.permutation(len(CENTRES)) + 1])
        out.append(order[discs((60, 64), CENTRES, 6, shift=z)])
    return np.stack(out)


def ids_per_disc(labels):
    """For each disc: the set of ids it has over the planes (read at its centre, shifted as drawn)."""
    return [{int(labels[z, y, x + z]) for z in range(labels.shape[0])} for y, x in CENTRES]


# -- axes -------------------------------------------------------------------------------------

def test_unnamed_leading_axes_are_guessed_and_the_guess_says_how_to_correct_it():
    assert resolve_axes("QYX", (5, 60, 64)) == ("ZYX", "guessed")
    assert resolve_axes("IQYX", (4, 5, 60, 64)) == ("TZYX", "guessed")
    assert resolve_axes("QCYX", (5, 2, 60, 64)) == ("ZCYX", "guessed")
    assert resolve_axes("TZCYX", (2, 5, 2, 60, 64)) == ("TZCYX", "file")
    note = axes_note("ZYX", "guessed", (5, 60, 64))
    assert "ZYX (Z=5) guessed" in note and "--axes" in note and "TYX" in note and "CYX" in note
    with pytest.raises(DeepColorError, match="--axes"):
        resolve_axes("QQQQYX", (2, 2, 2, 2, 8, 8))


def test_untagged_channels_are_guessed_from_a_short_last_axis_or_the_models_channels():
    assert resolve_axes("QYX", (60, 64, 2)) == ("YXC", "guessed")  # tifffile's reading of an untagged (Y, X, C)
    assert resolve_axes("QQYX", (5, 60, 64, 2)) == ("ZYXC", "guessed")
    assert resolve_axes("QYX", (2, 60, 64), in_channels=2) == ("CYX", "guessed")  # a nuclei + cytoplasm model
    assert resolve_axes("QQYX", (5, 2, 60, 64), in_channels=2) == ("ZCYX", "guessed")
    assert resolve_axes("QYX", (2, 60, 64), in_channels=1) == ("ZYX", "guessed")  # a one-channel model: planes
    assert "--axes" not in axes_note("YXC", "guessed", (60, 64, 2))  # no other leading axis to suggest


def test_given_axes_apply_to_images_with_that_many_axes_only():
    assert resolve_axes("QYX", (5, 60, 64), "tyx") == ("TYX", "given")
    assert resolve_axes("ZYX", (5, 60, 64), "TYX") == ("TYX", "given")  # the user corrects the file
    assert resolve_axes("YX", (60, 64), "TYX") == ("YX", "file")  # a 2D image in a folder of time-lapses


@pytest.mark.parametrize("axes, message", [("ZYQ", "use the letters"), ("ZZYX", "more than once"),
                                           ("TZC", "must contain Y and X")])
def test_wrong_axes_are_refused_with_what_to_write(axes, message):
    with pytest.raises(DeepColorError, match=message):
        check_axes(axes)


# -- matching and stitching ---------------------------------------------------------------------

def test_matching_is_one_to_one_and_respects_the_threshold():
    before = np.zeros((10, 20), int)
    before[:, :10] = 1
    after = np.zeros((10, 20), int)
    after[:, :6], after[:, 6:10] = 5, 6  # both overlap object 1; only the larger one may take its id
    assert match_objects(before, after, 0.25) == {5: 1}
    assert match_objects(before, after, 0.7) == {}


def test_stitching_gives_each_object_one_id_through_the_planes():
    labels = shuffled_planes()
    stitched = stitch_planes(labels, 0.25)
    assert all(len(ids) == 1 and 0 not in ids for ids in ids_per_disc(stitched))
    assert len(np.unique(stitched)) - 1 == len(CENTRES)


def test_stitch_threshold_zero_or_too_high_links_nothing():
    labels = shuffled_planes()
    for threshold in (0.0, 0.99):  # neighbouring planes overlap with IoU of about 0.8
        assert len(np.unique(stitch_planes(labels, threshold))) - 1 == len(CENTRES) * labels.shape[0]


def test_an_object_that_starts_in_a_later_plane_gets_a_new_id():
    labels = shuffled_planes(3)
    labels[2][labels[2] == labels[2][30, 32]] = 0
    labels[2][discs((60, 64), [(52, 56)], 4) > 0] = 9  # appears in plane 2 only
    stitched = stitch_planes(labels)
    assert len(np.unique(stitched)) - 1 == len(CENTRES) + 1


def test_link_labels_stitches_z_within_each_frame_and_tracks_through_t():
    frames = []
    for t in range(3):  # TZYX: 3 frames of 4 planes; discs move 2 px per frame
        planes = shuffled_planes(4, seed=t)
        frames.append(np.stack([np.roll(p, 2 * t, axis=1) for p in planes]))
    labels = np.stack(frames)
    unique, offset = np.zeros_like(labels, np.int64), 0
    for index in np.ndindex(labels.shape[:2]):  # per-plane ids unique across the stack, as predicted
        unique[index] = np.where(labels[index] > 0, labels[index] + offset, 0)
        offset += len(CENTRES)
    linked = link_labels(unique, "TZYX")
    assert linked.count == len(CENTRES)
    assert np.array_equal(linked.labels > 0, labels > 0)
    assert sorted(np.unique(linked.labels[2])) == list(range(len(CENTRES) + 1))
    assert linked.lookup[unique[0, 0, 15, 15]] == linked.lookup[unique[2, 3, 15, 15 + 3 + 4]]


# -- tracking ---------------------------------------------------------------------------------

def test_tracking_follows_objects_and_finds_a_division():
    mother = discs((60, 64), [(30, 30)], 12)
    daughters = discs((60, 64), [(30, 24), (30, 37)], 7)
    moving = discs((60, 64), [(8, 8)], 5)
    frames = np.stack([mother + (moving > 0) * 7, daughters + 4 * (np.roll(moving, 1, axis=1) > 0)])
    tracked, parents = track_frames(frames, 0.1)
    ids_0, ids_1 = set(np.unique(tracked[0])) - {0}, set(np.unique(tracked[1])) - {0}
    assert len(ids_0) == 2 and len(ids_1) == 3
    kept = ids_0 & ids_1
    assert len(kept) == 1  # the small moving object keeps its id; the mother's track ends
    assert tracked[1][8, 9] == tracked[0][8, 8] == next(iter(kept))
    mother_id = int(tracked[0][30, 30])
    assert parents == {int(tracked[1][30, 24]): mother_id, int(tracked[1][30, 37]): mother_id}

    rows = tracks_table(tracked, "TYX", parents)
    assert [(r["frame"], r["parent"]) for r in rows if r["parent"]] == [(1, mother_id), (1, mother_id)]
    assert {"track_id", "frame", "centroid_y", "centroid_x", "area", "parent"} <= set(rows[0])
    data, graph = napari_tracks(rows)
    assert data.shape == (5, 4) and graph == {k: [v] for k, v in parents.items()}


def test_linked_instances_keep_scores_and_classes_of_their_pieces():
    labels = np.array([[1, 1, 0], [2, 2, 2]])
    instances = Instances(labels, np.array([0.2, 0.8], np.float32), np.array([1, 2]), np.array([0.6, 0.9]))
    lookup = np.array([0, 1, 1])  # both pieces are one object
    linked = relabel_instances(instances, lookup, (labels > 0).astype(np.uint8))
    assert linked.count == 1
    assert linked.scores[0] == pytest.approx((2 * 0.2 + 3 * 0.8) / 5)
    assert linked.classes.tolist() == [2] and linked.class_scores.tolist() == [0.9]  # the larger piece's
