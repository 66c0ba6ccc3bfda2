"""Semi-convolutional embedding: Psi = Phi + u (eqs. 3, 6), the losses (eqs. 5, 10), the decoder, fig. 3."""

import numpy as np
import pytest
import torch


pytestmark = pytest.mark.usefixtures("one_torch_thread")

from napari_deepcolor.methods import get_method
from napari_deepcolor.methods.dcme import centre_of_mass_displacement
from napari_deepcolor.methods.embedding import PIXELS_PER_UNIT, grow_from_seeds
from napari_deepcolor.methods.semiconv import pull_loss, semiconv_embedding, semiconv_loss_terms

METHOD = get_method("semiconv")
DIMS = 4


def scene():
    labels = np.zeros((40, 48), np.int64)
    labels[4:14, 4:14] = 1
    labels[4:14, 14:24] = 2  # touches object 1
    labels[20:36, 30:40] = 3
    labels[24:30, 6:12] = 4
    return labels


def ideal_raw(labels, *, collapsed=True, sigma=0.1):
    """Net logits whose Psi is one point per object: the displacement to the centre plus a per-object appearance."""
    rng = np.random.default_rng(0)
    phi = np.zeros((DIMS,) + labels.shape, np.float32)
    if collapsed:
        phi[:2] = centre_of_mass_displacement(labels) / PIXELS_PER_UNIT
        phi[2:] = rng.normal(size=(labels.max() + 1, DIMS - 2))[labels].transpose(2, 0, 1)
    inside = labels > 0
    log_sigma = np.full(labels.shape, np.log(sigma))
    fg = np.where(inside, 12.0, -12.0)
    seed = np.where(inside, 12.0, -12.0)
    return torch.as_tensor(np.concatenate([phi, log_sigma[None], fg[None], seed[None]])[None], dtype=torch.float32)


def targets(labels_list, ignore_list=None, **options):
    options = METHOD.options({"embedding_dims": DIMS, **options})
    ignore_list = ignore_list or [np.zeros(l.shape, bool) for l in labels_list]
    return METHOD.collate([METHOD.prepare_targets(l, i, options) for l, i in zip(labels_list, ignore_list)]), options


def terms(raw, t):
    return semiconv_loss_terms(raw, t["labels"], t["ignore"], t["sample_pixels"], t["sample_images"],
                               embedding_dims=DIMS)


def test_embedding_adds_the_coordinates_in_units_of_16_pixels():
    phi = torch.zeros(1, DIMS, 5, 6)
    psi = semiconv_embedding(phi)
    assert float(psi[0, 0, 4, 2]) == pytest.approx(4 / 16) and float(psi[0, 1, 4, 2]) == pytest.approx(2 / 16)
    assert psi[0, 2:].abs().max() == 0  # appearance dimensions: u-hat is zero-padded (eq. 6)
    assert torch.equal(semiconv_embedding(phi, coordinates=False), phi)


def test_pull_loss_is_zero_when_each_object_collapses_and_is_the_mean_distance_otherwise():
    psi = torch.tensor([[0.0, 0], [0, 0], [3, 4], [3, 4], [9, 9]])
    ids = torch.tensor([1, 1, 2, 2, 0])
    assert float(pull_loss(psi, ids, 2)[0]) == pytest.approx(0, abs=1e-3)
    psi = torch.tensor([[0.0, 0], [2, 0], [3, 4], [3, 4], [9, 9]])
    # object 1: both pixels 1 from their mean (not squared: eq. 5); object 2: 0; mean over objects: 0.5
    assert float(pull_loss(psi, ids, 2)[0]) == pytest.approx(0.5, abs=1e-3)


def test_all_losses_are_small_for_the_ideal_output_and_larger_otherwise():
    labels = scene()
    t, _ = targets([labels])
    ideal = terms(ideal_raw(labels), t)
    for name, value in ideal.items():
        assert float(value) < 0.05, name
    spread = terms(ideal_raw(labels, collapsed=False), t)  # Psi = u: every object spread over its pixels
    assert float(spread["pull"]) > 0.1
    assert float(spread["kernel"]) > 10 * float(ideal["kernel"])
    assert float(spread["seediness"]) > 1.0  # the masks its seeds would cut out are poor: low IoU targets


