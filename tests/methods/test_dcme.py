"""DCME: the centre-of-mass target, the clipped error of eq. (6), decoding by vote clustering."""

import numpy as np
import pytest
import torch

from napari_deepcolor.methods import get_method
from napari_deepcolor.methods.dcme import centre_of_mass_displacement, clipped_error, clipped_regression_loss
from napari_deepcolor.methods.embedding import PIXELS_PER_UNIT

METHOD = get_method("dcme")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scene():
    labels = np.zeros((40, 48), np.int64)
    labels[4:14, 4:14] = 1
    labels[4:14, 14:24] = 2  # touches object 1
    labels[20:36, 30:40] = 3
    yy, xx = np.mgrid[:40, :48]
    labels[(yy - 28) ** 2 + (xx - 10) ** 2 <= 16] = 4  # a disk
    labels[30, 20:27] = 5  # a thin line
    return labels


def test_target_points_every_object_pixel_to_its_centre_of_mass():
    labels = scene()
    displacement = centre_of_mass_displacement(labels)
    assert displacement.shape == (2,) + labels.shape and displacement.dtype == np.float32
    yy, xx = np.mgrid[:40, :48]
    for k in range(1, 6):
        inside = labels == k
        votes_y, votes_x = yy[inside] + displacement[0][inside], xx[inside] + displacement[1][inside]
        assert np.allclose(votes_y, yy[inside].mean(), atol=1e-4) and np.allclose(votes_x, xx[inside].mean(), atol=1e-4)
    assert np.all(displacement[:, labels == 0] == 0)
    assert displacement[1, 9, 4] == pytest.approx(4.5) and displacement[0, 4, 4] == pytest.approx(4.5)


def test_prepared_target_is_in_units_of_pixels_per_unit():
    labels = scene()
    targets = METHOD.prepare_targets(labels, np.zeros(labels.shape, bool), METHOD.options())
    assert np.allclose(targets["displacement"] * PIXELS_PER_UNIT, centre_of_mass_displacement(labels))


def test_clipping_function_is_equation_6():
    x = torch.linspace(-50, 50, 101)
    f = clipped_error(x, 4.0)
    assert torch.allclose(f, 4.0 * (1 / (1 + torch.exp(-x)) - 0.5))
    assert torch.allclose(f, 2.0 * torch.tanh(x / 2), atol=1e-6)  # (A/2)(e^x - 1)/(e^x + 1)
    assert float(f.abs().max()) <= 2.0  # amplitude A/2
    small = torch.tensor([1e-3])
    assert float(clipped_error(small, 4.0)) == pytest.approx(1e-3, rel=1e-3)  # slope A/4 = 1: linear near 0


@pytest.mark.parametrize("amplitude", [1.0, 4.0, 10.0])
def test_loss_gradient_is_the_clipped_error_over_the_number_of_outputs(amplitude):
    rng = np.random.default_rng(0)
    target = torch.as_tensor(rng.normal(0, 10, (2, 2, 6, 7)), dtype=torch.float32)
    predicted = torch.tensor(rng.normal(0, 10, (2, 2, 6, 7)), dtype=torch.float32, requires_grad=True)
    mask = torch.as_tensor(rng.random((2, 6, 7)) > 0.3)
    loss = clipped_regression_loss(predicted, target, mask, amplitude=amplitude)
    loss.backward()
    n_outputs = 2 * int(mask.sum())  # eq. (5): every pixel of both channels is one output
    expected = clipped_error(predicted.detach() - target, amplitude) / n_outputs * mask.unsqueeze(1)
    assert torch.allclose(predicted.grad, expected, atol=1e-7)
    # and numerically, by central differences on one output
    b, c, y, x = [int(i) for i in torch.nonzero(mask.unsqueeze(1).expand(-1, 2, -1, -1))[5]]
    step = 1e-2
    plus, minus = predicted.detach().clone(), predicted.detach().clone()
    plus[b, c, y, x] += step
    minus[b, c, y, x] -= step
    numeric = (clipped_regression_loss(plus.double(), target.double(), mask, amplitude=amplitude)
               - clipped_regression_loss(minus.double(), target.double(), mask, amplitude=amplitude)) / (2 * step)
    assert float(numeric) == pytest.approx(float(expected[b, c, y, x]), rel=1e-3, abs=1e-9)


def test_large_errors_are_clipped_unlike_the_squared_error():
    target = torch.zeros(1, 2, 1, 2)
    predicted = torch.tensor([[[[1.0, 100.0]], [[0.0, 0.0]]]], requires_grad=True)
    clipped_regression_loss(predicted, target, torch.ones(1, 1, 2, dtype=bool), amplitude=4.0).backward()
    # the 100 px error pushes at most A/2 = 2 (over N = 4 outputs), the 1 px error at about A/4 * 1
    assert float(predicted.grad[0, 0, 0, 1]) == pytest.approx(2.0 / 4, rel=1e-4)
    assert float(predicted.grad[0, 0, 0, 0]) == pytest.approx(float(clipped_error(torch.tensor(1.0), 4.0)) / 4)


