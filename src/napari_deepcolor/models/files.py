"""Model files: safetensors weights with the JSON configuration in the header.

One file holds everything needed to reproduce a prediction: method and its
training options, net shape, normalisation, tuned decode defaults and
provenance. Loading reads tensors and JSON only; no pickle, so a file from a
stranger cannot run code. The optional training state (optimizer, iteration)
used to resume lives beside it in ``NAME.state.safetensors`` (:func:`state_path`).

This module reads and writes files given by their path and knows nothing of
starter names or bioimage.io packages: :mod:`napari_deepcolor.models.sources`
turns any model argument into such a file (:func:`~napari_deepcolor.models.load_model`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.io import atomic_write
from ..errors import DeepColorError
from ..methods import get_method
from ..nets import NetConfig, build_net

FORMAT = "napari-deepcolor-model"
FORMAT_VERSION = 1


@dataclass
class Model:
    """A trained model: the net plus everything needed to use it."""

    method_name: str
    method_options: object
    net: torch.nn.Module
    normalization: dict = field(default_factory=lambda: {"low": 1.0, "high": 99.8})
    decode_defaults: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    #: object-size normalisation (see :mod:`napari_deepcolor.scale`): ``object_diameter``, the median
    #: diameter (px) of the training objects, and ``net_object_diameter``, the one the net saw; {} = none
    object_scale: dict = field(default_factory=dict)
    #: fitted instance-CRF parameters (:class:`~napari_deepcolor.refine.crf.CrfParameters` as a dict, their
    #: lengths in the net's pixels: :func:`~napari_deepcolor.refine.crf_parameters`), or None
    crf: dict | None = None
    #: what segmenting applies unless told otherwise, chosen on the validation images after training
    #: (:func:`~napari_deepcolor.tuning.choose_refinement`): ``{"refine": "none" | "crf", "flips": bool}``
    inference_defaults: dict = field(default_factory=dict)
    #: names of the object classes 1..K of a model trained on class annotations; () = one class.
    #: Such a model has a class head of K + 1 channels after its method's (:mod:`.methods.classes`)
    class_names: tuple = ()
    #: the model card of a starter model (data, licence, citation, recipe, test-split scores); {} otherwise
    card: dict = field(default_factory=dict)
    #: a random forest on whole objects' shape and intensity (:class:`~napari_deepcolor.object_classes.
    #: ObjectClassifier`), stored as arrays beside the weights; None = none
    object_classifier: object | None = None

    def __post_init__(self):
        self.class_names = tuple(self.class_names or ())

    @property
    def method(self):
        return get_method(self.method_name)

    @property
    def net_config(self) -> NetConfig:
        return self.net.config

    @property
    def method_channels(self) -> int:
        """The output channels of the method itself; a class head, if any, follows them."""
        return self.method.out_channels(self.method_options)

    @property
    def uses_object_classifier(self) -> bool:
        """Whether objects get their class from the object classifier rather than the pixel class head."""
        return self.object_classifier is not None and self.object_classifier.use == "object"

    @property
    def output_class_names(self) -> tuple:
        """The names of the classes 1..K objects are given: the object classifier's when it classifies,
        else the class head's; () for a model whose objects have no class."""
        return tuple(self.object_classifier.class_names) if self.uses_object_classifier else self.class_names

    def class_name(self, class_id: int) -> str:
        """The name of class id 1..K."""
        return self.class_names[int(class_id) - 1]

    def decode_parameters(self, overrides: dict | None = None) -> dict:
        """Declared defaults, then the tuned ones stored in the file, then ``overrides``."""
        return self.method.resolve_decode_parameters(overrides, self.decode_defaults)

    def refinement(self, refine: str | None = None, flips: bool | None = None) -> tuple[str, bool]:
        """``(refine, flips)`` for a segmentation: what is given, else the model's stored choice, else none."""
        chosen = self.inference_defaults
        return (chosen.get("refine", "none") if refine is None else refine,
                bool(chosen.get("flips", False)) if flips is None else flips)

    def refinement_names(self) -> list[str]:
        """What segmenting applies by default, in words ("the instance CRF", "flips"); [] for the plain decode."""
        refine, flips = self.refinement()
        return [name for name, on in (("the instance CRF", refine == "crf"), ("flips", flips)) if on]

    def scale_factor(self, object_diameter: float | None = None) -> float:
        """How much images are enlarged for the net: objects of ``object_diameter`` px (default: the
        training objects' diameter) are brought to the diameter the net was trained at."""
        from ..scale import scale_factor

        diameter = object_diameter or self.object_scale.get("object_diameter")
        return scale_factor(diameter, self.object_scale.get("net_object_diameter"))

    def config(self) -> dict:
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "method": self.method_name,
            "method_options": dataclasses.asdict(self.method_options), "net": self.net_config.to_dict(),
            "normalization": self.normalization, "decode_defaults": self.decode_defaults,
            "provenance": self.provenance, "object_scale": self.object_scale, "crf": self.crf,
            **({"inference_defaults": self.inference_defaults} if self.inference_defaults else {}),
            **({"class_names": list(self.class_names)} if self.class_names else {}),
            **({"card": self.card} if self.card else {}),
            **({"object_classifier": self.object_classifier.config()} if self.object_classifier else {}),
        }


def new_model(method_name: str, method_options: dict | None, net: dict | None, in_channels: int, *,
              class_names=(), **extra) -> Model:
    """A freshly initialised model; ``class_names`` (K names) adds a class head of K + 1 channels."""
    from ..methods.classes import class_head_channels

    method = get_method(method_name)
    options = method.options(method_options)
    out_channels = method.out_channels(options) + class_head_channels(class_names)
    config = NetConfig(**{**(net or {}), "in_channels": in_channels, "out_channels": out_channels,
                          "position_periods": method.position_periods(options)})
    return Model(method_name, options, build_net(config), class_names=tuple(class_names), **extra)


