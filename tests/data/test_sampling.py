"""Random training patches, augmentation and the train/validation split."""

import numpy as np
import pytest

from napari_deepcolor.data import AnnotatedImage, Augmentation, PatchSampler, split_train_validation
from napari_deepcolor.errors import DeepColorError


def _sample(shape=(96, 128), channels=1, seed=0, name="img"):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for i in range(1, 9):
        r, c = rng.integers(0, shape[0] - 12), rng.integers(0, shape[1] - 12)
        labels[r:r + 10, c:c + 10] = i
    image = (labels > 0).astype(np.float32)[..., None] + 0.1 * rng.random(shape + (channels,), np.float32)
    return AnnotatedImage(image, labels, None, name)


def _disk(size=64, radius=14):
    rows, cols = np.mgrid[:size, :size]
    disk = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 <= radius ** 2
    return AnnotatedImage(disk.astype(np.float32), disk.astype(np.int32), None, "disk")


def _same(a, b):
    return (np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
            and np.array_equal(a.ignore, b.ignore))


def test_patch_shapes_and_types():
    sampler = PatchSampler([_sample(channels=2)], patch_size=(32, 48), augmentation=Augmentation(), seed=0)
    for _ in range(10):
        patch = sampler.sample()
        assert patch.image.shape == (2, 32, 48) and patch.image.dtype == np.float32
        assert patch.image.flags.c_contiguous
        assert patch.labels.shape == (32, 48) and patch.labels.dtype == np.int32
        assert patch.ignore.shape == (32, 48) and patch.ignore.dtype == bool
        ids = np.unique(patch.labels)
        np.testing.assert_array_equal(ids, np.arange(ids.size))
        assert patch.source == "img"


def test_same_seed_same_patches_different_seed_different():
    samples = [_sample(seed=1), _sample(seed=2)]
    a = PatchSampler(samples, patch_size=32, augmentation=Augmentation(), seed=7)
    b = PatchSampler(samples, patch_size=32, augmentation=Augmentation(), seed=7)
    c = PatchSampler(samples, patch_size=32, augmentation=Augmentation(), seed=8)
    pa, pb, pc = ([next(iter(s)) for _ in range(5)] for s in (a, b, c))
    assert all(_same(x, y) for x, y in zip(pa, pb))
    assert not all(_same(x, y) for x, y in zip(pa, pc))
    # an explicit generator gives the same as a sampler seeded alike
    d = PatchSampler(samples, patch_size=32, augmentation=Augmentation(), seed=123)
    rng = np.random.default_rng(7)
    assert _same(d.sample(rng), pa[0])


def test_sampling_does_not_change_the_images():
    sample = _sample()
    before = sample.image.copy(), sample.labels.copy()
    sampler = PatchSampler([sample], patch_size=128, augmentation=Augmentation(), seed=0)
    for _ in range(5):
        sampler.sample()
    np.testing.assert_array_equal(sample.image, before[0])
    np.testing.assert_array_equal(sample.labels, before[1])


def test_small_image_is_padded_with_zeros_marked_ignore():
    sample = _sample((20, 30))
    sampler = PatchSampler([sample], patch_size=64, augmentation=Augmentation.none(), seed=0)
    for _ in range(5):
        patch = sampler.sample()
        assert np.count_nonzero(~patch.ignore) == 20 * 30
        assert np.all(patch.image[:, patch.ignore] == 0) and np.all(patch.labels[patch.ignore] == 0)
        assert patch.labels.max() == sample.num_objects


def test_rotated_corners_are_ignored_not_empty_background():
    sampler = PatchSampler([_disk()], patch_size=64,
                           augmentation=Augmentation(flips=False, rot90=False, scale_range=None,
                                                     gain_range=None, offset_range=None, gamma_range=None),
                           seed=3)
    patch = sampler.sample()
    assert patch.ignore.any()  # the whole image is one patch: its rotated corners come from outside
    assert np.all(patch.labels[patch.ignore] == 0)


def test_quarter_turns_and_flips_keep_areas_exactly():
    labels = np.zeros((40, 40), np.int32)
    labels[5:12, 3:30] = 5  # 7 x 27 bar
    sample = AnnotatedImage(np.zeros((40, 40), np.float32), labels, None, "bar")
    geometric = Augmentation(free_rotation=False, scale_range=None, gain_range=None,
                             offset_range=None, gamma_range=None)
    sampler = PatchSampler([sample], patch_size=40, augmentation=geometric, seed=0)
    shapes = set()
    for _ in range(12):
        patch = sampler.sample()
        assert np.count_nonzero(patch.labels == 1) == 7 * 27 and not patch.ignore.any()
        rows, cols = np.nonzero(patch.labels)
        shapes.add((np.ptp(rows) + 1, np.ptp(cols) + 1))
    assert shapes == {(7, 27), (27, 7)}


