"""Object-size normalisation: training and inference at the net's object diameter, labels at the input's."""

import numpy as np
import pytest
import torch

from napari_deepcolor import DeepColorError, synthetic
from napari_deepcolor.checkpoint import load_model, new_model, save_model
from napari_deepcolor.data import from_arrays
from napari_deepcolor.inference import predict
from napari_deepcolor.metrics import evaluate
from napari_deepcolor.scale import object_diameter, rescale_sample, resize_nearest, scale_factor
from napari_deepcolor.training import TrainingConfig, train

from .conftest import TINY_NET


def test_object_diameter_is_the_median_equivalent_diameter():
    labels = np.zeros((100, 100), np.int32)
    yy, xx = np.mgrid[:100, :100]
    for k, (y, x, r) in enumerate([(20, 20, 8), (60, 60, 10), (20, 70, 12)], start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = k
    assert object_diameter([labels]) == pytest.approx(20, abs=0.5)
    assert object_diameter([np.zeros((5, 5), np.int32)]) == 0.0


def test_scale_factor_brings_objects_to_the_net_diameter_and_refuses_absurd_ones():
    assert scale_factor(60, 30) == 0.5 and scale_factor(15, 30) == 2.0
    assert scale_factor(29, 30) == 1.0  # within 5 %: not worth a resize
    assert scale_factor(None, 30) == 1.0 and scale_factor(40, None) == 1.0
    with pytest.raises(DeepColorError, match="diameter of the objects in pixels"):
        scale_factor(1000, 30)


def test_rescaled_sample_keeps_every_object_and_its_ids():
    image, labels = synthetic.nuclei((96, 96), count=8, radius=(8, 10), seed=0)
    sample = from_arrays(image, labels)[0]
    small = rescale_sample(sample, 0.5)
    assert small.shape == (48, 48) and small.image.shape == (48, 48, 1)
    assert small.num_objects == sample.num_objects
    assert np.mean((resize_nearest(small.labels, (96, 96)) > 0) == (sample.labels > 0)) > 0.95


def test_labels_come_back_at_the_input_resolution(tmp_path):
    model = new_model("boundary", None, TINY_NET, in_channels=1,
                      object_scale={"object_diameter": 60.0, "net_object_diameter": 30.0})
    assert model.scale_factor() == 0.5 and model.scale_factor(object_diameter=15) == 2.0
    model = load_model(save_model(model, tmp_path / "m.safetensors"))
    assert model.object_scale == {"object_diameter": 60.0, "net_object_diameter": 30.0}
    image = np.random.default_rng(0).random((101, 77)).astype(np.float32)
    prediction = predict(model, image)
    assert prediction.output.shape == (3, 101, 77)
    assert np.allclose(prediction.output.sum(0), 1, atol=1e-4)
    assert prediction.decode().labels.shape == (101, 77)


def test_tiles_of_a_rescaled_image_join_without_seams():
    torch.manual_seed(0)
    model = new_model("coloring", None, TINY_NET, in_channels=1,
                      object_scale={"object_diameter": 15.0, "net_object_diameter": 30.0})
    image = np.random.default_rng(1).random((150, 170)).astype(np.float32)
    whole = predict(model, image, tile_size=1024).output
    tiled = predict(model, image, tile_size=96, margin=32).output
    assert whole.shape == tiled.shape == (12, 150, 170)
    # rescaling each tile moves every pixel a little (about 0.02 at most in any row); a seam would be a row
    # or column far worse than the others, which a mean over the image hides
    difference = np.abs(whole - tiled)
    for profile in (difference.max(axis=(0, 2)), difference.max(axis=(0, 1))):  # per row, per column
        assert profile.max() < 0.05 and profile.max() < 2 * np.median(profile) + 1e-3, \
            (profile.argmax(), profile.max(), np.median(profile))


def test_dcme_displacements_are_returned_in_the_image_pixels():
    model = new_model("dcme", None, TINY_NET, in_channels=1,
                      object_scale={"object_diameter": 15.0, "net_object_diameter": 30.0})
    method = model.method
    net_output = torch.zeros(1, 3, 8, 8)
    net_output[:, :2] = 10.0  # 10 net pixels = 5 image pixels at 2x
    image_output = method.output_to_image_scale(net_output, 0.5)
    assert torch.all(image_output[:, :2] == 5.0) and torch.all(image_output[:, 2] == net_output[:, 2])


@pytest.fixture(scope="module")
def trained_at_small_objects(tmp_path_factory):
    """A tiny 3-class model trained on nuclei about 15 px across, at their own scale."""
    pairs = [synthetic.nuclei((128, 128), count=14, radius=(6, 9), seed=s) for s in range(4)]
    samples = from_arrays([p[0] for p in pairs], [p[1] for p in pairs])
    config = TrainingConfig(method="boundary", net=TINY_NET, iterations=80, patch_size=96, batch_size=4,
                            validation_fraction=0, net_object_diameter=15.0, device="cpu", seed=1)
    finished = train(config, samples)
    assert finished.model.scale_factor() == 1.0  # objects already at the net's size: no resize
    return finished.model


def test_a_model_segments_an_image_with_twice_as_large_objects_as_well(trained_at_small_objects):
    model = trained_at_small_objects
    image, truth = synthetic.nuclei((128, 128), count=14, radius=(6, 9), seed=10)
    native = evaluate(truth, predict(model, image).decode(size_threshold=10).labels)
    big_image = np.kron(image, np.ones((2, 2), image.dtype))
    big_truth = np.kron(truth, np.ones((2, 2), truth.dtype))
    diameter = 2 * model.object_scale["object_diameter"]
    enlarged = evaluate(big_truth, predict(model, big_image, object_diameter=diameter).decode(size_threshold=40).labels)
    unaware = evaluate(big_truth, predict(model, big_image).decode(size_threshold=40).labels)
    assert native["f1"] > 0.6
    assert abs(enlarged["f1"] - native["f1"]) < 0.15  # rescaled back to the size it knows: as good
    assert enlarged["f1"] >= unaware["f1"]
