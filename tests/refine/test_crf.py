"""The instance CRF (Arnab and Torr 2017): label set, mean field, matched loss, fitted weights in the model file."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_deepcolor.checkpoint import load_model, new_model, save_model
from napari_deepcolor.errors import DeepColorError
from napari_deepcolor.methods.base import Instances
from napari_deepcolor.refine import (LENGTHS_KEY, NET_PIXELS, crf_parameters, net_crf_parameters,
                                   store_crf_parameters)
from napari_deepcolor.refine.crf import CrfParameters, assign_slots, build_problem, refine_instances
from napari_deepcolor.refine.fit import CrfExample, fit_crf, match_instances, matched_loss


def touching_discs(shift: int = 4):
    """Two touching discs of different brightness with a blurred boundary, and a decoded labelling
    whose split line is ``shift`` pixels off, into the right disc."""
    yy, xx = np.mgrid[:64, :64]
    left = (yy - 32) ** 2 + (xx - 20) ** 2 <= 13 ** 2
    right = ((yy - 32) ** 2 + (xx - 45) ** 2 <= 13 ** 2) & ~left
    truth = np.zeros((64, 64), np.int64)
    truth[left], truth[right] = 1, 2
    image = ndi.gaussian_filter(0.8 * left + 0.4 * right, 1.5)
    objects = left | right
    foreground = np.where(objects, 0.95, 0.05).astype(np.float32)
    decoded = np.where(objects, np.where(xx <= 32 + shift, 1, 2), 0).astype(np.uint8)
    return image, foreground, truth, Instances(decoded, np.array([0.9, 0.9], np.float32))


def wrong_instance_pixels(labels, truth):
    return int(((labels > 0) & (truth > 0) & (labels != truth)).sum())


def test_mean_field_moves_a_misplaced_split_to_the_true_boundary():
    image, foreground, truth, decoded = touching_discs(shift=4)
    assert wrong_instance_pixels(decoded.labels, truth) > 50
    refined = refine_instances(decoded, foreground, image, CrfParameters(bilateral_weight=3.0, shape_weight=0.3,
                                                                         iterations=10))
    assert refined.count == 2
    assert wrong_instance_pixels(refined.labels, truth) <= 10
    # the split follows the true boundary column (x = 32/33) on the middle row
    row = refined.labels[32]
    assert set(row[25:31]) == {1} and set(row[35:40]) == {2}


def test_without_pairwise_term_the_shape_prior_keeps_the_decoded_split():
    image, foreground, truth, decoded = touching_discs(shift=4)
    refined = refine_instances(decoded, foreground, image, CrfParameters(iterations=0))
    # unaries alone keep the decoded split, give or take the pixels right on it (shape prior 0.5 each side)
    assert abs(wrong_instance_pixels(refined.labels, truth) - wrong_instance_pixels(decoded.labels, truth)) <= 5


@pytest.mark.parametrize("count", [1, 3, 12])
def test_label_set_grows_with_the_instances(count):
    labels = np.zeros((96, 96), np.uint16)
    for k in range(count):  # a grid of separate squares
        y, x = 8 + 24 * (k // 4), 8 + 24 * (k % 4)
        labels[y:y + 8, x:x + 8] = k + 1
    instances = Instances(labels, np.full(count, 0.9, np.float32))
    q = (labels > 0).astype(np.float32)
    problem = build_problem(instances, q, q, CrfParameters())
    assert set(np.unique(problem.owner)) == set(range(count + 1))
    refined = refine_instances(instances, q, q)
    assert refined.count == count
    assert np.array_equal(refined.labels > 0, labels > 0)


def test_label_set_shrinks_when_the_foreground_rejects_an_instance():
    labels = np.zeros((64, 64), np.uint8)
    labels[10:20, 10:20], labels[40:50, 40:50] = 1, 2
    q = np.zeros((64, 64), np.float32)
    q[10:20, 10:20] = 0.95  # the second instance is a false positive: no foreground under it
    refined = refine_instances(Instances(labels, np.array([0.9, 0.9], np.float32)), q, q)
    assert refined.count == 1 and refined.scores.shape == (1,)
    assert (refined.labels[40:50, 40:50] == 0).all() and (refined.labels[12:18, 12:18] == 1).all()


def test_no_instances_come_back_unchanged():
    empty = Instances(np.zeros((16, 16), np.uint8), np.zeros(0, np.float32))
    assert refine_instances(empty, np.zeros((16, 16)), np.zeros((16, 16))).count == 0


def test_boxes_sharing_a_slot_are_further_apart_than_the_kernel_window():
    boxes = np.array([[0, 0, 10, 10], [0, 12, 10, 22], [0, 40, 10, 50], [30, 0, 40, 10]])
    slots = assign_slots(boxes, separation=3)
    assert slots[0] != slots[1]  # 2 px apart
    assert slots[0] == slots[2] == slots[3]  # far apart: one channel serves them all


def test_hungarian_matching_pairs_instances_by_iou():
    truth = np.array([[1, 1, 1, 0, 2, 2]])
    prediction = np.array([[7, 7, 3, 0, 3, 3]])
    assert match_instances(prediction, truth) == {1: 7, 2: 3}


def test_matched_loss_does_not_depend_on_the_order_of_instances():
    image, foreground, truth, decoded = touching_discs(shift=4)
    swapped = np.where(decoded.labels > 0, 3 - decoded.labels, 0).astype(np.uint8)
    losses = []
    for labels in (decoded.labels, swapped):
        problem = build_problem(Instances(labels, decoded.scores), foreground, image, CrfParameters())
        losses.append(float(matched_loss(problem, CrfParameters(), truth)))
    permuted_truth = np.where(truth > 0, 3 - truth, 0)
    problem = build_problem(decoded, foreground, image, CrfParameters())
    losses.append(float(matched_loss(problem, CrfParameters(), permuted_truth)))
    assert losses[0] > 0
    assert losses[1] == pytest.approx(losses[0], rel=1e-5) and losses[2] == pytest.approx(losses[0], rel=1e-5)


def test_fitting_lowers_the_matched_loss_and_the_errors():
    image, foreground, truth, decoded = touching_discs(shift=4)
    start = CrfParameters()
    fitted, report = fit_crf([CrfExample(decoded, foreground, image, truth)], start=start, steps=30, tile=64)
    assert report["loss_after"] < report["loss_before"]
    assert fitted != start
    before = wrong_instance_pixels(refine_instances(decoded, foreground, image, start).labels, truth)
    after = wrong_instance_pixels(refine_instances(decoded, foreground, image, fitted).labels, truth)
    assert after < before


def test_model_file_keeps_the_fitted_weights_and_old_files_still_load(tmp_path):
    model = new_model("coloring", {}, {"depth": 2, "width": 8}, 1)
    path = save_model(model, tmp_path / "old.safetensors")
    assert load_model(path).crf is None
    fitted = CrfParameters(bilateral_weight=2.5, spatial_sigma=0.8)
    model.crf = fitted.to_dict()
    loaded = load_model(save_model(model, tmp_path / "fitted.safetensors"))
    assert CrfParameters.from_dict(loaded.crf) == fitted


def test_parameters_from_a_file_are_validated():
    with pytest.raises(DeepColorError, match="unknown CRF parameter"):
        CrfParameters.from_dict({"box_weight": 1.0, "magic": 2})
    with pytest.raises(DeepColorError, match="positive"):
        CrfParameters(bilateral_weight=-1.0)


def test_a_method_without_foreground_says_it_cannot_be_refined():
    from napari_deepcolor.methods import get_method

    with pytest.raises(DeepColorError, match="--refine none"):
        get_method("metric").foreground(np.zeros((4, 8, 8), np.float32))
    for name, channels in (("coloring", 5), ("boundary", 3), ("dcme", 3), ("semiconv", 7)):
        q = get_method(name).foreground(np.full((channels, 8, 8), 0.25, np.float32))
        assert q.shape == (8, 8)


#: which channel of the cached output each method's foreground reads, and how (a channel's value v)
FOREGROUND_CHANNEL = {"coloring": (5, 0, lambda v: 1 - v), "boundary": (3, 0, lambda v: 1 - v),
                      "dcme": (3, 2, lambda v: v), "semiconv": (7, 5, lambda v: v)}


@pytest.mark.parametrize("name", sorted(FOREGROUND_CHANNEL))
def test_each_method_builds_the_crf_foreground_from_its_own_channel(name):
    """Every channel holds another value, so a foreground read from a wrong channel cannot pass."""
    from napari_deepcolor.methods import get_method

    channels, index, expected = FOREGROUND_CHANNEL[name]
    output = np.stack([np.full((8, 8), (k + 1) / (channels + 2), np.float32) for k in range(channels)])
    q = get_method(name).foreground(output)
    assert np.allclose(q, expected(output[index]))
    assert len({round(float(expected(v)), 4) for v in output[:, 0, 0]}) == channels  # each channel tells


def test_a_coloring_model_with_a_semantic_head_is_refined_on_the_heads_background():
    """With its semantic head (C colours + 3) the CRF's Q is 1 - p(background) of the head, not of colour 0:
    where the head says background the refined instance is cut back, though the colours call it object."""
    from napari_deepcolor.refine import crf_foreground

    model = new_model("coloring", {"n_colors": 5, "halo_margin": 3}, {"depth": 2, "width": 8}, in_channels=1)
    assert model.method_options.semantic_head and model.method_channels == 8
    output = np.zeros((8, 32, 32), np.float32)
    output[0], output[1] = 0.05, 0.95  # colours: object (colour 1) everywhere
    output[5, :, :16], output[6, :, :16] = 0.05, 0.95  # head: interior on the left ...
    output[5, :, 16:], output[6, :, 16:] = 0.95, 0.05  # ... background on the right
    q = crf_foreground(model, output)
    assert np.allclose(q[:, :16], 0.95) and np.allclose(q[:, 16:], 0.05)
    whole = Instances(np.ones((32, 32), np.uint8), np.array([0.9], np.float32))
    refined = refine_instances(whole, q, np.where(q > 0.5, 0.8, 0.1).astype(np.float32))
    assert (refined.labels[:, :12] == 1).all() and not refined.labels[:, 20:].any()


def test_training_with_fit_crf_stores_fitted_weights_in_the_model_file(nuclei_samples, tmp_path):
    from napari_deepcolor.checkpoint import read_model_config
    from napari_deepcolor.training import TrainingConfig, train

    config = TrainingConfig(method="coloring", method_options={"halo_margin": 5}, net={"depth": 2, "width": 8},
                            patch_size=64, batch_size=2, iterations=40, learning_rate=3e-3, device="cpu",
                            validation_fraction=0.34, augment=False, fit_crf=True)
    finished = train(config, nuclei_samples, output=tmp_path / "m.safetensors")
    stored = read_model_config(tmp_path / "m.safetensors")
    assert stored["provenance"]["crf_fit"]["loss_after"] <= stored["provenance"]["crf_fit"]["loss_before"]
    assert stored["crf"] == finished.model.crf and stored["crf"][LENGTHS_KEY] == NET_PIXELS
    assert net_crf_parameters(finished.model) != CrfParameters()  # fitted, not the defaults


def test_fit_crf_is_refused_for_a_method_without_foreground():
    from napari_deepcolor.training import TrainingConfig

    with pytest.raises(DeepColorError, match="foreground"):
        TrainingConfig(method="metric", iterations=1, fit_crf=True)


def test_a_stack_is_refined_plane_by_plane_with_ids_unique_across_it():
    from napari_deepcolor import synthetic
    from napari_deepcolor.inference import predict
    from napari_deepcolor.refine import refine_prediction

    model = new_model("coloring", {"semantic_head": False}, {"depth": 2, "width": 8}, 1)  # random weights that decode
    stack = np.stack([synthetic.nuclei((64, 64), count=6, seed=s)[0] for s in range(2)])
    prediction = predict(model, stack, stack=True, device="cpu")
    refined = refine_prediction(prediction, stack)
    assert refined.labels.shape == (2, 64, 64) and refined.count > 1
    for z in range(2):
        alone = predict(model, stack[z], stack=False, device="cpu")
        plane = refine_prediction(alone, stack[z]).labels
        assert (refined.labels[z] > 0).sum() == (plane > 0).sum()
    ids = [set(np.unique(refined.labels[z])) - {0} for z in range(2)]
    assert not ids[0] & ids[1]
    assert refined.count == len(ids[0]) + len(ids[1])


def test_the_crf_calls_object_where_the_decode_does_its_foreground_threshold_maps_to_one_half():
    from napari_deepcolor.refine import crf_foreground

    output = np.zeros((3, 4, 4), np.float32)
    output[2] = np.linspace(0.05, 0.95, 16).reshape(4, 4)  # DCME's foreground probability
    dcme = new_model("dcme", {}, {"depth": 2, "width": 8}, in_channels=1)
    dcme.decode_defaults = {**dcme.decode_defaults, "foreground_threshold": 0.3}
    q = crf_foreground(dcme, output)
    assert np.array_equal(q > 0.5, output[2] > 0.3) and np.all(np.diff(q.ravel()) > 0)  # same order
    dcme.decode_defaults = {**dcme.decode_defaults, "foreground_threshold": 0.5}
    assert np.allclose(crf_foreground(dcme, output), output[2])
    baseline = new_model("boundary", {}, {"depth": 2, "width": 8}, in_channels=1)
    probabilities = np.full((3, 4, 4), 1 / 3, np.float32)
    assert np.allclose(crf_foreground(baseline, probabilities), 2 / 3)  # no threshold: Q as it is


def test_crf_lengths_scale_with_the_image_and_its_weights_do_not():
    crf = CrfParameters(spatial_sigma=2.0, bilateral_sigma_xy=4.0, bilateral_weight=2.0, window=3, reach=6,
                        box_margin=2, shape_softness=1.5)
    half = crf.rescaled(0.5)
    assert (half.spatial_sigma, half.bilateral_sigma_xy, half.shape_softness) == (1.0, 2.0, 0.75)
    assert (half.reach, half.box_margin, half.window) == (3, 1, 2)
    assert half.bilateral_weight == 2.0 and half.bilateral_sigma_intensity == crf.bilateral_sigma_intensity
    assert crf.rescaled(10).window == 10 and crf.rescaled(0.01).window == 1  # the window stays within 1..10


def test_fitted_crf_lengths_are_kept_in_net_pixels_and_follow_the_scale_of_each_image(tmp_path):
    """Objects of 15 px, enlarged twice for a net trained at 30 px: a bandwidth fitted as 1 px of the
    training images is 2 net pixels, and 0.5 px of images whose objects are half as large."""
    model = new_model("boundary", {}, {"depth": 2, "width": 8}, 1,
                      object_scale={"object_diameter": 15.0, "net_object_diameter": 30.0})
    store_crf_parameters(model, CrfParameters(spatial_sigma=1.0, bilateral_sigma_xy=3.0, bilateral_weight=2.5),
                         model.scale_factor())
    net = net_crf_parameters(model)
    assert (net.spatial_sigma, net.bilateral_sigma_xy, net.bilateral_weight) == (2.0, 6.0, 2.5)
    like_training = crf_parameters(model)
    assert (like_training.spatial_sigma, like_training.bilateral_sigma_xy) == (1.0, 3.0)
    assert crf_parameters(model, scale_factor=4.0).spatial_sigma == 0.5
    reloaded = load_model(save_model(model, tmp_path / "m.safetensors"))
    assert crf_parameters(reloaded) == like_training


def test_crf_weights_of_a_file_from_before_net_pixels_are_read_in_its_training_images_pixels():
    model = new_model("boundary", {}, {"depth": 2, "width": 8}, 1,
                      object_scale={"object_diameter": 15.0, "net_object_diameter": 30.0})
    model.crf = CrfParameters(spatial_sigma=1.0).to_dict()  # as older files stored it: no unit
    assert crf_parameters(model).spatial_sigma == 1.0
    assert net_crf_parameters(model).spatial_sigma == 2.0
