import numpy as np
import pytest

from napari_deepcolor.checkpoint import new_model
from napari_deepcolor.errors import DeepColorError
from napari_deepcolor.inference import Prediction
from napari_deepcolor.methods import get_method
from napari_deepcolor.methods.base import size_threshold
from napari_deepcolor.tuning import median_object_area, tune_predictions

from .conftest import TINY_NET


def test_median_object_area_of_label_images_and_mask_stacks():
    labels = np.zeros((10, 10), int)
    labels[:2, :2] = 1  # 4
    labels[5:8, 5:8] = 7  # 9
    labels[9, :] = 3  # 10
    assert median_object_area([labels]) == 9
    masks = np.zeros((2, 10, 10), bool)
    masks[0, :5, :5] = True  # 25
    masks[1, :4, :] = True  # 40, overlapping the first
    assert median_object_area([labels, masks]) == 10


def test_size_threshold_candidates_follow_the_objects_area():
    parameter = size_threshold()
    small, large = parameter.candidates(100.0), parameter.candidates(4000.0)
    assert small[0] == 0 and max(small) == 80
    assert max(large) == 3200 and 2400 in large
    assert max(parameter.candidates(10**6)) == parameter.maximum  # clipped to the slider's range
    with pytest.raises(DeepColorError, match="annotated"):
        parameter.candidates(0.0)


def test_dcme_assign_radius_candidates_are_fractions_of_the_equivalent_diameter():
    radius = next(p for p in get_method("dcme").decode_parameters if p.name == "assign_radius")
    diameter = 2 * np.sqrt(400 / np.pi)
    assert radius.candidates(400.0) == pytest.approx(sorted(f * diameter for f in radius.tune_values))


def test_tuning_removes_fragments_larger_than_any_fixed_pixel_grid_would():
    """Objects of 80 x 80 px with 50 x 50 px false fragments: only a threshold above 2500 px is right."""
    truth = np.zeros((256, 256), np.int32)
    colours = np.zeros((256, 256), np.int64)
    for i, (y, x) in enumerate([(10, 10), (10, 150), (150, 10)]):
        truth[y:y + 80, x:x + 80] = i + 1
        colours[y:y + 80, x:x + 80] = 1 + i % 2
    colours[170:220, 170:220] = 3  # a fragment the ground truth does not have
    output = np.eye(4, dtype=np.float32)[colours].transpose(2, 0, 1)
    model = new_model("coloring", {"n_colors": 4, "semantic_head": False}, TINY_NET, in_channels=1)
    best, ap = tune_predictions([Prediction(model, output)], [truth])
    assert 2500 < best["size_threshold"] <= 6400 and ap == 1.0


def test_the_tuner_can_split_touching_objects_whose_neck_is_still_fairly_interior():
    """Two touching squares whose shared edge the net calls interior with p = 0.85: only an interior
    threshold of 0.9 (the grid's top since session 14; 0.8 before) tells them apart."""
    truth = np.zeros((64, 96), np.int32)
    truth[16:46, 10:40], truth[16:46, 40:70] = 1, 2
    output = np.zeros((3, 64, 96), np.float32)
    output[0][truth == 0] = 1.0
    output[1][truth > 0], output[2][truth > 0] = 0.95, 0.05
    output[1][16:46, 39:41], output[2][16:46, 39:41] = 0.85, 0.15  # the neck
    model = new_model("boundary", {}, TINY_NET, in_channels=1)
    best, ap = tune_predictions([Prediction(model, output)], [truth])
    assert best["interior_threshold"] == 0.9 and ap == 1.0


def test_a_stop_request_ends_tuning_with_the_best_setting_found_so_far():
    truth = np.zeros((128, 128), np.int32)
    truth[10:60, 10:60], truth[70:120, 70:120] = 1, 2
    colours = (truth > 0).astype(np.int64) + (truth == 2)
    output = np.eye(3, dtype=np.float32)[colours].transpose(2, 0, 1)
    model = new_model("coloring", {"n_colors": 3}, TINY_NET, in_channels=1)
    start = {"size_threshold": 5000, "merge_radius": 0}  # removes every object: AP 0
    asked = []

    def stop():
        asked.append(1)
        return len(asked) > 3  # three candidates, then stop

    best, ap = tune_predictions([Prediction(model, output)], [truth], start=start, stop=stop)
    assert len(asked) == 4  # asked before every candidate, nothing scored after the stop
    assert best["size_threshold"] < 5000 and ap == 1.0  # the first candidates (0 px, ...) already fix it
    never, ap_never = tune_predictions([Prediction(model, output)], [truth], start=start, stop=lambda: True)
    assert never == model.decode_parameters(start) and ap_never == 0.0


