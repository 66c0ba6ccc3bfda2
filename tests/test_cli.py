"""The command line as users call it: train, predict, evaluate on real folders; clear errors."""


from pathlib import Path
import numpy as np
import pytest
import tifffile

from napari_deepcolor import synthetic
from napari_deepcolor.cli import main


@pytest.fixture
def annotated_folder(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for i in range(3):
        image, lab = synthetic.nuclei((96, 96), count=10, seed=i)
        tifffile.imwrite(images / f"img{i}.tif", (image * 1000).astype(np.uint16))
        tifffile.imwrite(labels / f"img{i}.tif", lab)
    return tmp_path


@pytest.fixture
def decoded_with(monkeypatch):
    """The decode parameters each prediction was decoded with (after the model's defaults were filled in)."""
    from napari_deepcolor.inference import Prediction

    seen, original = [], Prediction.decode

    def decode(self, **parameters):
        seen.append(self.model.decode_parameters(parameters))
        return original(self, **parameters)

    monkeypatch.setattr(Prediction, "decode", decode)
    return seen


def test_train_predict_evaluate_round_trip(annotated_folder, tmp_path, capsys, decoded_with):
    from napari_deepcolor.checkpoint import load_model
    from napari_deepcolor.inference import predict

    model = tmp_path / "m.safetensors"
    assert main(["train", "--images", str(annotated_folder / "images"), "--labels", str(annotated_folder / "labels"),
                 "--output", str(model), "--method", "coloring", "--iterations", "3", "--patch-size", "64",
                 "--batch-size", "2", "--depth", "2", "--width", "8", "--halo-margin", "5", "--device", "cpu"]) == 0
    assert model.is_file()
    decoded_with.clear()  # the decodes of the training's tuning
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--input", str(annotated_folder / "images"),
                 "--output", str(out), "--size-threshold", "5", "--device", "cpu"]) == 0
    written = sorted(p.name for p in out.iterdir() if p.suffix == ".tif")
    assert written == ["img0.tif", "img1.tif", "img2.tif"]
    assert {f"img{i}_objects.csv" for i in range(3)} <= {p.name for p in out.iterdir()}  # each with its table
    labels = tifffile.imread(out / "img0.tif")
    assert labels.shape == (96, 96) and labels.dtype.kind == "u"
    assert [d["size_threshold"] for d in decoded_with] == [5, 5, 5]  # the flag reached every decode
    assert load_model(model).decode_defaults.get("size_threshold", 20) != 5  # ... and is not the default
    image = tifffile.imread(annotated_folder / "images" / "img0.tif")
    expected = predict(load_model(model), image, device="cpu").decode(size_threshold=5).labels
    assert np.array_equal(labels > 0, expected > 0)  # the labels are that decode's
    csv = tmp_path / "scores.csv"
    assert main(["evaluate", "--pred", str(out), "--gt", str(annotated_folder / "labels"), "--csv", str(csv)]) == 0
    table = capsys.readouterr().out
    assert "sbd" in table and "mean" in table
    assert csv.read_text().count("\n") == 5  # header, 3 images, mean


@pytest.mark.parametrize("method, decode_flag, value", [
    ("semiconv", "--mask-threshold", "0.4"), ("dcme", "--assign-radius", "6"), ("metric", "--score-threshold", "0.3")])
def test_embedding_methods_train_and_predict_end_to_end(annotated_folder, tmp_path, method, decode_flag, value,
                                                        decoded_with):
    from napari_deepcolor.checkpoint import read_model_config

    model = tmp_path / f"{method}.safetensors"
    assert main(["train", "--method", method, "--images", str(annotated_folder / "images"),
                 "--labels", str(annotated_folder / "labels"), "--output", str(model), "--iterations", "3",
                 "--patch-size", "64", "--batch-size", "2", "--depth", "2", "--width", "8", "--device", "cpu"]) == 0
    assert read_model_config(model)["method"] == method
    decoded_with.clear()  # the decodes of the training's tuning
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--input", str(annotated_folder / "images" / "img1.tif"),
                 "--output", str(out), decode_flag, value, "--device", "cpu"]) == 0
    labels = tifffile.imread(out / "img1.tif")
    assert labels.shape == (96, 96) and labels.dtype.kind == "u"
    name = decode_flag[2:].replace("-", "_")
    assert decoded_with and all(d[name] == pytest.approx(float(value)) for d in decoded_with)  # the flag's effect
    assert read_model_config(model)["decode_defaults"].get(name) != pytest.approx(float(value))


