"""Batch segmentation: mixed folders, resuming, dask, and images decoded out of core."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from scipy import ndimage as ndi

from napari_deepcolor import batch
from napari_deepcolor.batch import Batch, BatchConfig, FileDone, plan_layout, tiling
from napari_deepcolor.checkpoint import new_model, save_model
from napari_deepcolor.cli import main
from napari_deepcolor.errors import DeepColorError
from napari_deepcolor.inference import predict_output
from napari_deepcolor.methods import get_method
from napari_deepcolor.methods import blockwise
from napari_deepcolor.methods.blockwise import label_color_blocks, object_scores, resolve_components
from napari_deepcolor.methods.components import grow_into

COLORING = get_method("coloring")
BOUNDARY = get_method("boundary")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A tiny random-weight coloring model (weights do not matter: outputs are compared, not scored);
    without a semantic head, the coloring that the out-of-core route decodes."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = new_model("coloring", {"semantic_head": False}, {"depth": 2, "width": 8}, in_channels=1)
    return str(save_model(model, tmp_path_factory.mktemp("model") / "tiny.safetensors"))


def blobs(shape, seed, sigma=3.0, scale=1000):
    rng = np.random.default_rng(seed)
    return (ndi.gaussian_filter(rng.random(shape), sigma) * scale).astype(np.uint16)


def same_up_to_renumbering(a, b) -> bool:
    """Label images that split the pixels into the same objects, whatever the ids."""
    if a.shape != b.shape or not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == np.unique(a).size == np.unique(b).size


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_summary(folder):
    with open(Path(folder) / "batch_summary.csv", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def outputs(folder):
    """Finished outputs: visible .tif files and .zarr folders (temporaries are hidden)."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix in (".tif", ".zarr")
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


GOOD = {"flat.tif": ("YX", (64, 80)), "rgb.tif": ("YX", (64, 80)), "stack.tif": ("ZYX", (3, 48, 56)),
        "blank.tif": ("YX", (40, 50))}
BAD = {"notes.tif": "not a readable TIFF", "truncated.tif": "truncated or corrupt", "nothing.tif": "empty",
       "zero_bytes.tif": "0 bytes", "line.tif": "unsupported shape"}


