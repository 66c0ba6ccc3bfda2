"""bioimage.io model packages: export a model (reading one back: :mod:`.bioimageio_import`).

The package (``rdf.yaml`` of format 0.5, a zip) holds TorchScript weights of the net followed by
the method's activation: its output is the activated network output that our decoders turn into
instances (for the 3-class baseline: background / interior / boundary probabilities). The input is
normalised by the rdf's ``scale_range`` preprocessing (our percentiles). Decoding into labels is not
part of the bioimage.io spec, so the method, its options and decode defaults go in ``config``
(``config.napari_deepcolor``) together with the object scale the net expects.

TorchScript rather than ``pytorch_state_dict``: bioimage.io's state-dict format needs the network's
Python source as the architecture, which bioimage.io.core then imports and runs; a traced module runs
anywhere bioimage.io.core runs, offline, without this package.

Reading a package back never executes its contents: the package also carries our own model file
(safetensors + JSON) as an attachment, and
:func:`~napari_deepcolor.models.bioimageio_import.model_file_in_package` reads that. The TorchScript
file is never loaded by us.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DeepColorError
from .bioimageio_import import MODEL_ATTACHMENT

log = logging.getLogger(__name__)

#: the edge (net pixels) of the test input written into the package
TEST_SIZE = 256
PACKAGE_CITATION = {"text": "Kulikov V, Yurchenko V, Lempitsky V. Instance Segmentation by Deep Coloring. "
                            "arXiv:1807.10007 (2018)", "url": "https://arxiv.org/abs/1807.10007"}
UNET_CITATION = {"text": "Ronneberger O, Fischer P, Brox T. U-Net: convolutional networks for biomedical image "
                         "segmentation. MICCAI 2015", "doi": "10.1007/978-3-319-24574-4_28"}


def _require_bioimageio():
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise DeepColorError("bioimage.io export needs the bioimageio extra: pip install "
                             "\"napari-deepcolor[bioimageio]\" (bioimageio.spec and bioimageio.core).") from None


class _ActivatedNet(torch.nn.Module):
    """The net followed by the method's activation: what our decoders read."""

    def __init__(self, model):
        super().__init__()
        self.net, self.method, self.options = model.net, model.method, model.method_options

    def forward(self, x):
        return self.method.activate(self.net(x), self.options)


