import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from napari_deepcolor import synthetic
from napari_deepcolor.data import from_arrays

#: the environment variable that points the tests at the real data sets (see ../shared/data/README.md)
DATA_VARIABLE = "NAPARI_DEEPCOLOR_DATA"
#: where the real data sits when the variable is not set: ``shared/data`` beside the clone
BESIDE_THE_CLONE = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_NET = {"depth": 2, "width": 8}


def in_ci() -> bool:
    """CI has the data and a display: there a test that cannot get them fails instead of skipping."""
    return bool(os.environ.get("CI"))


def skip_or_fail_in_ci(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI is set: CI must run every test)")
    pytest.skip(reason)


def real_data_folder() -> tuple[Path, str]:
    """The folder of the real data sets and where that answer came from."""
    if os.environ.get(DATA_VARIABLE):
        return Path(os.environ[DATA_VARIABLE]), f"${DATA_VARIABLE}"
    return BESIDE_THE_CLONE, f"../shared/data beside the clone, as ${DATA_VARIABLE} is not set"


@contextmanager
def torch_threads(count: int):
    """Torch on ``count`` threads inside the block, the earlier number after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two shared cores: tiny nets run fastest on one thread (a module asks for it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def nuclei_samples():
    """Three small synthetic annotated images."""
    pairs = [synthetic.nuclei((96, 96), count=12, radius=(6, 9), seed=s) for s in range(3)]
    return from_arrays([p[0] for p in pairs], [p[1] for p in pairs])


@pytest.fixture(scope="session")
def shared_data():
    """The real data sets: ``$NAPARI_DEEPCOLOR_DATA``, else ``../shared/data``; the test skips without them."""
    folder, source = real_data_folder()
    if not folder.is_dir():
        skip_or_fail_in_ci(f"real data not found at {folder} ({source}); set {DATA_VARIABLE} to the folder "
                           "holding bbbc039/, bbbc010/, usiigaci/ ... to run this test")
    return folder
