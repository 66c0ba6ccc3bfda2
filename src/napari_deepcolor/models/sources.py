"""Where a model comes from: one model argument (a path, a starter name or a package) to one model.

A model argument is resolved here, in one place, to the safetensors file
behind it, which :mod:`.files` then reads:

* a bare word such as ``nuclei`` (no folder, no suffix, not a file here) is a
  starter model (:mod:`.starters`);
* a ``.zip`` is a bioimage.io package exported by napari-deepcolor; its model
  file is copied out of it (:mod:`.bioimageio_import`);
* anything else is the path of a model file.

A new kind of source (a URL, a model-zoo id) is one more branch of
:func:`model_file` that returns a local model file; nothing else changes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .files import Model, load_model_file, read_model_file_config


def looks_like_name(source) -> bool:
    """A bare word such as ``nuclei`` (no folder, no suffix) that is not a file here: a starter name."""
    text = str(source)
    return not Path(text).exists() and "/" not in text and "\\" not in text and Path(text).suffix == ""


def resolve_model_source(source) -> Path:
    """The file behind a model argument: a starter's file for a starter name, else the path itself."""
    from .starters import starter_path

    return starter_path(str(source)) if looks_like_name(source) else Path(source)


def model_file(source) -> Path:
    """The safetensors file behind a model argument, which may be a file, a starter name
    (``nuclei``, see :mod:`napari_deepcolor.models.starters`) or a bioimage.io ``.zip`` written by
    :func:`napari_deepcolor.models.export_bioimageio` (its model file is read from the package)."""
    path = resolve_model_source(source)
    if path.suffix.lower() == ".zip":
        from .bioimageio_import import model_file_in_package

        return model_file_in_package(path)
    return path


def read_model_config(source) -> dict:
    """The JSON configuration of a model file (or starter name, or exported .zip), without loading weights."""
    return read_model_file_config(model_file(source))


def load_model(source, *, device: str | torch.device = "cpu") -> Model:
    """Load a model file, starter name or exported bioimage.io .zip (weights and configuration);
    never executes code from the file."""
    return load_model_file(model_file(source), device=device)
