"""Deep coloring: halos, the colour rule (eq. 2), the loss (eq. 3) and the decoder."""

import numpy as np
import pytest
import torch

from napari_deepcolor.methods import get_method
from napari_deepcolor.methods.coloring import (_flatten_batch, assign_colors, coloring_loss, object_halos,
                                             touching_pairs)

METHOD = get_method("coloring")


def two_touching_squares():
    labels = np.zeros((20, 30), np.int64)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2
    return labels


def batch_targets(labels_list, margin, ignore_list=None):
    options = METHOD.options({"halo_margin": margin})
    ignore_list = ignore_list or [np.zeros(l.shape, bool) for l in labels_list]
    return METHOD.collate([METHOD.prepare_targets(l, i, options) for l, i in zip(labels_list, ignore_list)])


def logits_from_probabilities(probabilities):
    return torch.log(torch.as_tensor(probabilities, dtype=torch.float32))


def test_halo_is_dilation_minus_object():
    labels = np.zeros((21, 21), np.int64)
    labels[10, 10] = 1
    pixels, objects = object_halos(labels, 2)
    halo = np.zeros(labels.size, bool)
    halo[pixels] = True
    yy, xx = np.mgrid[:21, :21]
    expected = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 4) & (labels == 0)  # Euclidean disk of radius m, minus M_k
    assert np.array_equal(halo.reshape(labels.shape), expected)
    assert set(objects) == {1}


def test_halo_leaves_out_ignored_pixels_and_overlaps_between_objects():
    labels = two_touching_squares()
    ignore = np.zeros(labels.shape, bool)
    ignore[:, :3] = True
    pixels, objects = object_halos(labels, 3, ignore=ignore)
    assert not ignore.ravel()[pixels].any()
    # the other square's border pixels are in each object's halo
    assert np.isin(np.ravel_multi_index((10, 15), labels.shape), pixels[objects == 1])
    assert np.isin(np.ravel_multi_index((10, 14), labels.shape), pixels[objects == 2])


