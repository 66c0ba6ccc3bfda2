"""The task of one file, run here or on a dask worker: read it, segment it, write its labels and tables.

A plane within ``large_image_megapixels`` is segmented in memory (here); a larger one out of core
(:mod:`.out_of_core`). Both write through :mod:`.outputs`.
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np

from ..errors import DeepColorError
from . import tiling
from .config import DONE, FAILED, BatchConfig, FileResult, FileTask
from .out_of_core import _segment_out_of_core
from .outputs import _write_output
from .sources import Layout, open_source, plan_layout

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def _cached_model(path: str, stamp: tuple, device: str):
    from ..models import load_model

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
    from ..device import resolve_device
    from ..stacks import axes_note, resolve_axes

    config = task.config
    device = str(resolve_device(config.device))
    model = _cached_model(task.model, task.model_stamp, device)
    parameters = model.decode_parameters(config.decode)
    tile = tiling.tile_with_margins(config.tile_size, model.net_config.divisor)
    with open_source(task.source) as source:
        array = source.array
        try:
            axes, decided = resolve_axes(source.axes, array.shape, config.axes,
                                         in_channels=model.net_config.in_channels)
        except DeepColorError as exc:
            raise DeepColorError(f"{task.file}: {exc}") from None
        layout = plan_layout(axes, array.shape, array.dtype, model.net_config.in_channels, name=task.file,
                             channel=config.channel, channel_names=source.channel_names)
        from ..inference import channel_conversion

        notes = (axes_note(axes, decided, array.shape) if decided != "file" else "",
                 channel_conversion(model.net_config.in_channels, layout.channels_fed))
        facts.update(axes=axes + ("" if decided == "file" else f" ({decided})"), planes=layout.n_planes,
                     note="; ".join(n for n in notes if n))
        if layout.height * layout.width > config.large_image_megapixels * 1e6:
            objects = yield from _segment_out_of_core(model, source, layout, parameters, task, tile, device)
            return objects, "out-of-core", ()
        return (yield from _segment_in_memory(model, source, layout, parameters, task, tile, device))


def _segment_in_memory(model, source, layout, parameters, task, tile, device):
    """Segment a file whose planes fit in memory, yielding per plane; ``(objects, route, class counts)``.

    Planes are segmented one by one, then objects are linked through Z and T
    (:func:`~napari_deepcolor.stacks.link_labels`); the class table, the tracks
    table (time-lapses) and the measurements are written before the labels, so
    that a finished label file always has them.
    """
    from ..inference import match_channels, stack_instances
    from ..methods.base import Instances
    from ..segment import segment

    planes = []
    for plane in range(layout.n_planes):
        image = source.read(layout, plane)
        if _is_constant(match_channels(model, image)):
            nothing = np.zeros(0, np.int32) if model.output_class_names else None
            planes.append(Instances(np.zeros(image.shape[:2], np.uint8), np.zeros(0, np.float32), nothing,
                                    None if nothing is None else np.zeros(0, np.float32)))
        else:
            planes.append(segment(model, image, decode=parameters, refine=task.config.refine,
                                  flips=task.config.flips, stack=False, device=device, tile_size=tile,
                                  margin=tiling.MARGIN, object_diameter=task.config.object_diameter))
        yield plane + 1, layout.n_planes
    instances, parents = _linked(stack_instances(planes), layout, task.config)
    labels = instances.labels.reshape(layout.out_shape)
    counts = ()
    overwrite = task.config.overwrite
    if model.output_class_names:  # written first: a finished label file then always has its class table
        from ..data.classes import class_counts, class_table_path, write_class_table

        write_class_table(class_table_path(task.target), instances, model.output_class_names, overwrite=overwrite)
        counts = tuple(class_counts(instances, model.output_class_names).items())
    from ..measure import measure_objects, measurements_path, tracks_path, write_table

    table = measure_objects(labels, layout.out_axes, image=source.read_channels(layout), instances=instances,
                            class_names=model.output_class_names, channel_names=source.channel_names) \
        if task.config.measure else None
    if "T" in layout.out_axes:  # the tracks are the measurements' rows, measured once
        from ..stacks import TRACK_FIELDS, tracks_rows, tracks_table

        rows = tracks_rows(table, parents) if table is not None else tracks_table(labels, layout.out_axes, parents)
        write_table(tracks_path(task.target), rows, TRACK_FIELDS, overwrite=True)  # our own companion
    if table is not None:
        write_table(measurements_path(task.target), table, overwrite=True)
    _write_output(task, layout, labels.dtype, tile - 2 * tiling.MARGIN, labels=labels)
    return instances.count, "in-memory", counts


def _linked(instances, layout: Layout, config: BatchConfig):
    """Instances whose ids follow the objects through Z and T (if the labels have those axes) and the
    divisions found, ``{daughter: mother}``."""
    from ..methods.base import Instances
    from ..stacks import link_instances

    shaped = Instances(instances.labels.reshape(layout.out_shape), instances.scores, instances.classes,
                       instances.class_scores)
    return link_instances(shaped, layout.out_axes, stitch_threshold=config.stitch_threshold,
                          track_threshold=config.track_threshold)


def _is_constant(image: np.ndarray) -> bool:
    """Whether every channel of an (H, W, C) image holds one value: an image without objects."""
    return bool(np.all(image.min(axis=(0, 1)) == image.max(axis=(0, 1))))