def test_predict_on_a_real_image_from_shared_data(shared_data, tmp_path):
    from napari_deepcolor.checkpoint import new_model, save_model

    model = save_model(new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model), "--input", str(shared_data / "dsb2018_sample" / "img2d.tif"),
                 "--output", str(out), "--device", "cpu"]) == 0
    assert tifffile.imread(out / "img2d.tif").shape == (512, 512)
    # a second run keeps the finished output (as batch does) unless asked to redo it
    written = (out / "img2d.tif").stat().st_mtime_ns
    assert main(["predict", "--model", str(model), "--input", str(shared_data / "dsb2018_sample" / "img2d.tif"),
                 "--output", str(out), "--device", "cpu"]) == 0
    assert (out / "img2d.tif").stat().st_mtime_ns == written
    assert main(["predict", "--model", str(model), "--input", str(shared_data / "dsb2018_sample" / "img2d.tif"),
                 "--output", str(out), "--device", "cpu", "--overwrite"]) == 0
    assert (out / "img2d.tif").stat().st_mtime_ns != written


def test_evaluate_on_real_bbbc010_masks(shared_data, tmp_path, capsys):
    from napari_deepcolor.data import read_object_masks

    masks = sorted((shared_data / "bbbc010" / "masks").glob("A01_*_ground_truth.png"))
    stack = read_object_masks(masks)
    labels = np.zeros(stack.shape[1:], np.uint16)
    for k, m in enumerate(stack, start=1):
        labels[m] = k
    pred = tmp_path / "pred"
    pred.mkdir()
    tifffile.imwrite(pred / "A01_w1.tif", labels)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(shared_data / "bbbc010" / "masks")]) == 0
    assert "A01_w1" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["train", "--images", "/nonexistent/folder", "--output", "x.safetensors", "--iterations", "1"], "nonexistent"),
    (["predict", "--model", "/nonexistent.safetensors", "--input", ".", "--output", "o"], "does not exist"),
    (["evaluate", "--pred", "/nonexistent", "--gt", "/nonexistent2"], "nonexistent"),
])
def test_user_errors_are_one_line_without_traceback(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and "Traceback" not in err


def test_decode_flag_of_another_method_is_refused(tmp_path, capsys):
    from napari_deepcolor.checkpoint import new_model, save_model

    model = save_model(new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    image = tmp_path / "a.tif"
    tifffile.imwrite(image, np.zeros((32, 32), np.uint16))
    assert main(["predict", "--model", str(model), "--input", str(image), "--output", str(tmp_path / "o"),
                 "--mask-threshold", "0.5"]) == 2
    assert "does not apply" in capsys.readouterr().err


def test_training_output_is_not_overwritten_silently(annotated_folder, tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"precious")
    assert main(["train", "--images", str(annotated_folder / "images"), "--labels", str(annotated_folder / "labels"),
                 "--output", str(model), "--iterations", "1"]) == 2
    assert model.read_bytes() == b"precious"
    assert "--resume" in capsys.readouterr().err


def test_demo_starts_from_the_nuclei_starter_and_compares_with_otsu(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path), "--minutes", "0.02", "--device", "cpu"]) == 0
    assert tifffile.imread(tmp_path / "bbbc039_A02_s1_labels.tif").shape == (520, 696)
    assert tifffile.imread(tmp_path / "dsb2018_nuclei_labels.tif").shape == (512, 512)
    from napari_deepcolor.checkpoint import load_model

    model = load_model(tmp_path / "demo_nuclei.safetensors")
    assert model.provenance["fine_tuned_from"] == "nuclei"
    out = capsys.readouterr().out
    assert "AP@0.5:0.95" in out and "Otsu + watershed" in out and "'nuclei' starter, as shipped" in out
    assert "fine-tuned" in out and "fine-tuning gain on the unlike nuclei: AP " in out
    assert out.count("(no training)") == 2  # the baseline on both images


