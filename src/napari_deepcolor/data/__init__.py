"""Annotated datasets: reading folder layouts and napari layers, normalisation, patch sampling.

Library code only (numpy, scipy, scikit-image, tifffile, Pillow): no Qt, no torch.
"""

from .augment import Augmentation
from .dataset import combine_object_masks, describe_layout, from_arrays, read_annotated_folder
from .io import read_image, read_labels, read_object_masks, write_labels
from .layouts import DatasetLayout, detect_layout
from .normalize import as_channels_last, normalize_percentile
from .sample import AnnotatedImage, relabel_consecutive
from .sampling import Patch, PatchSampler, split_train_validation

__all__ = [
    "AnnotatedImage",
    "Augmentation",
    "DatasetLayout",
    "Patch",
    "PatchSampler",
    "as_channels_last",
    "combine_object_masks",
    "describe_layout",
    "detect_layout",
    "from_arrays",
    "normalize_percentile",
    "read_annotated_folder",
    "read_image",
    "read_labels",
    "read_object_masks",
    "relabel_consecutive",
    "split_train_validation",
    "write_labels",
]