def test_losses_ignore_ignored_pixels_and_give_finite_gradients():
    labels = scene()
    ignore = np.zeros(labels.shape, bool)
    ignore[:, :3] = True
    t, options = targets([labels, labels[::-1].copy()], [ignore, ignore])
    raw = torch.randn(2, DIMS + 3, *labels.shape, requires_grad=True)
    loss = METHOD.loss(raw, t, options)
    loss.backward()
    assert torch.isfinite(raw.grad).all()
    assert raw.grad[..., :3].abs().max() == 0


def test_losses_of_a_patch_without_objects_are_finite():
    labels = np.zeros((16, 16), np.int64)
    t, options = targets([labels])
    loss = METHOD.loss(torch.randn(1, DIMS + 3, 16, 16, requires_grad=True), t, options)
    assert torch.isfinite(loss)


def ideal_output(labels, sigma=0.1):
    return METHOD.activate(ideal_raw(labels, sigma=sigma))[0].numpy()


def matches_exactly(truth, found):
    """Every true object is exactly one found instance and vice versa."""
    pairs = {(int(a), int(b)) for a, b in zip(truth.ravel(), found.ravel())}
    return len(pairs) == len(np.unique(truth)) == len(np.unique(found))


def test_decoder_recovers_objects_from_the_ideal_output():
    labels = scene()
    instances = METHOD.decode(ideal_output(labels), size_threshold=1)
    assert instances.count == 4 and matches_exactly(labels, instances.labels)
    assert np.all(instances.scores > 0.99)


def test_decode_parameters_act_as_declared():
    labels = scene()
    output = ideal_output(labels)
    assert METHOD.decode(output, size_threshold=37).count == 3  # object 4 has 36 pixels
    assert METHOD.decode(output, foreground_threshold=0.5, seed_threshold=0.95).count == 4
    output[-1] = 0.3  # seediness below the seed threshold everywhere: no seeds
    assert METHOD.decode(output, seed_threshold=0.5).count == 0
    assert METHOD.decode(output, seed_threshold=0.2).count == 4
    # without appearance cues, a wide kernel (sigma 1 unit = 16 px) lets a seed swallow its touching neighbour
    # (centres 10 px apart) unless the mask threshold is high
    wide = ideal_output(labels, sigma=1.0)
    wide[2:DIMS] = 0
    assert METHOD.decode(wide, mask_threshold=0.5).count == 3
    assert METHOD.decode(wide, mask_threshold=0.95).count == 4


def test_plain_convolutional_model_decodes_without_coordinates():
    labels = scene()
    output = ideal_output(labels)
    output[:2] = np.random.default_rng(1).normal(size=(labels.max() + 1, 2))[labels].transpose(2, 0, 1)
    plain = METHOD.options({"embedding_dims": DIMS, "coordinates": False})
    assert matches_exactly(labels, METHOD.decode(output, options=plain, size_threshold=1).labels)


def test_cached_decode_equals_fresh_decode():
    labels = scene()
    rng = np.random.default_rng(3)
    output = ideal_output(labels) + rng.normal(0, 0.05, (DIMS + 3,) + labels.shape).astype(np.float32)
    output[DIMS:] = np.clip(output[DIMS:], 0.01, 1)
    cache = {}
    for params in [{}, {"size_threshold": 5}, {"mask_threshold": 0.3}, {"seed_threshold": 0.7},
                   {"foreground_threshold": 0.3, "mask_threshold": 0.3}, {}]:
        cached = METHOD.decode(output, cache=cache, **params)
        fresh = METHOD.decode(output, **params)
        assert np.array_equal(cached.labels, fresh.labels) and np.allclose(cached.scores, fresh.scores)


