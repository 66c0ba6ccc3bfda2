"""Refinement stages that run after a method's decode: the instance CRF of Arnab and Torr (2017).

The net does not run again: refinement reads the cached output of a
:class:`~napari_deepcolor.inference.Prediction` (for the foreground Q), the
decoded instances (the label set) and the image (the appearance kernel).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..errors import DeepColorError

log = logging.getLogger(__name__)

#: the refinement names the CLI and the widgets offer; "none" keeps the decoded labels
REFINEMENTS = ("none", "crf")


def supports_crf(method) -> bool:
    """Whether ``method`` has a foreground output for the CRF's unaries (:meth:`Method.foreground`)."""
    from ..methods.base import Method

    return type(method).foreground is not Method.foreground


def check_crf_supported(method_name: str) -> None:
    """An error unless the method ``method_name`` has a foreground output for the CRF to refine."""
    from ..methods import get_method

    if not supports_crf(get_method(method_name)):
        raise DeepColorError(f"fit_crf needs a method with a foreground output to refine; '{method_name}' has "
                             "none. Turn fit_crf off or choose coloring, boundary, dcme or semiconv.")


def check_refinement(name: str) -> str:
    """``name`` if it is a known refinement; otherwise an error that lists them."""
    if name not in REFINEMENTS:
        raise DeepColorError(f"unknown refinement '{name}'; choose one of: {', '.join(REFINEMENTS)}.")
    return name


#: the key of a model's ``crf`` dict that says its lengths are in the net's pixels (files before it: in
#: the pixels of the training images)
LENGTHS_KEY = "lengths_in"
NET_PIXELS = "net pixels"


def crf_parameters(model, scale_factor: float | None = None, *, quiet: bool = False):
    """The model's fitted CRF parameters, or the defaults (with a log message) for a model without, with
    their lengths in the pixels of an image the net saw enlarged ``scale_factor`` times (default: the
    training images' factor, :meth:`Model.scale_factor`).

    The window, reach and bandwidths are lengths: stored in the net's pixels (objects of the net's
    object diameter), they carry over to images of any resolution. The defaults are in net pixels too.
    """
    in_net_pixels = net_crf_parameters(model, quiet=quiet)
    factor = model.scale_factor() if scale_factor is None else scale_factor
    return in_net_pixels.rescaled(1 / factor)


def net_crf_parameters(model, *, quiet: bool = False):
    """The model's CRF parameters with their lengths in the net's pixels."""
    from .crf import CrfParameters

    if not model.crf:
        if not quiet:
            log.info("this model has no fitted CRF weights; refining with the defaults (train with the CRF fit "
                     "enabled to fit them on your annotations)")
        return CrfParameters()
    stored = dict(model.crf)
    if stored.pop(LENGTHS_KEY, None) == NET_PIXELS:
        return CrfParameters.from_dict(stored)
    return CrfParameters.from_dict(stored).rescaled(model.scale_factor())  # fitted on the training images


def store_crf_parameters(model, parameters, scale_factor: float) -> None:
    """Store fitted ``parameters`` (lengths in the pixels of images enlarged ``scale_factor`` times) in the
    model, their fitted lengths converted to the net's pixels; the fixed settings stay as they were."""
    import dataclasses

    start = net_crf_parameters(model, quiet=True)
    fitted = {name: getattr(parameters, name) * (scale_factor if name in parameters.LENGTHS else 1.0)
              for name in parameters.FITTED}
    model.crf = {**dataclasses.replace(start, **fitted).to_dict(), LENGTHS_KEY: NET_PIXELS}


def crf_foreground(model, output: np.ndarray) -> np.ndarray:
    """Q of the CRF for one cached output (C, H, W): the method's foreground probability, calibrated so
    that the foreground threshold of the model's decode (where it has one) sits at 0.5.

    The unaries give the background 1 - Q and an instance Q (times its box and shape terms), so the CRF
    calls a pixel object where Q > 0.5. A decode tuned to call objects where Q > t < 0.5 (DCME after 300
    steps on cells and worms: t = 0.3) saw the CRF erase every instance; Q ** (log 0.5 / log t) maps t
    to 0.5 and keeps the pixels' order. Ours: the paper's Q comes from a semantic segmentation net
    trained for it, whose 0.5 is its decision boundary.
    """
    q = np.clip(np.asarray(model.method.foreground(output, model.method_options), np.float32), 1e-6, 1.0)
    threshold = model.decode_parameters().get("foreground_threshold")
    if threshold is None or threshold == 0.5:
        return q
    return q ** np.float32(np.log(0.5) / np.log(threshold))


def refine_prediction(prediction, image: np.ndarray, instances=None, *, parameters=None):
    """Refine a prediction's decoded instances with the instance CRF (the net does not run again).

    Parameters
    ----------
    prediction : :class:`~napari_deepcolor.inference.Prediction` of ``image``.
    image : the image given to :func:`~napari_deepcolor.inference.predict`: (H, W[, C]) or a stack.
    instances : Instances to refine (default: ``prediction.decode()`` with the model's defaults).
    parameters : :class:`~.crf.CrfParameters` (default: the model's fitted ones).

    Returns
    -------
    Instances, with the shape of ``instances``; a stack is refined plane by plane.
    """
    from ..inference import prepare_image, stack_instances
    from ..methods.base import Instances
    from .crf import refine_instances

    model = prediction.model
    instances = prediction.decode() if instances is None else instances
    parameters = parameters or crf_parameters(model, prediction.scale_factor)
    if not prediction.is_stack:  # the refined instances take their class from the class head again
        return prediction.with_classes(refine_instances(instances, crf_foreground(model, prediction.output),
                                                        prepare_image(model, image), parameters))
    planes = []
    for z, output in enumerate(prediction.output):
        plane = np.asarray(instances.labels[z]).astype(np.int64)
        ids = np.unique(plane[plane > 0])
        local = np.searchsorted(ids, plane) + 1
        local[plane == 0] = 0
        scores = np.asarray(instances.scores)[ids - 1] if ids.size else np.zeros(0, np.float32)
        planes.append(prediction.with_classes(
            refine_instances(Instances(local, scores), crf_foreground(model, output),
                             prepare_image(model, np.asarray(image)[z]), parameters), z))
    return stack_instances(planes)


def fit_model_crf(model, samples: Sequence, *, device=None, steps: int = 40) -> dict:
    """Fit the CRF on annotated samples (``.image``, ``.labels``, ``.ignore``) with the net frozen,
    store the parameters in ``model.crf`` and return the fit's report (eq. 7 of Arnab and Torr).

    Where nothing can be fitted (no image with an object the model finds) the
    model is left as it was and the report says why (``"skipped"``)."""
    from ..inference import predict, prepare_image
    from .fit import CrfExample, fit_crf

    examples, factor = [], model.scale_factor()  # predict's default: the training images' scale
    for sample in samples:
        prediction = predict(model, sample.image, stack=False, device=device)
        examples.append(CrfExample(prediction.decode(), crf_foreground(model, prediction.output),
                                   prepare_image(model, sample.image), np.asarray(sample.labels), sample.ignore))
    try:
        parameters, report = fit_crf(examples, start=crf_parameters(model, factor, quiet=True), steps=steps)
    except DeepColorError as exc:  # e.g. a young model that finds no object yet: keep what the model had
        log.warning("the CRF was not fitted: %s", exc)
        return {"skipped": str(exc)}
    store_crf_parameters(model, parameters, factor)
    return report

