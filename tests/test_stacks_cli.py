"""predict and batch on z-stacks, time-lapses and multi-channel images: ids, tracks, channels, tables."""

import csv
from importlib.resources import files

import numpy as np
import pytest
import tifffile

from napari_deepcolor.batch import Batch, BatchConfig, FileDone, PlaneDone
from napari_deepcolor.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PLANES = 5
CROP = (slice(0, 200), slice(0, 240))


@pytest.fixture(scope="module")
def nuclei():
    """A real BBBC039 image shipped with the package (cropped) and its annotated nuclei."""
    bundled = files("napari_deepcolor") / "sample_data"
    return (tifffile.imread(bundled / "bbbc039_A02_s1.tif")[CROP],
            tifffile.imread(bundled / "bbbc039_A02_s1_masks.tif")[CROP])


def shifted(image):
    """The image shifted by a pixel per plane, as the issue's z-stack."""
    return np.stack([np.roll(image, z, axis=1) for z in range(PLANES)])


def kept_ids(labels, truth):
    """Share of the annotated nuclei found in the first plane that keep one id in every plane."""
    found = kept = 0
    for nucleus in np.unique(truth[truth > 0]):
        mask = truth == nucleus
        ids = []
        for z in range(PLANES):
            inside = labels[z][np.roll(mask, z, axis=1)]
            ids.append(np.bincount(inside).argmax() if inside.size else 0)
        if ids[0] == 0:
            continue
        found += 1
        kept += len(set(ids)) == 1
    return kept / found, found


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def stack_runs(nuclei, tmp_path_factory):
    """predict on the z-stack (untagged: Z is guessed) and batch on the same stack tagged as time."""
    root = tmp_path_factory.mktemp("stacks")
    image, _ = nuclei
    (root / "z").mkdir()
    (root / "t").mkdir()
    tifffile.imwrite(root / "z" / "stack.tif", shifted(image))  # no axes in the file
    tifffile.imwrite(root / "t" / "movie.tif", shifted(image), metadata={"axes": "TYX"})
    assert main(["predict", "--model", "nuclei", "--input", str(root / "z"), "--output", str(root / "zout"),
                 "--device", "cpu"]) == 0
    assert main(["batch", "--model", "nuclei", "--input", str(root / "t"), "--output", str(root / "tout"),
                 "--device", "cpu"]) == 0
    return root


def test_a_z_stack_gives_one_id_per_nucleus_through_the_planes(stack_runs, nuclei):
    labels = tifffile.imread(stack_runs / "zout" / "stack.tif")
    assert labels.shape == (PLANES,) + nuclei[0].shape
    share, found = kept_ids(labels, nuclei[1])
    assert found > 20 and share >= 0.95, (share, found)


def test_the_same_stack_tagged_as_time_gives_the_same_ids_and_a_tracks_table(stack_runs, nuclei):
    by_z = tifffile.imread(stack_runs / "zout" / "stack.tif")
    with tifffile.TiffFile(stack_runs / "tout" / "movie.tif") as tif:
        assert tif.series[0].axes == "TYX"
        by_t = tif.series[0].asarray()
    share, _ = kept_ids(by_t, nuclei[1])
    assert share >= 0.95
    assert abs(int(by_t.max()) - int(by_z.max())) <= 0.05 * by_z.max()  # about as many objects as through z
    rows = read_csv(stack_runs / "tout" / "movie_tracks.csv")
    assert list(rows[0]) == ["track_id", "frame", "centroid_y", "centroid_x", "area", "parent"]
    assert {int(r["frame"]) for r in rows} == set(range(PLANES))
    one = [r for r in rows if r["track_id"] == str(by_t[0][by_t[0] > 0][0])]
    assert len(one) == PLANES and [int(r["frame"]) for r in one] == list(range(PLANES))
    xs = [float(r["centroid_x"]) for r in one]
    assert np.allclose(np.diff(xs), 1.0, atol=0.5)  # it moves a pixel per frame


def test_every_label_file_has_its_measurements(stack_runs, nuclei):
    labels = tifffile.imread(stack_runs / "zout" / "stack.tif")
    rows = read_csv(stack_runs / "zout" / "stack_objects.csv")
    assert len(rows) == labels.max()  # one row per object of the volume
    assert {"label", "centroid_z", "centroid_y", "centroid_x", "bbox_z0", "bbox_z1", "volume",
            "mean_intensity_0", "integrated_intensity_0", "instance_score"} <= set(rows[0])
    row = rows[0]
    mask = labels == int(row["label"])
    assert int(row["volume"]) == mask.sum()
    image = shifted(nuclei[0])
    assert float(row["integrated_intensity_0"]) == pytest.approx(image[mask].sum(), rel=1e-4)
    assert float(row["centroid_z"]) == pytest.approx(np.nonzero(mask)[0].mean(), abs=0.01)
    movie = read_csv(stack_runs / "tout" / "movie_objects.csv")
    assert "frame" in movie[0] and "area" in movie[0] and len(movie) == sum(
        len(np.unique(plane)) - 1 for plane in labels)  # one row per object and frame
    assert not list(stack_runs.rglob(".*"))  # no temporaries left behind