def test_touching_objects_get_different_colours_when_the_halo_says_so():
    # Both objects prefer colour 1 on their own pixels, object 1 strongly, object 2 mildly;
    # object 2 has colour 2 as a fair second choice. The halo of object 2 covers object 1,
    # where colour 1 is near-certain, so with a halo weight the rule must give object 2 colour 2.
    labels = two_touching_squares()
    p = np.full((3, *labels.shape), 1 / 3, np.float32)
    p[:, labels == 1] = np.array([0.01, 0.98, 0.01])[:, None]
    p[:, labels == 2] = np.array([0.02, 0.50, 0.48])[:, None]
    raw = logits_from_probabilities(p[None])
    t = batch_targets([labels], margin=4)
    colors, _ = assign_colors(raw, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"], halo_weight=7.0)
    assert colors.tolist() == [1, 2]
    # without the halo term the rule sees only the objects' own pixels and picks colour 1 twice
    colors, _ = assign_colors(raw, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"], halo_weight=0.0)
    assert colors.tolist() == [1, 1]


def test_chosen_colour_maximises_equation_2_by_brute_force():
    rng = np.random.default_rng(1)
    labels_list = []
    for _ in range(2):
        labels = np.zeros((24, 24), np.int64)
        for k, (y, x) in enumerate([(2, 2), (2, 12), (12, 6), (14, 16)], start=1):
            labels[y:y + 7, x:x + 6] = k
        labels_list.append(labels)
    raw = torch.as_tensor(rng.normal(size=(2, 5, 24, 24)), dtype=torch.float32)
    margin, mu = 3, 2.5
    t = batch_targets(labels_list, margin)
    colors, _ = assign_colors(raw, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"], halo_weight=mu)

    y = torch.softmax(raw, 1).numpy()
    expected = []
    for b, labels in enumerate(labels_list):
        pixels, objects = object_halos(labels, margin)
        for k in range(1, labels.max() + 1):
            inside = labels == k
            halo = np.zeros(labels.size, bool)
            halo[pixels[objects == k]] = True
            halo = halo.reshape(labels.shape)
            score = [np.log(y[b, c][inside]).mean() + mu * np.log(1 - y[b, c][halo]).mean() for c in range(1, 5)]
            expected.append(int(np.argmax(score)) + 1)
    assert colors.tolist() == expected


def test_loss_is_equation_3_with_both_terms_averaged():
    labels = two_touching_squares()
    rng = np.random.default_rng(0)
    raw = torch.as_tensor(rng.normal(size=(1, 4, *labels.shape)), dtype=torch.float32)
    t = batch_targets([labels], margin=3)
    loss = coloring_loss(raw, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"], halo_weight=7.0)
    colors, _ = assign_colors(raw, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"], halo_weight=7.0)
    log_y = torch.log_softmax(raw, 1)[0].numpy()
    object_terms = [-log_y[c][labels == k].mean() for k, c in enumerate(colors.tolist(), start=1)]
    expected = -log_y[0][labels == 0].mean() + np.mean(object_terms)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_semantic_weight_scales_only_the_semantic_heads_cross_entropy():
    labels = two_touching_squares()
    raw = torch.randn(1, 9 + 3, *labels.shape, generator=torch.Generator().manual_seed(0))
    losses = {}
    for weight in (1.0, 3.0):
        options = METHOD.options({"halo_margin": 3, "semantic_weight": weight})
        targets = METHOD.collate([METHOD.prepare_targets(labels, np.zeros(labels.shape, bool), options)])
        losses[weight] = float(METHOD.loss(raw, targets, options))
    colours = coloring_loss(raw[:, :9], targets["labels"], targets["ignore"], targets["halo_pixels"],
                            targets["halo_objects"], halo_weight=7.0)
    semantic = losses[1.0] - float(colours)
    assert semantic > 0
    assert losses[3.0] == pytest.approx(float(colours) + 3 * semantic, rel=1e-5)


def test_ignored_pixels_do_not_change_the_loss():
    labels = two_touching_squares()
    ignore = np.zeros(labels.shape, bool)
    ignore[0:3, :] = True
    raw = torch.randn(1, 4, *labels.shape)
    t = batch_targets([labels], 3, [ignore])
    base = coloring_loss(raw, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"], halo_weight=7.0)
    changed = raw.clone()
    changed[..., 0:3, :] = torch.randn(1, 4, 3, labels.shape[1]) * 10
    after = coloring_loss(changed, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"], halo_weight=7.0)
    assert float(base) == pytest.approx(float(after))


def colour_map_to_output(colors, n_colors=5, confidence=0.9):
    off = (1 - confidence) / (n_colors - 1)
    out = np.full((n_colors, *colors.shape), off, np.float32)
    np.put_along_axis(out, colors[None].astype(np.intp), confidence, axis=0)
    return out


def test_decode_round_trips_a_known_colour_map():
    colors = np.zeros((40, 40), np.uint8)
    colors[2:10, 2:10] = 1
    colors[2:10, 10:18] = 2  # touching, other colour: separate instance
    colors[20:30, 20:30] = 1  # same colour, far away: separate instance
    colors[32:38, 2:6] = 3
    instances = METHOD.decode(colour_map_to_output(colors), size_threshold=1, merge_radius=0)
    assert instances.count == 4
    assert instances.labels.dtype == np.uint8
    assert sorted(np.unique(instances.labels)) == [0, 1, 2, 3, 4]  # consecutive from 1
    assert np.array_equal(instances.labels > 0, colors > 0)
    for k in range(1, 5):  # each instance is exactly one colour region
        assert len(np.unique(colors[instances.labels == k])) == 1
    assert np.allclose(instances.scores, 0.9)  # mean colour probability


def test_size_threshold_drops_small_components_only():
    colors = np.zeros((30, 30), np.uint8)
    colors[2:12, 2:12] = 1  # 100 px
    colors[20:23, 20:23] = 2  # 9 px
    out = colour_map_to_output(colors)
    assert METHOD.decode(out, size_threshold=9).count == 2
    kept = METHOD.decode(out, size_threshold=10)
    assert kept.count == 1 and kept.labels[5, 5] == 1 and kept.labels[21, 21] == 0


def test_merge_radius_joins_same_colour_pieces_by_their_gap():
    # a long object cut in two by an occluder 5 px wide (columns 22-26); the
    # Hausdorff distance of the halves is ~25 px, their gap (closest pixel
    # centres, columns 21 and 27) is 6 px: the gap decides
    colors = np.zeros((20, 50), np.uint8)
    colors[8:12, 2:22] = 1
    colors[8:12, 27:47] = 1
    colors[14:18, 2:22] = 2  # other colour, 3 px below: never merged with colour 1
    out = colour_map_to_output(colors)
    assert METHOD.decode(out, size_threshold=1, merge_radius=0).count == 3
    assert METHOD.decode(out, size_threshold=1, merge_radius=5.9).count == 3
    merged = METHOD.decode(out, size_threshold=1, merge_radius=6)
    assert merged.count == 2
    assert merged.labels[10, 5] == merged.labels[10, 40] != merged.labels[16, 5]


def test_merged_pieces_count_together_for_the_size_threshold():
    colors = np.zeros((20, 40), np.uint8)
    colors[5:10, 2:8] = 1  # 30 px
    colors[5:10, 12:18] = 1  # 30 px, gap 5
    out = colour_map_to_output(colors)
    assert METHOD.decode(out, size_threshold=50, merge_radius=0).count == 0
    assert METHOD.decode(out, size_threshold=50, merge_radius=6).count == 1


def test_cached_decode_equals_fresh_decode():
    rng = np.random.default_rng(3)
    out = rng.dirichlet(np.ones(6) * 0.3, size=(64, 64)).transpose(2, 0, 1).astype(np.float32)
    cache = {}
    for size, radius in [(5, 0), (20, 0), (20, 3), (5, 3), (0, 0)]:
        cached = METHOD.decode(out, cache=cache, size_threshold=size, merge_radius=radius)
        fresh = METHOD.decode(out, size_threshold=size, merge_radius=radius)
        assert np.array_equal(cached.labels, fresh.labels)
        assert np.allclose(cached.scores, fresh.scores)


def test_decode_rejects_out_of_range_parameters():
    from napari_deepcolor import DeepColorError

    with pytest.raises(DeepColorError, match="size_threshold"):
        METHOD.decode(np.ones((3, 4, 4), np.float32) / 3, size_threshold=-1)


def test_distinct_choice_keeps_touching_neighbours_apart_where_eq2_merges_them():
    # A young net: colour 1 is everyone's first choice and colour 2 the runner-up.
    # Eq. (2) alone sends both touching squares to the same colour; the distinct
    # choice gives them two, and leaves an isolated object's choice as eq. (2) made it.
    labels = two_touching_squares()
    labels[17:19, 27:29] = 3  # far from the others (outside their halos of 2 px)
    t = batch_targets([labels], margin=2)
    p = np.full((4, *labels.shape), 0.05, np.float32)
    p[1], p[2], p[0] = 0.6, 0.3, 0.05
    raw = logits_from_probabilities(p)[None]
    paper, _ = assign_colors(raw, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"], halo_weight=0.0)
    distinct, _ = assign_colors(raw, t["labels"], t["ignore"], t["halo_pixels"], t["halo_objects"], halo_weight=0.0,
                                color_choice="distinct")
    assert paper.tolist() == [1, 1, 1]
    assert distinct[0] != distinct[1] and set(distinct[:2].tolist()) == {1, 2}
    assert distinct[2] == 1


def fused_output(colours, interior, background):
    """A coloring output with a semantic head: one-hot colours (C=4), then background/interior/boundary."""
    n_colors = 4
    out = np.zeros((n_colors + 3, *colours.shape), np.float32)
    out[:n_colors] = np.eye(n_colors, dtype=np.float32)[colours].transpose(2, 0, 1)
    out[n_colors + 0] = background
    out[n_colors + 1] = interior * (1 - background)
    out[n_colors + 2] = (1 - interior) * (1 - background)
    return out


def test_fusion_splits_a_semantic_component_by_colour_and_grows_it_back_over_the_boundary():
    labels = two_touching_squares()
    options = METHOD.options({"n_colors": 4})
    background = (labels == 0).astype(np.float32)
    interior = np.zeros(labels.shape, np.float32)
    interior[6:14, 6:24] = 1.0  # one interior blob over both squares: the baseline would merge them
    colours = np.where(labels == 1, 1, np.where(labels == 2, 2, 0))
    instances = METHOD.decode(fused_output(colours, interior, background), options=options, size_threshold=1,
                              interior_threshold=0.5)
    assert instances.count == 2
    assert np.array_equal(instances.labels > 0, labels > 0)  # grown back over the boundary ring, not beyond
    assert len(np.unique(instances.labels[labels == 1])) == 1
    assert np.allclose(instances.scores, 1.0)  # mean p(colour) * p(object)

    same_colour = np.where(labels > 0, 3, 0)
    merged = METHOD.decode(fused_output(same_colour, interior, background), options=options, size_threshold=1,
                           interior_threshold=0.5)
    assert merged.count == 1  # what colours cannot split stays as the semantic head found it


def test_the_merge_radius_never_rejoins_what_the_fusion_split_among_cores():
    # two touching squares of one colour, each with its own interior core: the fusion splits them; a
    # merge radius must not join them again (it did: 2 instances at rho 0, 1 at rho 1 and 2)
    labels = two_touching_squares()
    options = METHOD.options({"n_colors": 4})
    background = (labels == 0).astype(np.float32)
    interior = ((labels > 0) & ~np.isin(np.arange(labels.shape[1]), [13, 14, 15])[None, :]).astype(np.float32)
    output = fused_output(np.where(labels > 0, 1, 0), interior, background)
    for split_by_color in (1, 0):
        counts = [METHOD.decode(output, options=options, size_threshold=1, merge_radius=radius,
                                split_by_color=split_by_color).count for radius in (0, 1, 2, 8)]
        assert counts == [2, 2, 2, 2], (split_by_color, counts)


def test_the_merge_radius_still_rejoins_an_occluded_object_with_a_semantic_head():
    # one object of one colour cut in two by an occluder 5 px wide: two separate pieces, each with its core
    colours = np.zeros((20, 50), np.int64)
    colours[6:14, 2:22], colours[6:14, 27:47] = 1, 1
    background = (colours == 0).astype(np.float32)
    interior = np.zeros(colours.shape, np.float32)
    interior[8:12, 4:20], interior[8:12, 29:45] = 1.0, 1.0
    output = fused_output(colours, interior, background)
    options = METHOD.options({"n_colors": 4})
    assert METHOD.decode(output, options=options, size_threshold=1, merge_radius=0).count == 2
    assert METHOD.decode(output, options=options, size_threshold=1, merge_radius=6).count == 1


def test_fusion_needs_no_colour_training_to_separate_what_the_semantic_head_separates():
    labels = two_touching_squares()
    options = METHOD.options({"n_colors": 4})
    background = (labels == 0).astype(np.float32)
    interior = ((labels > 0) & ~np.isin(np.arange(labels.shape[1]), [14, 15])[None, :]).astype(np.float32)
    all_one_colour = np.where(labels > 0, 1, 0)
    fused = METHOD.decode(fused_output(all_one_colour, interior, background), options=options, size_threshold=1)
    plain = METHOD.decode(fused_output(all_one_colour, interior, background)[:4],
                          options=METHOD.options({"n_colors": 4, "semantic_head": False}), size_threshold=1)
    assert fused.count == 2 and plain.count == 1


def test_fusion_keeps_foreground_that_no_interior_core_reaches():
    # Two squares with interior cores, a same-colour fringe 5 px beyond square 1's core
    # (farther than the 3 px growth), and a thin rod of its own colour without any interior
    # (the semantic head calls it all boundary, as a young head does with thin objects).
    labels = np.zeros((24, 40), np.int64)
    labels[4:14, 4:14] = 1
    labels[4:14, 14:24] = 2
    labels[18:20, 4:36] = 3  # a rod 2 px thick, touching nothing
    options = METHOD.options({"n_colors": 4})
    background = (labels == 0).astype(np.float32)
    interior = np.zeros(labels.shape, np.float32)
    interior[9:13, 5:11] = 1.0  # square 1's core is far from its top rows
    interior[5:13, 18:23] = 1.0
    colours = np.where(labels == 1, 1, np.where(labels == 2, 2, np.where(labels == 3, 3, 0)))
    instances = METHOD.decode(fused_output(colours, interior, background), options=options, size_threshold=1,
                              interior_threshold=0.5)
    assert instances.count == 3
    for i in (1, 2, 3):  # each true object is exactly one instance, fringe and rod included
        found = np.unique(instances.labels[labels == i])
        assert found.size == 1 and found[0] > 0
    assert np.array_equal(instances.labels > 0, labels > 0)


def test_without_split_by_color_the_semantic_head_decodes_as_the_baseline_whatever_the_colours():
    from napari_deepcolor.methods.boundary import BoundaryMethod

    labels = two_touching_squares()
    options = METHOD.options({"n_colors": 4})
    background = (labels == 0).astype(np.float32)
    interior = ((labels > 0) & ~np.isin(np.arange(labels.shape[1]), [14, 15])[None, :]).astype(np.float32)
    noisy = np.where(labels > 0, 1 + (np.arange(labels.shape[0])[:, None] % 3 == 0), 0)  # stripes of two colours
    output = fused_output(noisy, interior, background)
    by_colour = METHOD.decode(output, options=options, size_threshold=1, split_by_color=1)
    plain = METHOD.decode(output, options=options, size_threshold=1, split_by_color=0)
    baseline = BoundaryMethod().decode(output[4:], size_threshold=1)
    assert by_colour.count > 2  # every stripe of colour is a piece of its own
    assert plain.count == 2 and np.array_equal(plain.labels, baseline.labels)


def test_touching_pairs_are_the_unique_object_pairs_within_one_anothers_halo():
    labels = np.zeros((1, 12, 30), np.int64)
    labels[0, 2:10, 2:8], labels[0, 2:10, 9:15], labels[0, 2:10, 24:29] = 1, 2, 3  # 1-2 touch; 3 is far
    ignore = np.zeros_like(labels, bool)
    pixels, objects = object_halos(labels[0], 2)
    raw = torch.zeros(1, 4, 12, 30)
    _, global_id, _, _ = _flatten_batch(raw, torch.from_numpy(labels), torch.from_numpy(ignore))
    pairs = touching_pairs(global_id, torch.from_numpy(pixels), torch.from_numpy(objects))
    assert pairs.tolist() == [[0, 1]]
    far = touching_pairs(global_id, torch.from_numpy(pixels[objects == 3]), torch.from_numpy(objects[objects == 3]))
    assert far.shape == (0, 2)
