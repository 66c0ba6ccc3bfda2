"""Reading images lazily (TIFF, zarr, plain PNG/JPEG) and deciding their axes, planes and channels."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data.normalize import COLOUR_CHANNELS
from ..errors import DeepColorError

_OME_AXES = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}


@dataclass(frozen=True)
class Layout:
    """How the axes of an image map onto planes, rows, columns and channels."""

    axes: str
    shape: tuple[int, ...]
    plane_axes: tuple[int, ...]
    channel_axis: int | None
    #: the one channel of ``channel_axis`` the model sees (``--channel``), or None: all of them
    channel_pick: int | None = None

    @property
    def height(self) -> int:
        return self.shape[self.axes.index("Y")]

    @property
    def width(self) -> int:
        return self.shape[self.axes.index("X")]

    @property
    def plane_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[a] for a in self.plane_axes)

    @property
    def _picked_axis(self) -> int | None:
        return self.channel_axis if self.channel_pick is not None else None

    @property
    def channels_fed(self) -> int:
        """How many channels each plane gives the model (before any conversion to the model's channels)."""
        return 1 if self.channel_axis is None or self.channel_pick is not None else self.shape[self.channel_axis]

    @property
    def n_planes(self) -> int:
        return math.prod(self.plane_shape)

    @property
    def out_axes(self) -> str:
        return "".join(self.axes[a] for a in self.plane_axes) + "YX"

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.plane_shape + (self.height, self.width)

    def selection(self, plane: int, rows=slice(None), cols=slice(None)) -> tuple:
        """Index of plane number ``plane`` (C order over the plane axes), rows and columns."""
        index = dict(zip(self.plane_axes, np.unravel_index(plane, self.plane_shape) if self.plane_axes else ()))
        if self.channel_pick is not None:
            index[self.channel_axis] = self.channel_pick
        spans = {self.axes.index("Y"): rows, self.axes.index("X"): cols}
        return tuple(int(index[a]) if a in index else spans.get(a, slice(None)) for a in range(len(self.axes)))

    def arrange(self, block: np.ndarray) -> np.ndarray:
        """A block read with :meth:`selection` as (h, w) or (h, w, C)."""
        kept = [a for a in range(len(self.axes)) if a not in self.plane_axes and a != self._picked_axis]
        order = [kept.index(self.axes.index("Y")), kept.index(self.axes.index("X"))]
        if self.channel_axis is not None and self.channel_pick is None:
            order.append(kept.index(self.channel_axis))
        return np.transpose(block, order)


def plan_layout(axes: str, shape, dtype, in_channels: int, *, name: str = "image", channel: int | None = None,
                channel_names=(), channel_option: str = "--channel") -> Layout:
    """Check an image's axes, shape and dtype and decide planes and channels (see the module notes).

    ``channel`` picks the one channel (of a ``C`` or ``S`` axis) a one-channel
    model sees (images without a channel axis ignore it); ``channel_names`` (e.g. from OME metadata) make the
    errors name them; ``channel_option`` is how the errors name the way to pick one (the CLI's flag, a
    widget's chooser).
    """
    axes, shape = axes.upper(), tuple(int(n) for n in shape)
    if len(axes) != len(shape):
        raise DeepColorError(f"{name}: axes '{axes}' do not match the shape {shape}; fix the file's metadata "
                             "or give --axes with one letter per axis.")
    if any(n == 0 for n in shape):
        raise DeepColorError(f"{name}: the image is empty (shape {shape}, axes {axes}, has a zero-length axis); "
                             "there is nothing to segment.")
    if axes.count("Y") != 1 or axes.count("X") != 1 or axes.count("S") > 1 or axes.count("C") > 1 \
            or ("S" in axes and "C" in axes):
        raise DeepColorError(f"{name}: unsupported shape {shape} with axes {axes}: an image needs one Y and one X "
                             "axis (2D planes, optionally stacked along Z, T... with at most one channel axis C or "
                             "RGB samples S).")
    dtype = np.dtype(dtype)
    if not (dtype == bool or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise DeepColorError(f"{name}: unsupported pixel type {dtype}; images must hold real numbers.")
    channel_axis = axes.index("S") if "S" in axes else axes.index("C") if "C" in axes else None
    pick = _pick_channel(axes, shape, channel_axis, in_channels, channel, name, tuple(channel_names), channel_option)
    planes = tuple(a for a, letter in enumerate(axes) if letter not in "YX" and a != channel_axis)
    return Layout(axes, shape, planes, channel_axis, pick)


def describe_channels(count: int, names=()) -> str:
    """``"2 channels (0: DAPI, 1: GFP)"`` or ``"2 channels (0, 1)"``."""
    names = tuple(names) if len(tuple(names)) == count else ()
    listed = ", ".join(f"{i}: {n}" for i, n in enumerate(names)) if names else ", ".join(map(str, range(count)))
    return f"{count} channel{'s' if count != 1 else ''} ({listed})"


def _pick_channel(axes, shape, channel_axis, in_channels, channel, name, names, option="--channel") -> int | None:
    """The channel index ``--channel`` picks, or None to feed the channel axis (if any) as it is."""
    count = shape[channel_axis] if channel_axis is not None else 1
    if channel is not None and channel_axis is not None:  # images without channels are used as they are
        if in_channels != 1:
            raise DeepColorError(f"{name}: {option} picks the one channel a one-channel model sees, but this "
                                 f"model takes {in_channels} channels; leave out {option}.")
        if not 0 <= channel < count:
            raise DeepColorError(f"{name}: there is no channel {channel}; the image (axes {axes}, shape {shape}) "
                                 f"has {describe_channels(count, names)}.")
        return channel
    if count == 1 and in_channels != 1 and in_channels not in COLOUR_CHANNELS:
        raise DeepColorError(f"{name}: the image has one channel but the model was trained on images with "
                             f"{in_channels} (e.g. nuclei and cytoplasm); give it images with those channels "
                             f"(axes with C{', e.g. --axes CYX' if option == '--channel' else ''}).")
    if channel_axis is None or axes[channel_axis] == "S" or count in (1, in_channels):
        return None  # fed as it is: RGB to a grey model is averaged, grey to a colour model repeated
    if in_channels == 1:
        raise DeepColorError(f"{name}: the image has {describe_channels(count, names)} but the model takes one; "
                             f"say which channel holds the objects with {option} (0 to {count - 1}).")
    raise DeepColorError(f"{name}: the image has {describe_channels(count, names)} but the model was trained on "
                         f"{in_channels}; use a model trained on images with these channels.")


class Source:
    """A lazily read image (a zarr array) with its axes; :meth:`read` turns read errors into ours."""

    def __init__(self, array, axes: str, name: str, channel_names=()):
        self.array, self.axes, self.name, self.channel_names = array, axes, name, tuple(channel_names)

    def read(self, layout: Layout, plane: int, rows=slice(None), cols=slice(None)) -> np.ndarray:
        try:
            block = np.asarray(self.array[layout.selection(plane, rows, cols)])
        except Exception as exc:
            raise DeepColorError(f"{self.name}: reading failed ({type(exc).__name__}: {exc}); the file is "
                                 "probably truncated or corrupt: copy it again.") from exc
        return layout.arrange(block)

    def read_channels(self, layout: Layout) -> np.ndarray:
        """The whole image as (planes..., H, W, C) with every channel (C = 1 without a channel axis), in
        the order of the labels' axes (for measuring intensities)."""
        try:
            block = np.asarray(self.array[...])
        except Exception as exc:
            raise DeepColorError(f"{self.name}: reading failed ({type(exc).__name__}: {exc}); the file is "
                                 "probably truncated or corrupt: copy it again.") from exc
        order = list(layout.plane_axes) + [layout.axes.index("Y"), layout.axes.index("X")]
        if layout.channel_axis is None:
            return np.transpose(block, order)[..., None]
        return np.transpose(block, order + [layout.channel_axis])


@contextmanager
def open_source(path) -> Iterator[Source]:
    """Open a TIFF file or a zarr folder lazily."""
    path = Path(path)
    if path.is_dir():
        yield _open_zarr(path)
        return
    if path.stat().st_size == 0:
        raise DeepColorError(f"{path.name}: the file is empty (0 bytes); was it copied completely?")
    if path.suffix.lower() not in (".tif", ".tiff"):  # PNG, JPEG, BMP: small, read whole with Pillow
        yield _open_plain(path)
        return
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise DeepColorError(f"{path.name}: not a readable TIFF file ({exc}); is it a complete TIFF?") from exc
    try:
        try:
            series = tif.series[0]
            source = Source(zarr.open(series.aszarr(level=0), mode="r"), series.axes, path.name,
                            _ome_channel_names(tif))
        except Exception as exc:
            raise DeepColorError(f"{path.name}: the TIFF holds no readable image "
                                 f"({type(exc).__name__}: {exc}).") from exc
        yield source
    finally:
        tif.close()


def _ome_channel_names(tif) -> tuple[str, ...]:
    """The channel names of an OME-TIFF's first image (``<Channel Name="DAPI">``), or ()."""
    if not tif.is_ome:
        return ()
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(tif.ome_metadata)
    except (ET.ParseError, TypeError):
        return ()
    image = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if image is None:
        return ()
    channels = [e for e in image if e.tag.endswith("Channel")]
    names = tuple(c.get("Name") or "" for c in channels)
    return names if all(names) else ()


def _open_plain(path: Path) -> Source:
    """A PNG, JPEG or BMP image read whole: grey ``YX`` or colour ``YXS``."""
    from ..data.io import read_image

    array = read_image(path)
    axes = "YXS" if array.ndim == 3 and array.shape[-1] in (3, 4) else "Q" * (array.ndim - 2) + "YX"
    return Source(array, axes, path.name)


def _open_zarr(path: Path) -> Source:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise DeepColorError(f"{path.name}: not a readable zarr store ({type(exc).__name__}: {exc}).") from exc
    axes = None
    if isinstance(node, zarr.Group):
        attributes = dict(node.attrs)
        multiscales = attributes.get("multiscales") or attributes.get("ome", {}).get("multiscales")
        if multiscales:  # OME-zarr: level 0 is the full resolution
            node_axes = multiscales[0].get("axes", [])
            node = node[multiscales[0]["datasets"][0]["path"]]
            axes = "".join(_axis_letter(a["name"] if isinstance(a, dict) else a) for a in node_axes) or None
        else:
            arrays = list(node.arrays())
            if len(arrays) != 1:
                raise DeepColorError(f"{path.name}: a zarr group with {len(arrays)} arrays and no OME multiscales "
                                     "metadata; give the path of one array instead.")
            node = arrays[0][1]
    names = getattr(node.metadata, "dimension_names", None) or node.attrs.get("_ARRAY_DIMENSIONS")
    if axes is None and isinstance(node.attrs.get("axes"), str):
        axes = node.attrs["axes"]
    if axes is None and names and all(names):
        axes = "".join(_axis_letter(n) for n in names)
    if axes is None:  # guess: RGB(A) when the last axis has 3 or 4 entries, planes before the last two
        ndim = len(node.shape)
        axes = "Q" * (ndim - 3) + "YXS" if ndim >= 3 and node.shape[-1] in (3, 4) else "Q" * (ndim - 2) + "YX"
    return Source(node, axes, path.name)


def _axis_letter(name: str) -> str:
    name = str(name)
    return name.upper() if len(name) == 1 and name.upper() in "TZCYXSQI" else _OME_AXES.get(name.lower(), "Q")