def test_preview_shows_the_displacement_field_and_the_embedding():
    labels = scene()
    layers = {layer.name: layer for layer in METHOD.preview(ideal_output(labels))}
    vectors = layers["displacement Phi (px)"]
    assert vectors.layer_type == "vectors" and vectors.data.shape[1:] == (2, 2)
    position, direction = vectors.data[:, 0], vectors.data[:, 1]
    inside = labels[position[:, 0].astype(int), position[:, 1].astype(int)] > 0
    # arrows point from each pixel to its object's centre, in pixels
    expected = centre_of_mass_displacement(labels)[:, position[:, 0].astype(int), position[:, 1].astype(int)].T
    assert np.allclose(direction[inside], expected[inside], atol=1e-4) and np.all(direction[~inside] == 0)
    rgb = layers["embedding Psi (PCA)"]
    assert rgb.data.shape == labels.shape + (3,) and 0 <= rgb.data.min() and rgb.data.max() <= 1


def dots_image(spacing=10, radius=2, n=5, margin=6):
    """Identical disks on a regular grid (the synthetic image of fig. 3a), away from the border."""
    size = 2 * margin + (n - 1) * spacing + 1
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int64)
    for i in range(n):
        for j in range(n):
            labels[(yy - margin - i * spacing) ** 2 + (xx - margin - j * spacing) ** 2 <= radius ** 2] = i * n + j + 1
    return labels


@pytest.mark.parametrize("coordinates", [True, False])
def test_identical_dots_are_separated_only_by_the_semiconvolutional_embedding(coordinates):
    """Fig. 3: a local, translation-invariant operator (here one 9 x 9 linear filter, which sees a whole dot
    and nothing of its neighbours) trained with eq. (5) separates identical dots only if the coordinates
    are added."""
    torch.manual_seed(0)
    labels = dots_image()
    image = torch.as_tensor((labels > 0)[None, None], dtype=torch.float32)
    ids = torch.as_tensor(labels.ravel())
    conv = torch.nn.Conv2d(1, 2, 9, padding=4)
    optimizer = torch.optim.Adam(conv.parameters(), lr=0.01)
    initial = None
    for _ in range(150):
        psi = semiconv_embedding(conv(image), coordinates=coordinates)[0].reshape(2, -1).T
        loss, means, _ = pull_loss(psi, ids, labels.max())
        initial = float(loss.detach()) if initial is None else initial
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    distances = torch.cdist(means, means).detach()[~torch.eye(len(means), dtype=bool)]
    assert float(loss.detach()) < 0.2 * max(initial, 0.01)  # both collapse each dot (eq. 5 has no push term) ...
    inside = labels.ravel() > 0
    points = psi.detach().numpy()[inside].T
    assignment, _ = grow_from_seeds(points, np.arange(points.shape[1]), np.zeros(points.shape[1]),
                                    np.full(points.shape[1], 0.1 ** 2))
    if coordinates:  # ... but only with u are the dots apart: ~spacing / 16 units, and clustered exactly
        assert float(distances.min()) > 0.5
        assert matches_exactly(labels.ravel()[inside], assignment)
    else:  # identical dots get identical embeddings, whatever the training: one cluster
        assert float(distances.max()) < 1e-4
        assert assignment.max() == 1


def test_a_tiny_net_learns(tiny_training_data):
    from napari_deepcolor.training import Step, Training, TrainingConfig

    config = TrainingConfig(method="semiconv", iterations=20, patch_size=64,
                            batch_size=2, net={"depth": 2, "width": 8}, validation_fraction=0, augment=False)
    events = list(Training(config, tiny_training_data).run())
    losses = [e.loss for e in events if isinstance(e, Step)]
    assert len(losses) == 20 and np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    model = events[-1].model
    from napari_deepcolor.inference import predict

    prediction = predict(model, tiny_training_data[0].image, stack=False)
    assert prediction.output.shape == (8 + 3,) + tiny_training_data[0].labels.shape
    labels = prediction.decode().labels
    assert labels.shape == tiny_training_data[0].labels.shape and labels.dtype.kind == "u"


