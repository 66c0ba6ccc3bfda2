"""Running a model over images: tiling with bounded memory, stacks plane by plane, caching.

The net's output is computed once per image (:func:`predict`) and kept in a
:class:`Prediction`; every decode, from a slider or the CLI, goes through
:meth:`Prediction.decode`, which reuses the method's cached decode stages.

Tiling: windows of ``tile_size`` pixels overlap by ``2 * margin``; each window
contributes only its centre (the margin is context the net needs, not output),
so every output pixel comes from exactly one window and the result can be
streamed into any array-like sink (NumPy, zarr) window by window. We looked
at MONAI's ``sliding_window_inference``; it accumulates the whole output in
one tensor and blends overlaps, which would rule out writing tiles straight
to a zarr store for images larger than memory, so we keep this small tiler.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import torch

from .models.files import Model
from .data.normalize import COLOUR_CHANNELS, as_channels_last, normalize_percentile
from .device import autocast, memory_format, resolve_device
from .errors import DeepColorError
from .methods.base import Instances, Method
from .nets.position import flipped_grid, window_grid
from .scale import resize, scaled_shape

log = logging.getLogger(__name__)

#: test-time flips: the image as it is, mirrored left-right, upside down, and both
FLIPS = ((), (-1,), (-2,), (-2, -1))


def prepare_image(model: Model, image: np.ndarray) -> np.ndarray:
    """A 2D image (H, W[, C]) as the model's input: channels last, normalised, float32.

    A colour image given to a grey model is averaged to grey, and a grey image
    given to a colour (RGB, RGBA) model is repeated, each with a log message;
    any other channel mismatch is an error (a grey image for a model of two
    channels, e.g. nuclei and cytoplasm, included).
    """
    image = match_channels(model, image)
    norm = model.normalization or {}
    return normalize_percentile(image, low=norm.get("low", 1.0), high=norm.get("high", 99.8))


def match_channels(model: Model, image: np.ndarray) -> np.ndarray:
    """A 2D image (H, W[, C]) channels last with the model's number of channels, not normalised.

    The channel half of :func:`prepare_image`, for callers that normalise
    themselves (batch's out-of-core path uses percentiles of a subsample).
    """
    image = as_channels_last(np.asarray(image))
    wanted, got = model.net_config.in_channels, image.shape[-1]
    if got != wanted:
        if wanted == 1:
            log.debug("%s", channel_conversion(wanted, got))
            image = image.astype(np.float32).mean(axis=-1, keepdims=True)
        elif got == 1 and wanted in COLOUR_CHANNELS:
            log.debug("%s", channel_conversion(wanted, got))
            image = np.repeat(image, wanted, axis=-1)
        else:
            raise DeepColorError(f"the model was trained on images with {wanted} channels but this image "
                                 f"has {got}; use a model trained on images like this one"
                                 + (" (a grey image is repeated for colour models only)." if got == 1 else "."))
    return image


def channel_conversion(model_channels: int, image_channels: int) -> str | None:
    """One line saying how :func:`match_channels` converts an image of ``image_channels`` for a model of
    ``model_channels`` (what callers show the user), or None when nothing is converted."""
    if model_channels == image_channels:
        return None
    kind = {3: "RGB ", 4: "RGBA "}.get(image_channels, "")
    if model_channels == 1:
        return (f"the {kind}image's {image_channels} channels were averaged to one grey channel: the model "
                "takes grey images")
    if image_channels == 1:
        return f"the grey image was repeated into the {model_channels} channels the model takes"
    return None  # refused by match_channels


def tile_windows(shape: tuple[int, int], tile_size: int, margin: int) -> Iterator[tuple[slice, slice, slice, slice]]:
    """Windows over a (H, W) image: ``(read_y, read_x, core_y, core_x)``.

    ``read_*`` is the window the net sees (at most ``tile_size``), ``core_*``
    the part of the image it writes (windows' cores tile the image exactly).
    """
    step = tile_size - 2 * margin
    if step <= 0:
        raise DeepColorError(f"tile size {tile_size} must exceed twice the margin {margin}.")

    def spans(length: int):
        for start in range(0, length, step):
            stop = min(start + step, length)
            yield slice(max(start - margin, 0), min(stop + margin, length)), slice(start, stop)

    for read_y, core_y in spans(shape[0]):
        for read_x, core_x in spans(shape[1]):
            yield read_y, read_x, core_y, core_x


def _pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    pad_h, pad_w = height - x.shape[-2], width - x.shape[-1]
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode) if pad_h or pad_w else x


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


@torch.inference_mode()
def predict_output(model: Model, image: np.ndarray, *, device=None, tile_size: int = 512, margin: int = 64,
                   object_diameter: float | None = None, flips: bool = False, out=None,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The activated net output (C, H, W) float32 of one prepared 2D image (H, W, C).

    Memory is bounded by one window: the net only ever sees about ``tile_size``
    pixels square (``tile_size`` and ``margin`` are in the net's pixels). Each
    window is rescaled so that objects of ``object_diameter`` px (default: the
    size the model was trained on) reach the size the net was trained at, and
    its output is resized back, so the output has the image's own shape
    (:mod:`napari_deepcolor.scale`). ``out`` may be any array-like (e.g. a
    zarr array) of shape (C, H, W) to write into; ``progress(done, total)`` is
    called per window. ``image`` may also be lazy: any array-like with
    ``shape`` and 2D slicing that is not a NumPy array (e.g. a reader of
    prepared windows over a zarr array); then only one window is read at a
    time, for images beyond memory. ``flips``: average the output over the four flips of each window
    (:data:`FLIPS`; four times the net's work), for methods whose outputs allow it.
    """
    if flips:
        check_flips(model.method)
    device = resolve_device(device) if device is None or isinstance(device, str) else device
    net = model.net.to(device, memory_format=memory_format(device)).eval()
    factor = model.scale_factor(object_diameter)
    height, width = image.shape[:2]
    # windows in image pixels; the net sees them enlarged by ``factor``
    tile = max(int(tile_size / factor), 2 * int(math.ceil(margin / factor)) + 16)
    border = int(math.ceil(margin / factor))
    tile = min(tile, max(height, width) + 2 * border)
    if out is None:
        out = np.empty((model.net_config.out_channels, height, width), np.float32)
    windows = list(tile_windows((height, width), tile, border if max(height, width) > tile else 0))
    lazy = not isinstance(image, np.ndarray)
    x_all = None if lazy else torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.float32))
    for done, (read_y, read_x, core_y, core_x) in enumerate(windows, start=1):
        if lazy:  # read just this window
            window = np.moveaxis(np.asarray(image[read_y, read_x], dtype=np.float32), -1, 0)
            x = torch.from_numpy(np.ascontiguousarray(window)).unsqueeze(0).to(device)
        else:
            x = x_all[:, read_y, read_x].unsqueeze(0).to(device)
        y = _net_output(model, net, x, factor, device, flips, corner=(read_y.start, read_x.start))
        cy, cx = core_y.start - read_y.start, core_x.start - read_x.start
        out[:, core_y, core_x] = y[:, cy:cy + core_y.stop - core_y.start, cx:cx + core_x.stop - core_x.start].cpu().numpy()
        if progress is not None:
            progress(done, len(windows))
    return out