def test_free_rotation_keeps_integer_labels_aligned_with_the_image():
    disk = _disk()
    rotation = Augmentation(flips=False, rot90=False, gain_range=None, offset_range=None, gamma_range=None,
                            scale_range=None)
    sampler = PatchSampler([disk], patch_size=48, augmentation=rotation, seed=1)
    for _ in range(5):
        patch = sampler.sample()
        assert set(np.unique(patch.labels)) <= {0, 1}
        area = np.count_nonzero(patch.labels)
        assert abs(area - disk.labels.sum()) <= 0.2 * disk.labels.sum()
        agree = np.mean((patch.image[0] > 0.5) == (patch.labels > 0))
        assert agree > 0.98


def test_warped_image_and_labels_stay_aligned_for_asymmetric_objects():
    labels = np.zeros((80, 80), np.int32)
    labels[10:20, 10:60] = 1
    labels[20:70, 10:20] = 2  # an L made of two objects, off centre
    sample = AnnotatedImage((labels > 0).astype(np.float32), labels, None, "L")
    sampler = PatchSampler([sample], patch_size=40, augmentation=Augmentation(), seed=2)
    for _ in range(10):
        patch = sampler.sample()
        valid = ~patch.ignore
        inside = (patch.labels > 0)[valid]
        bright = (patch.image[0] > 0.5 * patch.image[0].max())[valid] if patch.labels.any() else inside
        assert np.mean(bright == inside) > 0.95


def test_scaling_changes_object_area_by_the_square_of_the_zoom():
    disk = _disk(radius=10)
    zoom = Augmentation(flips=False, rot90=False, free_rotation=False, scale_range=(1.5, 1.5),
                        gain_range=None, offset_range=None, gamma_range=None)
    patch = PatchSampler([disk], patch_size=64, augmentation=zoom, seed=0).sample()
    assert np.count_nonzero(patch.labels) == pytest.approx(disk.labels.sum() * 2.25, rel=0.2)


def test_intensity_jitter_changes_the_image_only():
    sample = _sample()
    jitter = Augmentation(flips=False, rot90=False, free_rotation=False, scale_range=None)
    plain = PatchSampler([sample], patch_size=32, augmentation=Augmentation.none(), seed=0).sample()
    jittered = PatchSampler([sample], patch_size=32, augmentation=jitter, seed=0).sample()
    np.testing.assert_array_equal(plain.labels, jittered.labels)
    assert not np.allclose(plain.image, jittered.image)


def test_windows_prefer_foreground():
    labels = np.zeros((400, 400), np.int32)
    labels[300:306, 50:56] = 1  # one small object in a large image
    sample = AnnotatedImage(np.zeros((400, 400), np.float32), labels, None, "sparse")
    sampler = PatchSampler([sample], patch_size=32, augmentation=Augmentation.none(), seed=0)
    assert all(sampler.sample().labels.any() for _ in range(20))
    blind = PatchSampler([sample], patch_size=32, augmentation=Augmentation.none(), seed=0, foreground_tries=0)
    assert not all(blind.sample().labels.any() for _ in range(20))


def test_images_are_drawn_in_proportion_to_their_area():
    big, small = _sample((200, 200), name="big"), _sample((50, 50), name="small")
    sampler = PatchSampler([big, small], patch_size=16, seed=0)
    sources = [sampler.sample().source for _ in range(200)]
    assert 0.85 < sources.count("big") / 200 < 0.99  # expected 40000 / 42500 = 0.94


def test_sample_batch():
    images, labels, ignore = PatchSampler([_sample()], patch_size=16, seed=0).sample_batch(3)
    assert images.shape == (3, 1, 16, 16) and labels.shape == ignore.shape == (3, 16, 16)


def test_bad_settings_are_refused():
    with pytest.raises(DeepColorError, match="patch_size"):
        PatchSampler([_sample()], patch_size=0)
    with pytest.raises(DeepColorError, match="channels"):
        PatchSampler([_sample(), _sample(channels=3)], patch_size=8)
    with pytest.raises(DeepColorError, match="low <= high"):
        Augmentation(scale_range=(2.0, 1.0))
    with pytest.raises(DeepColorError, match="positive"):
        Augmentation(gamma_range=(0.0, 1.0))


def test_split_by_image():
    samples = [_sample(seed=i, name=f"s{i}") for i in range(10)]
    train, val = split_train_validation(samples, validation_fraction=0.2, seed=0)
    assert len(val) == 2 and len(train) == 8
    assert {s.name for s in train}.isdisjoint(s.name for s in val)
    assert split_train_validation(samples, validation_fraction=0.2, seed=0)[1] == val
    train2, val2 = split_train_validation(samples[:2], validation_fraction=0.01)
    assert len(train2) == len(val2) == 1


def test_single_image_is_split_spatially_without_overlap():
    sample = _sample((60, 200))
    [train], [val] = split_train_validation([sample], validation_fraction=0.15)
    assert train.shape == (60, 170) and val.shape == (60, 30)
    np.testing.assert_array_equal(np.concatenate([train.image, val.image], axis=1), sample.image)
    assert "validation" in val.name


def test_split_settings():
    samples = [_sample()]
    assert split_train_validation(samples, validation_fraction=0) == (samples, [])
    with pytest.raises(DeepColorError, match="validation_fraction"):
        split_train_validation(samples, validation_fraction=1.0)
