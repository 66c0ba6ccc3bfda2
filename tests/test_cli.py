"""The command line as users call it: train, predict, evaluate on real folders; clear errors."""


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


def test_train_predict_evaluate_round_trip(annotated_folder, tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    assert main(["train", "--images", str(annotated_folder / "images"), "--labels", str(annotated_folder / "labels"),
                 "--output", str(model), "--method", "coloring", "--iterations", "3", "--patch-size", "64",
                 "--batch-size", "2", "--depth", "2", "--width", "8", "--halo-margin", "5", "--device", "cpu"]) == 0
    assert model.is_file()
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--input", str(annotated_folder / "images"),
                 "--output", str(out), "--size-threshold", "5", "--device", "cpu"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["img0.tif", "img1.tif", "img2.tif"]
    labels = tifffile.imread(out / "img0.tif")
    assert labels.shape == (96, 96) and labels.dtype.kind == "u"
    csv = tmp_path / "scores.csv"
    assert main(["evaluate", "--pred", str(out), "--gt", str(annotated_folder / "labels"), "--csv", str(csv)]) == 0
    table = capsys.readouterr().out
    assert "sbd" in table and "mean" in table
    assert csv.read_text().count("\n") == 5  # header, 3 images, mean


@pytest.mark.parametrize("method, decode_flag, value", [
    ("semiconv", "--mask-threshold", "0.4"), ("dcme", "--assign-radius", "6"), ("metric", "--score-threshold", "0.3")])
def test_embedding_methods_train_and_predict_end_to_end(annotated_folder, tmp_path, method, decode_flag, value):
    from napari_deepcolor.checkpoint import read_model_config

    model = tmp_path / f"{method}.safetensors"
    assert main(["train", "--method", method, "--images", str(annotated_folder / "images"),
                 "--labels", str(annotated_folder / "labels"), "--output", str(model), "--iterations", "3",
                 "--patch-size", "64", "--batch-size", "2", "--depth", "2", "--width", "8", "--device", "cpu"]) == 0
    assert read_model_config(model)["method"] == method
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--input", str(annotated_folder / "images" / "img1.tif"),
                 "--output", str(out), decode_flag, value, "--device", "cpu"]) == 0
    labels = tifffile.imread(out / "img1.tif")
    assert labels.shape == (96, 96) and labels.dtype.kind == "u"


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
    labels = tifffile.imread(tmp_path / "bbbc039_A02_s1_labels.tif")
    assert labels.shape == (520, 696)
    assert (tmp_path / "demo_nuclei.safetensors").is_file()
    out = capsys.readouterr().out
    assert "AP@0.5:0.95" in out and "Otsu + watershed" in out and "'nuclei' starter, as shipped" in out
    assert "fine-tuned" in out


def test_models_lists_every_starter_with_its_scores(capsys):
    from napari_deepcolor.starters import starter_names

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in starter_names():
        assert f"{name}: " in out
    assert "AP" in out and "F1" in out


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
    assert sorted(p.name for p in out.iterdir()) == ["img0.tif", "img0_objects.csv", "img1.tif", "img2.tif",
                                                     "img2_objects.csv"]  # img1 was kept, untouched
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
    assert csv.read_text().count("missing") == 1


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
