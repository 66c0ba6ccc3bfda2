"""What a method is: output channels, a loss, a decoder with declared parameters.

A *method* turns one paper into three small things (see ARCHITECTURE.md):

* ``out_channels(options)``: how many channels the net predicts;
* ``prepare_targets(labels, ignore, options)`` (data pipeline, NumPy) and
  ``loss(raw, targets, options)`` (torch, on the device): how the net is trained;
* ``activate(raw)``: the network output that is cached (e.g. softmax), and
  ``decode(output, cache=..., **decode_parameters)``: cached output to instance labels.

Everything else (data, nets, training, tiling, CLI, widgets, batch) is shared.
The decode parameters are declared once with :class:`DecodeParameter`; the CLI
flags, napari sliders and the auto-tuner are generated from that declaration.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import DeepColorError


@dataclass(frozen=True)
class DecodeParameter:
    """One tunable of a decoder: becomes a CLI flag, a slider and a tuning axis."""

    name: str
    default: float
    minimum: float
    maximum: float
    step: float
    help: str
    integer: bool = False
    #: values the auto-tuner tries (defaults to a spread over the range)
    tune_values: tuple[float, ...] = ()
    #: "pixels": ``tune_values`` stand as they are; "area" / "diameter": they are fractions of the
    #: annotated objects' median area / equivalent diameter, so the grid follows the objects' size
    tune_unit: str = "pixels"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def validate(self, value) -> float | int:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise DeepColorError(f"{self.name} must be a number (got {value!r}).") from None
        if not self.minimum <= value <= self.maximum:
            raise DeepColorError(
                f"{self.name}={value:g} is outside its range [{self.minimum:g}, {self.maximum:g}]: {self.help}"
            )
        return int(round(value)) if self.integer else value

    @property
    def in_pixels(self) -> bool:
        """Whether the value is a size in pixels (an area, a radius, a distance)."""
        return self.tune_unit != "pixels" or bool(re.search(r"\b(many pixels|in pixels|pixels (apart|away))\b",
                                                           self.help))

    def useful_range(self, object_diameter: float | None = None, value: float | None = None) -> tuple[float, float]:
        """The range a slider offers: for a size in pixels, what the model's training objects make useful.

        A size threshold past the median object's area (or a radius past one and a half of its
        diameter) removes or merges most objects, so a slider over the whole declared range (0 to
        5000 px) would leave the useful 20-200 px to its first few steps. The range ends at the
        median object's area (diameter x 1.5 for radii and distances), rounded up to 1, 1.5, 2, 3, 5 or 7 x 10^k,
        never past the declared maximum and never below ``value`` (the model's own). Without an
        object size, sizes in pixels end at 500 px (areas) or 50 px; other values keep the declared range.
        """
        if not self.in_pixels:
            return self.minimum, self.maximum
        if object_diameter:
            upper = np.pi * object_diameter ** 2 / 4 if self.tune_unit == "area" else 1.5 * object_diameter
        else:
            upper = 500.0 if self.tune_unit == "area" else 50.0
        upper = max(upper, 2 * self.default, value or 0)
        nice = next(m * 10 ** k for k in range(0, 12) for m in (1, 1.5, 2, 3, 5, 7) if m * 10 ** k >= upper)
        return self.minimum, float(min(max(nice, self.minimum + self.step), self.maximum))

    def candidates(self, object_area: float | None = None) -> tuple[float, ...]:
        """The values the auto-tuner tries; ``object_area`` (median, pixels) scales relative ones."""
        if not self.tune_values:
            values = np.linspace(self.minimum, self.maximum, 9)
        elif self.tune_unit == "pixels":
            return self.tune_values
        else:
            if not object_area:
                raise DeepColorError(f"tuning {self.name} needs the size of the annotated objects; none are annotated.")
            scale = object_area if self.tune_unit == "area" else 2 * np.sqrt(object_area / np.pi)
            values = np.clip(np.asarray(self.tune_values) * scale, self.minimum, self.maximum)
        return tuple(sorted({self.validate(v) for v in values}))


def size_threshold(help: str = "objects smaller than this many pixels become background") -> DecodeParameter:
    """The size threshold every decoder ends with; tuned over fractions of the objects' median area."""
    return DecodeParameter("size_threshold", 20, 0, 5000, 1, integer=True, help=help,
                           tune_values=(0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8), tune_unit="area")


@dataclass(frozen=True)
class Instances:
    """Decoded instances: a label image (0 = background, 1..N) and one score per instance.

    A model with classes also gives each instance a class id (1..K, ``classes[i - 1]`` for label i)
    and the class head's confidence in it (``class_scores``, 0 to 1); None otherwise.
    """

    labels: np.ndarray
    scores: np.ndarray  # (N,), scores[i - 1] belongs to label i
    classes: np.ndarray | None = None
    class_scores: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.scores.shape[0])


@dataclass(frozen=True)
class PreviewLayer:
    """A napari-agnostic description of a layer showing what the net sees."""

    data: np.ndarray
    name: str
    layer_type: str  # "image" | "vectors" | "labels"
    kwargs: dict = field(default_factory=dict)


