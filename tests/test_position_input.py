"""Deep coloring with position input: the coordinates break the convolutional symmetry, tiles agree
with the whole image, and models without the option load and predict as before."""

import json

import numpy as np
import pytest
import torch

from napari_deepcolor import DeepColorError
from napari_deepcolor.checkpoint import load_model, new_model, save_model
from napari_deepcolor.inference import predict, predict_output
from napari_deepcolor.methods import get_method
from napari_deepcolor.nets.position import flipped_grid, position_channels, window_grid

from .conftest import TINY_NET
from .test_inference import assert_no_seam

METHOD = get_method("coloring")
#: the options of a deep coloring model file written before position input existed
OLD_OPTIONS = {"n_colors": 9, "halo_margin": 21, "halo_weight": 7.0, "semantic_head": True, "semantic_weight": 10.0,
               "color_choice": "paper", "class_colors": True}


def coloring_model(seed=0, **options):
    torch.manual_seed(seed)
    return new_model("coloring", options, {"depth": 2, "width": 8, "norm": "none"}, in_channels=1)


@pytest.fixture(scope="module")
def position_model():
    return coloring_model(position_input=True, position_period=40)


def test_the_net_of_a_position_model_takes_four_more_input_channels(position_model):
    assert position_model.net_config.in_channels == 1  # the image's channels: what images are matched against
    assert position_model.net_config.position_periods == (40.0,)
    assert position_model.net.down[0][0].in_channels == 1 + 4
    assert coloring_model().net.down[0][0].in_channels == 1


def test_a_tiled_prediction_of_a_position_model_equals_the_whole_image(position_model):
    image = np.random.default_rng(0).random((200, 232)).astype(np.float32)[..., None]
    whole = predict_output(position_model, image, device="cpu", tile_size=512)
    tiled = predict_output(position_model, image, device="cpu", tile_size=96, margin=24)
    assert_no_seam(tiled, whole, tolerance=1e-4)


def test_tiles_told_nothing_of_their_place_would_not_match(position_model, monkeypatch):
    """What the test above guards: a tile that took its own corner for the image's origin gives other colours."""
    from napari_deepcolor import inference

    image = np.random.default_rng(0).random((200, 232)).astype(np.float32)[..., None]
    whole = predict_output(position_model, image, device="cpu", tile_size=512)
    monkeypatch.setattr(inference, "window_grid", lambda corner, *args: window_grid((0, 0), *args))
    tiled = predict_output(position_model, image, device="cpu", tile_size=96, margin=24)
    with pytest.raises(AssertionError, match="worst row"):
        assert_no_seam(tiled, whole, tolerance=1e-4)


def test_tiles_of_a_rescaled_image_are_told_their_place_at_the_nets_scale():
    """Enlarged twice, every window's coordinates are those the whole enlarged image gives its pixels. (Without
    normalisation layers: group norm's statistics are each window's own, with or without position input.)"""
    torch.manual_seed(0)
    model = new_model("coloring", {"position_input": True, "position_period": 40}, {**TINY_NET, "norm": "none"},
                      in_channels=1, object_scale={"object_diameter": 15.0, "net_object_diameter": 30.0})
    image = np.random.default_rng(1).random((150, 170)).astype(np.float32)
    whole = predict(model, image, tile_size=1024).output
    tiled = predict(model, image, tile_size=96, margin=32).output
    assert_no_seam(tiled, whole, tolerance=1e-4)


@pytest.mark.parametrize("factor, size, net_size", [(1.0, (30, 50), (30, 50)), (1.5, (30, 50), (45, 75)),
                                                     (0.7, (33, 50), (23, 35))])
def test_a_window_gets_the_coordinates_the_whole_image_gives_its_pixels(factor, size, net_size):
    """Net pixel j of a window at ``corner`` samples image point corner + (j + 0.5) * size / net_size - 0.5
    (bilinear, centres aligned); its coordinate is ``factor`` times that point's, whatever the tiling."""
    corner = (40, 17)
    origin, spacing = window_grid(corner, size, net_size, factor)
    for axis in (0, 1):
        j = np.arange(net_size[axis])
        image_point = corner[axis] + (j + 0.5) * size[axis] / net_size[axis] - 0.5
        assert np.allclose(origin[axis] + spacing[axis] * j, factor * image_point)
    assert window_grid((0, 0), (64, 64), (64, 64), 1.0) == ((0.0, 0.0), (1.0, 1.0))


def test_a_flipped_window_keeps_each_pixels_coordinates():
    origin, spacing = (12.0, 30.5), (1.0, 1.5)
    plain = position_channels((1, 8, 10), (20.0,), origin=origin, spacing=spacing)
    for dims in ((-1,), (-2,), (-2, -1)):
        flipped = position_channels((1, 8, 10), (20.0,), **dict(zip(("origin", "spacing"),
                                                                   flipped_grid(origin, spacing, (8, 10), dims))))
        assert torch.allclose(flipped, plain.flip(dims), atol=1e-6)


