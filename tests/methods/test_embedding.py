"""Shared embedding pieces: batch-global ids, per-object means, sampling, grown-mask IoUs, greedy decoder, previews."""

import numpy as np
import pytest
import torch

from napari_deepcolor.methods.embedding import (PIXELS_PER_UNIT, collate_samples, connected_to, displacement_vectors,
                                                embedding_rgb, flat_object_ids, grow_from_seeds, grown_mask_ious,
                                                instances_from_assignment, object_means, patch_coordinates,
                                                sample_object_pixels)


def squares(shape=(12, 12)):
    labels = np.zeros(shape, np.int64)
    labels[1:4, 1:5] = 1  # 12 px
    labels[6:11, 6:11] = 2  # 25 px
    return labels


def test_flat_object_ids_are_batch_global_and_mark_ignored_pixels():
    a, b = squares(), squares()
    b[b == 2] = 0  # one object in the second patch
    ignore = np.zeros((2, 12, 12), bool)
    ignore[1, 0, :] = True
    ids, image_of_pixel, object_image, n = flat_object_ids(torch.as_tensor(np.stack([a, b])),
                                                           torch.as_tensor(ignore))
    ids = ids.reshape(2, 12, 12).numpy()
    assert n == 3 and object_image.tolist() == [0, 0, 1]
    assert ids[0, 2, 2] == 1 and ids[0, 8, 8] == 2 and ids[1, 2, 2] == 3
    assert (ids[1, 0] == -1).all() and ids[0, 0, 0] == 0
    assert image_of_pixel.reshape(2, -1)[1].eq(1).all()


def test_object_means_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 3)).astype(np.float32)
    ids = rng.integers(0, 4, 50)
    ids[ids == 2] = 0  # id 2 is empty
    means, counts = object_means(torch.as_tensor(values), torch.as_tensor(ids), 4)
    for k in range(4):
        expected = values[ids == k].mean(0) if (ids == k).any() else np.zeros(3)
        assert np.allclose(means[k].numpy(), expected, atol=1e-6)
        assert counts[k] == (ids == k).sum()


def test_patch_coordinates_are_in_units_of_pixels_per_unit():
    u = patch_coordinates(5, 7)
    assert u.shape == (2, 5, 7)
    assert float(u[0, 4, 0]) == pytest.approx(4 / PIXELS_PER_UNIT)
    assert float(u[1, 0, 6]) == pytest.approx(6 / PIXELS_PER_UNIT)


def test_sampling_takes_up_to_k_distinct_pixels_per_object_reproducibly():
    labels = squares()
    labels[0, 11] = 3  # a one-pixel object
    ignore = np.zeros(labels.shape, bool)
    ignore[1, 1:5] = True  # part of object 1
    pixels, groups = sample_object_pixels(labels, ignore, 5)
    assert np.bincount(groups).tolist() == [0, 5, 5, 1]
    assert (labels.ravel()[pixels] == groups).all() and not ignore.ravel()[pixels].any()
    for k in (1, 2):
        assert np.unique(pixels[groups == k]).size == 5
    again = sample_object_pixels(labels, ignore, 5)
    assert np.array_equal(pixels, again[0])  # seeded by the patch content: no hidden global state
    pixels, groups = sample_object_pixels(labels, ignore, 5, background=True)
    assert (groups == 0).sum() == 5 and (labels.ravel()[pixels[groups == 0]] == 0).all()


def test_collate_samples_offsets_pixels_and_objects():
    a, b = squares(), squares()
    targets = []
    for labels in (a, b):
        pixels, groups = sample_object_pixels(labels, np.zeros(labels.shape, bool), 3, background=True)
        targets.append({"labels": labels, "sample_pixels": pixels, "sample_groups": groups})
    batch = collate_samples(targets, a.size)
    flat = np.stack([a, b]).ravel()
    objects, images = batch["sample_objects"].numpy(), batch["sample_images"].numpy()
    # the second patch's objects are 3 and 4; background stays 0
    assert sorted(set(objects[images == 1])) == [0, 3, 4]
    assert np.array_equal(flat[batch["sample_pixels"].numpy()] + np.where(objects > 0, 2 * images, 0), objects)


