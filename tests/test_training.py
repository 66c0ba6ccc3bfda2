"""The training loop: events, budget, stop, checkpoints, resume and fine-tuning."""

import numpy as np
import pytest

from napari_deepcolor import DeepColorError
from napari_deepcolor.checkpoint import load_model, state_path
from napari_deepcolor import training
from napari_deepcolor.methods import get_method
from napari_deepcolor.training import (ALREADY_FINISHED, CheckpointSaved, Finished, Started, Step, Training,
                                       TrainingConfig, TuningDecode, Validated, learning_rate_at, train)

from .conftest import TINY_NET


def config(**kw):
    base = dict(method="coloring", method_options={"halo_margin": 5}, net=TINY_NET, patch_size=64, batch_size=2,
                iterations=4, validation_fraction=0.0, device="cpu", seed=0)
    return TrainingConfig(**{**base, **kw})


@pytest.mark.parametrize("method", ["coloring", "boundary"])
def test_loss_falls_on_a_tiny_synthetic_set(nuclei_samples, method):
    options = {"halo_margin": 5} if method == "coloring" else {}
    events = list(Training(config(method=method, method_options=options, iterations=60, learning_rate=3e-3,
                                  augment=False), nuclei_samples).run())
    losses = [e.loss for e in events if isinstance(e, Step)]
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_the_cosine_schedule_falls_from_the_learning_rate_to_zero_over_the_budget():
    cosine, constant = config(learning_rate=2e-3, lr_schedule="cosine"), config(learning_rate=2e-3)
    assert [learning_rate_at(cosine, p) for p in (0.0, 0.5, 1.0, 1.5)] == pytest.approx([2e-3, 1e-3, 0.0, 0.0])
    assert learning_rate_at(constant, 0.9) == 2e-3
    with pytest.raises(DeepColorError, match="lr_schedule"):
        config(lr_schedule="step")


def test_the_warm_up_schedule_rises_then_falls_to_zero_at_the_end_of_the_budget():
    warm = config(learning_rate=2e-3, lr_schedule="warmup_cosine")
    share = training.WARMUP_SHARE
    assert learning_rate_at(warm, share / 2) == pytest.approx(1e-3)  # halfway up the warm-up
    assert learning_rate_at(warm, share) == pytest.approx(2e-3)  # the peak
    assert learning_rate_at(warm, (1 + share) / 2) == pytest.approx(1e-3)  # halfway down the cosine
    assert learning_rate_at(warm, 1.0) == pytest.approx(0.0)


def test_a_timed_run_reaches_the_final_rate_as_its_budget_ends(nuclei_samples):
    events = list(Training(config(iterations=None, minutes=0.1, learning_rate=2e-3, lr_schedule="warmup_cosine",
                                  validation_fraction=0.0), nuclei_samples).run())
    rates = [e.learning_rate for e in events if isinstance(e, Step)]
    assert len(rates) >= 10
    assert max(rates) > 1.5e-3  # it passed the peak ...
    assert rates[-1] < 0.1 * 2e-3  # ... and was near the end of its fall when the time was up


def test_events_come_in_order_and_the_model_is_saved(nuclei_samples, tmp_path):
    out = tmp_path / "m.safetensors"
    events = list(Training(config(iterations=4, validation_fraction=0.34, validate_every=2), nuclei_samples,
                           output=out).run())
    assert isinstance(events[0], Started) and events[0].n_validation == 1
    assert isinstance(events[-1], Finished) and events[-1].reason == "done" and events[-1].iteration == 4
    assert [e.iteration for e in events if isinstance(e, Step)] == [1, 2, 3, 4]
    assert any(isinstance(e, Validated) for e in events)
    model = load_model(out)
    assert model.provenance["iterations"] == 4
    assert set(model.decode_defaults) == {"size_threshold", "merge_radius", "interior_threshold", "split_by_color",
                                          "foreground_threshold"}  # tuned, stored
    assert state_path(out).is_file()


def test_on_a_cpu_validation_runs_only_at_the_end_unless_asked(nuclei_samples):
    def validated_at(**kw):
        events = list(Training(config(iterations=4, validation_fraction=0.34, **kw), nuclei_samples).run())
        return [(e.iteration, "tuned_ap" in e.scores) for e in events if isinstance(e, Validated)]

    assert validated_at() == [(4, True)]  # the default on a CPU: once, after the decode tuning
    assert validated_at(validate_every=2) == [(2, False), (4, False), (4, True)]
    assert validated_at(validate_every=0) == [(4, True)]


