"""Segmenting one image the way a user gets it: the net, the decode, and the refinement the model chose.

The model file says whether the instance CRF and test-time flips are applied
(:meth:`~napari_deepcolor.models.Model.refinement`, chosen on its
validation images by :func:`~napari_deepcolor.tuning.choose_refinement`);
what the caller gives overrides it.
"""

from __future__ import annotations

import numpy as np

from .inference import predict
from .methods.base import Instances
from .models.files import Model


def segment(model: Model, image: np.ndarray, *, decode: dict | None = None, refine: str | None = None,
            flips: bool | None = None, **predict_options) -> Instances:
    """Instances of a 2D image (or stack, as :func:`~napari_deepcolor.inference.predict` takes it).

    ``decode``: decode parameters over the model's tuned ones; ``refine`` ("none" or "crf") and
    ``flips``: None for the model's choice; ``predict_options``: passed to
    :func:`~napari_deepcolor.inference.predict` (``device``, ``object_diameter``, ``stack``, ...).
    """
    if refine is not None:
        from .refine import check_refinement

        check_refinement(refine)
    refine, flips = model.refinement(refine, flips)
    prediction = predict(model, image, flips=flips, **predict_options)
    instances = prediction.decode(**(decode or {}))
    if refine == "crf":
        from .refine import refine_prediction

        instances = refine_prediction(prediction, image, instances)
    return instances
