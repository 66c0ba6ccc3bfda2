"""The Train widget's run in its worker thread: training events relayed, and live previews segmented.

Qt-free apart from the :class:`~._common.Status` events it yields: the widget
hands a :class:`TrainingJob` to a worker and listens to its events.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ._common import Status

#: side in pixels of the region around the centre of the view that the live preview segments
PREVIEW_SIZE = 384
#: pixels of image around that region the net also sees, so the region's border looks as it will in use
PREVIEW_CONTEXT = 32
#: the ``OUTPUT_KEY`` metadata of the training preview layer
PREVIEW_KIND = "training preview"


@dataclass(frozen=True)
class PreviewReady:
    """The current model's labels on a crop of the image in view."""

    labels: np.ndarray
    offset: tuple[int, int]
    iteration: int


class TrainingJob:
    """One run, driven from a worker thread; :meth:`stop` and :meth:`request_preview` are thread-safe."""

    def __init__(self, config, load_samples, *, output, init_from=None):
        self.config, self.load_samples, self.output, self.init_from = config, load_samples, output, init_from
        self.training = None
        self._stopped, self._skip_tuning = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self._preview = None

    def stop(self) -> None:
        self._stopped.set()
        training = self.training
        if training is not None:
            training.stop()

    def skip_tuning(self) -> None:
        """Cut the decode tuning after the loop short (it keeps the best values found so far)."""
        self._skip_tuning.set()
        training = self.training
        if training is not None:
            training.skip_tuning()

    def request_preview(self, image: np.ndarray, offset: tuple[int, int], inner=(slice(None), slice(None))) -> None:
        """Segment ``image`` (a 2D crop, raw values) with the current model after the next step.

        ``inner`` is the part of the crop to show (the rest is context for the net);
        ``offset`` the position of that part in the image.
        """
        with self._lock:
            self._preview = (image, offset, inner)

    def _take_preview(self):
        with self._lock:
            request, self._preview = self._preview, None
        return request

    def events(self):
        """The worker: read the data, then relay the training's events (and previews)."""
        from ..training import Started, Step, Training

        yield Status("reading the training data…")
        samples = self.load_samples()
        sizes = ", ".join(f"{s.shape[0]}x{s.shape[1]}" for s in samples[:3]) + (" …" if len(samples) > 3 else "")
        yield Status(f"{len(samples)} annotated image(s) ({sizes} px), {sum(s.num_objects for s in samples)} "
                     "objects; starting…")
        self.training = Training(self.config, samples, output=self.output, init_from=self.init_from)
        if self._stopped.is_set():
            self.training.stop()
        if self._skip_tuning.is_set():
            self.training.skip_tuning()
        device, iteration = None, 0
        for event in self.training.run():
            yield event
            if isinstance(event, Started):
                device = event.device
            elif isinstance(event, Step):
                iteration = event.iteration
                request = self._take_preview()
                if request is not None:
                    yield self._preview_labels(request, device, iteration)

    def _preview_labels(self, request, device, iteration) -> PreviewReady:
        from ..inference import predict

        image, offset, inner = request
        labels = predict(self.training.model, image, stack=False, device=device).decode().labels
        return PreviewReady(np.ascontiguousarray(labels[inner]), offset, iteration)


def preview_crop(plane: np.ndarray, center_y: float, center_x: float):
    """The crop of ``plane`` the preview segments: ``(crop, offset, inner)``.

    The region shown is at most :data:`PREVIEW_SIZE` px square around the centre
    (kept inside the plane); the crop adds :data:`PREVIEW_CONTEXT` px of image around
    it where there is some. ``offset`` is the region's position in the plane,
    ``inner`` the region's slices within the crop.
    """
    height, width = plane.shape[:2]
    size_y, size_x = min(PREVIEW_SIZE, height), min(PREVIEW_SIZE, width)
    y0 = int(np.clip(round(center_y - size_y / 2), 0, height - size_y))
    x0 = int(np.clip(round(center_x - size_x / 2), 0, width - size_x))
    cy0, cx0 = max(y0 - PREVIEW_CONTEXT, 0), max(x0 - PREVIEW_CONTEXT, 0)
    cy1, cx1 = min(y0 + size_y + PREVIEW_CONTEXT, height), min(x0 + size_x + PREVIEW_CONTEXT, width)
    crop = np.array(plane[cy0:cy1, cx0:cx1], copy=True)
    inner = (slice(y0 - cy0, y0 - cy0 + size_y), slice(x0 - cx0, x0 - cx0 + size_x))
    return crop, (y0, x0), inner