def _stopped_at(iteration: int, samples, out):
    """The last event of a long training stopped (as the Stop button does) after ``iteration`` steps."""
    training = Training(config(iterations=1000), samples, output=out)
    for event in training.run():
        if isinstance(event, Step) and event.iteration == iteration:
            training.stop()
    return event


def test_stop_keeps_a_usable_model(nuclei_samples, tmp_path):
    out = tmp_path / "m.safetensors"
    event = _stopped_at(3, nuclei_samples, out)
    assert isinstance(event, Finished) and event.reason == "stopped" and event.iteration == 3
    assert load_model(out).provenance["iterations"] == 3


def test_resume_continues_where_it_stopped(nuclei_samples, tmp_path):
    out = tmp_path / "m.safetensors"
    train(config(iterations=3), nuclei_samples, output=out)
    finished = train(config(iterations=5), nuclei_samples, output=out, resume=True)
    steps = finished.iteration
    assert steps == 5 and load_model(out).provenance["iterations"] == 5


def _adam_steps(model_path) -> set:
    """Adam's step count of each weight, read from the training state saved beside the model."""
    from safetensors import safe_open

    with safe_open(str(state_path(model_path)), framework="pt") as f:
        return {int(f.get_tensor(k).item()) for k in f.keys() if k.endswith(".step")}


def test_resume_restores_the_weights_and_the_optimizer_state(nuclei_samples, tmp_path):
    """Not only the counter: the resumed loop starts from the saved weights and Adam's saved moments."""
    out = tmp_path / "m.safetensors"
    _stopped_at(3, nuclei_samples, out)
    saved = _weights(out)
    assert _adam_steps(out) == {3}
    resumed = Training(config(iterations=5), nuclei_samples, output=out, resume=True)
    events = resumed.run()
    assert isinstance(next(events), Started)
    at_start = resumed.model.net.state_dict()
    assert all(np.array_equal(at_start[k].numpy(), saved[k].numpy()) for k in saved)  # not a fresh init
    fresh = Training(config(iterations=5), nuclei_samples)
    next(fresh.run())
    assert not all(np.array_equal(fresh.model.net.state_dict()[k].numpy(), saved[k].numpy()) for k in saved)
    for _ in events:
        pass
    assert _adam_steps(out) == {5}  # Adam went on counting (a fresh optimizer would say 2)


def test_on_a_cpu_the_net_trains_channels_last_and_learns_what_the_default_layout_learns(nuclei_samples, tmp_path,
                                                                                        monkeypatch):
    """Channels-last is only a faster layout (0.8 times a step on two cores): same losses, a model file that
    loads, and weights equal to a run in the default layout up to float rounding."""
    import torch

    out = tmp_path / "m.safetensors"
    fast = Training(config(iterations=3), nuclei_samples, output=out)
    fast_losses = [e.loss for e in fast.run() if isinstance(e, Step)]
    kernel = next(w for w in fast.model.net.parameters() if w.dim() == 4 and w.shape[1] > 1 and w.shape[-1] == 3)
    assert kernel.is_contiguous(memory_format=torch.channels_last) and not kernel.is_contiguous()
    monkeypatch.setattr(training, "memory_format", lambda device: torch.contiguous_format)
    plain = Training(config(iterations=3), nuclei_samples)
    plain_losses = [e.loss for e in plain.run() if isinstance(e, Step)]
    assert np.allclose(fast_losses, plain_losses, rtol=1e-4)
    saved, learnt = load_model(out).net.state_dict(), plain.model.net.state_dict()
    assert all(np.allclose(saved[k].numpy(), learnt[k].numpy(), atol=1e-5) for k in learnt)


def test_fine_tune_starts_from_the_given_weights(nuclei_samples, tmp_path):
    base = tmp_path / "base.safetensors"
    train(config(iterations=2), nuclei_samples, output=base)
    first = next(Training(config(iterations=1), nuclei_samples, init_from=base).run())
    assert isinstance(first, Started)
    tuned = train(config(iterations=1, learning_rate=1e-9), nuclei_samples, init_from=base).model
    original = load_model(base)
    a, b = original.net.state_dict(), tuned.net.state_dict()
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-5) for k in a)
    assert tuned.provenance["fine_tuned_from"] == str(base)


