"""The starter models shipped in the package: they load by name without running code, carry their
model card, and segment a held-back test image of their own data set out of the box."""

import json
import struct

import numpy as np
import pytest
import torch

from napari_deepcolor.checkpoint import load_model, read_model_config
from napari_deepcolor.errors import DeepColorError
from napari_deepcolor.starters import starter_names, starter_path

EXPECTED = ["nuclei", "cells", "worms", "bacteria", "bacteria-coloring", "nuclei-semiconv"]
#: F1@0.5 each starter must reach on the first held-back test image of its set (measured values in
#: docs/models.md are higher; these floors catch a broken file or a broken load, not a 0.01 drift)
F1_FLOOR = {"nuclei": 0.85, "cells": 0.45, "worms": 0.2, "bacteria": 0.75,  # worms: 0.29 on its first test image
            "bacteria-coloring": 0.75, "nuclei-semiconv": 0.75}
DATASET_FOLDERS = {"bbbc039": ("bbbc039", None), "usiigaci": ("usiigaci/images", "usiigaci/labels"),
                   "bbbc010": ("bbbc010", None), "ecoli_synth": ("ecoli_synth/images", "ecoli_synth/labels")}
CARD_KEYS = ("name", "kind_of_data", "dataset", "data_licence", "licence_spdx", "citations", "method", "recipe",
             "object_scale", "test_scores", "test_scores_float32_run", "decode_parameters")


def test_the_starters_are_bundled_in_order():
    assert starter_names() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_a_starter_file_is_plain_safetensors_with_float16_weights(name):
    """Tensors and a JSON header only: nothing in the file can run code when it is loaded."""
    raw = starter_path(name).read_bytes()
    header_length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + header_length])
    dtypes = {entry["dtype"] for key, entry in header.items() if key != "__metadata__"}
    assert "F16" in dtypes and "F32" not in dtypes
    assert len(raw) < 8 * 1024 * 1024
    model = load_model(name)
    assert next(model.net.parameters()).dtype.is_floating_point


@pytest.mark.parametrize("name", EXPECTED)
def test_a_starter_carries_its_model_card(name):
    card = read_model_config(name)["card"]
    assert card["name"] == name
    for key in CARD_KEYS:
        assert key in card, key
    assert {"ap", "f1", "n_test_images"} <= set(card["test_scores"])
    assert card["recipe"]["iterations"] > 0


def test_an_unknown_starter_name_lists_the_known_ones():
    with pytest.raises(DeepColorError, match="nuclei, cells, worms, bacteria"):
        load_model("nucleii")


def _first_test_pair(shared_data, dataset):
    from napari_deepcolor.data import detect_layout

    images, labels = DATASET_FOLDERS[dataset]
    pairs = detect_layout(shared_data / images, None if labels is None else shared_data / labels).pairs
    return sorted(pairs, key=lambda p: p.name)[::5][0]  # the test split of benchmarks/accuracy.py


@pytest.mark.parametrize("name", EXPECTED)
def test_a_starter_segments_a_held_back_image_of_its_set(name, shared_data):
    from napari_deepcolor.data.io import read_image, read_labels, read_object_masks
    from napari_deepcolor.inference import predict
    from napari_deepcolor.metrics import evaluate

    model = load_model(name)
    pair = _first_test_pair(shared_data, model.card["dataset_key"])
    truth = read_labels(pair.labels) if pair.labels is not None else read_object_masks(pair.object_masks)
    labels = predict(model, read_image(pair.image), stack=False, device="cpu").decode().labels
    assert evaluate(truth, labels)["f1"] > F1_FLOOR[name]
    assert labels.dtype.kind in "iu" and np.asarray(labels).ndim == 2


def test_the_nuclei_starter_beats_otsu_and_watershed_on_the_demo_image():
    # the demo scores the bundled A02_s1, which is in the starter's held-back test split
    from importlib.resources import files

    from napari_deepcolor.baseline import otsu_watershed
    from napari_deepcolor.data.io import read_image, read_labels
    from napari_deepcolor.inference import predict
    from napari_deepcolor.metrics import evaluate

    bundled = files("napari_deepcolor") / "sample_data"
    image, truth = read_image(bundled / "bbbc039_A02_s1.tif"), read_labels(bundled / "bbbc039_A02_s1_masks.tif")
    starter = evaluate(truth, predict(load_model("nuclei"), image, device="cpu").decode().labels)
    classical = evaluate(truth, otsu_watershed(image))
    # measured: AP 0.673 / F1 0.900 against Otsu + watershed's 0.443 / 0.772
    assert starter["ap"] > classical["ap"] + 0.1 and starter["f1"] > classical["f1"] + 0.05