@pytest.fixture
def mixed_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "flat.tif", blobs((64, 80), 0))
    tifffile.imwrite(folder / "rgb.tif", (np.stack([blobs((64, 80), 1)] * 3, -1) // 8).astype(np.uint8),
                     photometric="rgb")
    tifffile.imwrite(folder / "stack.tif", np.stack([blobs((48, 56), s) for s in range(3)]), photometric="minisblack",
                     metadata={"axes": "ZYX"})
    tifffile.imwrite(folder / "blank.tif", np.zeros((40, 50), np.uint16))  # valid image, no objects
    (folder / "notes.tif").write_text("a text file with an image's name")
    whole = (folder / "stack.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(whole[: len(whole) // 2])
    with pytest.warns(UserWarning):
        tifffile.imwrite(folder / "nothing.tif", np.zeros((0, 10, 12), np.uint16))  # a zero-length axis
    (folder / "zero_bytes.tif").write_bytes(b"")
    tifffile.imwrite(folder / "line.tif", np.arange(12, dtype=np.uint16))  # 1D: no Y axis
    (folder / "readme.txt").write_text("not matched by the patterns")
    return folder


def test_mixed_folder_segments_good_files_and_reports_the_others(model_path, mixed_folder, tmp_path):
    out = tmp_path / "labels"
    code = main(["batch", "--model", model_path, "--input", str(mixed_folder), "--output", str(out)])
    assert code == 1  # some files failed
    for name, (axes, shape) in GOOD.items():
        with tifffile.TiffFile(out / name) as tif:
            labels = tif.series[0].asarray()
            assert tif.series[0].axes == axes and labels.shape == shape
        assert labels.dtype == np.uint8  # the smallest dtype that holds the ids
    assert not tifffile.imread(out / "blank.tif").any()
    assert [p.name for p in outputs(out)] == sorted(GOOD)
    rows = read_summary(out)
    assert set(rows) == set(GOOD) | set(BAD)
    assert all(rows[name]["status"] == "done" for name in GOOD)
    assert rows["blank.tif"]["objects"] == "0" and int(rows["stack.tif"]["objects"]) > 0
    for name, reason in BAD.items():
        assert rows[name]["status"] == "failed" and reason in rows[name]["error"], rows[name]
    assert len(list(out.glob("batch_summary_*.csv"))) == 1


def test_rerun_skips_finished_files_unless_overwrite(model_path, mixed_folder, tmp_path):
    out = tmp_path / "labels"
    args = ["batch", "--model", model_path, "--input", str(mixed_folder), "--output", str(out)]
    main(args)
    before = {p: p.stat().st_mtime_ns for p in outputs(out)}
    counted = {name: row["objects"] for name, row in read_summary(out).items() if name in GOOD}
    assert all(n.isdigit() for n in counted.values())
    time.sleep(0.01)
    assert main(args) == 1
    assert {p: p.stat().st_mtime_ns for p in outputs(out)} == before
    rows = read_summary(out)
    assert all(rows[name]["status"] == "skipped-existing" for name in GOOD)
    assert {name: rows[name]["objects"] for name in GOOD} == counted  # the earlier run's counts, kept
    assert main(args) == 1  # and kept again from the summary that carried them over
    assert {name: row["objects"] for name, row in read_summary(out).items() if name in GOOD} == counted
    assert main(args + ["--overwrite"]) == 1
    assert all(row["status"] == "done" for name, row in read_summary(out).items() if name in GOOD)
    assert all(p.stat().st_mtime_ns != before[p] for p in before)


def test_killed_batch_resumes_without_corrupt_missing_or_redone_outputs(model_path, tmp_path):
    folder, out = tmp_path / "many", tmp_path / "labels"
    folder.mkdir()
    count = 40
    for i in range(count):
        tifffile.imwrite(folder / f"img{i:02d}.tif", blobs((160, 160), i))
    command = [sys.executable, "-m", "napari_deepcolor.cli", "batch", "--model", model_path,
               "--input", str(folder), "--output", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while len(outputs(out)) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert process.poll() is None, "the batch ended (or failed to start) before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    finished = {p: p.stat().st_mtime_ns for p in outputs(out)}
    assert 3 <= len(finished) < count, "the batch was not killed mid-run"
    for path in finished:  # what exists is complete: written to a temporary name, then renamed
        assert tifffile.imread(path).shape == (160, 160)
    assert main(command[3:]) == 0
    assert len(outputs(out)) == count
    assert all(tifffile.imread(p).shape == (160, 160) for p in outputs(out))
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # nothing finished was redone
    assert not [p for p in out.rglob(".*")]  # the killed run's temporaries are gone
    statuses = [row["status"] for row in read_summary(out).values()]
    assert statuses.count("skipped-existing") == len(finished) and statuses.count("done") == count - len(finished)


def test_local_cluster_of_two_workers_gives_the_same_outputs(model_path, mixed_folder, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    args = ["batch", "--model", model_path, "--input", str(mixed_folder)]
    assert main(args + ["--output", str(here)]) == 1
    assert main(args + ["--output", str(there), "--workers", "2"]) == 1
    assert [p.name for p in outputs(there)] == [p.name for p in outputs(here)]
    for path in outputs(here):
        assert np.array_equal(tifffile.imread(path), tifffile.imread(there / path.name))
    assert {k: r["status"] for k, r in read_summary(here).items()} == \
        {k: r["status"] for k, r in read_summary(there).items()}


def colour_field(shape, colors, seed):
    """A (C, H, W) probability-like output whose argmax makes irregular regions of equal colour."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random((colors,) + shape), (0, 2.5, 2.5)).astype(np.float32)
    field[0] += 0.004  # some background
    return field


@pytest.mark.parametrize("size_threshold", [0, 30])
def test_out_of_core_decode_equals_in_memory_decode(size_threshold):
    output = colour_field((101, 83), 5, seed=size_threshold)
    ids = np.zeros(output.shape[1:], np.uint32)
    # many blocks, objects crossing their borders; small pieces inside a block are dropped early
    table = label_color_blocks(output, ids, block=16, size_threshold=size_threshold)
    lookup, count = resolve_components(table, size_threshold=size_threshold)
    expected = COLORING.decode(output, size_threshold=size_threshold, merge_radius=0)
    assert count == expected.count > 10
    assert len(table.links) > 0
    assert same_up_to_renumbering(lookup[ids], expected.labels)
    pairs = np.unique(np.stack([lookup[ids].ravel(), expected.labels.ravel()]), axis=1)
    pairs = pairs[:, pairs[0] > 0]  # each object's score, as the in-memory decode gives it
    assert np.allclose(object_scores(table, lookup, count)[pairs[0] - 1], expected.scores[pairs[1] - 1], atol=1e-6)


def three_class_field(shape, seed):
    """A (3, H, W) softmax-like output: background, interior and boundary in irregular patches."""
    rng = np.random.default_rng(seed)
    field = np.exp(40 * ndi.gaussian_filter(rng.random((3,) + shape), (0, 3, 3)))
    return (field / field.sum(0)).astype(np.float32)


def steps_to_grow(output, interior_threshold, foreground_threshold) -> int:
    """How many steps of grow_into the in-memory decode of ``output`` takes to reach its last pixel."""
    from skimage.measure import label

    seeds, allowed = label(output[1] > interior_threshold, connectivity=1), output[0] < 1 - foreground_threshold
    steps, grown = 0, seeds
    while not np.array_equal(grown, more := grow_into(seeds, allowed, steps=steps + 1)):
        steps, grown = steps + 1, more
    return steps


@pytest.mark.parametrize("seed, size_threshold", [(0, 0), (1, 25), (2, 0)])
def test_out_of_core_boundary_decode_equals_in_memory_decode(seed, size_threshold, monkeypatch):
    output = three_class_field((150, 170), seed)
    reach = steps_to_grow(output, 0.5, 0.6)
    monkeypatch.setattr(blockwise, "GROWTH_REACH", reach)  # each block sees only what growth can reach
    assert 32 + 2 * reach < 150  # so a window is smaller than the plane
    ids = np.zeros(output.shape[1:], np.uint32)
    lookup, scores = BOUNDARY.decode_blocks(output, ids, block=32, size_threshold=size_threshold,
                                            interior_threshold=0.5, foreground_threshold=0.6)
    expected = BOUNDARY.decode(output, size_threshold=size_threshold, interior_threshold=0.5,
                               foreground_threshold=0.6)
    assert expected.count > 30 and np.array_equal(lookup[ids], expected.labels)  # even its numbering and ties
    assert np.allclose(scores, expected.scores, atol=1e-6)
    monkeypatch.setattr(blockwise, "GROWTH_REACH", reach // 3)  # pixels further than the reach can differ
    lookup, _ = BOUNDARY.decode_blocks(output, ids, block=32, size_threshold=size_threshold,
                                       interior_threshold=0.5, foreground_threshold=0.6)
    assert not np.array_equal(lookup[ids], expected.labels)


def same_tables(rows, reference, labels, reference_labels) -> bool:
    """CSV rows (objects or tracks) that describe the same objects as ``reference``, whatever the ids: ids are
    translated through the label images' pixels, numbers compared to their last rounded digit."""
    pairs = np.unique(np.stack([labels.ravel(), reference_labels.ravel()]), axis=1)
    translate = {str(a): str(b) for a, b in pairs.T}
    translate[""] = ""

    def key(row):
        return int(row.get("frame") or 0), int(row.get("label", row.get("track_id")))

    renamed = sorted(({k: translate[v] if k in ("label", "track_id", "parent") else v for k, v in row.items()}
                      for row in rows), key=key)
    reference = sorted(reference, key=key)
    return len(renamed) == len(reference) and all(
        a.keys() == b.keys() and all(a[k] == b[k] or np.isclose(float(a[k]), float(b[k]), atol=1e-4) for k in a)
        for a, b in zip(renamed, reference))


@pytest.fixture(scope="module")
def boundary_model_path(tmp_path_factory):
    """A tiny random-weight 3-class model: the method of the starters."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = new_model("boundary", None, {"depth": 2, "width": 8}, in_channels=1)
    model.decode_defaults = {"interior_threshold": 0.35, "foreground_threshold": 0.35}  # its p are about 1/3
    return str(save_model(model, tmp_path_factory.mktemp("model") / "boundary.safetensors"))


@pytest.mark.parametrize("method", ["coloring", "boundary"])
def test_out_of_core_route_equals_in_memory_route(method, request, tmp_path, monkeypatch):
    model_path = request.getfixturevalue({"coloring": "model_path", "boundary": "boundary_model_path"}[method])
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "wide.tif", blobs((200, 270), 5, sigma=5, scale=60000), tile=(64, 64))
    rgb = (np.stack([blobs((90, 140), 6)] * 3, -1) // 8).astype(np.uint8)
    tifffile.imwrite(folder / "rgbt.tif", np.stack([rgb, rgb[::-1]]), photometric="rgb", metadata={"axes": "TYXS"})
    moving = blobs((70, 100), 7, sigma=5, scale=60000)
    tifffile.imwrite(folder / "zstack.tif", np.stack([np.roll(moving, z, axis=1) for z in range(3)]),
                     photometric="minisblack", metadata={"axes": "ZYX"})
    tifffile.imwrite(folder / "movie.tif", np.stack([np.roll(moving, 2 * t, axis=1) for t in range(3)]),
                     photometric="minisblack", metadata={"axes": "TYX"})
    monkeypatch.setattr(tiling, "MARGIN", 16)  # small tiles keep the test fast: cores of 32 px
    monkeypatch.setattr(tiling, "DECODE_BLOCK", 100)  # decode blocks of 96 px, not a divisor of the image
    common = dict(model=model_path, input=str(folder), tile_size=64)
    results = {}
    for name, megapixels, fmt in [("memory", 100.0, "tif"), ("tiled", 1e-4, "tif"), ("tiled-zarr", 1e-4, "zarr")]:
        events = list(Batch(BatchConfig(output=str(tmp_path / name), large_image_megapixels=megapixels,
                                        format=fmt, **common)).run())
        results[name] = {e.result.file: e.result for e in events if isinstance(e, FileDone)}
    assert {r.route for r in results["tiled"].values()} == {"out-of-core"}
    assert {r.route for r in results["memory"].values()} == {"in-memory"}
    for name in ("wide", "rgbt", "zstack", "movie"):
        in_memory = tifffile.imread(tmp_path / "memory" / f"{name}.tif")
        with tifffile.TiffFile(tmp_path / "tiled" / f"{name}.tif") as tif:
            tiled = tif.series[0].asarray()
            assert tif.pages[0].is_tiled and tif.series[0].axes == {"wide": "YX", "zstack": "ZYX"}.get(name, "TYX")
        store = zarr.open(str(tmp_path / "tiled-zarr" / f"{name}.zarr"), mode="r")
        assert same_up_to_renumbering(tiled, in_memory) and np.array_equal(store[...], tiled)
        if name != "wide":  # stacks: ids in order of first appearance, as in memory
            assert np.array_equal(tiled, in_memory)
        assert results["tiled"][f"{name}.tif"].objects == results["memory"][f"{name}.tif"].objects > 0
        assert results["tiled"][f"{name}.tif"].note == results["memory"][f"{name}.tif"].note  # nothing left out
        for table in ("objects",) + (("tracks",) if name in ("rgbt", "movie") else ()):
            assert same_tables(read_csv(tmp_path / "tiled" / f"{name}_{table}.csv"),
                               read_csv(tmp_path / "memory" / f"{name}_{table}.csv"), tiled, in_memory), (name, table)
    linked = tifffile.imread(tmp_path / "tiled" / "zstack.tif")  # objects followed through the planes
    assert linked.max() < sum(len(np.unique(plane)) - 1 for plane in linked)
    assert len(set(np.unique(linked[0])) & set(np.unique(linked[2])) - {0}) > 0


def test_the_nuclei_starter_segments_a_real_image_out_of_core_as_in_memory(tmp_path, monkeypatch):
    from importlib.resources import files

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "nuclei.tif").write_bytes((files("napari_deepcolor") / "sample_data" / "bbbc039_A02_s1.tif").read_bytes())
    monkeypatch.setattr(tiling, "DECODE_BLOCK", 200)  # 520 x 696 px in blocks of 128 px (the tiles' cores)
    labels = {}
    for route, megapixels in [("in-memory", 100.0), ("out-of-core", 1e-3)]:
        events = list(Batch(BatchConfig(model="nuclei", input=str(folder), output=str(tmp_path / route),
                                        large_image_megapixels=megapixels, tile_size=256)).run())
        assert [e.result.route for e in events if isinstance(e, FileDone)] == [route]
        labels[route] = tifffile.imread(tmp_path / route / "nuclei.tif")
    assert labels["in-memory"].max() > 80  # the A02 image has about a hundred nuclei
    assert np.array_equal(labels["out-of-core"], labels["in-memory"])


def test_out_of_core_refuses_the_merge_radius(model_path, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "big.tif", blobs((64, 64), 0))
    out = tmp_path / "labels"
    code = main(["batch", "--model", model_path, "--input", str(folder), "--output", str(out),
                 "--large-image-mp", "0.001", "--merge-radius", "3"])
    assert code == 1
    assert "does not support merge_radius" in read_summary(out)["big.tif"]["error"]


def test_out_of_core_refuses_a_semantic_head_with_a_way_out(tmp_path):
    model_path = save_model(new_model("coloring", None, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "c.safetensors")
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "big.tif", blobs((64, 64), 2))
    out = tmp_path / "labels"
    assert main(["batch", "--model", str(model_path), "--input", str(folder), "--output", str(out),
                 "--large-image-mp", "0.001"]) == 1
    error = read_summary(out)["big.tif"]["error"]
    assert "semantic head" in error and "--large-image-mp" in error
    assert main(["batch", "--model", str(model_path), "--input", str(folder), "--output", str(out)]) == 0


def test_out_of_core_refuses_methods_without_a_blockwise_decoder(tmp_path):
    model_path = save_model(new_model("semiconv", None, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "s.safetensors")
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "big.tif", blobs((64, 64), 3))
    tifffile.imwrite(folder / "small.tif", blobs((64, 64), 3))
    out = tmp_path / "labels"
    assert main(["batch", "--model", str(model_path), "--input", str(folder), "--output", str(out),
                 "--pattern", "big.tif", "--large-image-mp", "0.001"]) == 1
    assert "the 3-class baseline only (this is a 'semiconv' model)" in read_summary(out)["big.tif"]["error"]
    assert main(["batch", "--model", str(model_path), "--input", str(folder), "--output", str(out),
                 "--pattern", "small.tif"]) == 0


def test_zarr_inputs_plain_and_ome(model_path, tmp_path):
    folder = tmp_path / "images"
    plain = zarr.create_array(store=str(folder / "plain.zarr"), shape=(2, 40, 50), chunks=(1, 40, 50),
                              dtype="uint16", dimension_names=["t", "y", "x"])
    plain[:] = np.stack([blobs((40, 50), 1), blobs((40, 50), 2)])
    group = zarr.open_group(str(folder / "ome.zarr"), mode="w")
    level0 = group.create_array("0", shape=(2, 40, 50), chunks=(1, 40, 50), dtype="uint16")
    level0[:] = np.stack([blobs((40, 50), 3), blobs((40, 50), 4)])
    group.attrs["ome"] = {"multiscales": [{"axes": [{"name": "c"}, {"name": "y"}, {"name": "x"}],
                                           "datasets": [{"path": "0"}]}]}
    out = tmp_path / "labels"
    assert main(["batch", "--model", model_path, "--input", str(folder), "--output", str(out),
                 "--format", "zarr", "--channel", "1"]) == 0  # a grey model sees channel 1 of the OME image
    for name, axes, shape in (("plain", "TYX", (2, 40, 50)), ("ome", "YX", (40, 50))):
        labels = zarr.open(str(out / f"{name}.zarr"), mode="r")
        assert labels.shape == shape and labels.attrs["axes"] == axes and labels.dtype == np.uint8


def test_recursive_inputs_are_mirrored_and_outputs_never_escape(model_path, tmp_path):
    folder, out, elsewhere = tmp_path / "images", tmp_path / "labels", tmp_path / "elsewhere"
    for sub in ("", "a", "b/c", "d"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / sub / "x.tif", blobs((32, 32), 0))
    elsewhere.mkdir()
    out.mkdir()
    (out / "d").symlink_to(elsewhere, target_is_directory=True)  # a link out of the output folder
    assert main(["batch", "--model", model_path, "--input", str(folder), "--output", str(out)]) == 0  # not recursive
    assert [p.relative_to(out).as_posix() for p in outputs(out)] == ["x.tif"]
    assert main(["batch", "--model", model_path, "--input", str(folder), "--output", str(out), "--recursive"]) == 1
    assert [p.relative_to(out).as_posix() for p in outputs(out)] == ["a/x.tif", "b/c/x.tif", "x.tif"]
    assert not any(elsewhere.iterdir())
    assert "outside the output folder" in read_summary(out)["d/x.tif"]["error"]


def test_stop_between_files_cancels_the_rest(model_path, mixed_folder, tmp_path):
    job = Batch(BatchConfig(model=model_path, input=str(mixed_folder), output=str(tmp_path / "labels")))
    events = []
    for event in job.run():
        events.append(event)
        if isinstance(event, FileDone):
            job.stop()
    finished = events[-1]
    assert finished.stopped and finished.count("done") == 1
    assert finished.count("cancelled") == len(GOOD) + len(BAD) - 1
    assert len(outputs(tmp_path / "labels")) == 1
    assert read_summary(tmp_path / "labels")["zero_bytes.tif"]["status"] == "cancelled"


@pytest.mark.parametrize("args, message", [
    (["--model", "missing.safetensors"], "does not exist"),
    (["--size-threshold", "-3"], "outside its range"),
    (["--pattern", "*.png"], "no files matching"),
])
def test_user_errors_stop_the_batch_before_any_work(model_path, mixed_folder, tmp_path, capsys, args, message):
    base = {"--model": model_path, "--input": str(mixed_folder), "--output": str(tmp_path / "labels")}
    base.update(dict(zip(args[::2], args[1::2])))
    assert main(["batch", *[x for kv in base.items() for x in kv]]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "labels").exists()


def test_output_folder_must_differ_from_input(model_path, mixed_folder, capsys):
    assert main(["batch", "--model", model_path, "--input", str(mixed_folder), "--output", str(mixed_folder)]) == 2
    assert "must differ" in capsys.readouterr().err


def test_channels_are_fed_together_only_when_the_model_takes_them():
    assert plan_layout("YXS", (8, 9, 3), np.uint8, 1).channel_axis == 2  # RGB: channels (averaged for grey)
    with pytest.raises(DeepColorError, match=r"2 channels \(0: DAPI, 1: GFP\).*--channel \(0 to 1\)"):
        plan_layout("CYX", (2, 8, 9), np.uint16, 1, channel_names=("DAPI", "GFP"))  # never a silent split
    grey = plan_layout("ZCYX", (3, 2, 8, 9), np.uint16, 1, channel=1)
    assert grey.out_axes == "ZYX" and grey.n_planes == 3
    assert grey.selection(2) == (2, 1, slice(None), slice(None))  # plane 2, channel 1
    assert grey.arrange(np.zeros((8, 9))).shape == (8, 9)
    with pytest.raises(DeepColorError, match=r"no channel 2; .* has 2 channels \(0, 1\)"):
        plan_layout("CYX", (2, 8, 9), np.uint16, 1, channel=2)
    assert plan_layout("TYX", (2, 8, 9), np.uint16, 1, channel=1).out_axes == "TYX"  # no channels: as it is
    with pytest.raises(DeepColorError, match="model takes 2 channels; leave out --channel"):
        plan_layout("CYX", (2, 8, 9), np.uint16, 2, channel=0)
    with pytest.raises(DeepColorError, match="trained on 3"):
        plan_layout("CYX", (2, 8, 9), np.uint16, 3)
    two = plan_layout("CYX", (2, 8, 9), np.uint16, 2)
    assert two.channel_axis == 0 and two.out_axes == "YX"
    stack = plan_layout("TZYXS", (2, 3, 8, 9, 3), np.uint8, 3)
    assert stack.n_planes == 6 and stack.out_shape == (2, 3, 8, 9)
    assert stack.arrange(np.zeros((8, 9, 3))).shape == (8, 9, 3)
    assert plan_layout("YXC", (8, 9, 2), np.uint16, 2).arrange(np.zeros((8, 9, 2))).shape == (8, 9, 2)
    with pytest.raises(DeepColorError, match="pixel type"):
        plan_layout("YX", (8, 9), np.complex64, 1)


def test_cleanup_removes_only_our_temporaries(tmp_path):
    ours = [tmp_path / ".a.tif.k2j3h4.part.tif", tmp_path / ".b.zarr.x8y7.part", tmp_path / ".batch-scratch-q1w2"]
    ours[0].write_bytes(b"half")
    ours[1].mkdir()
    ours[2].mkdir()
    theirs = [tmp_path / ".particles", tmp_path / "a.tif", tmp_path / "notes.part"]
    for path in theirs:
        path.write_text("keep")
    assert sorted(batch.clean_stale_temporaries(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in theirs)


def test_predict_output_reads_a_lazy_image_window_by_window(model_path):
    from napari_deepcolor.checkpoint import load_model

    model = load_model(model_path)
    image = np.random.default_rng(0).random((100, 120, 1)).astype(np.float32)

    class Windows:  # what the out-of-core route hands to predict_output
        shape, reads = image.shape, []

        def __getitem__(self, key):
            self.reads.append(key)
            return image[key]

    lazy = Windows()
    expected = predict_output(model, image, device="cpu", tile_size=64, margin=8)
    assert np.array_equal(predict_output(model, lazy, device="cpu", tile_size=64, margin=8), expected)
    assert len(lazy.reads) > 4 and all((r[0].stop - r[0].start) <= 64 for r in lazy.reads)