@pytest.fixture(scope="module")
def tiny_training_data():
    from napari_deepcolor.data import from_arrays

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    labels = np.zeros((96, 96), np.int32)
    for k, (cy, cx) in enumerate([(y, x) for y in range(12, 96, 24) for x in range(12, 96, 24)], start=1):
        dy, dx, radius = rng.integers(-3, 4), rng.integers(-3, 4), rng.integers(6, 10)
        labels[(yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= radius ** 2] = k
    image = (labels > 0) + rng.normal(0, 0.1, labels.shape)
    return from_arrays(image.astype(np.float32), labels)


def test_kernel_background_term_is_dominated_by_the_neighbours_not_the_far_background():
    from napari_deepcolor.methods.semiconv import _negative_kernel_term

    # object 1: a 2 x 2 square at the origin; a neighbour pixel next to it embedded right on the object's
    # centre (its mask would leak there); 100 far background pixels, well separated in the embedding
    own = [(0, 0), (0, 1), (1, 0), (1, 1)]
    far = [(50 + i // 10, 50 + i % 10) for i in range(100)]
    positions = torch.tensor(own + [(0, 3)] + far, dtype=torch.float32)
    ids = torch.tensor([1] * 4 + [2] + [0] * 100)
    psi = torch.cat([torch.zeros(5, 2), torch.full((100, 2), 10.0)])
    args = (torch.zeros(1, 2), torch.ones(1), torch.tensor([1]), psi, ids)
    whole_patch = float(_negative_kernel_term(*args)[0])
    neighbourhood = float(_negative_kernel_term(*args, positions)[0])
    assert whole_patch < 0.5  # the leak is averaged away by the far background
    assert neighbourhood > 5  # near the object, the leak is what the term sees


# -- the kernel's seed: the object's mean, or the paper's soft maximum of the scores (sec. 3.5) ----------------

def test_old_options_without_a_seed_rule_train_with_the_mean_seed():
    assert METHOD.options({"embedding_dims": DIMS}).seed_rule == "mean"
    with pytest.raises(Exception, match="seed_rule.*mean, score"):
        METHOD.options({"seed_rule": "argmax"})


def test_a_model_file_saved_before_the_seed_rule_existed_loads_and_trains_as_before(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from napari_deepcolor.checkpoint import load_model, new_model, save_model

    path = save_model(new_model("semiconv", {"embedding_dims": DIMS}, {"depth": 2, "width": 4}, 1),
                      tmp_path / "old.safetensors")
    config = json.loads(read_metadata(path))
    del config["method_options"]["seed_rule"]  # what a file written before the option holds
    save_file(load_file(str(path)), str(path), metadata={"napari_deepcolor": json.dumps(config)})
    model = load_model(path)
    assert model.method_options.seed_rule == "mean"
    labels = scene()
    t, _ = targets([labels])
    raw = torch.randn(1, DIMS + 3, *labels.shape, generator=torch.Generator().manual_seed(0))
    before = semiconv_loss_terms(raw, t["labels"], t["ignore"], t["sample_pixels"], t["sample_images"],
                                 embedding_dims=DIMS)  # the loss as it was, with no seed rule to choose
    assert float(METHOD.loss(raw, t, model.method_options)) == pytest.approx(float(sum(before.values())), rel=1e-6)


def read_metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["napari_deepcolor"]


def test_score_seed_is_the_expectation_of_psi_and_sigma_under_a_softmax_of_the_seediness():
    from napari_deepcolor.methods.semiconv import kernel_seeds

    psi = torch.tensor([[0.0, 0.0], [4.0, 0.0], [10.0, 10.0]])
    sigma = torch.tensor([1.0, 3.0, 2.0])
    logits = torch.tensor([0.0, float(np.log(3.0)), 5.0])  # object 1: p_s = (1/4, 3/4); object 2: one pixel
    index = torch.tensor([0, 0, 1])
    seeds, sigmas = kernel_seeds(psi, sigma, logits, index, 2, rule="score")
    assert seeds.flatten().tolist() == pytest.approx([3.0, 0.0, 10.0, 10.0])
    assert sigmas.tolist() == pytest.approx([2.5, 2.0])
    means, mean_sigmas = kernel_seeds(psi, sigma, logits, index, 2, rule="mean")  # the scores play no part
    assert means.flatten().tolist() == pytest.approx([2.0, 0.0, 10.0, 10.0])
    assert mean_sigmas.tolist() == pytest.approx([2.0, 2.0])


@pytest.mark.parametrize("seed_rule", ["mean", "score"])
def test_the_kernel_term_trains_the_seediness_only_with_the_score_seed(seed_rule):
    labels = scene()
    t, _ = targets([labels])
    raw = torch.randn(1, DIMS + 3, *labels.shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
    kernel = semiconv_loss_terms(raw, t["labels"], t["ignore"], t["sample_pixels"], t["sample_images"],
                                 embedding_dims=DIMS, seed_rule=seed_rule)["kernel"]
    kernel.backward()
    seediness_grad = raw.grad[0, DIMS + 2]
    assert torch.isfinite(raw.grad).all()
    if seed_rule == "score":  # p_s = softmax(s) is differentiable: every object pixel's score gets a gradient
        assert float(seediness_grad[labels > 0].abs().min()) > 0
        assert float(seediness_grad[labels == 0].abs().max()) == 0  # the softmax runs over the object only
    else:
        assert float(seediness_grad.abs().max()) == 0


def test_score_seed_moves_onto_the_pixels_that_cut_out_their_object():
    """Psi fixed: most of object 1 sits at one point, a strip of it far off (towards object 2). Trained
    through the kernel term alone, the scores move the seed from the mean onto the majority."""
    labels = scene()
    raw = ideal_raw(labels).clone()
    strip = (labels == 1) & (np.arange(labels.shape[1]) >= 11)[None, :]  # 30 of object 1's 100 pixels
    raw[0, :2, torch.as_tensor(strip)] += 0.6  # their displacement points 10 px beyond object 1's centre
    raw[0, DIMS] = float(np.log(0.3))
    raw[0, DIMS + 2] = 0.0  # uniform scores: the seed starts at the mean
    t, _ = targets([labels])

    def kernel(scores):
        logits = torch.cat([raw[:, :DIMS + 2], scores[None, None]], 1)
        return semiconv_loss_terms(logits, t["labels"], t["ignore"], t["sample_pixels"], t["sample_images"],
                                   embedding_dims=DIMS, seed_rule="score")["kernel"]

    scores = raw[0, DIMS + 2].clone().requires_grad_(True)
    start = float(kernel(scores).detach())
    majority_seed = float(kernel(raw[0, DIMS + 2].masked_fill(torch.as_tensor(strip), -30.0)))
    optimizer = torch.optim.Adam([scores], lr=0.1)
    for _ in range(60):
        optimizer.zero_grad()
        kernel(scores).backward()
        optimizer.step()
    end = float(kernel(scores).detach())
    assert majority_seed < 0.8 * start  # the strip pulls the mean seed off the object
    assert end < majority_seed + 0.02 * (start - majority_seed)  # the scores found the better seed
    weights = torch.softmax(scores.detach()[torch.as_tensor(labels == 1)], 0)
    assert float(weights[torch.as_tensor(strip[labels == 1])].sum()) < 0.01  # the strip keeps little of p_s


def test_a_tiny_net_lowers_the_score_seeded_kernel_loss():
    """With seed_rule="score", a small net trained on the whole loss makes the seed's kernel cut out the objects."""
    labels = scene()
    t, options = targets([labels], seed_rule="score")
    image = torch.as_tensor(np.stack([labels > 0, (labels % 2) == 1]), dtype=torch.float32)[None]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(2, 16, 5, padding=2), torch.nn.ReLU(),
                                  torch.nn.Conv2d(16, DIMS + 3, 5, padding=2))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)

    def kernel():
        return semiconv_loss_terms(net(image), t["labels"], t["ignore"], t["sample_pixels"], t["sample_images"],
                                   embedding_dims=DIMS, seed_rule="score")["kernel"]

    start = float(kernel().detach())
    for _ in range(80):
        optimizer.zero_grad()
        METHOD.loss(net(image), t, options).backward()
        optimizer.step()
    assert float(kernel().detach()) < 0.7 * start