def supports_flips(method: Method) -> bool:
    """Whether ``method``'s output can be averaged over flips (it defines :meth:`Method.unflip`)."""
    return type(method).unflip is not Method.unflip


def check_flips(method: Method) -> None:
    """Raise DeepColorError unless ``method`` can average its output over flips."""
    if not supports_flips(method):
        raise DeepColorError(f"test-time flips need per-pixel probabilities, as the 3-class baseline's; a "
                             f"'{method.name}' model's outputs differ between an image and its mirror image. "
                             "Segment without flips.")


def _net_output(model: Model, net, x: torch.Tensor, factor: float, device, flips: bool = False,
                corner: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The activated output (C, h, w) of one window (1, C, h, w), run at the net's scale (with ``flips``,
    the mean over :data:`FLIPS`: each flipped window's output flipped back). ``corner``: the window's
    first pixel in the whole image, which a net with position input is told (:mod:`.nets.position`)."""
    h, w = x.shape[-2:]
    if factor != 1.0:
        x = resize(x, scaled_shape((h, w), factor))
    sh, sw = x.shape[-2:]
    grid = window_grid(corner, (h, w), (sh, sw), factor)
    divisor = model.net_config.divisor
    x = _pad_to(x, _round_up(sh, divisor), _round_up(sw, divisor))
    x = x.contiguous(memory_format=memory_format(device))  # 0.55 times the time of a 1024 px tile on a CPU
    with autocast(device):
        if flips:
            y = sum(_unflip(model, activate(model, net(x.flip(dims) if dims else x,
                                                        *flipped_grid(*grid, x.shape[-2:], dims))).float(), dims)
                    for dims in FLIPS) / len(FLIPS)
        else:
            y = activate(model, net(x, *grid))
    y = y[:, :, :sh, :sw].float()
    if factor != 1.0:
        m = model.method_channels
        y = torch.cat([model.method.output_to_image_scale(y[:, :m], 1.0 / factor), y[:, m:]], dim=1)
        y = resize(y, (h, w))
    return y[0]


def _unflip(model: Model, output: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """The output of a window flipped along ``dims`` in the window's orientation (class probabilities, if
    any, are flipped back as they are)."""
    if not dims:
        return output
    m = model.method_channels
    return torch.cat([model.method.unflip(output[:, :m], dims), output[:, m:].flip(dims)], dim=1)


def activate(model: Model, raw: torch.Tensor) -> torch.Tensor:
    """The cached output of raw logits (B, C, H, W): the method's activation, then, for a model with
    classes, the class head's softmax over background and the K classes."""
    if not model.class_names:
        return model.method.activate(raw, model.method_options)
    m = model.method_channels
    return torch.cat([model.method.activate(raw[:, :m], model.method_options).float(),
                      raw[:, m:].float().softmax(dim=1)], dim=1)