@pytest.mark.parametrize("name", ["nuclei", "bacteria-coloring", "nuclei-semiconv"])
def test_a_five_step_fine_tune_starts_from_the_starter_and_keeps_its_scale_and_its_defaults(name, nuclei_samples):
    from napari_deepcolor.training import TrainingConfig, train

    starter = load_model(name)
    config = TrainingConfig(method=starter.method_name, iterations=5, learning_rate=1e-9, validation_fraction=0.0,
                            patch_size=64, batch_size=2, device="cpu")
    tuned = train(config, nuclei_samples, init_from=name).model
    assert tuned.provenance["iterations"] == 5 and tuned.provenance["fine_tuned_from"] == name
    assert tuned.method_name == starter.method_name and tuned.method_options == starter.method_options  # its colours
    before, after = starter.net.state_dict(), tuned.net.state_dict()
    assert all(np.allclose(before[k].float().numpy(), after[k].float().numpy(), atol=1e-4) for k in before)
    assert tuned.object_scale["net_object_diameter"] == starter.object_scale["net_object_diameter"]
    assert tuned.decode_parameters() == starter.decode_parameters()
    assert tuned.inference_defaults == starter.inference_defaults


@pytest.mark.parametrize("rate, kept", [(1e-6, "fine-tuned"), (0.5, "starter")])
def test_on_a_strip_of_one_image_a_fine_tune_keeps_its_weights_unless_it_clearly_loses(rate, kept):
    """A strip cut from the only image given is a poor judge: there the starter must win by the margin (a rate
    of 0.5 wrecks it in three steps), not the fine-tune."""
    from napari_deepcolor import synthetic
    from napari_deepcolor.data import from_arrays
    from napari_deepcolor.training import TrainingConfig, train

    starter = load_model("nuclei")
    image, labels = synthetic.nuclei((160, 160), count=14, radius=(12, 16), seed=0)  # the starter's size of nuclei
    config = TrainingConfig(method=starter.method_name, iterations=3, learning_rate=rate, patch_size=64, batch_size=2,
                            device="cpu")
    tuned = train(config, from_arrays([image], [labels]), init_from="nuclei").model
    assert tuned.object_scale == starter.object_scale
    assert tuned.provenance["starter_or_fine_tune"]["kept"] == kept, tuned.provenance["starter_or_fine_tune"]
    before, after = starter.net.state_dict(), tuned.net.state_dict()
    assert all(torch.equal(before[k].float(), after[k].float()) for k in before) == (kept == "starter")
    assert tuned.decode_parameters() == starter.decode_parameters()  # the strip rule keeps the starter's decode


def test_a_fine_tune_must_beat_its_starter_by_the_margin_to_replace_it(nuclei_samples):
    """A validation image or two cannot resolve less than VALIDATION_GAIN: a fine-tune short of it keeps the starter."""
    from napari_deepcolor.tuning import VALIDATION_GAIN, starter_or_fine_tune

    starter = load_model("nuclei")
    own = starter_or_fine_tune(starter, 0.0, nuclei_samples[:1], device="cpu")["starter"]  # rounded to 1e-4
    assert starter_or_fine_tune(starter, own + VALIDATION_GAIN / 2, nuclei_samples[:1], device="cpu")["kept"] == "starter"
    assert starter_or_fine_tune(starter, own + VALIDATION_GAIN + 1e-4, nuclei_samples[:1],
                                device="cpu")["kept"] == "fine-tuned"


@pytest.mark.parametrize("keep_starter_unless_beaten", [True, False])
def test_a_fine_tune_that_scores_below_its_starter_on_validation_gives_the_starters_weights_back(
        nuclei_samples, keep_starter_unless_beaten):
    """A rate of 0.5 wrecks the starter in three steps; the validation image shows it, and the model keeps
    the starter's weights and defaults, unless told to keep the fine-tune (--keep-fine-tune)."""
    from napari_deepcolor.training import TrainingConfig, train

    starter = load_model("nuclei")
    config = TrainingConfig(method=starter.method_name, iterations=3, learning_rate=0.5, validation_fraction=0.34,
                            patch_size=64, batch_size=2, device="cpu",
                            keep_starter_unless_beaten=keep_starter_unless_beaten)
    tuned = train(config, nuclei_samples, init_from="nuclei").model
    before, after = starter.net.state_dict(), tuned.net.state_dict()
    same = all(torch.equal(before[k].float(), after[k].float()) for k in before)
    if keep_starter_unless_beaten:
        guard = tuned.provenance["starter_or_fine_tune"]
        assert guard["kept"] == "starter" and guard["fine_tuned"] < guard["starter"], guard
        assert same and tuned.decode_parameters() == starter.decode_parameters()
        assert tuned.inference_defaults == starter.inference_defaults
    else:
        assert "starter_or_fine_tune" not in tuned.provenance and not same