def test_method_loss_is_zero_for_the_ideal_output_and_ignores_ignored_pixels():
    labels = scene()
    ignore = np.zeros(labels.shape, bool)
    ignore[:, :3] = True
    options = METHOD.options()
    targets = METHOD.collate([METHOD.prepare_targets(labels, ignore, options)])
    raw = ideal_raw(labels)
    assert float(METHOD.loss(raw, targets, options)) < 1e-3
    noisy = (raw + torch.randn_like(raw)).requires_grad_()
    loss = METHOD.loss(noisy, targets, options)
    loss.backward()
    assert float(loss.detach()) > 0.1 and noisy.grad[..., :3].abs().max() == 0


def ideal_raw(labels):
    displacement = centre_of_mass_displacement(labels) / PIXELS_PER_UNIT
    fg = np.where(labels > 0, 12.0, -12.0)[None]
    return torch.as_tensor(np.concatenate([displacement, fg])[None], dtype=torch.float32)


def ideal_output(labels):
    return METHOD.activate(ideal_raw(labels))[0].numpy()


def matches_exactly(truth, found):
    pairs = {(int(a), int(b)) for a, b in zip(truth.ravel(), found.ravel())}
    return len(pairs) == len(np.unique(truth)) == len(np.unique(found))


def test_decoder_recovers_objects_from_the_ideal_output():
    labels = scene()
    output = ideal_output(labels)
    assert np.allclose(output[:2], centre_of_mass_displacement(labels), atol=1e-5)  # activate: pixels
    instances = METHOD.decode(output, size_threshold=1, min_votes=5)
    assert instances.count == 5 and matches_exactly(labels, instances.labels)
    assert np.all(instances.scores > 0.99)


def test_decoder_tolerates_noisy_votes():
    labels = scene()
    output = ideal_output(labels)
    output[:2] += np.random.default_rng(0).normal(0, 1.0, (2,) + labels.shape).astype(np.float32)
    instances = METHOD.decode(output, size_threshold=1, min_votes=3, assign_radius=6)
    assert instances.count == 5
    agreement = sum(np.bincount(instances.labels[labels == k]).max() for k in range(1, 6)) / (labels > 0).sum()
    assert agreement > 0.97


def test_decode_parameters_act_as_declared():
    labels = scene()
    output = ideal_output(labels)
    assert METHOD.decode(output, size_threshold=8, min_votes=5).count == 4  # the line has 7 pixels
    assert METHOD.decode(output, size_threshold=1, min_votes=8).count == 4  # ... and 7 votes
    # pixels whose vote misses every centre by more than the radius stay background
    stray = output.copy()
    stray[0, 20, 30:33] += 12.0  # three pixels of object 3 vote 12 px below its centre, too few for a centre
    near = METHOD.decode(stray, min_votes=5, assign_radius=3, size_threshold=1)
    assert near.count == 5 and np.all(near.labels[20, 30:33] == 0) and near.labels[21, 30] > 0
    far = METHOD.decode(stray, min_votes=5, assign_radius=20, size_threshold=1)
    assert np.all(far.labels[20, 30:33] == far.labels[21, 30])
    # votes of both touching squares land 10 px apart: heavy smoothing merges them into one centre
    assert METHOD.decode(output, min_votes=5, vote_smoothing=10, assign_radius=20).labels[8, 8] == \
        METHOD.decode(output, min_votes=5, vote_smoothing=10, assign_radius=20).labels[8, 20]


def test_cached_decode_equals_fresh_decode():
    labels = scene()
    output = ideal_output(labels)
    output[:2] += np.random.default_rng(1).normal(0, 1.5, (2,) + labels.shape).astype(np.float32)
    cache = {}
    for params in [{}, {"min_votes": 3}, {"assign_radius": 3.0}, {"vote_smoothing": 1.0}, {"size_threshold": 3},
                   {"foreground_threshold": 0.3, "min_votes": 3}, {}]:
        cached = METHOD.decode(output, cache=cache, **params)
        fresh = METHOD.decode(output, **params)
        assert np.array_equal(cached.labels, fresh.labels) and np.allclose(cached.scores, fresh.scores)


def test_preview_layers():
    labels = scene()
    layers = {layer.name: layer for layer in METHOD.preview(ideal_output(labels))}
    assert layers["displacement to centre (px)"].layer_type == "vectors"
    assert layers["displacement to centre (px)"].data.shape[1:] == (2, 2)
    density = layers["vote density"].data
    assert density.shape == labels.shape and density[8, 8] > 30  # 100 votes of object 1 land at (8.5, 8.5)


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
    config = TrainingConfig(method="dcme", iterations=20, patch_size=64, batch_size=2, net={"depth": 2, "width": 8},
                            validation_fraction=0, augment=False)
    events = list(Training(config, from_arrays(image, labels)).run())
    losses = [e.loss for e in events if isinstance(e, Step)]
    assert len(losses) == 20 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