class Method:
    """Base class of the methods; subclasses set the class attributes and override the hooks."""

    name: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[str]
    #: training hyper-parameters: a frozen dataclass type with defaults
    Options: ClassVar[type]
    decode_parameters: ClassVar[tuple[DecodeParameter, ...]]

    # -- training ---------------------------------------------------------
    def options(self, values: dict | None = None):
        """Validated training options; unknown keys are refused with the list of known ones."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(self.Options)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DeepColorError(
                f"unknown option(s) {', '.join(unknown)} for method '{self.name}'; "
                f"known: {', '.join(sorted(known))}."
            )
        return self.Options(**values)

    def out_channels(self, options) -> int:
        raise NotImplementedError

    def position_periods(self, options) -> tuple[float, ...]:
        """Periods (net pixels) of the position channels the net takes after the image's
        (:mod:`napari_deepcolor.nets.position`); () for a plain, translation-invariant net."""
        return ()

    def check_classes(self, options, class_names) -> None:
        """Refuse, with what to do, training these options on annotations of ``class_names``.

        Any method can learn classes: a class head is added after its channels
        (:mod:`.classes`); a method that also uses the classes itself checks here that it can.
        """

    def prepare_targets(self, labels: np.ndarray, ignore: np.ndarray, options) -> dict[str, np.ndarray]:
        """Per-patch training targets, computed in the data pipeline (NumPy)."""
        return {"labels": labels.astype(np.int64), "ignore": ignore}

    def collate(self, targets: list[dict[str, np.ndarray]]):
        """Stack per-patch targets into one batch of tensors (override for ragged targets)."""
        import torch

        return {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}

    def loss(self, raw, targets, options):
        raise NotImplementedError

    # -- inference --------------------------------------------------------
    def activate(self, raw, options=None):
        """Map raw logits (B, C, H, W) to the output that is cached and decoded (``options``: the
        model's training options, for methods whose output layout depends on them)."""
        return raw

    def output_to_image_scale(self, output, image_pixels_per_net_pixel: float):
        """The activated output (B, C, h, w) of a rescaled image, with its values in the image's pixels.

        Called before the output is resized back to the image (:mod:`napari_deepcolor.scale`).
        Probabilities need nothing; outputs measured in pixels (displacements, coordinates)
        are multiplied by ``image_pixels_per_net_pixel``.
        """
        return output

    def unflip(self, output, dims: tuple[int, ...]):
        """The activated output (B, C, h, w) of the image flipped along ``dims``, brought back to the
        image's orientation, for test-time flips; None (the default) where flipped outputs cannot simply be
        averaged (colours and embeddings are free to differ between a view and its mirror image)."""
        return None

    def decode(self, output: np.ndarray, *, cache: dict | None = None, options=None, **parameters) -> Instances:
        """Instances from the cached output; ``options`` are the training options of the model
        (methods whose decoding depends on them, like semiconv's coordinates switch, read them)."""
        raise NotImplementedError

    def preview(self, output: np.ndarray, options=None) -> list[PreviewLayer]:
        return []

    def foreground(self, output: np.ndarray, options=None) -> np.ndarray:
        """Q (H, W): the probability that a pixel belongs to some object, from the cached output (C, H, W).

        What the instance CRF (:mod:`napari_deepcolor.refine`) builds its unaries on.
        """
        raise DeepColorError(f"method '{self.name}' predicts no foreground probability, so its instances "
                             "cannot be refined with the instance CRF; segment without refinement "
                             "(--refine none), or train a coloring, boundary, dcme or semiconv model.")

    # -- outputs larger than memory ---------------------------------------
    def blockwise_limitation(self, parameters: dict, options=None) -> str | None:
        """Why a decode with ``parameters`` cannot run block by block (:meth:`decode_blocks`), or None."""
        return f"is implemented for deep coloring and the 3-class baseline only (this is a '{self.name}' model)"

    def decode_blocks(self, output, ids, *, block: int, **parameters) -> tuple[np.ndarray, np.ndarray]:
        """Decode a (C, H, W) output larger than memory (e.g. zarr), ``block`` pixels square at a time.

        Writes provisional ids into ``ids`` (an (H, W) array-like) and returns
        ``(lookup, scores)``: the labels are ``lookup[ids]``, 1..N, equal to
        :meth:`decode`'s up to a renumbering, and ``scores[i - 1]`` is label
        i's score, as :meth:`decode` gives it (N = ``scores.size``).
        """
        raise NotImplementedError

    # -- helpers shared by all methods ------------------------------------
    def parameters_used(self, options) -> tuple[DecodeParameter, ...]:
        """The decode parameters that change the result for a model with these training options."""
        return self.decode_parameters

    def decode_defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.decode_parameters}

    def resolve_decode_parameters(self, parameters: dict | None, defaults: dict | None = None) -> dict:
        """Defaults (declared, then e.g. tuned ones from a checkpoint) overridden by ``parameters``."""
        by_name = {p.name: p for p in self.decode_parameters}
        merged = {**self.decode_defaults(), **(defaults or {})}
        for key, value in (parameters or {}).items():
            if value is None:
                continue
            if key not in by_name:
                raise DeepColorError(
                    f"'{key}' is not a decode parameter of method '{self.name}'; "
                    f"it has: {', '.join(by_name) or 'none'}."
                )
            merged[key] = value
        return {k: by_name[k].validate(v) for k, v in merged.items() if k in by_name}


def memo(cache: dict | None, stage: str, key: tuple, compute: Callable[[], Any]) -> Any:
    """Return ``compute()``, reusing the last result of ``stage`` when ``key`` is unchanged.

    This is what makes slider decoding cheap: each decode stage remembers its
    last inputs, so moving one slider recomputes only the stages after it.
    """
    if cache is None:
        return compute()
    hit = cache.get(stage)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = compute()
    cache[stage] = (key, value)
    return value