def test_models_lists_every_starter_with_its_scores(capsys):
    from napari_deepcolor.starters import starter_card, starter_names

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in starter_names():
        assert f"{name}: " in out
    assert "AP" in out and "F1" in out
    assert "?" not in out  # the cards store data_licence and licence_spdx, not "licence"
    nuclei = next(line for line in out.splitlines() if line.startswith("nuclei: "))
    card = starter_card("nuclei")
    assert f"licence {card['data_licence']}" in nuclei and f"weights licence {card['licence_spdx']}" in nuclei
    assert f"{card['recipe']['iterations']} training steps" in nuclei
    assert f"test AP {card['test_scores']['ap']:.3f}" in nuclei


def test_an_unknown_model_name_is_one_error_that_lists_the_starters(tmp_path, capsys):
    assert main(["predict", "--model", "nucleii", "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "'nucleii'" in err and "nuclei, cells, worms, bacteria" in err


def test_predict_and_batch_take_a_starter_by_name(tmp_path):
    from importlib.resources import files

    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", tifffile.imread(  # a real BBBC039 image shipped with the package
        files("napari_deepcolor") / "sample_data" / "bbbc039_A09_s1.tif")[:192, :192])
    assert main(["predict", "--model", "nuclei", "--input", str(folder), "--output", str(tmp_path / "p"),
                 "--device", "cpu"]) == 0
    assert tifffile.imread(tmp_path / "p" / "a.tif").max() > 0
    assert main(["batch", "--model", "nuclei", "--input", str(folder), "--output", str(tmp_path / "b"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "b" / "a.tif").is_file()


def test_train_fine_tunes_a_starter_by_name_with_its_own_method(annotated_folder, tmp_path, capsys):
    from napari_deepcolor.checkpoint import load_model

    model = tmp_path / "mine.safetensors"
    assert main(["train", "--fine-tune", "nuclei", "--images", str(annotated_folder / "images"),
                 "--labels", str(annotated_folder / "labels"), "--output", str(model), "--iterations", "1",
                 "--patch-size", "64", "--batch-size", "1", "--validation-fraction", "0", "--device", "cpu"]) == 0
    tuned = load_model(model)
    assert tuned.method_name == "boundary" and tuned.provenance["fine_tuned_from"] == "nuclei"
    assert tuned.card == {}  # the starter's card describes the starter, not this model


def test_train_says_on_its_own_line_when_a_fine_tune_keeps_the_starter(annotated_folder, tmp_path, capsys):
    from napari_deepcolor.checkpoint import load_model

    model = tmp_path / "wrecked.safetensors"
    assert main(["train", "--fine-tune", "nuclei", "--images", str(annotated_folder / "images"),
                 "--labels", str(annotated_folder / "labels"), "--output", str(model), "--iterations", "3",
                 "--learning-rate", "0.05", "--patch-size", "64", "--batch-size", "2", "--validation-fraction", "0.34",
                 "--device", "cpu"]) == 0  # a rate of 0.05 wrecks the starter in three steps
    assert load_model(model).provenance["starter_or_fine_tune"]["kept"] == "starter"
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("the fine-tuned weights scored AP") for line in lines)
    assert not any(line.startswith("applied by default") for line in lines)  # those scores were the wrecked net's


def test_a_warning_logged_while_the_progress_bar_runs_gets_a_line_of_its_own(capsys):
    import logging
    import sys

    from napari_deepcolor import cli
    from napari_deepcolor.training import Step

    def events():
        for iteration in (1, 2):
            yield Step(iteration, 0.5, 10.0, float(iteration), 60.0, iteration / 10, 1e-3)
            if iteration == 1:
                logging.getLogger("napari_deepcolor.training").warning("a warning mid-training")

    handler = logging.StreamHandler(sys.stderr)  # what the CLI's logging.basicConfig installs
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        cli._show_training(events(), "training")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = capsys.readouterr().err.split("\n")
    shown = [line.split("\r")[-1] for line in lines if "a warning mid-training" in line]
    assert shown == ["WARNING: a warning mid-training"]  # not glued to the end of the bar's line


# -- nothing lost ---------------------------------------------------------------------------------

def _train_argv(folder, model, *budget):
    return ["train", "--images", str(folder / "images"), "--labels", str(folder / "labels"), "--output", str(model),
            *budget, "--patch-size", "64", "--batch-size", "2", "--depth", "2", "--width", "8",
            "--validation-fraction", "0", "--device", "cpu"]


def test_ctrl_c_during_train_saves_a_model_that_resumes(annotated_folder, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from napari_deepcolor.checkpoint import load_model, state_path

    model = tmp_path / "m.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "napari_deepcolor.cli",
                                *_train_argv(annotated_folder, model, "--minutes", "5")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    stderr = bytearray()

    def read():
        for chunk in iter(lambda: process.stderr.read1(1024), b""):
            stderr.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while b"patches/s" not in stderr and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # wait for the first training steps
    assert b"patches/s" in stderr, stderr.decode(errors="replace")
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    reader.join(timeout=30)  # the reader alone takes stderr, to the end (communicate() would race it)
    stdout = process.stdout.read()
    err = stderr.decode(errors="replace")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "saving the model trained so far" in err
    assert "--resume" in stdout.decode()
    stopped_at = load_model(model).provenance["iterations"]
    assert stopped_at >= 1 and state_path(model).is_file()
    assert main(_train_argv(annotated_folder, model, "--iterations", str(stopped_at + 2)) + ["--resume"]) == 0
    assert load_model(model).provenance["iterations"] == stopped_at + 2


def test_predict_never_writes_over_its_input(tmp_path, capsys):
    from napari_deepcolor.checkpoint import new_model, save_model

    model = save_model(new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    folder = tmp_path / "images"
    folder.mkdir()
    image, _ = synthetic.nuclei((64, 64), count=5, seed=1)
    tifffile.imwrite(folder / "a.tif", (image * 1000).astype(np.uint16))
    original = (folder / "a.tif").read_bytes()
    assert main(["predict", "--model", str(model), "--input", str(folder / "a.tif"), "--output", str(folder),
                 "--overwrite", "--device", "cpu"]) == 1
    assert (folder / "a.tif").read_bytes() == original
    assert "over the input image" in capsys.readouterr().err
    assert main(["predict", "--model", str(model), "--input", str(folder), "--output", str(folder),
                 "--overwrite", "--device", "cpu"]) == 2
    assert (folder / "a.tif").read_bytes() == original


def test_predict_into_a_folder_with_results_skips_them_and_resumes(annotated_folder, tmp_path, capsys):
    from napari_deepcolor.checkpoint import new_model, save_model

    model = save_model(new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    out = tmp_path / "pred"
    out.mkdir()
    tifffile.imwrite(out / "img1.tif", np.full((96, 96), 7, np.uint16))  # finished by an interrupted run
    assert main(["predict", "--model", str(model), "--input", str(annotated_folder / "images"), "--output", str(out),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tif") == ["img0.tif", "img1.tif", "img2.tif"]
    assert (tifffile.imread(out / "img1.tif") == 7).all()
    captured = capsys.readouterr()
    assert "FAILED" not in captured.err and "2 segmented, 1 skipped" in captured.out


def test_predict_reads_png_images_as_before(tmp_path):
    from PIL import Image

    from napari_deepcolor.checkpoint import new_model, save_model

    model = save_model(new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    folder = tmp_path / "images"
    folder.mkdir()
    image, _ = synthetic.nuclei((64, 80), count=5, seed=1)
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(folder / "a.png")
    assert main(["predict", "--model", str(model), "--input", str(folder), "--output", str(tmp_path / "o"),
                 "--device", "cpu"]) == 0
    assert tifffile.imread(tmp_path / "o" / "a.tif").shape == (64, 80)


def test_a_model_without_extension_does_not_take_the_training_state_of_another(annotated_folder, tmp_path):
    from napari_deepcolor.checkpoint import state_path

    with_suffix, without = tmp_path / "m.safetensors", tmp_path / "m"
    assert main(_train_argv(annotated_folder, with_suffix, "--iterations", "2")) == 0
    state = state_path(with_suffix).read_bytes()
    assert main(_train_argv(annotated_folder, without, "--iterations", "1")) == 0
    assert state_path(with_suffix).read_bytes() == state
    assert state_path(without) != state_path(with_suffix) and state_path(without).is_file()
    # and each resumes from its own state
    assert main(_train_argv(annotated_folder, with_suffix, "--iterations", "3") + ["--resume"]) == 0


def test_demo_refuses_to_replace_an_earlier_demo(tmp_path, capsys):
    (tmp_path / "demo_nuclei.safetensors").write_bytes(b"an earlier demo")
    assert main(["demo", "--output", str(tmp_path), "--minutes", "0.02", "--device", "cpu"]) == 2
    assert (tmp_path / "demo_nuclei.safetensors").read_bytes() == b"an earlier demo"
    assert "--overwrite" in capsys.readouterr().err
    assert not (tmp_path / "bbbc039_A02_s1_labels.tif").exists()


# -- nothing misleading ---------------------------------------------------------------------------

def test_evaluate_counts_a_missing_prediction_as_misses(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for i in range(2):
        _, labels = synthetic.nuclei((64, 64), count=6, seed=i)
        tifffile.imwrite(gt / f"img{i}.tif", labels)
    tifffile.imwrite(pred / "img0.tif", tifffile.imread(gt / "img0.tif"))  # perfect; img1 was never predicted
    csv = tmp_path / "scores.csv"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    mean = [line for line in out.splitlines() if line.startswith("mean")][0]
    header = [line for line in out.splitlines() if line.startswith("name")][0].split()
    assert float(mean.split()[header.index("f1")]) == pytest.approx(0.5)
    assert "1 of 2 ground-truth images have no prediction" in out and "img1" in out
    assert "2 of 2 ground-truth images scored" in out and "--only-predicted" in out
    assert csv.read_text().count("missing") == 1
    # a subset segmented on purpose: only the predicted images are scored, and the output says how many
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--only-predicted", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    mean = [line for line in out.splitlines() if line.startswith("mean")][0]
    assert float(mean.split()[header.index("f1")]) == pytest.approx(1.0)
    assert "1 of 2 ground-truth images scored" in out and "left out of the mean" in out
    assert "missing" not in csv.read_text() and csv.read_text().count("\n") == 3  # header, img0, mean


def test_train_progress_says_iterations_patches_per_second_loss_and_time_left(annotated_folder, tmp_path, capsys):
    assert main(_train_argv(annotated_folder, tmp_path / "m.safetensors", "--iterations", "3")) == 0
    err = capsys.readouterr().err
    assert "iteration 3" in err and "patches/s" in err and "loss" in err and "left" in err
    assert "‰" not in err and "rate=" not in err


# -- help in the user's language --------------------------------------------------------------------

def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_train_help_describes_each_method_option_in_plain_words(capsys):
    text = " ".join(_help(["train"], capsys).split())
    assert "OPT_" not in text and "[default" not in text
    assert "--coordinates yes|no" in text and "pass yes or no (default yes)" in text
    assert "--halo-margin PX" in text and "(default 21 px) [m, eq. 1]" in text  # unit, default, paper symbol
    assert "training options (coloring)" in text and "training options (semiconv and metric)" in text


def test_decode_flags_say_what_they_do_with_unit_default_and_symbol(tmp_path, capsys):
    text = " ".join(_help(["predict"], capsys).split())
    assert "tau:" not in text and "rho:" not in text and "(eq. 10)" not in text
    assert "--merge-radius PX Pieces of the same colour at most this many pixels apart become one object" in text
    assert "(default 0 px; range 0 to 100 px) [rho]" in text
    assert "--connected-masks {0,1}" in text


def test_help_shows_only_the_chosen_methods_options(tmp_path, capsys):
    from napari_deepcolor.checkpoint import new_model, save_model

    text = _help(["train", "--method", "coloring"], capsys)
    assert "--halo-margin" in text and "--embedding-dims" not in text and "--coordinates" not in text
    model = save_model(new_model("dcme", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    text = _help(["predict", "--model", str(model)], capsys)
    assert "--assign-radius" in text and "--size-threshold" in text and "--merge-radius" not in text


def test_refine_crf_in_predict_and_batch_on_a_real_folder(shared_data, tmp_path):
    import shutil

    from napari_deepcolor.checkpoint import load_model, new_model, save_model
    from napari_deepcolor.data.io import read_image
    from napari_deepcolor.inference import predict
    from napari_deepcolor.refine import refine_prediction
    from napari_deepcolor.refine.crf import CrfParameters

    folder = tmp_path / "bbbc039"
    folder.mkdir()
    for source in sorted((shared_data / "bbbc039" / "images").glob("*.tif"))[:2]:
        shutil.copy(source, folder / source.name)
    model = new_model("coloring", {"semantic_head": False}, {"depth": 2, "width": 8}, in_channels=1)
    model.crf = CrfParameters(bilateral_weight=2.0).to_dict()  # as if fitted: the CLI must use the stored weights
    path = save_model(model, tmp_path / "m.safetensors")
    plain, refined, batched = tmp_path / "plain", tmp_path / "refined", tmp_path / "batched"
    assert main(["predict", "--model", str(path), "--input", str(folder), "--output", str(plain), "--device", "cpu"]) == 0
    assert main(["predict", "--model", str(path), "--input", str(folder), "--output", str(refined), "--device", "cpu",
                 "--refine", "crf"]) == 0
    assert main(["batch", "--model", str(path), "--input", str(folder), "--output", str(batched), "--device", "cpu",
                 "--refine", "crf"]) == 0
    loaded = load_model(path)
    for image_path in sorted(folder.iterdir()):
        image = read_image(image_path)
        prediction = predict(loaded, image, device="cpu")
        expected = refine_prediction(prediction, image, prediction.decode()).labels
        written = tifffile.imread(refined / (image_path.stem + ".tif"))
        assert np.array_equal(written, expected)
        assert not np.array_equal(written, tifffile.imread(plain / (image_path.stem + ".tif")))
        assert np.array_equal(tifffile.imread(batched / (image_path.stem + ".tif")), expected)


def test_predict_applies_the_models_refinement_choice_unless_told_otherwise(shared_data, tmp_path):
    import shutil

    from napari_deepcolor.checkpoint import load_model, new_model, save_model
    from napari_deepcolor.data.io import read_image
    from napari_deepcolor.inference import predict
    from napari_deepcolor.refine import refine_prediction

    folder = tmp_path / "in"
    folder.mkdir()
    image_path = Path(shutil.copy(sorted((shared_data / "bbbc039" / "images").glob("*.tif"))[0], folder))
    model = new_model("coloring", {"semantic_head": False}, {"depth": 2, "width": 8}, in_channels=1)
    model.inference_defaults = {"refine": "crf", "flips": False}  # as if its validation images chose the CRF
    path = save_model(model, tmp_path / "m.safetensors")
    chosen, plain = tmp_path / "chosen", tmp_path / "plain"
    assert main(["predict", "--model", str(path), "--input", str(folder), "--output", str(chosen), "--device", "cpu"]) == 0
    assert main(["predict", "--model", str(path), "--input", str(folder), "--output", str(plain), "--device", "cpu",
                 "--refine", "none"]) == 0
    image = read_image(image_path)
    prediction = predict(load_model(path), image, device="cpu")
    name = image_path.stem + ".tif"
    assert np.array_equal(tifffile.imread(chosen / name), refine_prediction(prediction, image, prediction.decode()).labels)
    assert np.array_equal(tifffile.imread(plain / name), prediction.decode().labels)


def test_refine_crf_on_the_out_of_core_route_is_a_clear_failure(shared_data, tmp_path, capsys):
    import shutil

    from napari_deepcolor.checkpoint import new_model, save_model

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(sorted((shared_data / "bbbc039" / "images").glob("*.tif"))[0], folder)
    path = save_model(new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    assert main(["batch", "--model", str(path), "--input", str(folder), "--output", str(tmp_path / "out"),
                 "--device", "cpu", "--refine", "crf", "--large-image-mp", "0.1"]) == 1
    err = capsys.readouterr().err
    assert "out of core" in err and "--refine" in err


def test_flips_in_predict_and_batch_for_a_baseline_model_and_a_clear_error_otherwise(annotated_folder, tmp_path,
                                                                                      capsys):
    from napari_deepcolor.checkpoint import new_model, save_model

    net = {"depth": 2, "width": 8}
    baseline = save_model(new_model("boundary", {}, net, in_channels=1), tmp_path / "baseline.safetensors")
    coloring = save_model(new_model("coloring", {}, net, in_channels=1), tmp_path / "coloring.safetensors")
    images = str(annotated_folder / "images")
    assert main(["predict", "--model", str(baseline), "--input", images, "--output", str(tmp_path / "p"),
                 "--flips", "--device", "cpu"]) == 0
    assert len(list((tmp_path / "p").glob("*.tif"))) == 3
    assert main(["batch", "--model", str(baseline), "--input", images, "--output", str(tmp_path / "b"),
                 "--flips", "--device", "cpu"]) == 0
    capsys.readouterr()
    for command in ("predict", "batch"):
        assert main([command, "--model", str(coloring), "--input", images, "--output", str(tmp_path / f"{command}-coloring"),
                     "--flips", "--device", "cpu"]) == 2
        assert "mirror image" in capsys.readouterr().err


def _every_help_text(capsys, monkeypatch) -> dict[str, str]:
    """The --help of the command, of each subcommand, and of train for each method, unwrapped."""
    from napari_deepcolor.cli import build_parser
    from napari_deepcolor.methods import method_names

    monkeypatch.setenv("COLUMNS", "2000")  # one line per option: markup is not cut by the wrapping
    commands = [[]] + [[name] for name in build_parser()._subparsers._group_actions[0].choices]
    commands += [["train", "--method", name] for name in method_names()]
    return {" ".join(argv) or "(top)": _help(argv, capsys) for argv in commands}


def test_no_help_text_shows_markup(capsys, monkeypatch):
    """Option help is read from numpydoc docstrings; Sphinx roles and ``literals`` are made plain words."""
    from napari_deepcolor.plaintext import MARKUP

    texts = _every_help_text(capsys, monkeypatch)
    assert len(texts) > 8
    shown = {argv: MARKUP.findall(text) for argv, text in texts.items() if MARKUP.search(text)}
    assert not shown, shown
    assert "IoU > good_seed_iou" in texts["train --method metric"]


def test_no_error_or_warning_message_in_the_source_shows_markup():
    """Every DeepColorError and logged warning, read from the source: its literal text has no Sphinx markup."""
    import ast
    from pathlib import Path

    import napari_deepcolor
    from napari_deepcolor.plaintext import MARKUP

    found = []
    for path in Path(napari_deepcolor.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name not in ("DeepColorError", "warning", "error", "info", "show_error", "show_warning", "show_info"):
                continue
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str) and MARKUP.search(part.value):
                    found.append(f"{path.name}:{part.lineno}: {part.value}")
    assert not found, found


def test_resume_of_a_finished_training_says_so_and_changes_nothing(annotated_folder, tmp_path, capsys):
    from napari_deepcolor.checkpoint import load_model, state_path

    model = tmp_path / "m.safetensors"
    assert main(_train_argv(annotated_folder, model, "--iterations", "2")) == 0
    before = model.read_bytes(), state_path(model).read_bytes()
    capsys.readouterr()
    assert main(_train_argv(annotated_folder, model) + ["--resume"]) == 0  # the budget it started with: spent
    out = capsys.readouterr().out
    assert "finished its training already (2 iterations" in out and "nothing was trained or written" in out
    assert (model.read_bytes(), state_path(model).read_bytes()) == before
    assert main(_train_argv(annotated_folder, model, "--iterations", "3") + ["--resume"]) == 0  # one more asked
    assert load_model(model).provenance["iterations"] == 3


# -- labels that are masks --------------------------------------------------------------------------

@pytest.fixture
def mask_folder(tmp_path):
    """Images with 0/255 masks of their nuclei: one value for every object, as a thresholding tool writes."""
    images, labels = tmp_path / "mask_data" / "images", tmp_path / "mask_data" / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for i in range(3):
        image, lab = synthetic.nuclei((128, 128), count=12, radius=(6, 9), seed=10 + i)
        tifffile.imwrite(images / f"img{i}.tif", (image * 1000).astype(np.uint16))
        tifffile.imwrite(labels / f"img{i}.tif", np.where(lab > 0, 255, 0).astype(np.uint8))
    return tmp_path / "mask_data"


def test_training_on_binary_masks_says_so_and_the_opt_in_trains_a_model_that_finds_the_objects(
        mask_folder, tmp_path, capsys):
    from napari_deepcolor.data.masks import label_pieces

    model = tmp_path / "m.safetensors"
    # deep coloring: the tiny net finds objects after tens of steps (the 3-class baseline takes hundreds)
    argv = ["train", "--method", "coloring", "--halo-margin", "5", "--images", str(mask_folder / "images"),
            "--labels", str(mask_folder / "labels"), "--output", str(model), "--iterations", "80",
            "--patch-size", "64", "--batch-size", "4", "--depth", "2", "--width", "8", "--learning-rate", "3e-3",
            "--net-object-diameter", "0", "--validation-fraction", "0", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "\nerror: " in err and "Traceback" not in err  # after the line that describes the layout
    assert "the value 255 covers" in err and "binary mask" in err and "--labels-are-masks" in err
    assert not model.exists()
    assert main(argv + ["--labels-are-masks"]) == 0
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--input", str(mask_folder / "images" / "img0.tif"),
                 "--output", str(out), "--device", "cpu"]) == 0
    found = len(np.unique(tifffile.imread(out / "img0.tif"))) - 1
    pieces = len(np.unique(label_pieces(tifffile.imread(mask_folder / "labels" / "img0.tif")))) - 1
    assert found >= 0.5 * pieces > 4, (found, pieces)  # not the few merged blobs of a model trained on the mask


def test_an_rgb_image_into_a_grey_model_says_it_was_averaged_to_grey(tmp_path, capsys):
    import csv

    from napari_deepcolor.checkpoint import new_model, save_model

    model = save_model(new_model("boundary", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    folder = tmp_path / "in"
    folder.mkdir()
    image, _ = synthetic.nuclei((64, 64), count=5, seed=1)
    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    tifffile.imwrite(folder / "rgb.tif", np.stack([grey] * 3, axis=-1), photometric="rgb")
    tifffile.imwrite(folder / "grey.tif", grey)
    assert main(["predict", "--model", str(model), "--input", str(folder), "--output", str(tmp_path / "p"),
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    rgb_line = next(line for line in err.splitlines() if line.startswith("rgb.tif:"))
    grey_line = next(line for line in err.splitlines() if line.startswith("grey.tif:"))
    assert "the RGB image's 3 channels were averaged to one grey channel" in rgb_line
    assert "averaged" not in grey_line
    assert main(["batch", "--model", str(model), "--input", str(folder), "--output", str(tmp_path / "b"),
                 "--device", "cpu"]) == 0
    with open(tmp_path / "b" / "batch_summary.csv", newline="") as f:
        notes = {row["file"]: row["note"] for row in csv.DictReader(f)}
    assert "averaged to one grey channel" in notes["rgb.tif"] and notes["grey.tif"] == ""


def test_the_learning_rate_schedules_offered_are_the_trainings():
    from napari_deepcolor.cli import build_parser
    from napari_deepcolor.training import LR_SCHEDULES

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    offered = next(a for a in train._actions if a.dest == "lr_schedule").choices
    assert sorted(offered) == sorted(LR_SCHEDULES)


def test_train_says_what_is_applied_by_default_even_when_the_choice_had_no_time():
    from napari_deepcolor.checkpoint import new_model
    from napari_deepcolor.cli import _refinement_text

    model = new_model("boundary", {}, {"depth": 2, "width": 8}, in_channels=1)
    assert _refinement_text(model) == "the plain decode"
    model.inference_defaults = {"refine": "none", "flips": True}  # kept from the model it was fine-tuned from
    model.provenance = {"refinement_choice": {"skipped": "no time was left in the budget"}}
    assert _refinement_text(model) == "flips"
    model.provenance = {"refinement_choice": {"none": 0.5, "none+flips": 0.52, "chosen": "none+flips"}}
    assert _refinement_text(model) == "flips (validation AP: none 0.500, none+flips 0.520)"
