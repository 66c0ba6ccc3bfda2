"""bioimage.io export: the package validates with bioimageio.spec, passes bioimageio.core's model test
(offline), and reads back through load_model as the same model with identical labels."""

import zipfile

import numpy as np
import pytest

from napari_deepcolor import synthetic
from napari_deepcolor.checkpoint import load_model, new_model, save_model
from napari_deepcolor.errors import DeepColorError

from .conftest import skip_or_fail_in_ci


@pytest.fixture(autouse=True, scope="module")
def bioimageio_extra():
    """The bioimageio extra is part of the testing extra: without it the tests skip, and fail in CI."""
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        skip_or_fail_in_ci(f'the bioimageio extra is missing ({exc}): pip install -e ".[testing]"')


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from napari_deepcolor.bioimageio import export_bioimageio

    folder = tmp_path_factory.mktemp("bioimageio")
    model = new_model("boundary", None, {"depth": 2, "width": 8}, in_channels=1,
                      decode_defaults={"interior_threshold": 0.3, "size_threshold": 5},
                      object_scale={"object_diameter": 15.0, "net_object_diameter": 30.0})
    path = save_model(model, folder / "tiny.safetensors")
    return path, export_bioimageio(path, folder / "tiny.zip")


def test_the_package_validates_and_passes_the_bioimageio_model_test(exported):
    from bioimageio.core import test_model

    from napari_deepcolor.bioimageio import validate_package

    _, package = exported
    validate_package(package)
    summary = test_model(str(package))
    assert summary.status == "passed", summary


def test_the_package_holds_rdf_weights_test_tensors_cover_and_our_config(exported):
    import yaml

    _, package = exported
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
    assert {"rdf.yaml", "weights.torchscript.pt", "test_input.npy", "test_output.npy", "cover.png"} <= names
    assert rdf["format_version"].startswith("0.5") and "torchscript" in rdf["weights"]
    ours = rdf["config"]["napari_deepcolor"]
    assert ours["method"] == "boundary" and ours["decode_parameters"]["interior_threshold"] == 0.3
    assert ours["object_scale"]["net_object_diameter"] == 30.0
    assert any("1807.10007" in (c.get("url") or "") for c in rdf["cite"])


def test_the_importer_reads_the_package_back_with_identical_labels(exported):
    path, package = exported
    original, imported = load_model(path), load_model(package)
    assert imported.method_name == original.method_name and imported.decode_defaults == original.decode_defaults
    assert imported.object_scale == original.object_scale
    from napari_deepcolor.inference import predict

    image = synthetic.nuclei((96, 96), count=8, seed=1)[0]
    a, b = predict(original, image, device="cpu"), predict(imported, image, device="cpu")
    assert np.array_equal(a.output, b.output)
    assert np.array_equal(a.decode().labels, b.decode().labels)


def test_a_zip_that_is_not_our_package_is_a_clear_error(tmp_path):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("rdf.yaml", "type: model\n")
    with pytest.raises(DeepColorError, match="not a bioimage.io package exported by napari-deepcolor"):
        load_model(other)