def test_fine_tuning_takes_a_tenth_of_the_learning_rate_unless_one_is_given(nuclei_samples, tmp_path):
    from napari_deepcolor.training import FINE_TUNE_LEARNING_RATE, LEARNING_RATE

    base = tmp_path / "base.safetensors"
    assert train(config(iterations=1), nuclei_samples, output=base).model.provenance["training"]["learning_rate"] \
        == LEARNING_RATE
    tuned = train(config(iterations=1), nuclei_samples, init_from=base).model
    assert tuned.provenance["training"]["learning_rate"] == FINE_TUNE_LEARNING_RATE == LEARNING_RATE / 10
    chosen = train(config(iterations=1, learning_rate=3e-3), nuclei_samples, init_from=base).model
    assert chosen.provenance["training"]["learning_rate"] == 3e-3


def test_fine_tune_refuses_another_method(nuclei_samples, tmp_path):
    base = tmp_path / "base.safetensors"
    train(config(iterations=1), nuclei_samples, output=base)
    with pytest.raises(DeepColorError, match="coloring"):
        list(Training(config(method="boundary", method_options={}), nuclei_samples, init_from=base).run())


@pytest.mark.parametrize("bad, words", [
    (dict(iterations=None), "budget"),
    (dict(iterations=5, minutes=1.0), "budget"),
    (dict(method="watershed"), "coloring"),
    (dict(method_options={"halo_margins": 3}), "halo_margin"),
    (dict(patch_size=8), "patch_size"),
])
def test_bad_configuration_is_a_clear_error(bad, words):
    with pytest.raises(DeepColorError, match=words):
        config(**bad)


def test_checkpoints_are_saved_periodically(nuclei_samples, tmp_path):
    out = tmp_path / "m.safetensors"
    events = list(Training(config(iterations=3, checkpoint_minutes=1e-6), nuclei_samples, output=out).run())
    saved = [e for e in events if isinstance(e, CheckpointSaved)]
    assert [e.iteration for e in saved] == [1, 2, 3] and all(e.path == out for e in saved)


def test_a_budget_in_minutes_is_the_wall_time_validation_and_tuning_included(nuclei_samples):
    import time

    from napari_deepcolor import synthetic
    from napari_deepcolor.data import from_arrays
    from napari_deepcolor.scale import kept_object_diameter

    pairs = [synthetic.nuclei((256, 256), count=80, radius=(6, 9), seed=10 + s) for s in range(3)]
    validation = from_arrays([p[0] for p in pairs], [p[1] for p in pairs])  # each decode trial takes a while
    started = time.perf_counter()
    events = list(Training(config(iterations=None, minutes=0.2, validate_every=5), nuclei_samples[:2],
                           validation=validation).run())
    waited = time.perf_counter() - started
    assert waited < 12 + 4, f"a 12 s budget took {waited:.1f} s"
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.iteration > 0
    assert "tuned_ap" in finished.scores  # the decode was still tuned, within the budget
    steps = [e for e in events if isinstance(e, Step)]
    assert steps[-1].eta_seconds < 12 and steps[0].eta_seconds <= 12  # time left counts down to the deadline


def test_skipping_the_decode_tuning_keeps_the_model_and_the_best_decode_so_far(nuclei_samples, tmp_path):
    out = tmp_path / "m.safetensors"
    training = Training(config(iterations=2, validation_fraction=0.34, validate_every=100), nuclei_samples,
                        output=out)
    events = []
    for event in training.run():
        events.append(event)
        if isinstance(event, TuningDecode):
            training.skip_tuning()
    kinds = [type(e).__name__ for e in events]
    assert kinds[-3:] == ["TuningDecode", "Validated", "Finished"]
    model = load_model(out)
    assert model.provenance["decode_tuning_skipped"] is True and model.provenance["iterations"] == 2
    assert "tuned_ap" in events[-2].scores
    assert set(model.decode_defaults) == {p.name for p in get_method("coloring").decode_parameters}


def test_batch_size_left_open_is_four_on_a_cpu_and_recorded(nuclei_samples):
    from napari_deepcolor.training import default_batch_size

    model = train(config(iterations=1, batch_size=None), nuclei_samples).model
    assert model.provenance["training"]["batch_size"] == 4 == default_batch_size("cpu")
    assert default_batch_size("cuda") == 8


