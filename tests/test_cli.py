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
                 "--output", str(model), "--iterations", "3", "--patch-size", "64", "--batch-size", "2",
                 "--depth", "2", "--width", "8", "--halo-margin", "5", "--device", "cpu"]) == 0
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
    # a second run refuses to overwrite unless asked
    assert main(["predict", "--model", str(model), "--input", str(shared_data / "dsb2018_sample" / "img2d.tif"),
                 "--output", str(out), "--device", "cpu"]) == 1
    assert main(["predict", "--model", str(model), "--input", str(shared_data / "dsb2018_sample" / "img2d.tif"),
                 "--output", str(out), "--device", "cpu", "--overwrite"]) == 0


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
                 "--interior-threshold", "0.5"]) == 2
    assert "does not apply" in capsys.readouterr().err


def test_training_output_is_not_overwritten_silently(annotated_folder, tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"precious")
    assert main(["train", "--images", str(annotated_folder / "images"), "--labels", str(annotated_folder / "labels"),
                 "--output", str(model), "--iterations", "1"]) == 2
    assert model.read_bytes() == b"precious"
    assert "--resume" in capsys.readouterr().err


def test_demo_trains_on_the_bundled_image_and_writes_labels(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path), "--minutes", "0.02", "--device", "cpu"]) == 0
    labels = tifffile.imread(tmp_path / "bbbc039_A09_s1_labels.tif")
    assert labels.shape == (520, 696)
    assert (tmp_path / "demo_nuclei.safetensors").is_file()
    assert "AP@0.5:0.95" in capsys.readouterr().out


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
    model = new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1)
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
