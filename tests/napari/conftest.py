"""Fixtures of the viewer tests: a real napari viewer (napari's own pytest plugin) under Xvfb.

The tests drive the widgets as a user would, through the plugin manifest, and
wait for their workers with ``qtbot.waitUntil``.
"""

import numpy as np
import pytest

from napari_deepcolor import synthetic
from napari_deepcolor.methods import get_method

PLUGIN = "napari-deepcolor"
TINY_NET = {"depth": 2, "width": 8}
#: the decode parameters deep coloring declares (its sliders)
COLORING_DECODE = {p.name for p in get_method("coloring").decode_parameters}


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Two shared CPU cores: torch's thread pool fighting other processes makes each step ~50x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A deep coloring model with a tiny net, trained for a few steps (it only needs to find some objects)."""
    from napari_deepcolor.data import from_arrays
    from napari_deepcolor.training import TrainingConfig, train

    pairs = [synthetic.nuclei((128, 128), count=16, radius=(6, 9), seed=s) for s in range(2)]
    data = from_arrays([p[0] for p in pairs], [p[1] for p in pairs])
    config = TrainingConfig(method="coloring", method_options={"halo_margin": 5}, net=TINY_NET, patch_size=64,
                            batch_size=2, iterations=40, learning_rate=3e-3, validation_fraction=0.0, device="cpu",
                            augment=False)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    train(config, data, output=path)
    return path


@pytest.fixture
def notifications(monkeypatch):
    """The messages napari-deepcolor shows as napari notifications during a test (level, text)."""
    from napari.utils import notifications as napari_notifications

    shown = []
    for level in ("error", "warning", "info"):
        original = getattr(napari_notifications, f"show_{level}")

        def record(message, *, _level=level, _original=original):
            shown.append((_level, str(message)))
            _original(message)

        monkeypatch.setattr(napari_notifications, f"show_{level}", record)
    return shown


def errors(shown):
    return [text for level, text in shown if level == "error"]


def add_widget(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def nuclei_layers(viewer, shape=(160, 160), count=20):
    image, labels = synthetic.nuclei(shape, count=count, radius=(6, 9), seed=3)
    return viewer.add_image(image, name="nuclei"), viewer.add_labels(labels.astype(np.int32), name="nuclei labels")