@dataclass
class Prediction:
    """The cached net output of one image (or stack) and cheap repeated decoding of it.

    ``output`` holds the method's channels only; a model with classes keeps its class head's
    probabilities (K + 1, background first) in ``class_output``, so every consumer of ``output``
    (decoders, previews, the CRF, tuning) sees what it saw before.
    """

    model: Model
    output: np.ndarray  # (C, H, W) or (Z, C, H, W)
    _caches: dict = field(default_factory=dict, repr=False)
    class_output: np.ndarray | None = None  # (K + 1, H, W) or (Z, K + 1, H, W)
    #: how much the image was enlarged for the net (:meth:`Model.scale_factor`): net pixels per image pixel
    scale_factor: float = 1.0
    #: the image as the net saw it (:func:`prepare_image`), (H, W, C) or (Z, H, W, C): what an object
    #: classifier measures intensities on; None when not kept
    image: np.ndarray | None = None

    @classmethod
    def from_output(cls, model: Model, output: np.ndarray, scale_factor: float = 1.0,
                    image: np.ndarray | None = None) -> "Prediction":
        """A prediction from the whole activated net output, the class head split off."""
        if not model.class_names:
            return cls(model, output, scale_factor=scale_factor, image=image)
        m = model.method_channels
        return cls(model, output[..., :m, :, :], class_output=output[..., m:, :, :], scale_factor=scale_factor,
                   image=image)

    @property
    def is_stack(self) -> bool:
        return self.output.ndim == 4

    def decode(self, **parameters) -> Instances:
        """Instances for these decode parameters (missing ones: the model's tuned defaults).

        For a stack, planes are decoded separately and ids made unique across the stack.
        """
        params = self.model.decode_parameters(parameters)
        method, options = self.model.method, self.model.method_options
        if not self.is_stack:
            return self.with_classes(
                method.decode(self.output, cache=self._caches.setdefault(0, {}), options=options, **params))
        planes = [self.with_classes(method.decode(plane, cache=self._caches.setdefault(z, {}), options=options,
                                                  **params), z)
                  for z, plane in enumerate(self.output)]
        return stack_instances(planes)

    def with_classes(self, instances: Instances, plane: int | None = None) -> Instances:
        """``instances`` of this image (or of ``plane`` of a stack) with the class of each from the class head,
        or from the model's object classifier where it measured better (:mod:`napari_deepcolor.object_classes`)."""
        if self.model.uses_object_classifier and self.image is not None:
            from .object_classifier import classify_objects

            image = self.image if plane is None else self.image[plane]
            classes, scores = classify_objects(self.model.object_classifier, instances.labels, image, instances.count)
            return replace(instances, classes=classes, class_scores=scores)
        if self.class_output is None:
            return instances
        from .methods.classes import classify_instances

        probabilities = self.class_output if plane is None else self.class_output[plane]
        classes, scores = classify_instances(instances.labels, probabilities, instances.count)
        return replace(instances, classes=classes, class_scores=scores)

    def preview(self):
        method = self.model.method
        if not self.is_stack:
            return method.preview(self.output, self.model.method_options)
        planes = [method.preview(plane, self.model.method_options) for plane in self.output]
        return [replace(first, data=_stack_layer_data([plane[i].data for plane in planes], first.layer_type))
                for i, first in enumerate(planes[0])]


