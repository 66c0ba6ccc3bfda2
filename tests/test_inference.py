"""Tiled inference, stacks, channel handling and the cached decode."""

import numpy as np
import pytest
import torch

from napari_deepcolor import DeepColorError
from napari_deepcolor.checkpoint import new_model
from napari_deepcolor.inference import predict, predict_output, prepare_image, tile_windows


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = new_model("coloring", {}, {"depth": 2, "width": 8, "norm": "none"}, in_channels=1)
    return m


def test_windows_cover_the_image_exactly_once():
    covered = np.zeros((300, 170), int)
    for read_y, read_x, core_y, core_x in tile_windows(covered.shape, 128, 16):
        assert read_y.start <= core_y.start and core_y.stop <= read_y.stop
        assert read_y.stop - read_y.start <= 128 and read_x.stop - read_x.start <= 128
        covered[core_y, core_x] += 1
    assert (covered == 1).all()


def test_tiled_output_matches_the_whole_image_away_from_tile_seams(model):
    rng = np.random.default_rng(0)
    image = rng.random((200, 232)).astype(np.float32)[..., None]
    whole = predict_output(model, image, device="cpu", tile_size=512)
    tiled = predict_output(model, image, device="cpu", tile_size=96, margin=24)
    assert tiled.shape == whole.shape == (12, 200, 232)  # 9 colours + the semantic head's 3
    # a margin of 24 px covers the tiny net's receptive field: every row and every column agrees (a mean
    # over the image would hide one bad seam row among 200)
    assert_no_seam(tiled, whole, tolerance=1e-4)


def assert_no_seam(tiled, whole, *, tolerance):
    """The worst difference of every row and every column is below ``tolerance``."""
    difference = np.abs(tiled - whole)
    rows, columns = difference.max(axis=(0, 2)), difference.max(axis=(0, 1))
    assert rows.max() < tolerance and columns.max() < tolerance, \
        (f"worst row {rows.argmax()}: {rows.max():.2e}, worst column {columns.argmax()}: {columns.max():.2e}")


def test_the_seam_check_catches_one_bad_row(model):
    """What the check above is for: one row off by 0.05 passes a mean (0.05 / 200 < 1e-3) but not it."""
    rng = np.random.default_rng(0)
    whole = predict_output(model, rng.random((200, 232)).astype(np.float32)[..., None], device="cpu")
    seamed = whole.copy()
    seamed[:, 96] += 0.05
    assert np.abs(seamed - whole).mean() < 1e-3
    with pytest.raises(AssertionError, match="worst row 96"):
        assert_no_seam(seamed, whole, tolerance=1e-4)


def test_the_channels_last_layout_changes_the_speed_not_the_output(model, monkeypatch, tmp_path):
    """On a CPU the net runs channels-last (0.55 times the time of a 1024 px tile); its output is the default
    layout's, the model's weights keep their values, and it still saves."""
    from napari_deepcolor import inference
    from napari_deepcolor.checkpoint import load_model
    from napari_deepcolor.models.files import save_model

    image = np.random.default_rng(2).random((120, 90)).astype(np.float32)[..., None]
    fast = predict_output(model, image, device="cpu", tile_size=64, margin=16)
    assert any(w.dim() == 4 and w.shape[1] > 1 and not w.is_contiguous() for w in model.net.parameters())
    monkeypatch.setattr(inference, "memory_format", lambda device: torch.contiguous_format)
    plain = predict_output(model, image, device="cpu", tile_size=64, margin=16)
    assert np.allclose(fast, plain, atol=1e-5)
    predict_output(model, image, device="cpu")  # channels-last again: saving must cope with it
    saved = load_model(save_model(model, tmp_path / "m.safetensors"))
    assert all(torch.equal(saved.net.state_dict()[k], v) for k, v in model.net.state_dict().items())


def test_output_is_a_probability_map(model):
    out = predict(model, np.random.default_rng(1).random((40, 50))).output
    assert out.shape == (12, 40, 50)
    assert np.allclose(out[:9].sum(0), 1, atol=1e-4)  # the colours
    assert np.allclose(out[9:].sum(0), 1, atol=1e-4)  # background / interior / boundary


def test_stacks_are_segmented_plane_by_plane_with_unique_ids(model):
    stack = np.random.default_rng(2).random((3, 48, 48)).astype(np.float32)
    prediction = predict(model, stack)
    assert prediction.output.shape == (3, 12, 48, 48)
    instances = prediction.decode(size_threshold=1)
    assert instances.labels.shape == (3, 48, 48)
    assert instances.count == len(np.setdiff1d(np.unique(instances.labels), [0]))  # ids unique across planes
    assert len(prediction.preview()) == 11 and prediction.preview()[1].data.shape == (3, 48, 48)


def test_colour_image_for_a_grey_model_is_averaged(model):
    rgb = np.random.default_rng(3).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    assert prepare_image(model, rgb).shape == (32, 40, 1)
    assert predict(model, rgb).output.shape == (12, 32, 40)


def test_wrong_channel_count_is_a_clear_error():
    m = new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=2)
    with pytest.raises(DeepColorError, match="channels"):
        prepare_image(m, np.zeros((16, 16, 3), np.float32))


def test_decode_from_cache_never_reruns_the_net(model, monkeypatch):
    prediction = predict(model, np.random.default_rng(4).random((64, 64)))
    calls = []
    monkeypatch.setattr(model.net, "forward", lambda *a: calls.append(1))
    a = prediction.decode(size_threshold=1)
    b = prediction.decode(size_threshold=30)
    assert not calls and a.count >= b.count


def test_stack_preview_of_an_embedding_gives_vectors_with_a_z_column():
    torch.manual_seed(0)
    model = new_model("semiconv", {}, {"depth": 2, "width": 8}, in_channels=1)
    prediction = predict(model, np.random.default_rng(5).random((2, 32, 32)).astype(np.float32))
    vectors = [layer for layer in prediction.preview() if layer.layer_type == "vectors"]
    assert vectors and vectors[0].data.shape[1:] == (2, 3)
    assert set(np.unique(vectors[0].data[:, 0, 0])) == {0, 1}  # positions carry the plane index
    assert (vectors[0].data[:, 1, 0] == 0).all()  # directions stay in the plane


def test_test_time_flips_average_the_four_mirror_images(model):
    torch.manual_seed(0)
    baseline = new_model("boundary", {}, {"depth": 2, "width": 8, "norm": "none"}, in_channels=1)
    image = np.random.default_rng(2).random((64, 96)).astype(np.float32)[..., None]
    plain = predict_output(baseline, image, device="cpu")
    flipped = predict_output(baseline, image, device="cpu", flips=True)
    assert flipped.shape == plain.shape and not np.allclose(flipped, plain, atol=1e-3)
    assert np.allclose(flipped.sum(0), 1, atol=1e-4)  # still probabilities
    # the mean over all four flips is the same for the image and its mirror image, mirrored back
    mirrored = predict_output(baseline, np.ascontiguousarray(image[:, ::-1]), device="cpu", flips=True)
    assert np.allclose(mirrored[:, :, ::-1], flipped, atol=1e-5)
    with pytest.raises(DeepColorError, match="mirror image"):  # colours may differ between mirror images
        predict(model, image[..., 0], flips=True)
