import pytest

from napari_deepcolor import synthetic
from napari_deepcolor.data import from_arrays

SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_NET = {"depth": 2, "width": 8}


@pytest.fixture(scope="session")
def nuclei_samples():
    """Three small synthetic annotated images."""
    pairs = [synthetic.nuclei((96, 96), count=12, radius=(6, 9), seed=s) for s in range(3)]
    return from_arrays([p[0] for p in pairs], [p[1] for p in pairs])


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED.is_dir():
        pytest.fail(f"the shared data folder {SHARED} is missing; the realistic tests need it")
    return SHARED
