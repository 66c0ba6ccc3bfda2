"""One batch run: its configuration, the task of one file, the rows of the summary and the events."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DeepColorError
from ..stacks import STITCH_THRESHOLD, TRACK_THRESHOLD, check_axes
from . import tiling

DEFAULT_PATTERNS = ("*.tif", "*.tiff", "*.zarr")
FORMATS = ("tif", "zarr")
DONE, SKIPPED, FAILED, CANCELLED = "done", "skipped-existing", "failed", "cancelled"


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
        if self.tile_size < 2 * tiling.MARGIN + 16:
            raise DeepColorError(f"tile size must be at least {2 * tiling.MARGIN + 16} pixels (got {self.tile_size}).")
        if not self.large_image_megapixels > 0:
            raise DeepColorError(f"the large-image threshold must be positive (got {self.large_image_megapixels} MP).")
        if not self.patterns:
            raise DeepColorError("give at least one file name pattern, e.g. '*.tif'.")
        from ..refine import check_refinement

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
