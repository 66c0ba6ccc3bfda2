"""Semantic instances: class annotations in each form, their errors, the class head, the class outputs."""

import csv
import json

import numpy as np
import pytest
import tifffile
import torch

from napari_deepcolor import DeepColorError, synthetic
from napari_deepcolor.checkpoint import load_model, new_model, save_model
from napari_deepcolor.data import from_arrays, read_annotated_folder
from napari_deepcolor.data.classes import class_table_path
from napari_deepcolor.inference import predict
from napari_deepcolor.methods.base import Instances
from napari_deepcolor.methods.classes import class_color_owners, classify_instances
from napari_deepcolor.methods.coloring import assign_colors
from napari_deepcolor.metrics import evaluate_classes
from napari_deepcolor.training import TrainingConfig, train

from .conftest import TINY_NET

NAMES = synthetic.TWO_CLASS_NAMES


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_objects():
    labels = np.zeros((32, 32), np.uint16)
    labels[2:10, 2:10] = 3
    labels[18:28, 18:28] = 7
    classes = np.zeros_like(labels)
    classes[labels == 3] = 2
    classes[labels == 7] = 1
    return labels, classes


def write_dataset(root, *, n=3, form="image", with_json=True):
    """images/, labels/ and classes/ (class images + classes.json, or CSV tables) of the two-class scene."""
    for sub in ("images", "labels", "classes"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, labels, classes = synthetic.round_and_elongated((64, 64), count=6, seed=i)
        tifffile.imwrite(root / "images" / f"im{i}.tif", image)
        tifffile.imwrite(root / "labels" / f"im{i}.tif", labels)
        if form == "image":
            tifffile.imwrite(root / "classes" / f"im{i}.tif", classes)
        else:
            with open(root / "classes" / f"im{i}.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["label", "class"])
                for k in range(1, int(labels.max()) + 1):
                    writer.writerow([k, NAMES[int(classes[labels == k][0]) - 1]])
    if with_json:
        (root / "classes" / "classes.json").write_text(json.dumps({"1": NAMES[0], "2": NAMES[1]}))
    return root


# -- reading class annotations -----------------------------------------------------------------

def test_a_classes_folder_beside_images_and_labels_is_found_by_itself(tmp_path):
    samples = read_annotated_folder(write_dataset(tmp_path))
    assert all(s.has_classes and s.class_names == NAMES for s in samples)
    image, labels, classes = synthetic.round_and_elongated((64, 64), count=6, seed=0)
    assert np.array_equal(samples[0].classes, classes)
    assert samples[0].object_classes[0] == 0 and set(samples[0].object_classes[1:]) <= {1, 2}


def test_csv_tables_of_instance_and_class_name_read_like_class_images(tmp_path):
    from_images = read_annotated_folder(write_dataset(tmp_path / "a"))
    from_tables = read_annotated_folder(write_dataset(tmp_path / "b", form="csv", with_json=False))
    assert from_tables[0].class_names == tuple(sorted(NAMES))  # without classes.json: the tables' names, sorted
    for a, b in zip(from_images, from_tables):
        assert [a.class_names[c - 1] for c in a.object_classes[1:]] == \
            [b.class_names[c - 1] for c in b.object_classes[1:]]


def test_an_explicit_classes_folder_is_used_for_any_layout(tmp_path):
    root = write_dataset(tmp_path / "data")
    moved = tmp_path / "elsewhere"
    (root / "classes").rename(moved)
    assert not read_annotated_folder(root)[0].has_classes  # one class, as before
    assert read_annotated_folder(root, classes=moved)[0].has_classes


def test_from_arrays_takes_class_images_and_keeps_the_instance_ids_in_messages():
    labels, classes = two_objects()
    sample = from_arrays(np.random.default_rng(0).random((32, 32)), labels, classes=classes, class_names=("a", "b"))[0]
    assert sample.object_classes.tolist() == [0, 2, 1]  # ids renumbered 3 -> 1, 7 -> 2
    classes[20, 20] = 2
    with pytest.raises(DeepColorError, match="instance.* 7 have two or more classes"):
        from_arrays(np.zeros((32, 32)), labels, classes=classes, class_names=("a", "b"))


# -- bad class annotations give clear errors ---------------------------------------------------

def test_a_class_id_without_a_name_is_refused(tmp_path):
    labels, classes = two_objects()
    classes[labels == 7] = 3
    with pytest.raises(DeepColorError, match="class id.* 3 have no name"):
        from_arrays(np.zeros((32, 32)), labels, classes=classes, class_names=("a", "b"))
    root = write_dataset(tmp_path, with_json=False)
    with pytest.raises(DeepColorError, match="no classes.json"):
        read_annotated_folder(root)


def test_classes_in_some_images_and_not_others_are_refused(tmp_path):
    root = write_dataset(tmp_path)
    (root / "classes" / "im1.tif").unlink()
    with pytest.raises(DeepColorError, match="some images and not others.*im1"):
        read_annotated_folder(root)
    labels, classes = two_objects()
    with pytest.raises(DeepColorError, match="some images and not others"):
        from_arrays([np.zeros((32, 32))] * 2, [labels, labels], classes=[classes, None], class_names=("a", "b"))


def test_an_instance_missing_from_a_csv_or_with_two_rows_is_refused(tmp_path):
    root = write_dataset(tmp_path, form="csv", with_json=False)
    table = root / "classes" / "im0.csv"
    rows = table.read_text().splitlines()
    table.write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(DeepColorError, match="have no class"):
        read_annotated_folder(root)
    table.write_text("\n".join(rows + [rows[1].split(",")[0] + ",other"]) + "\n")
    with pytest.raises(DeepColorError, match="two classes"):
        read_annotated_folder(root)


# -- the class head and class-specific colours -------------------------------------------------

def test_colours_are_divided_among_the_classes_in_blocks():
    assert class_color_owners(9, 2).tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert class_color_owners(8, 3).tolist() == [0, 1, 1, 1, 2, 2, 3, 3]
    with pytest.raises(DeepColorError, match="Raise n_colors"):
        class_color_owners(5, 3)


def test_each_object_takes_a_colour_of_its_own_class():
    labels, classes = two_objects()
    labels = torch.from_numpy((labels > 0) * np.where(labels == 3, 1, 2)).long()[None]
    raw = torch.randn(1, 9, 32, 32)
    raw[:, 6] += 5  # colour 6 (class 2's) is the most likely everywhere
    colors, _ = assign_colors(raw, labels, torch.zeros_like(labels, dtype=torch.bool),
                              torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), halo_weight=7.0,
                              classes=torch.from_numpy(classes.astype(np.int64))[None], n_classes=2)
    owners = class_color_owners(9, 2)
    assert owners[colors[0]] == 2 and owners[colors[1]] == 1  # object 1 is class 2, object 2 is class 1


def test_the_class_of_an_instance_is_the_argmax_of_its_mean_class_probability():
    labels = np.array([[1, 1, 2, 2]])
    p = np.array([[[0.1, 0.1, 0.0, 0.0]], [[0.6, 0.2, 0.1, 0.3]], [[0.3, 0.7, 0.9, 0.7]]])
    classes, scores = classify_instances(labels, p)
    assert classes.tolist() == [2, 2] and scores == pytest.approx([0.5, 0.8])


def test_class_names_are_kept_in_the_model_file_and_add_a_head(tmp_path):
    model = new_model("coloring", {}, TINY_NET, 1, class_names=NAMES)
    assert model.net_config.out_channels == 9 + 3 + 3 and model.method_channels == 12
    save_model(model, tmp_path / "m.safetensors")
    again = load_model(tmp_path / "m.safetensors")
    assert again.class_names == NAMES and again.net_config.out_channels == 15
    plain = new_model("coloring", {}, TINY_NET, 1)
    assert plain.class_names == () and "class_names" not in plain.config()


# -- training on the two-class scene ------------------------------------------------------------

@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    scenes = [synthetic.round_and_elongated((96, 96), count=10, seed=s) for s in range(4)]
    samples = from_arrays([s[0] for s in scenes], [s[1] for s in scenes], classes=[s[2] for s in scenes],
                          class_names=NAMES)
    config = TrainingConfig(method="coloring", method_options={"halo_margin": 5}, net=TINY_NET, patch_size=64,
                            batch_size=4, iterations=150, learning_rate=3e-3, validation_fraction=0.0, device="cpu",
                            seed=0, augment=False, net_object_diameter=None)
    path = tmp_path_factory.mktemp("classes") / "two.safetensors"
    train(config, samples, output=path)
    return path


def test_a_model_trained_on_the_two_class_scene_recovers_both_classes(class_model):
    model = load_model(class_model)
    image, labels, classes = synthetic.round_and_elongated((96, 96), count=10, seed=11)
    prediction = predict(model, image)
    truth = from_arrays(image, labels, classes=classes, class_names=NAMES)[0]
    # the class head on the true objects: it must tell the two classes apart
    on_truth = prediction.with_classes(Instances(truth.labels, np.zeros(truth.num_objects, np.float32)))
    assert np.mean(on_truth.classes == truth.object_classes[1:]) >= 0.8
    instances = prediction.decode()
    assert instances.count > 0 and set(instances.classes.tolist()) == {1, 2}
    scores = evaluate_classes(truth.labels, instances.labels, gt_classes=truth.object_classes,
                              pred_classes=np.r_[0, instances.classes], class_names=NAMES)
    assert scores["class_accuracy"] >= 0.8
    # no validation images: nothing to choose an object classifier on, so the pixel head stays, and says why
    assert model.object_classifier is None and "no validation images" in model.provenance["object_classes"]["skipped"]


def test_batch_writes_a_class_table_that_agrees_with_the_labels_and_the_features(class_model, tmp_path):
    from napari_deepcolor._napari.layers import class_features
    from napari_deepcolor.batch import Batch, BatchConfig, BatchFinished

    (tmp_path / "in").mkdir()
    image, _, _ = synthetic.round_and_elongated((96, 96), count=10, seed=12)
    tifffile.imwrite(tmp_path / "in" / "a.tif", image)
    events = list(Batch(BatchConfig(model=str(class_model), input=str(tmp_path / "in"),
                                    output=str(tmp_path / "out"))).run())
    finished = events[-1]
    assert isinstance(finished, BatchFinished)
    labels = tifffile.imread(tmp_path / "out" / "a.tif")
    with open(class_table_path(tmp_path / "out" / "a.tif"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["label"]) for r in rows] == list(range(1, int(labels.max()) + 1))
    assert {r["class"] for r in rows} <= set(NAMES) and all(0 <= float(r["score"]) <= 1 for r in rows)
    with open(tmp_path / "out" / "batch_summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))[0]
    for name in NAMES:
        assert int(summary[f"objects_{name}"]) == sum(r["class"] == name for r in rows)
    features = class_features(predict(load_model(class_model), image), labels)
    assert features["index"].tolist() == [int(r["label"]) for r in rows]
    assert features["class"].tolist() == [r["class"] for r in rows]


def test_a_one_class_model_writes_no_class_table(tmp_path):
    from napari_deepcolor.batch import Batch, BatchConfig

    model = new_model("boundary", {}, TINY_NET, 1)
    save_model(model, tmp_path / "m.safetensors")
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", synthetic.nuclei((64, 64), count=4, seed=0)[0])
    list(Batch(BatchConfig(model=str(tmp_path / "m.safetensors"), input=str(tmp_path / "in"),
                           output=str(tmp_path / "out"))).run())
    assert (tmp_path / "out" / "a.tif").is_file() and not class_table_path(tmp_path / "out" / "a.tif").exists()
    with open(tmp_path / "out" / "batch_summary.csv", newline="") as f:
        assert not any(k.startswith("objects_") for k in csv.DictReader(f).fieldnames)


# -- metrics -------------------------------------------------------------------------------------

def test_per_class_ap_f1_and_class_accuracy():
    gt = np.array([[1, 1, 0, 2, 2, 0, 3, 3]])
    scores = evaluate_classes(gt, gt, gt_classes=np.array([0, 1, 2, 2]), pred_classes=np.array([0, 1, 2, 1]),
                              class_names=("a", "b"))
    assert scores["class_accuracy"] == pytest.approx(2 / 3) and scores["n_matched"] == 3
    assert scores["ap_a"] == pytest.approx(0.5) and scores["f1_b"] == pytest.approx(2 / 3)
    assert scores["n_gt_b"] == 2 and scores["n_pred_b"] == 1