def _stack_layer_data(planes: list[np.ndarray], layer_type: str) -> np.ndarray:
    """Per-plane preview data as one stack: images stack on a new first axis; vectors
    (N, 2, 2) of [position, direction] become (sum N, 2, 3) with the plane index as z."""
    if layer_type != "vectors":
        return np.stack(planes)
    stacked = []
    for z, vectors in enumerate(planes):
        with_z = np.zeros((vectors.shape[0], 2, 3), vectors.dtype)
        with_z[:, :, 1:] = vectors
        with_z[:, 0, 0] = z
        stacked.append(with_z)
    return np.concatenate(stacked)


def stack_instances(planes: list[Instances]) -> Instances:
    """Stack per-plane instances into one (Z, H, W) label image with ids unique across planes."""
    from .data.io import smallest_label_dtype

    total = sum(p.count for p in planes)
    labels = np.zeros((len(planes),) + planes[0].labels.shape, smallest_label_dtype(total))
    offset = 0
    for z, plane in enumerate(planes):
        labels[z] = np.where(plane.labels > 0, plane.labels.astype(np.int64) + offset, 0)
        offset += plane.count
    scores = np.concatenate([p.scores for p in planes]) if planes else np.zeros(0, np.float32)
    if not planes or planes[0].classes is None:
        return Instances(labels, scores)
    return Instances(labels, scores, np.concatenate([p.classes for p in planes]),
                     np.concatenate([p.class_scores for p in planes]))


def predict(model: Model, image: np.ndarray, *, stack: bool | None = None, device=None, tile_size: int = 512,
            margin: int = 64, object_diameter: float | None = None, flips: bool = False,
            progress: Callable[[int, int], None] | None = None) -> Prediction:
    """Run ``model`` on a 2D image (H, W), colour image (H, W, 3|4) or stack (Z, H, W[, C]).

    ``stack=None`` guesses: 3 dimensions with a last axis of at most 4 are
    channels (grey, RGB, RGBA), otherwise the first axis enumerates planes. Returns a :class:`Prediction`
    whose :meth:`~Prediction.decode` gives instance labels. ``object_diameter``: the
    objects' diameter in this image (px), if it differs from the training images'. ``flips``: average
    the net's output over the image's four flips (test-time augmentation; see :func:`predict_output`).
    """
    image = np.asarray(image)
    if image.ndim < 2 or image.ndim > 4 or min(image.shape[:2]) < 1:
        raise DeepColorError(f"cannot segment an array of shape {image.shape}: expected (H, W), (H, W, C) "
                             "or a stack (Z, H, W[, C]).")
    if stack is None:
        stack = image.ndim == 4 or (image.ndim == 3 and image.shape[-1] > 4)
    planes = image if stack else image[None]
    outputs, prepared = [], []
    for z, plane in enumerate(planes):
        report = None if progress is None else (lambda d, t, z=z: progress(z * t + d, len(planes) * t))
        prepared.append(prepare_image(model, plane))
        outputs.append(predict_output(model, prepared[-1], device=device, tile_size=tile_size,
                                      margin=margin, object_diameter=object_diameter, flips=flips,
                                      progress=report))
    return Prediction.from_output(model, np.stack(outputs) if stack else outputs[0],
                                  model.scale_factor(object_diameter),
                                  image=np.stack(prepared) if stack else prepared[0])