def test_the_refinement_that_pays_on_the_samples_is_chosen_and_stored_in_the_model(nuclei_samples, monkeypatch,
                                                                                      tmp_path):
    """A CRF that returns the annotations beats the plain decode; with flips it is no better, so the
    cheaper choice, the CRF alone, is taken, written to the model file and applied unless overridden."""
    import napari_deepcolor.refine as refine
    from napari_deepcolor.checkpoint import load_model, save_model
    from napari_deepcolor.methods.base import Instances
    from napari_deepcolor.tuning import choose_refinement

    truth_of = {id(s.image): s.labels for s in nuclei_samples}
    monkeypatch.setattr(refine, "refine_prediction", lambda prediction, image, instances:
                        Instances(truth_of[id(image)], np.ones(int(truth_of[id(image)].max()), np.float32)))
    model = new_model("boundary", {}, TINY_NET, 1)
    scores = choose_refinement(model, nuclei_samples)
    assert set(scores) == {"none", "crf", "none+flips", "crf+flips", "chosen"}
    assert scores["crf"] == scores["crf+flips"] == 1.0 > scores["none"]
    assert scores["chosen"] == "crf" and model.refinement() == ("crf", False)
    reloaded = load_model(save_model(model, tmp_path / "m.safetensors"))
    assert reloaded.refinement() == ("crf", False)
    assert reloaded.refinement(refine="none", flips=True) == ("none", True)  # what the user gives wins


def test_the_refinement_a_model_holds_stays_unless_another_beats_it_by_the_gain(nuclei_samples, monkeypatch):
    """A fine-tune holds its starter's choice (flips for ``cells``): a tie on a validation image or two keeps it."""
    import napari_deepcolor.metrics as metrics
    from napari_deepcolor.tuning import choose_refinement

    monkeypatch.setattr(metrics, "evaluate", lambda truth, labels: {"ap": 0.5})  # every combination scores alike
    model = new_model("boundary", {}, TINY_NET, 1)
    assert choose_refinement(model, nuclei_samples)["chosen"] == "none"  # a new model holds the plain decode
    model.inference_defaults = {"refine": "none", "flips": True}
    assert choose_refinement(model, nuclei_samples)["chosen"] == "none+flips" and model.refinement() == ("none", True)


def test_nothing_is_tried_past_the_deadline_and_no_more_than_fits_before_it(nuclei_samples, monkeypatch):
    import time

    import napari_deepcolor.tuning as tuning
    from napari_deepcolor.tuning import choose_refinement

    model = new_model("boundary", {}, TINY_NET, 1)
    assert set(choose_refinement(model, nuclei_samples, deadline=time.perf_counter() - 1)) == {"skipped"}
    assert model.inference_defaults == {} and model.refinement() == ("none", False)
    monkeypatch.setattr(tuning, "CRF_SECONDS_PER_MEGAPIXEL", 1e6)  # the CRF never fits in the minute left
    scores = choose_refinement(model, nuclei_samples, deadline=time.perf_counter() + 60)
    assert set(scores) == {"none", "none+flips", "chosen"}


def test_training_stores_the_refinement_choice_made_on_its_validation_images(nuclei_samples, tmp_path):
    from napari_deepcolor.checkpoint import read_model_config
    from napari_deepcolor.training import TrainingConfig, train

    config = TrainingConfig(method="boundary", net=TINY_NET, patch_size=64, batch_size=2, iterations=5,
                            device="cpu", validation_fraction=0.34, augment=False)
    finished = train(config, nuclei_samples, output=tmp_path / "m.safetensors")
    stored = read_model_config(tmp_path / "m.safetensors")
    assert stored["inference_defaults"] == finished.model.inference_defaults
    assert set(stored["inference_defaults"]) == {"refine", "flips"}
    assert stored["provenance"]["refinement_choice"]["chosen"] in stored["provenance"]["refinement_choice"]
    without = train(TrainingConfig(**{**config.to_dict(), "choose_refinement": False}), nuclei_samples)
    assert without.model.inference_defaults == {}


def test_a_fine_tune_keeps_its_starters_decode_unless_the_retuned_one_wins_by_the_margin(nuclei_samples):
    from napari_deepcolor.checkpoint import load_model
    from napari_deepcolor.inference import predict
    from napari_deepcolor.tuning import VALIDATION_GAIN, score_parameters, starters_decode_unless_beaten

    starter = load_model("nuclei")
    predictions = [predict(starter, s.image, stack=False, device="cpu") for s in nuclei_samples]
    truths = [s.labels for s in nuclei_samples]
    starters = starter.decode_parameters()
    own = score_parameters(predictions, truths, starters)
    retuned = {**starters, "size_threshold": 0, "interior_threshold": 0.4}
    assert starters_decode_unless_beaten(starters, retuned, own + VALIDATION_GAIN / 2, predictions, truths) == \
        (starters, own)
    assert starters_decode_unless_beaten(starters, retuned, own + VALIDATION_GAIN, predictions, truths) == \
        (retuned, own + VALIDATION_GAIN)
    assert starters_decode_unless_beaten(starters, retuned, own + 1, predictions, truths, strip_of_one_image=True) \
        == (starters, own)