def test_the_guessed_axes_are_printed(nuclei, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "stack.tif", shifted(nuclei[0][:64, :64])[:2])
    assert main(["predict", "--model", "nuclei", "--input", str(tmp_path / "stack.tif"), "--output",
                 str(tmp_path / "out"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "axes ZYX (Z=2) guessed" in err and "--axes" in err


def test_channel_picks_the_channel_and_a_two_channel_image_without_it_is_a_clear_error(nuclei, tmp_path, capsys):
    image = nuclei[0][:128, :128]
    noise = np.random.default_rng(0).integers(0, 50, image.shape).astype(image.dtype)
    tifffile.imwrite(tmp_path / "two.tif", np.stack([noise, image]), metadata={"axes": "CYX"})
    args = ["predict", "--model", "nuclei", "--input", str(tmp_path / "two.tif"), "--device", "cpu"]
    assert main(args + ["--output", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "2 channels (0, 1)" in err and "--channel" in err
    assert not (tmp_path / "none" / "two.tif").exists()
    assert main(args + ["--output", str(tmp_path / "one"), "--channel", "1"]) == 0
    with tifffile.TiffFile(tmp_path / "one" / "two.tif") as tif:
        assert tif.series[0].axes == "YX"
        labels = tif.series[0].asarray()
    alone = tmp_path / "alone.tif"
    tifffile.imwrite(alone, image)
    assert main(["predict", "--model", "nuclei", "--input", str(alone), "--output", str(tmp_path / "ref"),
                 "--device", "cpu"]) == 0
    assert np.array_equal(labels, tifffile.imread(tmp_path / "ref" / "alone.tif"))  # that channel only
    columns = read_csv(tmp_path / "one" / "two_objects.csv")[0]
    assert "mean_intensity_0" in columns and "mean_intensity_1" in columns  # intensities of every channel


def test_progress_is_reported_per_plane(nuclei, tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", shifted(nuclei[0][:64, :64])[:3], photometric="minisblack")
    events = list(Batch(BatchConfig(model="nuclei", input=str(tmp_path / "in.tif"), output=str(tmp_path / "out"),
                                    device="cpu")).run())
    planes = [(e.plane, e.planes) for e in events if isinstance(e, PlaneDone)]
    assert planes == [(1, 3), (2, 3), (3, 3)]
    done = [e for e in events if isinstance(e, FileDone)]
    assert events.index(done[0]) > max(i for i, e in enumerate(events) if isinstance(e, PlaneDone))
    assert done[0].result.planes == 3 and done[0].result.axes == "ZYX (guessed)"


def test_a_model_trained_on_two_channels_takes_both_and_refuses_other_channel_counts(tmp_path, capsys):
    """Nuclei + a second channel, stored channels first (tagged or not) and channels last: one 2-channel model."""
    from napari_deepcolor import synthetic
    from napari_deepcolor.models import load_model

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    layouts = {"first": ("CYX", {}), "first_tagged": ("CYX", {"metadata": {"axes": "CYX"}}), "last": ("YXC", {})}
    for i, (name, (axes, tags)) in enumerate(layouts.items()):
        image, truth = synthetic.nuclei((96, 96), count=10, seed=i)
        second = np.random.default_rng(i).integers(0, 300, image.shape).astype(np.uint16)
        two = np.stack([(image * 1000).astype(np.uint16), second], axis=0 if axes == "CYX" else -1)
        tifffile.imwrite(images / f"{name}.tif", two, **tags)
        tifffile.imwrite(labels / f"{name}.tif", truth)
    model = tmp_path / "two.safetensors"
    assert main(["train", "--images", str(images), "--labels", str(labels), "--output", str(model), "--iterations",
                 "2", "--patch-size", "64", "--depth", "2", "--width", "8", "--device", "cpu",
                 "--no-choose-refinement"]) == 0
    assert load_model(model).net_config.in_channels == 2

    assert main(["predict", "--model", str(model), "--input", str(images), "--output", str(tmp_path / "out"),
                 "--device", "cpu"]) == 0
    for name in layouts:  # one 2D label image each: the channels were fed together, not split into planes
        assert tifffile.imread(tmp_path / "out" / f"{name}.tif").shape == (96, 96), name

    odd = tmp_path / "odd"
    odd.mkdir()
    tifffile.imwrite(odd / "grey.tif", np.zeros((96, 96), np.uint16))
    tifffile.imwrite(odd / "three.tif", np.zeros((3, 96, 96), np.uint16), photometric="minisblack",
                     metadata={"axes": "CYX"})
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--input", str(odd), "--output", str(tmp_path / "bad"),
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "grey.tif: the image has one channel but the model was trained on images with 2" in err
    assert "three.tif: the image has 3 channels (0, 1, 2) but the model was trained on 2" in err
    assert not list((tmp_path / "bad").glob("*.tif"))
