"""Fixtures of the viewer tests: a real napari viewer (napari's own pytest plugin) under Xvfb.

The tests drive the widgets as a user would, through the plugin manifest, and
wait for their workers with ``qtbot.waitUntil``.
"""

import re
import subprocess
import sys

import numpy as np
import pytest

from napari_deepcolor import synthetic
from napari_deepcolor.methods import get_method

from ..conftest import skip_or_fail_in_ci, torch_threads

PLUGIN = "napari-deepcolor"
TINY_NET = {"depth": 2, "width": 8}
#: the decode parameters deep coloring declares (its sliders)
COLORING_DECODE = {p.name for p in get_method("coloring").decode_parameters}


#: a separate Python that starts Qt: without a display or the Qt system libraries Qt aborts the whole process
QT_PROBE = "from qtpy.QtWidgets import QApplication; app = QApplication([]); print('qt ok')"


@pytest.fixture(scope="session", autouse=True)
def display():
    """Skip the viewer tests, with the reason, when Qt cannot start here (outside CI; in CI they fail).

    Qt that finds no display (pytest-xvfb needs the Xvfb program) or misses its
    system libraries aborts the interpreter ("Fatal Python error: Aborted"),
    which would end the whole test run; a probe in a child process finds out first.
    """
    try:
        probe = subprocess.run([sys.executable, "-c", QT_PROBE], capture_output=True, text=True, timeout=120)
        ok, detail = probe.returncode == 0 and "qt ok" in probe.stdout, _reason(probe.stderr)
    except subprocess.TimeoutExpired:
        ok, detail = False, "Qt did not start within 120 s"
    if not ok:
        skip_or_fail_in_ci(f"the viewer tests need a display and Qt could not start ({detail or 'it aborted'}); "
                           "install Xvfb and the Qt system libraries (README, Tests: scripts/install-test-system-"
                           "packages.sh) or run them on a desktop")


def _reason(stderr: str) -> str:
    """The line of Qt's complaint that says what is missing (e.g. "could not connect to display")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    telling = [line for line in lines if re.search(r"could not|cannot|failed|not found|no such", line, re.I)]
    return (telling or lines or [""])[0]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_for_the_session():
    """Two shared CPU cores: torch's thread pool fighting other processes makes each step ~50x slower."""
    with torch_threads(1):
        yield


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


@pytest.fixture(autouse=True)
def fresh_widget_session():
    """Each test starts with no decode values remembered between widgets (the session is a module global)."""
    from napari_deepcolor._napari._session import session

    session._decode_values.clear()
    yield
    session._decode_values.clear()
