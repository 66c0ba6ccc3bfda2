"""Segmenting folders of images: TIFF stacks, zarr, images larger than memory; here or on dask.

:class:`Batch` runs a trained model over every image of a folder and writes one
label image per input into an output folder, mirroring sub-folders. It is a
generator of events (:class:`BatchStarted`, :class:`FileStarted`,
:class:`PlaneDone`, :class:`FileDone`, :class:`FileFailed`, :class:`BatchFinished`) that the CLI
shows with tqdm and the napari widget listens to; :meth:`Batch.stop` asks it to
stop between files.

Decisions, in the order a file meets them:

* **Which files**: names matching the patterns (default ``*.tif``, ``*.tiff``,
  ``*.zarr``, case-insensitive); hidden names are ignored, ``.zarr`` folders are
  inputs and never searched, symbolic links to folders are not followed and,
  when the output folder lies inside the input folder, it is not searched.
* **Axes** come from the file: tifffile's ``series.axes`` for TIFF (ImageJ and
  OME-TIFF metadata); OME-zarr multiscale metadata (level 0), zarr v3
  ``dimension_names`` or an ``axes`` attribute for zarr. Axes the file does not
  name (tifffile's ``Q`` and ``I``, untagged zarr) are guessed by
  :func:`~napari_deepcolor.stacks.resolve_axes` (one unnamed leading axis is Z,
  two are TZ) and the guess is reported (``FileResult.note``, printed by the
  CLI); ``axes`` (``--axes TYX``) overrides them for every image with that many
  axes. ``S`` (samples: RGB) is fed to the net as channels (averaged for a grey
  model). A ``C`` axis is fed as channels when the model takes that many; a
  one-channel model sees the channel ``channel`` (``--channel N``) picks, and
  without it a multi-channel image is an error that names the channels (never a
  silent split). Every other axis enumerates planes; each plane is segmented
  with the 2D model, objects are linked through Z (stitching) and T (tracking)
  by :func:`~napari_deepcolor.stacks.link_labels`, and the labels are written as
  one stack with the input's axes minus the channel axis. Beside each label
  file: ``NAME_objects.csv``, one row per object and frame
  (:mod:`napari_deepcolor.measure`), and for time-lapses ``NAME_tracks.csv``.
  In-process runs report each plane (:class:`PlaneDone`).
* **Failures**: a file that is not an image, is truncated or corrupt, has a
  zero-length axis ("empty"), has no Y and X axes, or holds no real numbers is
  reported (status ``failed`` with the reason) and the batch carries on; the
  exit status of the CLI is then 1. An image whose every pixel has the same
  value (e.g. all zero) is a valid image with no objects: its labels are all
  background and the net is not run on it.
* **Resuming**: outputs are written to a temporary name beside the target and
  renamed when complete, so an output that exists is finished; it is skipped
  (``skipped-existing``) unless ``overwrite``. Temporary files left by a killed
  run are removed when the next run starts (so run one batch per output
  folder at a time). A summary CSV is written atomically at the end (also when
  stopped or interrupted): ``batch_summary_<timestamp>.csv`` and the latest
  run's copy ``batch_summary.csv`` (``summary=False``, as ``predict`` runs it,
  writes none). An output that would land on an input image (e.g. ``a.tif``
  segmented into its own folder) is refused, ``overwrite`` or not.
* **Scaling out**: every file is one task, :func:`segment_file`, which loads the
  model (cached per process, keyed by path, modification time and size), reads
  the file, predicts, decodes, writes atomically and returns a summary row.
  The same task runs on one of two executors: by default in this process, one
  file at a time (no cluster start-up, which costs seconds), or on
  dask.distributed: a ``LocalCluster`` of ``workers`` processes with one
  thread each, or an existing cluster at ``scheduler`` (its workers need this
  package installed and must see the input and output folders at the same
  paths). At most one task per worker thread is in flight, so a stop takes
  effect after the files being segmented; :class:`FileStarted` means handed to
  a worker. Our LocalCluster's workers do not get dask's default
  ``MALLOC_TRIM_THRESHOLD_``, which made each file 2-2.5x slower.
* **Large images**: a plane of more than ``large_image_megapixels`` (default 16
  MP, where the in-memory route needs about 65 bytes per pixel for a
  9-colour model, i.e. about 1 GB) goes out of core: it is read window by
  window (tifffile's zarr view of the TIFF, or the zarr input), normalised
  with percentiles estimated on a regular subsample of at most 4 MP (every k-th
  pixel in both directions; exact for planes up to 4 MP) while the minimum and
  maximum come from every pixel, predicted tile by tile into a chunked zarr
  store in a hidden scratch folder inside the output folder, and decoded block
  by block (the method's :meth:`~napari_deepcolor.methods.base.Method.decode_blocks`)
  so that objects crossing block borders get one label. Memory does not grow with the
  image (0.7 GB peak for 16384 x 16384 px, benchmarks/large_image.py); the
  scratch store takes about 30 bytes per pixel of disk. This is implemented for deep
  coloring; its ``merge_radius`` is not supported out of core (an error asks to
  set it to 0 or raise the threshold). Tiles and chunks share one grid, so
  for the same net output the labels equal the in-memory decode's up to a
  renumbering of the objects.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Iterator

import numpy as np

from .data.io import atomic_write, atomic_write_folder, smallest_label_dtype
from .errors import DeepColorError
from .stacks import STITCH_THRESHOLD, TRACK_THRESHOLD, check_axes

log = logging.getLogger(__name__)

DEFAULT_PATTERNS = ("*.tif", "*.tiff", "*.zarr")
FORMATS = ("tif", "zarr")
DONE, SKIPPED, FAILED, CANCELLED = "done", "skipped-existing", "failed", "cancelled"
SUMMARY_NAME = "batch_summary.csv"
SUMMARY_FIELDS = ("file", "output", "status", "objects", "seconds", "route", "error", "axes", "planes", "note")
#: models with classes add one summary column per class: ``objects_alive``, ``objects_dead``, ...
CLASS_COUNT_PREFIX = "objects_"
SCRATCH_PREFIX = ".batch-scratch-"
#: names of the temporaries of atomic writes (``.NAME.RANDOM.part[.SUFFIX]``) and replaced stores
_TEMPORARY = re.compile(r"^\..+\.part(\.[A-Za-z0-9]+)?$|^\..+\.[0-9a-f]{8}\.old$")
#: pixels of the subsample that estimates the normalisation percentiles of a large image
SUBSAMPLE_PIXELS = 4_000_000
#: side in pixels of the blocks a large image is scanned and decoded in (rounded down to the tile grid);
#: a block of a 9-colour output costs about 150 bytes per pixel while it is decoded
DECODE_BLOCK = 1024
#: context in pixels around each tile (as :func:`~napari_deepcolor.inference.predict`'s default)
MARGIN = 64
_OME_AXES = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}


# -- configuration and events ------------------------------------------------------

@dataclass(frozen=True)
class BatchConfig:
    """One batch run. ``decode`` holds decode-parameter overrides (the rest: the model's tuned values)."""

    model: str
    input: str
    output: str
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    recursive: bool = False
    format: str = "tif"
    decode: dict = field(default_factory=dict)
    workers: int | None = None
    scheduler: str | None = None
    overwrite: bool = False
    device: str = "auto"
    tile_size: int = 512
    large_image_megapixels: float = 16.0
    #: the objects' diameter in these images (px) if it differs from the training images' (None: the same)
    object_diameter: float | None = None
    summary: bool = True  # write the summary CSV into the output folder
    #: "crf": the instance CRF (napari_deepcolor.refine) after decoding, in memory only; "none"; None: what
    #: the model chose on its validation images (Model.refinement)
    refine: str | None = None
    #: average the net's output over the four flips (napari_deepcolor.inference.FLIPS); None: the model's choice
    flips: bool | None = None
    #: axes of images with this many axes (e.g. "TYX"), overriding the file's or the guess (None: the file's)
    axes: str | None = None
    #: the channel a one-channel model sees in a multi-channel image (None: the image must match the model)
    channel: int | None = None
    #: least IoU linking an object to its continuation in the next z plane / time frame (0: no linking)
    stitch_threshold: float = STITCH_THRESHOLD
    track_threshold: float = TRACK_THRESHOLD
    measure: bool = True  # write NAME_objects.csv (napari_deepcolor.measure) beside every label file

    def __post_init__(self):
        if self.axes is not None:
            object.__setattr__(self, "axes", check_axes(self.axes))
        if self.channel is not None and self.channel < 0:
            raise DeepColorError(f"--channel counts from 0 (got {self.channel}).")
        for what, value in (("stitch", self.stitch_threshold), ("track", self.track_threshold)):
            if not 0 <= value <= 1:
                raise DeepColorError(f"the {what} threshold is an IoU between 0 and 1 (got {value}); 0 links nothing.")
        if self.format not in FORMATS:
            raise DeepColorError(f"unknown output format '{self.format}'; choose one of: {', '.join(FORMATS)}.")
        if self.workers is not None and self.scheduler is not None:
            raise DeepColorError("give either workers (a local cluster) or a scheduler address, not both.")
        if self.workers is not None and self.workers < 1:
            raise DeepColorError(f"workers must be at least 1 (got {self.workers}).")
        if self.tile_size < 2 * MARGIN + 16:
            raise DeepColorError(f"tile size must be at least {2 * MARGIN + 16} pixels (got {self.tile_size}).")
        if not self.large_image_megapixels > 0:
            raise DeepColorError(f"the large-image threshold must be positive (got {self.large_image_megapixels} MP).")
        if not self.patterns:
            raise DeepColorError("give at least one file name pattern, e.g. '*.tif'.")
        from .refine import check_refinement

        if self.refine is not None:
            check_refinement(self.refine)


@dataclass(frozen=True)
class FileResult:
    """One row of the summary: input and output relative to their folders, status, objects, time."""

    file: str
    output: str
    status: str
    objects: int | None = None
    seconds: float = 0.0
    route: str = ""  # "in-memory" or "out-of-core"
    error: str = ""
    #: models with classes: ((class name, objects of that class), ...) in the model's class order
    class_counts: tuple = ()
    axes: str = ""  # the axes used, with "(guessed)" or "(given)" when they did not come from the file
    planes: int | None = None  # 2D planes segmented
    #: what the user should know, in one line: axes that were guessed, an implicit conversion made (e.g.
    #: an RGB image averaged to grey for a grey model)
    note: str = ""


@dataclass(frozen=True)
class PlaneDone:
    """A plane of a file was segmented (in-process runs only: dask workers report whole files)."""

    file: str
    plane: int
    planes: int


@dataclass(frozen=True)
class BatchStarted:
    total: int
    output: str
    workers: int


@dataclass(frozen=True)
class FileStarted:
    """A file was handed to a worker (with the in-process default: it starts now)."""

    file: str
    index: int
    total: int


@dataclass(frozen=True)
class FileDone:
    """A file was segmented (``result.status == "done"``) or skipped because its output exists."""

    result: FileResult
    completed: int
    total: int


@dataclass(frozen=True)
class FileFailed:
    result: FileResult
    completed: int
    total: int


@dataclass(frozen=True)
class BatchFinished:
    results: tuple[FileResult, ...]
    summary: str
    stopped: bool
    seconds: float

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


# -- finding files and naming outputs ---------------------------------------------

def find_inputs(folder, patterns=DEFAULT_PATTERNS, *, recursive: bool = False, exclude=()) -> list[Path]:
    """Image files (and ``.zarr`` folders) in ``folder`` whose names match one of ``patterns``.

    Hidden names are skipped, matching folders are not searched, symbolic links
    to folders are not followed and folders in ``exclude`` are left out.
    """
    folder = Path(folder)
    excluded = {os.path.realpath(p) for p in exclude}
    found = []
    for root, dirs, files in os.walk(folder):
        root = Path(root)
        searched = []
        for name in sorted(dirs):
            path = root / name
            if name.startswith(".") or os.path.realpath(path) in excluded:
                continue
            if _matches(name, patterns):
                found.append(path)
            elif recursive and not name.lower().endswith(".zarr"):  # a store's chunks are not images
                searched.append(name)
        dirs[:] = searched
        found += [root / name for name in files if not name.startswith(".") and _matches(name, patterns)]
    return sorted(found)


def _matches(name: str, patterns) -> bool:
    return any(fnmatch(name.lower(), pattern.lower()) for pattern in patterns)


def output_name(name: str, fmt: str) -> str:
    """``cells.ome.tif`` -> ``cells.tif`` (or ``cells.zarr``): the label file of an input."""
    stem = Path(name).stem
    if stem.lower().endswith(".ome"):
        stem = stem[:-4]
    return f"{stem}.{fmt}"


def _inside(path: Path, folder: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, base]) == base