def test_identical_objects_at_different_places_are_no_longer_identical_to_the_net(position_model):
    """The symmetry sec. 3.6 of Novotny et al. proves a convolutional net cannot break: two identical
    objects 48 px apart (a multiple of the net's pooling) give the plain net the same output, and the
    position net a different one, because its input differs there."""
    image = np.zeros((64, 176, 1), np.float32)
    yy, xx = np.mgrid[:64, :176]
    for centre_x in (64, 112):
        image[..., 0][(yy - 32) ** 2 + (xx - centre_x) ** 2 <= 10 ** 2] = 1.0
    first, second = (slice(None), slice(16, 48), slice(48, 80)), (slice(None), slice(16, 48), slice(96, 128))
    plain = predict_output(coloring_model(), image, device="cpu")
    assert np.allclose(plain[first], plain[second], atol=1e-5)
    placed = predict_output(position_model, image, device="cpu")
    assert np.abs(placed[first] - placed[second]).max() > 1e-3  # a hundred times what the plain net allows
    coordinates = position_channels((1, 64, 176), position_model.net_config.position_periods)[0].numpy()
    assert np.abs(coordinates[first] - coordinates[second]).max(axis=0).min() > 0.5  # at every pixel


def test_an_old_style_options_dict_loads_unchanged():
    options = METHOD.options(OLD_OPTIONS)
    assert options.position_input is False
    assert METHOD.position_periods(options) == ()


def test_a_model_file_from_before_position_input_loads_and_predicts_as_before(tmp_path):
    """A file whose JSON has neither position option nor position_periods (as older versions wrote them)."""
    from safetensors.torch import save_file

    model = coloring_model(**OLD_OPTIONS)
    config = model.config()
    for key in ("position_input", "position_period"):
        del config["method_options"][key]
    assert "position_periods" not in config["net"]  # a model without position input writes none
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(path),
              metadata={"napari_deepcolor": json.dumps(config)})
    loaded = load_model(path)
    assert loaded.method_options == METHOD.options(OLD_OPTIONS)
    assert loaded.net_config == model.net_config and loaded.net_config.position_periods == ()
    image = np.random.default_rng(3).random((70, 90)).astype(np.float32)[..., None]
    assert np.array_equal(predict_output(loaded, image, device="cpu", tile_size=64, margin=16),
                          predict_output(model, image, device="cpu", tile_size=64, margin=16))


def test_a_position_model_keeps_its_position_input_through_its_file(position_model, tmp_path):
    loaded = load_model(save_model(position_model, tmp_path / "p.safetensors"))
    assert loaded.method_options.position_input and loaded.net_config.position_periods == (40.0,)
    image = np.random.default_rng(4).random((70, 90)).astype(np.float32)[..., None]
    assert np.allclose(predict_output(loaded, image, device="cpu"), predict_output(position_model, image, device="cpu"),
                       atol=1e-6)


def test_a_bad_position_period_says_what_fits():
    with pytest.raises(DeepColorError, match="position_period must be in"):
        METHOD.options({"position_input": True, "position_period": 2})


def test_a_position_model_is_not_exported_to_bioimageio(position_model, tmp_path):
    from napari_deepcolor.models.bioimageio_export import export_bioimageio

    path = save_model(position_model, tmp_path / "p.safetensors")
    with pytest.raises(DeepColorError, match="position_input"):
        export_bioimageio(path, tmp_path / "p.zip")
    assert not (tmp_path / "p.zip").exists()


def test_a_position_model_trains_and_fine_tunes(nuclei_samples, tmp_path):
    from napari_deepcolor.training import Step, Training, TrainingConfig, train

    config = TrainingConfig(method="coloring", method_options={"halo_margin": 5, "position_input": True},
                            net=TINY_NET, patch_size=64, batch_size=2, iterations=3, validation_fraction=0.0,
                            device="cpu", seed=0)
    base = tmp_path / "base.safetensors"
    events = list(Training(config, nuclei_samples, output=base).run())
    assert all(np.isfinite(e.loss) for e in events if isinstance(e, Step))
    assert load_model(base).net_config.position_periods == (90.0,)
    tuned = train(config, nuclei_samples, init_from=base).model
    assert tuned.net_config.position_periods == (90.0,) and tuned.net_config.in_channels == 1
    labels = predict(tuned, nuclei_samples[0].image[..., 0], tile_size=64, margin=16).decode().labels
    assert labels.shape == nuclei_samples[0].image.shape[:2]
