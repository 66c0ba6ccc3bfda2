"""Models: where they come from and how they are stored.

* :mod:`.files`: the model file format (safetensors weights + JSON configuration),
  :class:`Model`, new models, saving, and the training state saved beside a model;
  it reads paths only and knows nothing of starters or packages.
* :mod:`.starters`: the starter models shipped with the package, by name.
* :mod:`.bioimageio_export` and :mod:`.bioimageio_import`: bioimage.io packages,
  written and read back (only our own model file inside is read).
* :mod:`.sources`: :func:`load_model` (and :func:`model_file`, :func:`read_model_config`)
  turns any model argument (a path, a starter name, a package) into a model; a new
  kind of source is added there.
"""

from .bioimageio_export import export_bioimageio, validate_package
from .files import (FORMAT, FORMAT_VERSION, Model, load_model_file, load_training_state, new_model,
                    read_model_file_config, read_training_progress, save_model, save_training_state, state_path)
from .sources import load_model, model_file, read_model_config
from .starters import describe_starter, starter_card, starter_names, starter_path

__all__ = ["FORMAT", "FORMAT_VERSION", "Model", "describe_starter", "export_bioimageio", "load_model",
           "load_model_file", "load_training_state", "model_file", "new_model", "read_model_config",
           "read_model_file_config", "read_training_progress", "save_model", "save_training_state",
           "starter_card", "starter_names", "starter_path", "state_path", "validate_package"]