def clean_stale_temporaries(folder) -> list[Path]:
    """Remove the temporary files and scratch folders a killed run left in ``folder`` (recursively)."""
    removed = []
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            if name.startswith(SCRATCH_PREFIX) or _TEMPORARY.match(name):
                path = Path(root) / name
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.lower().endswith(".zarr")]
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run in %s", len(removed), folder)
    return removed


# -- reading sources and their axes -------------------------------------------------

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
                channel_names=()) -> Layout:
    """Check an image's axes, shape and dtype and decide planes and channels (see the module notes).

    ``channel`` picks the one channel (of a ``C`` or ``S`` axis) a one-channel
    model sees (images without a channel axis ignore it); ``channel_names`` (e.g. from OME metadata) make the errors name them.
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
    pick = _pick_channel(axes, shape, channel_axis, in_channels, channel, name, tuple(channel_names))
    planes = tuple(a for a, letter in enumerate(axes) if letter not in "YX" and a != channel_axis)
    return Layout(axes, shape, planes, channel_axis, pick)


def describe_channels(count: int, names=()) -> str:
    """``"2 channels (0: DAPI, 1: GFP)"`` or ``"2 channels (0, 1)"``."""
    names = tuple(names) if len(tuple(names)) == count else ()
    listed = ", ".join(f"{i}: {n}" for i, n in enumerate(names)) if names else ", ".join(map(str, range(count)))
    return f"{count} channel{'s' if count != 1 else ''} ({listed})"


def _pick_channel(axes, shape, channel_axis, in_channels, channel, name, names) -> int | None:
    """The channel index ``--channel`` picks, or None to feed the channel axis (if any) as it is."""
    count = shape[channel_axis] if channel_axis is not None else 1
    if channel is not None and channel_axis is not None:  # images without channels are used as they are
        if in_channels != 1:
            raise DeepColorError(f"{name}: --channel picks the one channel a one-channel model sees, but this "
                                 f"model takes {in_channels} channels; leave out --channel.")
        if not 0 <= channel < count:
            raise DeepColorError(f"{name}: there is no channel {channel}; the image (axes {axes}, shape {shape}) "
                                 f"has {describe_channels(count, names)}.")
        return channel
    if channel_axis is None or axes[channel_axis] == "S" or count in (1, in_channels):
        return None  # fed as it is: RGB to a grey model is averaged, grey to a colour model repeated
    if in_channels == 1:
        raise DeepColorError(f"{name}: the image has {describe_channels(count, names)} but the model takes one; "
                             f"say which channel holds the objects with --channel (0 to {count - 1}).")
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
    from .data.io import read_image

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


# -- the task: one file ---------------------------------------------------------------

@dataclass(frozen=True)
class FileTask:
    """Everything a worker needs to segment one file (plain data: it travels to dask workers)."""

    config: BatchConfig
    model: str
    model_stamp: tuple
    source: str
    target: str
    file: str
    output: str


@functools.lru_cache(maxsize=2)
def _cached_model(path: str, stamp: tuple, device: str):
    from .checkpoint import load_model

    return load_model(path, device=device)


def segment_file(task: FileTask) -> FileResult:
    """Segment one file and write its labels atomically; never raises for a bad file: returns the row."""
    steps = segment_file_steps(task)
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


def segment_file_steps(task: FileTask):
    """:func:`segment_file` as a generator: yields ``(planes done, planes)`` after each plane and
    returns the row."""
    started, facts = time.perf_counter(), {}
    try:
        objects, route, counts = yield from _segment(task, facts)
        return FileResult(task.file, task.output, DONE, objects, round(time.perf_counter() - started, 3), route,
                          class_counts=counts, **facts)
    except DeepColorError as exc:
        error = str(exc)
    except Exception as exc:  # an unforeseen problem with this file: report it, carry on with the others
        log.exception("%s: unexpected error", task.file)
        error = f"unexpected error ({type(exc).__name__}: {exc}); please report it."
    return FileResult(task.file, task.output, FAILED, None, round(time.perf_counter() - started, 3), "", error,
                      **facts)


def _segment(task: FileTask, facts: dict):
    """Segment one file, yielding per plane; ``(objects, route, class counts)``. ``facts`` gets the axes, the
    planes and the note (axes guessed, a channel conversion made)."""
    from .device import resolve_device
    from .stacks import axes_note, resolve_axes

    config = task.config
    device = str(resolve_device(config.device))
    model = _cached_model(task.model, task.model_stamp, device)
    parameters = model.decode_parameters(config.decode)
    tile = _tile_size(config.tile_size, model.net_config.divisor)
    with open_source(task.source) as source:
        array = source.array
        try:
            axes, decided = resolve_axes(source.axes, array.shape, config.axes)
        except DeepColorError as exc:
            raise DeepColorError(f"{task.file}: {exc}") from None
        layout = plan_layout(axes, array.shape, array.dtype, model.net_config.in_channels, name=task.file,
                             channel=config.channel, channel_names=source.channel_names)
        from .inference import channel_conversion

        channels = 1 if layout.channel_axis is None or layout.channel_pick is not None else \
            layout.shape[layout.channel_axis]
        notes = (axes_note(axes, decided, array.shape) if decided != "file" else "",
                 channel_conversion(model.net_config.in_channels, channels))
        facts.update(axes=axes + ("" if decided == "file" else f" ({decided})"), planes=layout.n_planes,
                     note="; ".join(n for n in notes if n))
        if layout.height * layout.width > config.large_image_megapixels * 1e6:
            objects = yield from _segment_out_of_core(model, source, layout, parameters, task, tile, device)
            return objects, "out-of-core", ()
        return (yield from _segment_in_memory(model, source, layout, parameters, task, tile, device))


def _tile_size(tile_size: int, divisor: int) -> int:
    """A tile whose core (tile minus margins) is a multiple of 16 and of the net's divisor.

    The cores are the grid of the out-of-core route's chunks and TIFF tiles
    (which must be multiples of 16); both routes use the same tiles.
    """
    multiple = max(16, divisor)
    return -(-(tile_size - 2 * MARGIN) // multiple) * multiple + 2 * MARGIN


def _segment_in_memory(model, source, layout, parameters, task, tile, device):
    """Segment a file whose planes fit in memory, yielding per plane; ``(objects, route, class counts)``.

    Planes are segmented one by one, then objects are linked through Z and T
    (:func:`~napari_deepcolor.stacks.link_labels`); the class table, the tracks
    table (time-lapses) and the measurements are written before the labels, so
    that a finished label file always has them.
    """
    from .inference import match_channels, predict, stack_instances
    from .methods.base import Instances

    planes, (refine, flips) = [], model.refinement(task.config.refine, task.config.flips)
    for plane in range(layout.n_planes):
        image = source.read(layout, plane)
        if _is_constant(match_channels(model, image)):
            nothing = np.zeros(0, np.int32) if model.output_class_names else None
            planes.append(Instances(np.zeros(image.shape[:2], np.uint8), np.zeros(0, np.float32), nothing,
                                    None if nothing is None else np.zeros(0, np.float32)))
        else:
            prediction = predict(model, image, stack=False, device=device, tile_size=tile, margin=MARGIN,
                                 object_diameter=task.config.object_diameter, flips=flips)
            instances = prediction.decode(**parameters)
            if refine == "crf":
                from .refine import refine_prediction

                instances = refine_prediction(prediction, image, instances)
            planes.append(instances)
        yield plane + 1, layout.n_planes
    instances, parents = _linked(stack_instances(planes), layout, task.config)
    labels = instances.labels.reshape(layout.out_shape)
    counts = ()
    overwrite = task.config.overwrite
    if model.output_class_names:  # written first: a finished label file then always has its class table
        from .data.classes import class_counts, class_table_path, write_class_table

        write_class_table(class_table_path(task.target), instances, model.output_class_names,
                          overwrite=overwrite)
        counts = tuple(class_counts(instances, model.output_class_names).items())
    if "T" in layout.out_axes:
        from .measure import tracks_path, write_table
        from .stacks import TRACK_FIELDS, tracks_table

        write_table(tracks_path(task.target), tracks_table(labels, layout.out_axes, parents), TRACK_FIELDS,
                    overwrite=True)  # our own companion of a label file that is not there yet
    if task.config.measure:
        from .measure import measure_objects, measurements_path, write_table

        table = measure_objects(labels, layout.out_axes, image=source.read_channels(layout), instances=instances,
                                class_names=model.output_class_names, channel_names=source.channel_names)
        write_table(measurements_path(task.target), table, overwrite=True)
    _write_output(task, layout, labels.dtype, tile - 2 * MARGIN, labels=labels)
    return instances.count, "in-memory", counts


def _linked(instances, layout: Layout, config: BatchConfig):
    """Instances whose ids follow the objects through Z and T (if the labels have those axes) and the
    divisions found, ``{daughter: mother}``."""
    from .methods.base import Instances
    from .stacks import link_instances

    shaped = Instances(instances.labels.reshape(layout.out_shape), instances.scores, instances.classes,
                       instances.class_scores)
    return link_instances(shaped, layout.out_axes, stitch_threshold=config.stitch_threshold,
                          track_threshold=config.track_threshold)


def _is_constant(image: np.ndarray) -> bool:
    """Whether every channel of an (H, W, C) image holds one value: an image without objects."""
    return bool(np.all(image.min(axis=(0, 1)) == image.max(axis=(0, 1))))


# -- the out-of-core route ------------------------------------------------------------

class _PreparedWindows:
    """One plane of a lazily read image as the net's input (H, W, C), read window by window.

    Channels are matched to the model as for in-memory images; the percentile
    normalisation uses the fixed offset and scale estimated by :func:`_scan_plane`.
    """

    def __init__(self, model, source, layout, plane, offset, scale):
        self.model, self.source, self.layout, self.plane = model, source, layout, plane
        self.offset, self.scale = offset, scale
        self.shape = (layout.height, layout.width, model.net_config.in_channels)

    def __getitem__(self, key):
        from .inference import match_channels

        rows, cols = key
        image = match_channels(self.model, self.source.read(self.layout, self.plane, rows, cols))
        out = image.astype(np.float32)  # the operations of normalize_percentile, in its order
        if not np.all(np.isfinite(out)):
            raise DeepColorError(f"{self.source.name}: the image holds NaN or infinite values; replace them first.")
        out -= self.offset
        out *= self.scale
        return out


def _scan_plane(model, source, layout, plane, block: int):
    """Normalisation ``(offset, scale)`` of one plane read block by block, or None if it is constant.

    Percentiles come from every k-th pixel in both directions (at most
    SUBSAMPLE_PIXELS pixels; every pixel for planes up to that size), the
    fallback minimum and maximum (for channels whose percentiles coincide) from
    every pixel, as :func:`~napari_deepcolor.data.normalize.normalize_percentile`.
    """
    from .inference import match_channels

    height, width = layout.height, layout.width
    step = max(1, math.ceil(math.sqrt(height * width / SUBSAMPLE_PIXELS)))
    samples, lows, highs = [], [], []
    for y0 in range(0, height, block):
        for x0 in range(0, width, block):
            image = match_channels(model, source.read(layout, plane, slice(y0, y0 + block), slice(x0, x0 + block)))
            image = image.astype(np.float32) if image.dtype == bool else image
            lows.append(image.min(axis=(0, 1)))
            highs.append(image.max(axis=(0, 1)))
            samples.append(image[(-y0) % step::step, (-x0) % step::step].reshape(-1, image.shape[-1]))
    low, high = np.min(lows, axis=0).astype(np.float64), np.max(highs, axis=0).astype(np.float64)
    if np.all(low == high):
        return None
    norm = model.normalization or {}
    sample = np.concatenate(samples)
    lo, hi = np.percentile(sample, [norm.get("low", 1.0), norm.get("high", 99.8)], axis=0).astype(np.float64)
    collapsed = hi - lo <= 0
    lo, hi = np.where(collapsed, low, lo), np.where(collapsed, high, hi)
    span = hi - lo
    scale = np.where(span <= 0, 0.0, 1.0 / np.where(span <= 0, 1.0, span))
    return lo.astype(np.float32), scale.astype(np.float32)


def _segment_out_of_core(model, source, layout, parameters, task, tile, device):
    """Segment planes larger than memory allows, yielding per plane; returns the number of objects.

    Objects are not linked through Z or T here (ids are unique across the
    planes), and no measurements table is written.
    """
    method, threshold = model.method, f"{task.config.large_image_megapixels:g} MP"
    if layout.n_planes > 1 and ("T" in layout.out_axes or "Z" in layout.out_axes):
        log.warning("%s: planes over %s are segmented out of core, where objects are not linked through Z or T "
                    "(each plane's objects get their own ids)", task.file, threshold)
    if task.config.refine not in (None, "none"):  # the model's own choice of the CRF is left out here
        raise DeepColorError(f"{task.file}: planes over {threshold} are segmented out of core, where the "
                             f"'{task.config.refine}' refinement is not available (it needs the whole plane in "
                             "memory); segment without --refine, or raise the large-image threshold "
                             "(CLI: --large-image-mp) if the image fits in memory.")
    limitation = method.blockwise_limitation(parameters, model.method_options)
    if model.output_class_names:
        limitation = "is not implemented for models with classes (the class of each object needs the whole plane)"
    if limitation:
        raise DeepColorError(f"{task.file}: planes over {threshold} are decoded out of core, which {limitation}; "
                             "raise the large-image threshold (CLI: --large-image-mp) if the image fits in memory.")
    core = tile - 2 * MARGIN
    Path(task.target).parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=Path(task.target).parent))
    try:
        planes, total = [], 0
        for plane in range(layout.n_planes):
            ids, lookup, count = _label_plane_out_of_core(model, source, layout, plane, parameters, scratch, tile,
                                                          device, task.config.object_diameter,
                                                          model.refinement(flips=task.config.flips)[1])
            planes.append((ids, np.where(lookup > 0, lookup.astype(np.int64) + total, 0)))
            total += count
            yield plane + 1, layout.n_planes
        dtype = smallest_label_dtype(total)
        planes = [(ids, lookup.astype(dtype)) for ids, lookup in planes]

        def bands():  # the final labels, plane by plane, in bands of one tile row
            for ids, lookup in planes:
                for y0 in range(0, layout.height, core):
                    rows = slice(y0, min(y0 + core, layout.height))
                    yield np.zeros((rows.stop - y0, layout.width), dtype) if ids is None else lookup[ids[rows]]

        _write_output(task, layout, dtype, core, bands=bands())
        return total
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _label_plane_out_of_core(model, source, layout, plane, parameters, scratch: Path, tile: int, device,
                             object_diameter: float | None = None, flips: bool = False):
    """Predict one plane into ``scratch`` and label it: ``(ids, lookup, count)``; labels are ``lookup[ids]``."""
    import zarr
    from zarr.codecs import BloscCodec

    from .inference import predict_output

    core, (height, width) = tile - 2 * MARGIN, (layout.height, layout.width)
    block = core * max(1, DECODE_BLOCK // core)
    scaling = _scan_plane(model, source, layout, plane, block)
    if scaling is None:  # a constant plane: no objects
        return None, np.zeros(1, np.int64), 0
    fast = [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")]  # scratch: speed over size (zstd: 3x slower)
    channels = model.net_config.out_channels
    raw = zarr.create_array(store=str(scratch / "raw.zarr"), shape=(channels, height, width),
                            chunks=(channels, core, core), dtype="float32", compressors=fast, overwrite=True)
    predict_output(model, _PreparedWindows(model, source, layout, plane, *scaling), device=device, tile_size=tile,
                   margin=MARGIN, object_diameter=object_diameter, flips=flips, out=raw)
    ids = zarr.create_array(store=str(scratch / f"ids-{plane}.zarr"), shape=(height, width), chunks=(core, core),
                            dtype=np.uint32 if height * width < 2**32 else np.uint64, fill_value=0, compressors=fast)
    lookup, count = model.method.decode_blocks(raw, ids, block=block, **parameters)
    return ids, lookup, count


# -- writing labels ----------------------------------------------------------------------

def _write_output(task: FileTask, layout: Layout, dtype, tile: int, *, labels=None, bands=None) -> None:
    """Write labels atomically as TIFF or zarr, with the input's axes minus the channels.

    Either ``labels``, the whole label image, or ``bands``, an iterator over the
    planes' bands of ``tile`` rows in order, so that an image larger than memory
    is written as a tiled TIFF or a chunked zarr array.
    """
    shape, axes, height, width = layout.out_shape, layout.out_axes, layout.height, layout.width
    target, overwrite = Path(task.target), task.config.overwrite
    if task.config.format == "zarr":
        def write(tmp: Path) -> None:
            import zarr

            chunks = (1,) * (len(shape) - 2) + (min(tile, height), min(tile, width))
            out = zarr.create_array(store=str(tmp), shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                    dimension_names=[a.lower() for a in axes],
                                    attributes={"axes": axes, "source": task.file}, overwrite=True)
            if labels is not None:
                out[...] = labels
                return
            per_plane = -(-height // tile)
            for number, band in enumerate(bands):
                plane, y0 = divmod(number, per_plane)
                index = tuple(int(i) for i in np.unravel_index(plane, layout.plane_shape)) if layout.plane_axes else ()
                out[index + (slice(y0 * tile, y0 * tile + band.shape[0]),)] = band

        atomic_write_folder(target, write, overwrite=overwrite)
        return

    def write(tmp: Path) -> None:
        import tifffile

        options = dict(compression="zlib", photometric="minisblack", metadata={"axes": axes},
                       bigtiff=math.prod(shape) * np.dtype(dtype).itemsize > 2**31)
        if labels is not None:
            tifffile.imwrite(tmp, labels, **options)
        else:
            tiles = (band[:, x0:x0 + tile] for band in bands for x0 in range(0, width, tile))
            tifffile.imwrite(tmp, tiles, shape=shape, dtype=dtype, tile=(tile, tile), **options)

    atomic_write(target, write, overwrite=overwrite)


# -- executors: the same task here or on dask ---------------------------------------------

class _Deferred:
    """A task run here when asked: :meth:`steps` runs it plane by plane (yielding progress), :meth:`result`
    gives its row (running it whole if the steps were not taken)."""

    _unset = object()

    def __init__(self, fn, args):
        self.fn, self.args, self._value = fn, args, self._unset

    def steps(self):
        if self.fn is segment_file:
            self._value = yield from segment_file_steps(*self.args)

    def result(self):
        return self.fn(*self.args) if self._value is self._unset else self._value


class _InProcess:
    """Runs each task in this process when its result is asked for; no cluster to start."""

    slots = 1

    def submit(self, fn, *args):
        return _Deferred(fn, args)

    def wait_first(self, pending):
        return [next(iter(pending))]

    def close(self):
        pass


class _Dask:
    """Runs tasks on a dask.distributed cluster: a LocalCluster we start, or one at an address."""

    def __init__(self, *, workers: int | None = None, scheduler: str | None = None):
        from distributed import Client, LocalCluster

        self.cluster = None
        if scheduler is not None:
            try:
                self.client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise DeepColorError(f"could not reach a dask scheduler at {scheduler} ({exc}); check the address "
                                     "(e.g. tcp://host:8786) and that the scheduler is running.") from exc
        else:
            import dask

            # dask's default worker environment also sets MALLOC_TRIM_THRESHOLD_=65536, which turns every
            # large array of a prediction into fresh mmap'd pages: 2-2.5x slower per file here. Keep one
            # BLAS/OpenMP thread per worker, drop the trim threshold.
            environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                       if k != "MALLOC_TRIM_THRESHOLD_"}
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        self.slots = max(1, sum(self.client.nthreads().values()))

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def wait_first(self, pending):
        from distributed import wait

        return wait(list(pending), return_when="FIRST_COMPLETED").done

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


# -- the engine ----------------------------------------------------------------------------

class Batch:
    """Segment every image of a folder; :meth:`run` yields events, :meth:`stop` stops between files."""

    def __init__(self, config: BatchConfig):
        self.config = config
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the files being segmented, start no more (safe from another thread)."""
        self._stop.set()

    def run(self) -> Iterator[BatchStarted | FileStarted | PlaneDone | FileDone | FileFailed | BatchFinished]:
        from .checkpoint import model_file

        # a starter name or an exported .zip becomes the model file itself, which workers load by path
        self.config = replace(self.config, model=str(model_file(self.config.model)))
        config, started = self.config, time.perf_counter()
        source, output = Path(config.input).absolute(), Path(config.output).absolute()
        stamp = self._check_inputs()
        jobs = self._plan(source, output, stamp)
        output.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(output)
        executor = _InProcess() if config.workers is None and config.scheduler is None else \
            _Dask(workers=config.workers, scheduler=config.scheduler)
        total, results, pending, queue = len(jobs), {}, {}, deque(enumerate(jobs))
        try:
            yield BatchStarted(total, str(output), executor.slots)
            while queue or pending:
                while queue and len(pending) < executor.slots and not self._stop.is_set():
                    index, job = queue.popleft()
                    if isinstance(job, FileResult):  # decided without work: existing output, bad name
                        results[index] = job
                        yield _event(job, len(results), total)
                    else:
                        pending[executor.submit(segment_file, job)] = index
                        yield FileStarted(job.file, index, total)
                if not pending:
                    if self._stop.is_set():
                        break
                    continue
                for future in executor.wait_first(pending):
                    index = pending.pop(future)
                    if isinstance(future, _Deferred):
                        for done, planes in future.steps():
                            yield PlaneDone(jobs[index].file, done, planes)
                    results[index] = _result(future, jobs[index])
                    yield _event(results[index], len(results), total)
        finally:
            executor.close()
            rows = [results.get(i) or _cancelled(job) for i, job in enumerate(jobs)]
            summary = str(write_summary(output, rows)) if config.summary else ""
        yield BatchFinished(tuple(rows), summary, len(results) < total, round(time.perf_counter() - started, 3))

    def _check_inputs(self) -> tuple:
        """Fail before any work if the model file, the decode overrides or the device are wrong."""
        from .checkpoint import read_model_config
        from .methods import get_method

        if self.config.workers is None and self.config.scheduler is None:
            from .device import resolve_device

            resolve_device(self.config.device)  # in this process; dask workers check their own
        model_config = read_model_config(self.config.model)
        method = get_method(model_config["method"])
        method.resolve_decode_parameters(self.config.decode, model_config.get("decode_defaults"))
        if self.config.flips:
            from .inference import check_flips

            check_flips(method)
        info = Path(self.config.model).stat()
        return info.st_mtime_ns, info.st_size

    def _plan(self, source: Path, output: Path, stamp: tuple) -> list:
        config = self.config
        if not source.exists():
            raise DeepColorError(f"{source}: no such file or folder; check --input.")
        if os.path.realpath(source) == os.path.realpath(output):
            raise DeepColorError("the output folder must differ from the input folder; choose another --output.")
        single = source.is_file() or source.suffix.lower() == ".zarr"
        files = [source] if single else find_inputs(source, config.patterns, recursive=config.recursive,
                                                    exclude=[output])
        if not files:
            raise DeepColorError(f"{source} holds no files matching {', '.join(config.patterns)}"
                                 f"{'' if config.recursive else ' (add --recursive to search sub-folders)'}.")
        jobs, claimed, inputs = [], {}, {os.path.realpath(path) for path in files}
        earlier = {} if config.overwrite else earlier_counts(output)
        for path in files:
            relative = Path(path.name) if single else path.relative_to(source)
            target = output / relative.parent / output_name(relative.name, config.format)
            name, out_name = relative.as_posix(), target.relative_to(output).as_posix()
            if not _inside(target, output):
                jobs.append(FileResult(name, out_name, FAILED, error=f"refusing to write {target}: it resolves "
                                       "outside the output folder (through a symbolic link)."))
            elif os.path.realpath(target) in inputs:
                jobs.append(FileResult(name, out_name, FAILED, error=f"refusing to write its labels over the input "
                                       f"image {target}; choose an --output folder that holds no input images."))
            elif out_name in claimed:
                jobs.append(FileResult(name, out_name, FAILED, error=f"its output {out_name} is also the output of "
                                       f"{claimed[out_name]}; rename one of the two inputs."))
            elif target.exists() and not config.overwrite:  # the counts of the run that wrote it, if on record
                objects, class_counts = earlier.get(out_name, (None, ()))
                jobs.append(FileResult(name, out_name, SKIPPED, objects, class_counts=class_counts))
            else:
                jobs.append(FileTask(config, str(Path(config.model).absolute()), stamp, str(path), str(target),
                                     name, out_name))
            claimed.setdefault(out_name, name)
        return jobs


