"""Deep metric learning: sigma(p, q) (eq. 1), the weighted pair loss (sec. 3.2), seediness (3.4), decoding (3.3)."""

import numpy as np
import pytest
import torch

from napari_deepcolor.methods import get_method
from napari_deepcolor.methods.metric_learning import (SIMILARITY_THRESHOLDS, embedding_loss, metric_loss_terms,
                                                      pair_weights, squared_radius)

METHOD = get_method("metric")
DIMS = 3
N_TAU = len(SIMILARITY_THRESHOLDS)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scene():
    labels = np.zeros((40, 48), np.int64)
    labels[4:14, 4:14] = 1
    labels[4:14, 14:24] = 2  # touches object 1
    labels[20:36, 30:40] = 3
    labels[24:30, 6:12] = 4
    return labels


CENTRES = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [0, 0, 4], [4, 4, 4]], np.float32)  # background, objects 1-4


def ideal_raw(labels, centres=CENTRES, good=None):
    embedding = centres[labels].transpose(2, 0, 1)
    good = np.ones(N_TAU) if good is None else np.asarray(good, float)
    logits = np.where(labels > 0, np.where(good > 0.5, 12.0, -12.0)[:, None, None], -12.0)
    foreground = np.where(labels > 0, 12.0, -12.0)[None]
    return torch.as_tensor(np.concatenate([embedding, logits, foreground])[None], dtype=torch.float32)


def similarity(d2):
    return 2 / (1 + np.exp(d2))


def test_squared_radius_is_where_similarity_equals_tau():
    for tau in (0.1, 0.25, 0.5, 0.9):
        assert similarity(squared_radius(tau)) == pytest.approx(tau)


def test_pair_weights_are_inverse_to_instance_sizes_and_sum_to_one_per_patch():
    # patch 0: instance 1 with 3 samples, instance 2 with 1 sample (a tiny object), background 2; patch 1: 2 + 2
    objects = torch.tensor([1, 1, 1, 2, 0, 0, 3, 3, 0, 0])
    images = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    w = pair_weights(objects, images).numpy()
    assert np.allclose(np.diag(w), 0) and np.all(w[:6, 6:] == 0) and np.all(w[6:, :6] == 0)
    assert w[:6].sum() == pytest.approx(1) and w[6:].sum() == pytest.approx(1)
    # among different-instance pairs, w_pq proportional to 1 / (n_p n_q)
    assert w[3, 4] / w[0, 4] == pytest.approx(3.0)  # (3 * 2) / (1 * 2)
    # so every pair of distinct instances weighs the same in total, whatever their sizes
    assert w[np.ix_([0, 1, 2], [3])].sum() == pytest.approx(w[np.ix_([0, 1, 2], [4, 5])].sum())
    assert np.allclose(w, w.T)


def test_same_and_different_instance_pairs_get_half_the_weight_each_however_crowded():
    # 24 nuclei and the background, 10 samples each, in one patch
    objects = torch.arange(25).repeat_interleave(10)
    images = torch.zeros_like(objects)
    w = pair_weights(objects, images).numpy()
    same = objects.numpy()[:, None] == objects.numpy()[None]
    assert w[same].sum() == pytest.approx(0.5, rel=1e-5) and w[~same].sum() == pytest.approx(0.5, rel=1e-5)


def test_near_different_instance_pairs_outweigh_far_look_alikes():
    # instances 1 and 2 touch (10 px apart), instance 3 is 200 px away; objects ~10 px across
    objects = torch.tensor([1, 1, 2, 2, 3, 3])
    images = torch.zeros(6, dtype=torch.long)
    positions = torch.tensor([[0, 0], [0, 1], [0, 10], [0, 11], [0, 200], [0, 201]], dtype=torch.float32)
    w = pair_weights(objects, images, positions, torch.full((6,), 10.0)).numpy()
    near, far = w[np.ix_([0, 1], [2, 3])].sum(), w[np.ix_([0, 1], [4, 5])].sum()
    assert near > 100 * far
    assert w.sum() == pytest.approx(1) and np.allclose(w, w.T)


def test_embedding_loss_is_zero_when_instances_collapse_to_distant_points():
    objects = torch.tensor([1, 1, 2, 2, 0, 0])
    images = torch.zeros(6, dtype=torch.long)
    collapsed = torch.as_tensor(CENTRES[[1, 1, 2, 2, 0, 0]])
    assert float(embedding_loss(collapsed, objects, images)) < 1e-4
    spread = collapsed + torch.tensor([[0.0, 0, 0], [1.5, 0, 0], [0, 0, 0], [0, 1.5, 0], [0, 0, 0], [0, 0, 1.5]])
    assert float(embedding_loss(spread, objects, images)) > 0.1
    merged = torch.zeros(6, 3)  # everything at one point: sigma = 1 for the different-instance pairs
    assert float(embedding_loss(merged, objects, images)) > 5