def _weights(path):
    return {k: v.clone() for k, v in load_model(path).net.state_dict().items()}


def test_resume_of_a_finished_training_changes_nothing_unless_more_is_asked(nuclei_samples, tmp_path):
    out = tmp_path / "m.safetensors"
    train(config(iterations=3), nuclei_samples, output=out)
    model_bytes, state_bytes = out.read_bytes(), state_path(out).read_bytes()
    training = Training(config(iterations=3), nuclei_samples, output=out, resume=True)
    assert "finished its training already (3 iterations" in training.finished_before
    events = list(training.run())
    assert [type(e) for e in events] == [Finished] and events[0].reason == ALREADY_FINISHED
    assert events[0].iteration == 3
    assert out.read_bytes() == model_bytes and state_path(out).read_bytes() == state_bytes  # not re-validated
    assert Training(config(iterations=5), nuclei_samples, output=out, resume=True).finished_before is None


def test_resume_of_a_finished_minutes_budget_needs_more_minutes(nuclei_samples, tmp_path):
    out = tmp_path / "m.safetensors"
    train(config(iterations=None, minutes=0.02), nuclei_samples, output=out)
    assert Training(config(iterations=None, minutes=0.02), nuclei_samples, output=out, resume=True).finished_before
    assert Training(config(iterations=None, minutes=0.05), nuclei_samples, output=out,
                    resume=True).finished_before is None


def test_an_interrupted_training_resumes_to_its_budget(nuclei_samples, tmp_path):
    out = tmp_path / "m.safetensors"
    training = Training(config(iterations=1000), nuclei_samples, output=out)
    for event in training.run():
        if isinstance(event, Step) and event.iteration == 2:
            training.stop()
    assert Training(config(iterations=1000), nuclei_samples, output=out, resume=True).finished_before is None
    assert Training(config(iterations=2), nuclei_samples, output=out, resume=True).finished_before  # spent already


def test_one_image_whose_validation_strip_holds_no_object_trains_whole_and_keeps_the_decode_defaults(
        nuclei_samples, tmp_path, caplog):
    """Fine-tuning on one image cut at an empty edge used to fail after training, in the decode tuning."""
    from napari_deepcolor.data import AnnotatedImage

    base = tmp_path / "base.safetensors"
    train(config(method="boundary", method_options={}, iterations=1), nuclei_samples, output=base)
    sample = nuclei_samples[0]
    labels = sample.labels.copy()
    labels[:, int(labels.shape[1] * 0.8):] = 0  # the last fifth (the validation strip) without objects
    empty_edge = AnnotatedImage(sample.image, labels, name="empty edge")
    with caplog.at_level("WARNING", logger="napari_deepcolor.data.sampling"):
        tuned = train(config(method="boundary", method_options={}, iterations=2, validation_fraction=0.15),
                      [empty_edge], init_from=base).model
    assert "holds no annotated object" in caplog.text
    assert tuned.provenance["n_train_images"] == 1 and tuned.provenance["n_validation_images"] == 0
    assert tuned.decode_parameters() == load_model(base).decode_parameters()


def test_a_fine_tune_keeps_its_starters_object_size_unless_the_new_objects_are_another_size(tmp_path):
    from napari_deepcolor import synthetic
    from napari_deepcolor.data import from_arrays
    from napari_deepcolor.scale import kept_object_diameter

    def nuclei(radius):
        pair = synthetic.nuclei((128, 128), count=10, radius=radius, seed=1)
        return from_arrays([pair[0]], [pair[1]])

    base = tmp_path / "base.safetensors"
    starter = train(config(method="boundary", method_options={}, iterations=1), nuclei((8, 10)), output=base).model
    similar = train(config(method="boundary", method_options={}, iterations=1), nuclei((7, 9)), init_from=base).model
    smaller = train(config(method="boundary", method_options={}, iterations=1), nuclei((3, 4)), init_from=base).model
    before = starter.object_scale["object_diameter"]
    assert similar.object_scale["object_diameter"] == before  # within SAME_SCALE_FACTOR: the starter's kept
    assert smaller.object_scale["object_diameter"] < 0.6 * before
    assert kept_object_diameter(20.0, 16.0) == 20.0 and kept_object_diameter(20.0, 10.0) == 10.0
    assert kept_object_diameter(20.0, 10.0, resume=True) == 20.0
