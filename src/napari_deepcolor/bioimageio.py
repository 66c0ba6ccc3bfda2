"""Kept so that ``from napari_deepcolor.bioimageio import ...`` keeps working: bioimage.io packages are now
written by :mod:`napari_deepcolor.models.bioimageio_export` and read by
:mod:`napari_deepcolor.models.bioimageio_import`."""

from .models.bioimageio_export import (PACKAGE_CITATION, TEST_SIZE, UNET_CITATION,
                                       export_bioimageio, validate_package)
from .models.bioimageio_import import MODEL_ATTACHMENT, is_our_package, model_file_in_package

__all__ = ["MODEL_ATTACHMENT", "PACKAGE_CITATION", "TEST_SIZE", "UNET_CITATION", "export_bioimageio",
           "is_our_package", "model_file_in_package", "validate_package"]