def save_model(model: Model, path, *, overwrite: bool = True, half: bool = False) -> Path:
    """Write ``model`` to ``path`` atomically (``.safetensors`` is the usual suffix).

    ``half`` stores the floating-point weights as float16 (half the size; they load back as float32).
    """
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    if model.object_classifier is not None:  # arrays only: loading them runs no code
        state.update(model.object_classifier.to_tensors())
    metadata = {"napari_deepcolor": json.dumps(model.config())}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata), overwrite=overwrite)


def read_model_file_config(path) -> dict:
    """The JSON configuration of the model file at ``path``, without loading weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DeepColorError(f"model file {path} does not exist; train one with `napari-deepcolor train` "
                             "or check the path.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:
        raise DeepColorError(f"{path} is not a napari-deepcolor model file (it could not be read as "
                             f"safetensors: {exc}). Was the download or copy complete?") from exc
    try:
        config = json.loads(metadata["napari_deepcolor"])
    except (KeyError, json.JSONDecodeError):
        raise DeepColorError(f"{path} is a safetensors file but not a napari-deepcolor model "
                             "(no model configuration inside).") from None
    if config.get("format") != FORMAT or config.get("version", 0) > FORMAT_VERSION:
        raise DeepColorError(f"{path} was written by a newer napari-deepcolor (format version "
                             f"{config.get('version')}); update the plugin to load it.")
    return config


def load_model_file(path, *, device: str | torch.device = "cpu") -> Model:
    """Load the model file at ``path`` (weights and configuration); never executes code from the file."""
    from safetensors.torch import load_file

    path = Path(path)
    config = read_model_file_config(path)
    _check_output_channels(path, config)
    model = new_model(config["method"], config["method_options"], config["net"], config["net"]["in_channels"],
                      normalization=config.get("normalization", {}), decode_defaults=config.get("decode_defaults", {}),
                      provenance=config.get("provenance", {}), object_scale=config.get("object_scale", {}),
                      crf=config.get("crf"), inference_defaults=config.get("inference_defaults", {}),
                      class_names=tuple(config.get("class_names") or ()),
                      card=config.get("card", {}))
    tensors = load_file(str(path), device="cpu")
    if config.get("object_classifier"):
        from ..object_classifier import TENSOR_PREFIX, ObjectClassifier

        model.object_classifier = ObjectClassifier.from_file_parts(config["object_classifier"], tensors,
                                                                   where=str(path))
        tensors = {k: v for k, v in tensors.items() if not k.startswith(TENSOR_PREFIX)}
    try:
        model.net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise DeepColorError(f"{path}: the weights do not fit the configuration stored with them ({exc}). "
                             "The file is damaged; use another copy.") from exc
    model.net.to(device)
    return model


def _check_output_channels(path, config: dict) -> None:
    """Refuse, with what to do, a model whose method has since changed its number of output channels."""
    from ..methods.classes import class_head_channels

    method = get_method(config["method"])
    stored = config.get("net", {}).get("out_channels")
    needed = method.out_channels(method.options(config["method_options"])) + \
        class_head_channels(config.get("class_names") or ())
    if stored is not None and int(stored) != needed:
        raise DeepColorError(f"{path} was trained by an older version of method '{config['method']}' with "
                             f"{stored} output channels; this version needs {needed} (its outputs changed). "
                             "Retrain the model on your annotations.")


# -- training state (resume) ---------------------------------------------------

def state_path(model_path) -> Path:
    """Where the training state of ``model_path`` lives: ``m.safetensors`` -> ``m.state.safetensors``.

    A model file without the ``.safetensors`` suffix keeps its whole name:
    ``m`` -> ``m.state`` and ``m.pt`` -> ``m.pt.state``, so that two model
    files never share one state file (``m`` and ``m.safetensors`` would both
    map to ``m.state.safetensors`` otherwise).
    """
    path = Path(model_path)
    if path.suffix.lower() == ".safetensors":
        return path.with_name(path.stem + ".state.safetensors")
    return path.with_name(path.name + ".state")


def save_training_state(model_path, optimizer: torch.optim.Optimizer, progress: dict) -> Path:
    """Optimizer moments and progress (iteration, elapsed seconds) beside the model, for resuming."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            key = f"{index}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                scalars[key] = value
    metadata = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars),
                "progress": json.dumps(progress)}
    return atomic_write(state_path(model_path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata),
                        overwrite=True)


def read_training_progress(model_path) -> dict:
    """The progress saved with a model's training state (iteration, elapsed seconds, whether the
    training finished its budget), without loading the optimizer; {} when there is no state file."""
    from safetensors import safe_open

    path = state_path(model_path)
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("progress", "{}"))


def load_training_state(model_path, optimizer: torch.optim.Optimizer) -> dict:
    """Restore the optimizer from the state file beside ``model_path``; returns the progress dict."""
    from safetensors import safe_open

    path = state_path(model_path)
    if not path.is_file():
        raise DeepColorError(f"cannot resume: {path} (the training state saved beside the model) is missing.")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    values: dict[int, dict] = {}
    for key, value in [*tensors.items(), *json.loads(metadata["scalars"]).items()]:
        index, name = key.split(".", 1)
        values.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": values, "param_groups": json.loads(metadata["param_groups"])})
    return json.loads(metadata["progress"])