def _test_input(model, image: np.ndarray | None) -> np.ndarray:
    """A (1, C, H, W) float32 test input at the net's scale, H and W multiples of the net's divisor."""
    from ..inference import match_channels
    from ..scale import resize, scaled_shape

    if image is None:
        from ..synthetic import nuclei

        image = nuclei((TEST_SIZE, TEST_SIZE), count=30, seed=0)[0]
    image = match_channels(model, np.asarray(image)).astype(np.float32)  # (H, W, C), raw intensities
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))[None]
    factor = model.scale_factor()
    if factor != 1.0:
        x = resize(x, scaled_shape(x.shape[-2:], factor))
    divisor = model.net_config.divisor
    height, width = (min(TEST_SIZE, s) // divisor * divisor for s in x.shape[-2:])
    if not height or not width:
        raise DeepColorError(f"the test image is too small for the net (needs at least {divisor} px at net scale).")
    return x[..., :height, :width].numpy().astype(np.float32)


def _normalise_like_rdf(x: np.ndarray, low: float, high: float, eps: float) -> np.ndarray:
    """bioimage.io's ``scale_range`` over the spatial axes, per channel (our percentile normalisation)."""
    lo = np.percentile(x, low, axis=(2, 3), keepdims=True)
    hi = np.percentile(x, high, axis=(2, 3), keepdims=True)
    return ((x - lo) / (hi - lo + eps)).astype(np.float32)


def _cover(test_input: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """Image beside its decoded instances (random colours), as a PNG."""
    from PIL import Image

    grey = test_input[0].mean(axis=0)
    grey = np.clip((grey - grey.min()) / (np.ptp(grey) or 1.0) * 255, 0, 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    colours = rng.integers(60, 256, size=(int(labels.max()) + 1, 3), dtype=np.uint8)
    colours[0] = 0
    side = np.concatenate([np.stack([grey] * 3, axis=-1), colours[labels]], axis=1)
    Image.fromarray(side).save(path)


def _package_name(name: str) -> str:
    """bioimage.io names are at least 5 characters of letters, digits, spaces and a few signs."""
    import re

    cleaned = re.sub(r"[^A-Za-z0-9 _()+.,-]", "-", name).strip() or "model"
    return cleaned if cleaned.lower().startswith("napari-deepcolor") else f"napari-deepcolor {cleaned}"[:128]


def _documentation(model, name: str) -> str:
    card = model.card or {}
    lines = [f"# {name}", "", f"A napari-deepcolor model: {model.method.title} ({model.method.paper}).", "",
             "Output: the activated network output (for the 3-class baseline: background, interior and "
             "boundary probabilities). Instances come from napari-deepcolor's decoder with the method and "
             "decode parameters in `config.napari_deepcolor`; `napari-deepcolor predict --model THIS.zip` "
             "does that.", ""]
    diameter = model.object_scale.get("net_object_diameter")
    if diameter:
        lines += [f"Object scale: the net expects objects about {diameter:g} px across; rescale images "
                  "accordingly (napari-deepcolor does this itself).", ""]
    for key in ("kind_of_data", "dataset", "data_licence", "citation", "recipe", "test_scores"):
        if key in card:
            lines.append(f"- {key.replace('_', ' ')}: {card[key]}")
    return "\n".join(lines) + "\n"


def export_bioimageio(model_source, output, *, name: str | None = None, test_image: np.ndarray | None = None,
                      authors: tuple[str, ...] = ("napari-deepcolor user",), license: str | None = None,
                      overwrite: bool = False) -> Path:
    """Write a bioimage.io model package (zip, rdf format 0.5) of a model file or starter name.

    Parameters
    ----------
    model_source : path or str
        A model file, a starter name (``nuclei``) or an exported package.
    output : path
        The ``.zip`` to write; an existing one is replaced only with ``overwrite``.
    name : str, optional
        The package's name (default: the starter's name or the file's stem).
    test_image : ndarray (H, W[, C]), optional
        The image the package's test input is cut from (default: a synthetic nuclei image).
    authors : tuple of str
        The package's authors (bioimage.io requires at least one).
    license : str, optional
        SPDX id of the weights' licence (default: the starter card's, else CC-BY-4.0).
    """
    from .files import save_model
    from .sources import load_model, model_file

    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise DeepColorError(f"the bioimage.io package must be a .zip file (got {output.name}).")
    if output.exists() and not overwrite:
        raise DeepColorError(f"{output} already exists; pass --overwrite to replace it, or choose another name.")
    source = model_file(model_source)
    model = load_model(source)
    if model.net_config.position_periods:
        raise DeepColorError(f"{source.name} takes each pixel's place in the whole image as input (trained with "
                             "position_input), which a bioimage.io package cannot give its net: the tools that run "
                             "it cut images into tiles the net would take for whole images. Export a model trained "
                             "without position_input, or segment with napari-deepcolor itself.")
    _require_bioimageio()
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as spec

    model.net.eval()
    name = name or (str(model_source) if source.parent.name == "starters" else source.stem)
    norm = model.normalization or {}
    low, high, eps = float(norm.get("low", 1.0)), float(norm.get("high", 99.8)), 1e-6

    with tempfile.TemporaryDirectory(prefix="deepcolor-bioimageio-") as folder:
        folder = Path(folder)
        raw = _test_input(model, test_image)
        with torch.no_grad():
            activated = _ActivatedNet(model).eval()
            normalised = torch.from_numpy(_normalise_like_rdf(raw, low, high, eps))
            result = activated(normalised).float().numpy()
            traced = torch.jit.trace(activated, normalised, check_trace=False)
        traced.save(str(folder / "weights.torchscript.pt"))
        np.save(folder / "test_input.npy", raw)
        np.save(folder / "test_output.npy", result)
        labels = model.method.decode(result[0], options=model.method_options, **model.decode_parameters()).labels
        _cover(raw, labels, folder / "cover.png")
        (folder / "README.md").write_text(_documentation(model, name), encoding="utf-8")
        save_model(model, folder / MODEL_ATTACHMENT)

        channels = model.net_config.in_channels
        divisor = model.net_config.divisor
        input_axes = [spec.BatchAxis(),
                      spec.ChannelAxis(channel_names=[spec.Identifier(f"channel{i}") for i in range(channels)]),
                      spec.SpaceInputAxis(id=spec.AxisId("y"), size=spec.ParameterizedSize(min=divisor, step=divisor)),
                      spec.SpaceInputAxis(id=spec.AxisId("x"), size=spec.ParameterizedSize(min=divisor, step=divisor))]
        preprocessing = [spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
            axes=[spec.AxisId("y"), spec.AxisId("x")], min_percentile=low, max_percentile=high, eps=eps))]
        same = {axis: spec.SizeReference(tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(axis)) for axis in "yx"}
        output_axes = [spec.BatchAxis(),
                       spec.ChannelAxis(channel_names=[spec.Identifier(f"output{i}")
                                                       for i in range(model.net_config.out_channels)]),
                       spec.SpaceOutputAxis(id=spec.AxisId("y"), size=same["y"]),
                       spec.SpaceOutputAxis(id=spec.AxisId("x"), size=same["x"])]
        card = model.card or {}
        cite = [spec.CiteEntry(**PACKAGE_CITATION), spec.CiteEntry(**UNET_CITATION)]
        for text in card.get("citations", []):
            cite.append(spec.CiteEntry(text=text["text"], **{k: text[k] for k in ("doi", "url") if k in text}))
        description = spec.ModelDescr(
            name=_package_name(name),
            description=f"{model.method.title} instance segmentation (napari-deepcolor)"
                        + (f": {card['kind_of_data']}" if "kind_of_data" in card else ""),
            authors=[spec.Author(name=author) for author in authors],
            cite=cite,
            license=spec.LicenseId(license or card.get("licence_spdx", "CC-BY-4.0")),
            documentation=spec.FileDescr(source=folder / "README.md"),
            covers=[spec.FileDescr(source=folder / "cover.png")],
            attachments=[spec.FileDescr(source=folder / MODEL_ATTACHMENT)],
            tags=["instance-segmentation", "napari-deepcolor", model.method_name, "2d"],
            inputs=[spec.InputTensorDescr(id=spec.TensorId("raw"), axes=input_axes, preprocessing=preprocessing,
                                          test_tensor=spec.FileDescr(source=folder / "test_input.npy"),
                                          data=spec.IntervalOrRatioDataDescr(type="float32"))],
            outputs=[spec.OutputTensorDescr(id=spec.TensorId("output"), axes=output_axes,
                                            test_tensor=spec.FileDescr(source=folder / "test_output.npy"))],
            weights=spec.WeightsDescr(torchscript=spec.TorchscriptWeightsDescr(
                source=folder / "weights.torchscript.pt", pytorch_version=spec.Version(torch.__version__.split("+")[0]))),
            config={"napari_deepcolor": {
                "model_file": MODEL_ATTACHMENT, "method": model.method_name,
                "method_options": json.loads(json.dumps(model.config()["method_options"])),
                "decode_parameters": model.decode_parameters(), "object_scale": model.object_scale,
                "normalization": model.normalization, "test_input_scale": "net (objects of net_object_diameter px)"}},
        )
        from ..data.io import atomic_write

        atomic_write(output, lambda tmp: save_bioimageio_package(description, output_path=tmp), overwrite=overwrite)
    return output


def validate_package(path) -> None:
    """Raise :class:`DeepColorError` unless ``bioimageio.spec`` validates the package at ``path``."""
    _require_bioimageio()
    from bioimageio.spec import load_description
    from bioimageio.spec.common import InvalidDescr

    description = load_description(str(path))
    if isinstance(description, InvalidDescr):
        raise DeepColorError(f"{path} is not a valid bioimage.io package:\n{description.validation_summary}")