def targets(labels_list, **options):
    options = METHOD.options({"embedding_dims": DIMS, **options})
    return METHOD.collate([METHOD.prepare_targets(l, np.zeros(l.shape, bool), options) for l in labels_list]), options


def terms(raw, t, **kwargs):
    return metric_loss_terms(raw, t["labels"], t["ignore"], t["sample_pixels"], t["sample_objects"],
                             t["sample_images"], embedding_dims=DIMS, **kwargs)


def test_samples_include_the_background_as_one_more_instance():
    t, options = targets([scene()])
    assert np.bincount(t["sample_objects"].numpy()).tolist() == [options.samples_per_object] * 5


def merged_scene_raw(patches):
    """Objects 1 and 2 share an embedding: a mask grown from either covers both (IoU 0.5)."""
    merged = CENTRES.copy()
    merged[2] = merged[1]
    return torch.cat([ideal_raw(labels, merged) for labels in patches])


def test_seediness_targets_say_whether_the_grown_mask_matches_an_object():
    patches = [scene(), scene()[:, ::-1].copy()]
    t, _ = targets(patches)
    ideal = terms(torch.cat([ideal_raw(labels) for labels in patches]), t)
    assert float(ideal["embedding"]) < 1e-3 and float(ideal["classification"]) < 1e-3
    raw = merged_scene_raw(patches)  # a bad proposal (the paper's hard targets, IoU > 0.5)
    assert float(terms(raw, t, soft_seed_targets=False)["classification"]) > 2  # the head still calls them good
    for b, labels in enumerate(patches):  # rate them bad: the loss vanishes again
        raw[b, DIMS:DIMS + N_TAU, torch.as_tensor((labels == 1) | (labels == 2))] = -12.0
    assert float(terms(raw, t, soft_seed_targets=False)["classification"]) < 1e-3


def test_soft_seediness_targets_are_the_iou_of_the_grown_mask():
    patches = [scene()]
    t, _ = targets(patches)
    raw = merged_scene_raw(patches)
    merged = torch.as_tensor((patches[0] == 1) | (patches[0] == 2))
    losses = {}
    for logit in (-12.0, 0.0, 12.0):  # rate the half-right masks 0, 0.5 (their IoU), 1
        raw[0, DIMS:DIMS + N_TAU, merged] = logit
        losses[logit] = float(terms(raw, t)["classification"])
    assert losses[0.0] < losses[-12.0] - 1 and losses[0.0] < losses[12.0] - 1


def test_seed_targets_caps_the_samples_whose_seediness_is_trained_in_each_patch():
    patches = [scene(), scene()[:, ::-1].copy()]
    t, options = targets(patches)  # 5 instances x 10 samples per patch
    for cap, trained in ((None, 50), (60, 50), (7, 7)):
        raw = torch.cat([ideal_raw(labels) for labels in patches]).requires_grad_()
        terms(raw, t, seed_targets=cap)["classification"].backward()
        seediness_grad = raw.grad[:, DIMS:DIMS + N_TAU].abs().sum(1).flatten(1)
        assert [(g > 0).sum().item() for g in seediness_grad] == [trained, trained]
    assert options.seed_targets == 256


def test_loss_gradients_are_finite_even_for_coincident_embeddings():
    labels = scene()
    t, options = targets([labels])
    raw = torch.zeros(1, DIMS + N_TAU + 1, *labels.shape, requires_grad=True)
    loss = METHOD.loss(raw, t, options)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(raw.grad).all()


def ideal_output(labels, **kwargs):
    return METHOD.activate(ideal_raw(labels, **kwargs))[0].numpy()


def matches_exactly(truth, found):
    pairs = {(int(a), int(b)) for a, b in zip(truth.ravel(), found.ravel())}
    return len(pairs) == len(np.unique(truth)) == len(np.unique(found))


def test_decoder_recovers_objects_from_the_ideal_output():
    labels = scene()
    for diversity in (0.0, 0.3):
        instances = METHOD.decode(ideal_output(labels), seed_diversity=diversity, size_threshold=1)
        assert instances.count == 4 and matches_exactly(labels, instances.labels)
        assert np.all(instances.scores > 0.99)


def test_decode_parameters_act_as_declared():
    labels = scene()
    output = ideal_output(labels)
    assert METHOD.decode(output, max_seeds=2).count == 2
    assert METHOD.decode(output, size_threshold=37).count == 3  # object 4 has 36 pixels
    output[DIMS:DIMS + N_TAU, labels == 3] = 0.3  # object 3 rated a poor seed everywhere
    assert METHOD.decode(output, score_threshold=0.5).count == 3
    assert METHOD.decode(output, score_threshold=0.2).count == 4


