"""napari-deepcolor: proposal-free instance segmentation you can train in napari.

Importing this package is cheap: it imports neither Qt nor torch. The public
API is loaded on first use.
"""

from importlib import import_module

__version__ = "0.1.0"

from .errors import DeepColorError

_LAZY = {
    # name: module that defines it
    "evaluate": "napari_deepcolor.metrics",
}

__all__ = ["DeepColorError", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'napari_deepcolor' has no attribute {name!r}")