@pytest.mark.parametrize("order, chunk", [("descending", 64), ("any", 2)])
def test_grown_mask_ious_match_brute_force(order, chunk):
    rng = np.random.default_rng(1)
    points = rng.normal(size=(60, 2)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    seeds = np.array([0, 5, 17])
    radii = rng.uniform(0.3, 2.0, size=(3, 4))
    if order == "descending":
        radii = np.sort(radii, axis=1)[:, ::-1].copy()
    eligible = rng.random(60) > 0.2
    got = grown_mask_ious(torch.as_tensor(points), torch.as_tensor(labels), torch.as_tensor(seeds),
                          torch.as_tensor(radii ** 2, dtype=torch.float32),
                          eligible=torch.as_tensor(eligible), chunk=chunk).numpy()
    for i, s in enumerate(seeds):
        for j in range(4):
            mask = (((points - points[s]) ** 2).sum(1) < radii[i, j] ** 2) & eligible
            best = max(((mask & (labels == k)).sum() / (mask | (labels == k)).sum()) for k in (1, 2))
            assert got[i, j] == pytest.approx(best, abs=1e-6)


def clusters(rng, centres, per_cluster=40, spread=0.1):
    points = np.concatenate([c + rng.normal(0, spread, (per_cluster, len(c))) for c in centres])
    truth = np.repeat(np.arange(1, len(centres) + 1), per_cluster)
    return points.T.astype(np.float32), truth


def same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_greedy_decoder_recovers_separated_clusters_in_priority_order():
    rng = np.random.default_rng(2)
    points, truth = clusters(rng, [(0, 0, 0), (3, 0, 1), (0, 3, -1), (6, 6, 0)])
    priority = rng.random(truth.size)
    candidates = np.arange(truth.size)
    assignment, seeds = grow_from_seeds(points, candidates, priority, np.full(truth.size, 1.0))
    assert seeds.size == 4 and same_partition(assignment, truth)
    # seeds come in decreasing priority among the points still unclaimed: the first is the best overall
    assert seeds[0] == np.argmax(priority)
    assert (assignment[seeds] == np.arange(1, 5)).all()


def test_greedy_decoder_only_seeds_from_candidates_and_stops_at_max_seeds():
    rng = np.random.default_rng(3)
    points, truth = clusters(rng, [(0, 0), (3, 0), (0, 3)])
    candidates = np.flatnonzero(truth != 2)  # cluster 2 may be grown into but never seeds
    assignment, seeds = grow_from_seeds(points, candidates, np.ones(candidates.size), np.full(candidates.size, 1.0))
    assert seeds.size == 2 and (assignment[truth == 2] == 0).all()
    assignment, seeds = grow_from_seeds(points, np.arange(truth.size), np.ones(truth.size),
                                        np.full(truth.size, 1.0), max_seeds=1)
    assert seeds.size == 1 and (assignment > 0).sum() == 40


def test_a_tiny_radius_still_claims_the_seed():
    points = np.zeros((2, 5), np.float32)
    assignment, seeds = grow_from_seeds(points, np.arange(5), np.arange(5.0), np.zeros(5))
    assert seeds.size == 5 and sorted(assignment) == [1, 2, 3, 4, 5]


def test_diversity_term_prefers_seeds_far_from_earlier_ones():
    # two clusters; the best seeds are all in cluster 1, but masks are tiny (radius 0.01),
    # so without diversity the second seed is in cluster 1 too, with it in cluster 2
    rng = np.random.default_rng(4)
    points, truth = clusters(rng, [(0, 0), (5, 5)], spread=0.3)
    priority = np.log(np.where(truth == 1, 0.9, 0.5) + rng.uniform(0, 0.01, truth.size))
    radius = np.full(truth.size, 1e-4)
    _, plain = grow_from_seeds(points, np.arange(truth.size), priority, radius, max_seeds=2)
    _, diverse = grow_from_seeds(points, np.arange(truth.size), priority, radius, diversity_weight=0.3, max_seeds=2)
    assert truth[plain].tolist() == [1, 1]
    assert truth[diverse].tolist() == [1, 2]


def test_connected_to_keeps_the_8_connected_part_of_a_pixel_set():
    width = 10
    pixels = np.array([0, 11, 22, 5, 6, 99])  # a diagonal chain from 0, a pair at 5-6, a far corner
    assert connected_to(pixels, 0, width).tolist() == [True, True, True, False, False, False]
    assert connected_to(pixels, 6, width).tolist() == [False, False, False, True, True, False]
    assert not connected_to(pixels, 50, width).any()  # a seed outside the set keeps nothing
    assert not connected_to(np.array([9, 10]), 9, width)[1]  # end of one row is not next to the next row's start


def test_a_seed_claims_only_its_connected_part_when_pixels_are_given():
    # one 2 x 8 image; two look-alike blobs (same embedding) at columns 0-1 and 6-7
    points = np.zeros((1, 16), np.float32)
    pixels = np.arange(16)
    blobs = np.isin(pixels % 8, [0, 1, 6, 7])
    points[0, ~blobs] = 10.0
    candidates = np.flatnonzero(blobs)
    radius = np.full(candidates.size, 1.0)
    assignment, seeds = grow_from_seeds(points, candidates, np.ones(candidates.size), radius)
    assert seeds.size == 1 and (assignment[blobs] == 1).all()
    assignment, seeds = grow_from_seeds(points, candidates, np.ones(candidates.size), radius, pixels=pixels, width=8)
    assert seeds.size == 2 and len(set(assignment[blobs & (pixels % 8 < 2)])) == 1
    assert assignment[0] != assignment[7] and (assignment[~blobs] == 0).all()


def test_instances_from_assignment_drops_small_masks_and_keeps_scores_aligned():
    pixels = np.arange(30)
    assignment = np.r_[np.full(10, 1), np.full(3, 2), np.full(12, 3), np.zeros(5, int)]
    instances = instances_from_assignment((5, 6), pixels, assignment, np.array([0.9, 0.5, 0.7]), size_threshold=5)
    assert instances.count == 2
    assert instances.labels.ravel()[0] == 1 and instances.labels.ravel()[15] == 2 and instances.labels.ravel()[11] == 0
    assert np.allclose(instances.scores, [0.9, 0.7])


def test_previews_have_napari_shapes():
    displacement = np.ones((2, 32, 40), np.float32)
    weight = np.zeros((32, 40))
    weight[:16] = 1
    layer = displacement_vectors(displacement, weight, step=8)
    assert layer.layer_type == "vectors" and layer.data.shape == (4 * 5, 2, 2)
    positions, vectors = layer.data[:, 0], layer.data[:, 1]
    assert np.all(vectors[positions[:, 0] < 16] == 1) and np.all(vectors[positions[:, 0] >= 16] == 0)
    rgb = embedding_rgb(np.random.default_rng(0).normal(size=(5, 32, 40)), weight > 0)
    assert rgb.data.shape == (32, 40, 3) and rgb.data.min() >= 0 and rgb.data.max() <= 1 and rgb.kwargs["rgb"]