def _event(result: FileResult, completed: int, total: int):
    return (FileFailed if result.status == FAILED else FileDone)(result, completed, total)


def _result(future, task: FileTask) -> FileResult:
    try:
        return future.result()
    except Exception as exc:  # the worker died (e.g. out of memory) or the cluster went away
        return FileResult(task.file, task.output, FAILED, error=f"the worker running it failed ({type(exc).__name__}: "
                          f"{exc}); if it ran out of memory, lower --large-image-mp or use fewer workers.")


def _cancelled(job) -> FileResult:
    return job if isinstance(job, FileResult) else FileResult(job.file, job.output, CANCELLED)


def earlier_counts(folder) -> dict[str, tuple[int, tuple]]:
    """``{output: (objects, class counts)}`` from the summary of the last run into ``folder``, for the
    outputs it wrote or carried over; {} when there is none (or it cannot be read)."""
    path = Path(folder) / SUMMARY_NAME
    counts = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("status") in (DONE, SKIPPED) and (row.get("objects") or "").isdigit():
                    classes = tuple((key[len(CLASS_COUNT_PREFIX):], int(value)) for key, value in row.items()
                                    if key and key.startswith(CLASS_COUNT_PREFIX) and (value or "").isdigit())
                    counts[row["output"]] = (int(row["objects"]), classes)
    except (OSError, csv.Error, KeyError, ValueError):
        return {}
    return counts


def write_summary(folder, rows) -> Path:
    """Write ``batch_summary_<timestamp>.csv`` and its copy ``batch_summary.csv`` atomically."""
    folder = Path(folder)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"batch_summary_{stamp}.csv", 1
    while path.exists():
        path, n = folder / f"batch_summary_{stamp}-{n}.csv", n + 1

    class_fields = list(dict.fromkeys(CLASS_COUNT_PREFIX + name for row in rows for name, _ in row.class_counts))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(SUMMARY_FIELDS) + class_fields)
            writer.writeheader()
            for row in rows:
                counts = {CLASS_COUNT_PREFIX + name: n for name, n in row.class_counts}
                writer.writerow({**{k: "" if getattr(row, k) is None else getattr(row, k) for k in SUMMARY_FIELDS},
                                 **{k: counts.get(k, "") for k in class_fields}})

    atomic_write(path, write)
    atomic_write(folder / SUMMARY_NAME, write, overwrite=True)
    return path
