"""Segmenting folders of images: TIFF stacks, zarr, images larger than memory; here or on dask.

The rooms of this package: :mod:`.config` (the run's configuration, the task of
one file, the events), :mod:`.inputs` (finding files, naming outputs),
:mod:`.sources` (reading images and their axes), :mod:`.segment` (one file, in
memory) and :mod:`.out_of_core` (planes larger than memory, linked and measured
band by band by :mod:`.out_of_core_stacks`), :mod:`.outputs` (writing labels),
:mod:`.executors` (here or on dask), :mod:`.engine` (:class:`Batch`) and
:mod:`.summary` (the summary CSV). Everything below is importable from
``napari_deepcolor.batch`` itself.

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
  so that objects crossing block borders get one label. The planes' objects are
  then linked through Z and T and measured a band of rows at a time
  (:mod:`.out_of_core_stacks`): the same labels, tracks and measurements as in
  memory, from the same matching step. Memory does not grow with the
  image (0.7 GB peak for 16384 x 16384 px, benchmarks/large_image.py); the
  scratch store takes about 30 bytes per pixel of disk. This is implemented for deep
  coloring without a semantic head, whose ``merge_radius`` is not supported out of
  core (an error asks to set it to 0 or raise the threshold), and for the 3-class
  baseline of the starters, whose cores are grown a block at a time with a margin
  of :data:`~napari_deepcolor.methods.blockwise.GROWTH_REACH` pixels. Tiles and
  chunks share one grid, so for the same net output the labels equal the in-memory
  decode's up to a renumbering of the objects.
"""

from __future__ import annotations

from .config import (CANCELLED, DEFAULT_PATTERNS, DONE, FAILED, FORMATS, SKIPPED, BatchConfig, BatchFinished,
                     BatchStarted, FileDone, FileFailed, FileResult, FileStarted, FileTask, PlaneDone)
from .engine import Batch
from .inputs import SCRATCH_PREFIX, clean_stale_temporaries, find_inputs, output_name
from .out_of_core import SUBSAMPLE_PIXELS
from .segment import segment_file, segment_file_steps
from .sources import Layout, Source, describe_channels, open_source, plan_layout
from .summary import CLASS_COUNT_PREFIX, SUMMARY_FIELDS, SUMMARY_NAME, earlier_counts, write_summary
#: copies for reading; to change them (e.g. in a test), set them on :mod:`.tiling`
from .tiling import DECODE_BLOCK, MARGIN

__all__ = ["CANCELLED", "CLASS_COUNT_PREFIX", "DECODE_BLOCK", "DEFAULT_PATTERNS", "DONE", "FAILED", "FORMATS",
           "MARGIN", "SCRATCH_PREFIX", "SKIPPED", "SUBSAMPLE_PIXELS", "SUMMARY_FIELDS", "SUMMARY_NAME", "Batch",
           "BatchConfig", "BatchFinished", "BatchStarted", "FileDone", "FileFailed", "FileResult", "FileStarted",
           "FileTask", "Layout", "PlaneDone", "Source", "clean_stale_temporaries", "describe_channels",
           "earlier_counts", "find_inputs", "open_source", "output_name", "plan_layout", "segment_file",
           "segment_file_steps", "write_summary"]
