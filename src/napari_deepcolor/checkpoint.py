"""Kept so that ``from napari_deepcolor.checkpoint import ...`` keeps working: model files now live in
:mod:`napari_deepcolor.models` (the file format in :mod:`~napari_deepcolor.models.files`, model
arguments such as starter names and packages in :mod:`~napari_deepcolor.models.sources`)."""

from .models.files import (FORMAT, FORMAT_VERSION, Model, load_training_state, new_model,
                           read_training_progress, save_model, save_training_state, state_path)
from .models.sources import load_model, model_file, read_model_config

__all__ = ["FORMAT", "FORMAT_VERSION", "Model", "load_model", "load_training_state", "model_file",
           "new_model", "read_model_config", "read_training_progress", "save_model", "save_training_state",
           "state_path"]
