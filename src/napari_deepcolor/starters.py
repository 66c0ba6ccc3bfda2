"""Kept so that ``from napari_deepcolor.starters import ...`` keeps working: the starter models now live in
:mod:`napari_deepcolor.models.starters`."""

from .models.sources import looks_like_name, resolve_model_source
from .models.starters import (PREFERRED_ORDER, SUFFIX, describe_starter, starter_card,
                              starter_names, starter_path, starters_folder, unknown_model_message)

__all__ = ["PREFERRED_ORDER", "SUFFIX", "describe_starter", "looks_like_name", "resolve_model_source",
           "starter_card", "starter_names", "starter_path", "starters_folder", "unknown_model_message"]