def test_connected_masks_separate_look_alike_objects_far_apart():
    labels = scene()
    centres = CENTRES.copy()
    centres[3] = centres[4]  # objects 3 and 4 look alike (same embedding) but are far apart
    output = ideal_output(labels, centres=centres)
    assert matches_exactly(labels, METHOD.decode(output, connected_masks=1, size_threshold=1).labels)
    merged = METHOD.decode(output, connected_masks=0, size_threshold=1)  # the paper's masks: one instance
    assert merged.count == 3 and merged.labels[25, 8] == merged.labels[30, 35]


def test_adaptive_threshold_takes_the_tau_the_head_rates_best():
    # objects 1 and 2 at squared distance 1 (sigma = 0.54): one mask at tau 0.25, two at tau 0.75
    labels = scene()
    centres = CENTRES.copy()
    centres[2] = centres[1] + [1, 0, 0]
    rated = ideal_output(labels, centres=centres)
    rated[DIMS:DIMS + N_TAU] = np.where(labels > 0, np.array([0.6, 0.6, 0.9, 0.6])[:, None, None], 0.01)  # tau = 0.75 is best
    assert METHOD.decode(rated, similarity_threshold=0).count == 4
    assert METHOD.decode(rated, similarity_threshold=0.25).count == 3
    assert METHOD.decode(rated, similarity_threshold=0.75).count == 4


def test_cached_decode_equals_fresh_decode():
    labels = scene()
    rng = np.random.default_rng(2)
    output = ideal_output(labels)
    output[:DIMS] += rng.normal(0, 0.4, (DIMS,) + labels.shape).astype(np.float32)
    output[DIMS:] = np.clip(output[DIMS:] + rng.normal(0, 0.2, (N_TAU + 1,) + labels.shape), 0.01, 1).astype(np.float32)
    cache = {}
    for params in [{}, {"seed_diversity": 0.0}, {"similarity_threshold": 0.5}, {"score_threshold": 0.7},
                   {"max_seeds": 3}, {"size_threshold": 3}, {"connected_masks": 0}, {"foreground_threshold": 0.3}, {}]:
        cached = METHOD.decode(output, cache=cache, **params)
        fresh = METHOD.decode(output, **params)
        assert np.array_equal(cached.labels, fresh.labels) and np.allclose(cached.scores, fresh.scores)


def test_preview_layers():
    layers = {layer.name: layer for layer in METHOD.preview(ideal_output(scene()))}
    assert layers["embedding (PCA)"].data.shape == (40, 48, 3) and layers["seediness"].data.shape == (40, 48)


def test_a_tiny_net_learns():
    from napari_deepcolor.data import from_arrays
    from napari_deepcolor.training import Step, Training, TrainingConfig

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    labels = np.zeros((96, 96), np.int32)
    for k, (cy, cx) in enumerate([(y, x) for y in range(12, 96, 24) for x in range(12, 96, 24)], start=1):
        dy, dx, radius = rng.integers(-3, 4), rng.integers(-3, 4), rng.integers(6, 10)
        labels[(yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= radius ** 2] = k
    image = ((labels > 0) + rng.normal(0, 0.1, labels.shape)).astype(np.float32)
    config = TrainingConfig(method="metric", iterations=20, patch_size=64, batch_size=2, net={"depth": 2, "width": 8},
                            validation_fraction=0, augment=False)
    events = list(Training(config, from_arrays(image, labels)).run())
    losses = [e.loss for e in events if isinstance(e, Step)]
    assert len(losses) == 20 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_foreground_head_is_trained_and_gates_the_seeds():
    labels = scene()
    t, _ = targets([labels])
    ideal = ideal_raw(labels)
    assert float(terms(ideal, t)["foreground"]) < 1e-3
    flipped = ideal.clone()
    flipped[0, -1] *= -1
    assert float(terms(flipped, t)["foreground"]) > 5
    output = ideal_output(labels)
    output[DIMS:DIMS + N_TAU, labels == 0] = 0.99  # the background rated the best seed of all
    instances = METHOD.decode(output, size_threshold=1)
    assert instances.count == 4 and matches_exactly(labels, instances.labels)  # yet it is never segmented
    output[-1, labels == 4] = 0.4  # object 4 is foreground only under a lower threshold
    assert METHOD.decode(output, size_threshold=1).count == 3
    assert METHOD.decode(output, size_threshold=1, foreground_threshold=0.3).count == 4
