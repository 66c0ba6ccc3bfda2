"""Model files: round trip, no code execution, clear errors."""

import json

import pytest
import torch

from napari_deepcolor import DeepColorError
from napari_deepcolor.checkpoint import load_model, new_model, read_model_config, save_model


def test_round_trip_keeps_weights_and_configuration(tmp_path):
    model = new_model("coloring", {"n_colors": 6, "halo_margin": 9}, {"depth": 2, "width": 8}, in_channels=3,
                      decode_defaults={"size_threshold": 33})
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.method_options.n_colors == 6 and loaded.method_options.halo_margin == 9
    assert loaded.net_config == model.net_config
    assert loaded.decode_parameters() == {"size_threshold": 33, "merge_radius": 0, "interior_threshold": 0.5,
                                         "split_by_color": 1, "foreground_threshold": 0.5}
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, loaded.net.state_dict()[k])


def test_the_file_is_safetensors_with_json_config_and_no_pickle(tmp_path):
    path = save_model(new_model("boundary", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    raw = path.read_bytes()
    header_size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_size])
    assert json.loads(header["__metadata__"]["napari_deepcolor"])["method"] == "boundary"
    assert b"\x80\x04" not in raw[:8 + header_size]  # no pickle protocol marker in the header
    assert read_model_config(path)["net"]["depth"] == 2


@pytest.mark.parametrize("content, words", [
    (b"", "not a napari-deepcolor model"),
    (b"this is not a model", "not a napari-deepcolor model"),
])
def test_corrupt_files_are_clear_errors(tmp_path, content, words):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(DeepColorError, match=words):
        load_model(path)


def test_truncated_model_file_is_a_clear_error(tmp_path):
    path = save_model(new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DeepColorError):
        load_model(path)


def test_missing_file_says_how_to_get_one(tmp_path):
    with pytest.raises(DeepColorError, match="train"):
        load_model(tmp_path / "nope.safetensors")


def test_safetensors_without_our_config_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(DeepColorError, match="not a napari-deepcolor model"):
        load_model(path)


def test_a_model_of_an_older_output_layout_says_to_retrain(tmp_path):
    from napari_deepcolor.checkpoint import Model
    from napari_deepcolor.nets import NetConfig, build_net

    # deep metric learning before its foreground head: embedding (8) + seediness (4) channels
    old = Model("metric", new_model("metric", {}, {"depth": 2, "width": 4}, 1).method_options,
                build_net(NetConfig(in_channels=1, out_channels=12, depth=2, width=4)))
    path = save_model(old, tmp_path / "old.safetensors")
    with pytest.raises(DeepColorError, match="older version.*12 output channels.*needs 13.*Retrain"):
        load_model(path)
