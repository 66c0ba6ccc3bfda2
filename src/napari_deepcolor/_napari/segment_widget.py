"""The Segment dock widget: run a model on an image layer once, then tune the decoding live.

The net runs once per image (in a worker, with progress and cancel) and its
output stays cached in a :class:`~napari_deepcolor.inference.Prediction`.
Every slider move only re-decodes that cached output: the moves are throttled
(superqt's ``qthrottled``) and decoded in a worker, one decode at a time, the
latest values winning (:class:`~._common.LatestOnly`), so dragging stays
smooth whatever a decode costs and the network never runs again. A parameter
whose last decode took under ``INLINE_DECODE_SECONDS`` (e.g. a size threshold:
a lookup table over cached components) is decoded right away in the GUI
thread instead, saving the two thread hops, which cost tens of milliseconds on
a busy machine; never while a worker decode is running (the cache is not
shared between threads).

Long on purpose: running, the live decode, the preview layers, tuning and
export all act on the one cached prediction this widget holds, and read best
together; the work itself is in the library (inference, methods, tuning, measure).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, QSignalBlocker, Signal
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                            QProgressBar, QPushButton, QVBoxLayout, QWidget)
from superqt.utils import qthrottled

from ..errors import DeepColorError
from . import layers as L
from ._common import (OUTPUT_KEY, Failed, LatestOnly, ModelChooser, channel_box, chosen_channel, chosen_layer,
                      compact_combo, device_combo, error_message, format_scores, is_output, layer_chooser, report,
                      scrolling_body, show_info, start_function)
from ._session import session
from .forms import DecodeSliders
from .io import EXPORT_FILTER, export_labels

log = logging.getLogger(__name__)

#: milliseconds between two decodes while a slider is dragged
THROTTLE_MS = 30
#: a parameter whose last decode was faster than this is decoded in the GUI thread (no thread hops)
INLINE_DECODE_SECONDS = 0.025


class _Cancelled(Exception):
    pass


class _Progress(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    changed = Signal(int, int)


def _describe_model(model, path) -> str:
    provenance = model.provenance or {}
    parts = [f"<b>{model.method.title}</b>", f"{model.net_config.in_channels}-channel input"
             + (" and the pixels' positions" if model.net_config.position_periods else "")]
    if model.card:
        scores = model.card.get("test_scores", {})
        parts.insert(0, f"starter <b>{model.card.get('name')}</b>: {model.card.get('kind_of_data', '')}")
        if "ap" in scores:
            parts.append(f"test AP {scores['ap']:.2f}, F1 {scores['f1']:.2f} on {model.card.get('dataset', '')}")
        return " · ".join(parts)
    if "iterations" in provenance:
        parts.append(f"trained {provenance['iterations']} iterations")
    scores = provenance.get("validation_scores") or {}
    if scores:
        parts.append(f"validation {format_scores({k: v for k, v in scores.items() if k in ('ap', 'tuned_ap')})}")
    applied = model.refinement_names()
    if applied:
        parts.append(f"applies {' and '.join(applied)} (chosen on its validation images)")
    return " · ".join(parts)


class SegmentWidget(QWidget):
    """Segment an image layer with a model file; sliders re-decode live; tune, export."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.model = None
        self.model_path: str | None = None
        self.prediction = None
        self.decoded: _Decoded | None = None  # the labels shown, their axes and divisions
        self._segmented_as: tuple | None = None  # (axes, channel) of the image the prediction was made of
        self._tables: dict = {}  # measurements of the decoded labels, by id of the _Decoded
        self.measured_count = 0  # measurement tables given to the labels layer (tests read it)
        self.source: L.SegmentInput | None = None  # what the prediction was made of
        self.labels_layer_name: str | None = None
        self.preview_layer_names: list[str] = []
        self.worker = None
        self.tune_worker = None
        self.decode_count = 0  # decodes shown so far (tests and the latency benchmark read it)
        self.last_decode_seconds = float("nan")
        self.last_tuning: tuple[dict, float] | None = None
        self._cancel = threading.Event()
        self._decoder = LatestOnly()
        self._decode_seconds: dict[str, float] = {}  # by parameter: how long its last decode took
        self._shown_parameters: dict = {}
        self._progress = _Progress(self)
        self._progress.changed.connect(self._show_progress)

        layout = scrolling_body(self)
        form = QFormLayout()
        # starters first (they segment out of the box), then a file of one's own: the Batch widget's chooser too
        self.model_chooser = ModelChooser()
        self.model_choice, self.model_edit = self.model_chooser.combo, self.model_chooser.path_edit
        self.model_chooser.changed.connect(self.load_model)
        form.addRow("Model", self.model_chooser)
        self.model_info = QLabel("no model loaded" if self.chosen_starter is None else
                                 f"starter '{self.chosen_starter}' chosen: Segment loads and runs it")
        self.model_info.setWordWrap(True)
        form.addRow(self.model_info)
        self.image_combo = layer_chooser(self.viewer, "image", accept=lambda layer: not is_output(layer),
                                         tooltip="The image to segment: 2D, RGB, or a 3D stack (each plane is "
                                                 "segmented, then the objects are linked as chosen below)")
        self.image_combo.changed.connect(lambda *_: self._image_changed())
        form.addRow("Image", self.image_combo.native)
        self.axes_choice = QComboBox()
        compact_combo(self.axes_choice, "What the axes of a 3D (or 4D) image are: z-stack = objects stitched "
                                        "through the planes by overlap (one id per nucleus in every plane it "
                                        "spans); time-lapse = objects followed from frame to frame, with a Tracks "
                                        "layer; planes on their own; or channels (e.g. DAPI + GFP): the model "
                                        "sees them all if it was trained on that many, else the one chosen in "
                                        "Channel")
        self.axes_choice.currentIndexChanged.connect(lambda *_: self._axes_changed(chosen=True))
        self._axes_chosen_by_user = False
        form.addRow("Image axes", self.axes_choice)
        self.channel = channel_box("For a one-channel model and an image with channels: the channel (0, 1, ...) "
                                   "that holds the objects (e.g. 0 for DAPI in DAPI + GFP). Models trained on "
                                   "several channels see them all.")
        self.channel.valueChanged.connect(lambda *_: self._axes_changed())
        form.addRow("Channel", self.channel)
        self.device = device_combo()
        form.addRow("Device", self.device)
        layout.addLayout(form)

        row = QHBoxLayout()
        self.run_button = QPushButton("Segment")
        self.run_button.setToolTip("Run the network on the image (once); the sliders below then work live")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.show_preview = QCheckBox("Show what the net sees")
        self.show_preview.setToolTip("Add the network's raw output as layers (e.g. the colour channels of deep "
                                     "coloring, embeddings, displacement vectors)")
        self.show_preview.toggled.connect(self._preview_toggled)
        layout.addWidget(self.show_preview)
        self.flips_check = QCheckBox("Average over flips (4x the net's work)")
        self.flips_check.setToolTip("Test-time augmentation: the net also sees the image mirrored left-right, "
                                    "upside down and both, and the four outputs are averaged. For 3-class "
                                    "baseline models (their outputs are per-pixel probabilities). Checked when a "
                                    "model is loaded if its validation images showed that it pays.")
        self.flips_check.setEnabled(False)
        layout.addWidget(self.flips_check)

        decode_box = QGroupBox("Decoding (live, the net does not run again)")
        decode_layout = QVBoxLayout(decode_box)
        self.sliders = DecodeSliders()
        self.sliders.changed.connect(self._slider_moved)
        self._decode_throttled = qthrottled(self.request_decode, timeout=THROTTLE_MS, leading=True)
        decode_layout.addWidget(self.sliders.native)
        self.refine_check = QCheckBox("Refine with the instance CRF")
        self.refine_check.setToolTip("Arnab and Torr's instance CRF after decoding: boundaries follow the image, "
                                     "weak instances drop out (weights fitted at training, if enabled); a second "
                                     "or so per megapixel. Export saves the refined labels. Checked when a model is "
                                     "loaded if its validation images showed that it pays.")
        self.refine_check.toggled.connect(lambda _checked: self.request_decode())
        decode_layout.addWidget(self.refine_check)
        self.reset_button = QPushButton("Reset to the model's values")
        self.reset_button.setToolTip("The decode parameters stored in the model (tuned on its validation data)")
        self.reset_button.clicked.connect(self.reset_parameters)
        decode_layout.addWidget(self.reset_button)
        layout.addWidget(decode_box)

        tune_box = QGroupBox("Tune from annotation")
        tune_form = QFormLayout(tune_box)
        self.truth_combo = layer_chooser(self.viewer, "labels", accept=self._is_annotation_of_image, tooltip=(
            "A Labels layer with correct objects drawn on (part of) this image; only layers of the image's shape "
            "are offered. Only the box around the annotated objects is scored, so annotate EVERY object inside "
            "the region you choose."))
        tune_form.addRow("Ground truth", self.truth_combo.native)
        self.tune_button = QPushButton("Tune")
        self.tune_button.setToolTip("Choose the decode parameters that score best (AP over IoU 0.5-0.95) on the "
                                    "annotation; the network does not run again")
        self.tune_button.clicked.connect(self.tune)
        tune_form.addRow(self.tune_button)
        self.tune_result = QLabel("")
        self.tune_result.setWordWrap(True)
        tune_form.addRow(self.tune_result)
        layout.addWidget(tune_box)
        from .object_classes_box import ObjectClassesBox

        self.object_classes = ObjectClassesBox(self)
        layout.addWidget(self.object_classes)

        self.export_button = QPushButton("Export labels…")
        self.export_button.setToolTip("Save the labels layer: TIFF (smallest integer type, pixel size kept), "
                                      "PNG (2D) or zarr")
        self.export_button.clicked.connect(lambda: self.export_labels())
        self.export_table_button = QPushButton("Export table…")
        self.export_table_button.setToolTip("Save the objects' measurements as CSV: id, frame, centroid, bounding "
                                            "box, area or volume, intensity per channel, score and class (the "
                                            "labels layer's features; per frame for a time-lapse)")
        self.export_table_button.clicked.connect(lambda: self.export_table())
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.export_table_button)
        layout.addLayout(row)
        self.status = QLabel("Choose a model file and an image, then press Segment.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)
        session.model_saved.connect(self._offer_model)
        self._image_changed()
        self._update_buttons()

    def reset_choices(self, *_) -> None:
        """Bring the layer choosers up to date (napari calls this when the layer list changes)."""
        self.image_combo.reset_choices()
        self.truth_combo.reset_choices()

    def _is_annotation_of_image(self, layer) -> bool:
        """A labels layer drawn by the user with the shape the chosen image's labels have."""
        image = chosen_layer(self.viewer, self.image_combo) if hasattr(self, "image_combo") else None
        if image is None or is_output(layer):
            return False
        axes = self.axes_choice.currentData() if hasattr(self, "axes_choice") else None
        shape = L.spatial_shape(image)
        if axes and len(axes) == len(image.data.shape):
            shape = tuple(n for n, a in zip(image.data.shape, axes) if a not in "CS")
        return tuple(layer.data.shape) == shape

    # -- the image's axes and channel ------------------------------------------------------
    def _image_changed(self) -> None:
        """Offer the axes the chosen image may have, the likeliest first chosen."""
        self._update_axes_choices(guess_again=True)
        self.truth_combo.reset_choices()

    def _update_axes_choices(self, *, guess_again: bool = False) -> None:
        layer = chosen_layer(self.viewer, self.image_combo)
        shape = tuple(layer.data.shape) if layer is not None else (0, 0)
        rgb = bool(getattr(layer, "rgb", False))
        choices = L.axes_choices(shape, rgb)
        offered = [self.axes_choice.itemData(i) for i in range(self.axes_choice.count())]
        if offered == [axes for _, axes in choices] and not guess_again:
            return
        in_channels = self.model.net_config.in_channels if self.model is not None else None
        guess = L.guess_axes(shape, rgb, in_channels) if choices else None
        with QSignalBlocker(self.axes_choice):
            self.axes_choice.clear()
            for text, axes in choices:
                self.axes_choice.addItem(text, axes)
            if guess is not None:
                self.axes_choice.setCurrentIndex([axes for _, axes in choices].index(guess))
        self._axes_chosen_by_user = False
        self.axes_choice.setEnabled(len(choices) > 1)
        self._update_channel_box()

    def _update_channel_box(self) -> None:
        """The Channel box is for a one-channel model (or none chosen yet) and axes with channels."""
        axes = self.axes_choice.currentData() or ""
        one_channel = self.model is None or self.model.net_config.in_channels == 1
        self.channel.setEnabled("C" in axes and one_channel)

    def _axes_changed(self, *, chosen: bool = False) -> None:
        """Re-decode when only the linking changed (z-stack, time-lapse, planes apart); say that the net must
        run again when the channels it sees changed. ``chosen``: the axes were chosen (not guessed)."""
        self._axes_chosen_by_user = self._axes_chosen_by_user or chosen
        self._update_channel_box()
        self.truth_combo.reset_choices()  # the labels' shape may have changed (channels dropped)
        if self.prediction is None or self.image_combo.value != self.source.name:
            return  # the axes of an image not segmented yet: nothing to decode again
        if self._decode_axes() is None:
            self.status.setText("The image's axes or channel changed: press Segment to run the network on it.")
            return
        self.request_decode()

    def chosen_axes(self) -> str | None:
        return self.axes_choice.currentData()

    def _decode_axes(self) -> str | None:
        """The labels' axes the chooser now gives the segmented image, or None when the choice changes what the
        network sees (another channel, another channel axis): Z, T and Q only change the linking. The axes of
        another image than the one segmented leave it as it was."""
        source, axes = self.source, self.chosen_axes()
        if source is None:
            return None
        if not axes or (axes, chosen_channel(self.channel)) == self._segmented_as or \
                self.image_combo.value != source.name:
            return source.axes
        linking = str.maketrans("TZQ", "___")
        if self._segmented_as is None or axes.translate(linking) != self._segmented_as[0].translate(linking) or \
                chosen_channel(self.channel) != self._segmented_as[1]:
            return None
        return L.labels_axes(axes)

    # -- model -------------------------------------------------------------------------
    def _offer_model(self, path: str) -> None:
        if not self.model_edit.path:
            self.model_edit.set_path(path)

    @property
    def chosen_starter(self) -> str | None:
        """The starter chosen in the model chooser, or None when a model file is."""
        return self.model_chooser.starter

    def load_model(self, path: str | None = None) -> bool:
        """Load a model (a file, or a starter name; by default the one chosen); False, with a
        notification, if it fails."""
        from ..models import load_model

        if path is None:
            path = self.chosen_starter or self.model_edit.path
        if not path:
            return False
        if path == self.model_path and self.model is not None:
            return True
        try:
            model = load_model(path, device="cpu")
        except Exception as exc:  # noqa: BLE001
            report(exc)
            self.model_info.setText(f"<span style='color:#e66'>could not load {Path(path).name}</span>")
            self.model, self.model_path = None, None
            self._update_buttons()
            return False
        if path != self.chosen_starter and self.model_edit.path != path:
            self.model_edit.line.setText(path)
        parameters = model.method.parameters_used(model.method_options)  # e.g. no interior slider without a head
        diameter = model.object_scale.get("object_diameter")  # the pixel sizes' sliders span what suits it
        same_sliders = self.model is not None and diameter == self.sliders.object_diameter and \
            self.model.method.parameters_used(self.model.method_options) == parameters
        self.model, self.model_path = model, path
        self.prediction = None  # a prediction belongs to the model that made it
        self._update_axes_choices(guess_again=not self._axes_chosen_by_user)  # e.g. channels for a 2-channel model
        if not same_sliders:
            self.sliders.set_parameters(parameters, object_diameter=diameter, values=model.decode_parameters())
        self.sliders.set_values(model.decode_parameters())
        self.model_info.setText(_describe_model(model, path))
        from ..inference import supports_flips

        refine, flips = model.refinement()  # what the model chose on its validation images
        self.flips_check.setEnabled(supports_flips(model.method))
        self.flips_check.setChecked(flips and self.flips_check.isEnabled())
        with QSignalBlocker(self.refine_check):  # nothing to decode yet: the prediction was dropped
            self.refine_check.setChecked(refine == "crf")
        self._update_buttons()
        return True

    def reset_parameters(self) -> None:
        if self.model is not None:
            self.sliders.set_values(self.model.decode_parameters())
            self.request_decode()

    # -- running the net once ------------------------------------------------------------
    def run(self) -> None:
        """Predict the chosen image layer in a worker; its labels appear as a Labels layer."""
        if self.worker is not None:
            return
        try:
            if self.model is None and not (self.chosen_starter or self.model_edit.path):
                raise DeepColorError("choose a starter model or a model file first (or train one with the "
                                     "Train widget).")
            if self.model is None and not self.load_model():
                return  # the reason is shown already
            layer = chosen_layer(self.viewer, self.image_combo)
            if layer is None:
                raise DeepColorError("open an image to segment first (or try File > Open Sample).")
            axes, channel = self.chosen_axes(), chosen_channel(self.channel)
            source = L.segment_input(L.image_input(layer, channels=True), axes, self.model.net_config.in_channels,
                                     channel)
            parameters = self.model.decode_parameters(self.sliders.values())
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return
        model, device, cancel, progress = self.model, self.device.currentText(), threading.Event(), self._progress
        refine, flips = self.refine_check.isChecked(), self.flips_check.isChecked()
        self._cancel = cancel
        self.destroyed.connect(cancel.set)  # a closed widget stops its prediction

        def work():
            from ..inference import predict

            def report_progress(done, total):
                if cancel.is_set():
                    raise _Cancelled()
                progress.changed.emit(done, total)

            try:
                prediction = predict(model, source.image, stack=source.is_stack, device=device, flips=flips,
                                     progress=report_progress)
            except _Cancelled:
                return None
            started = time.perf_counter()
            decoded = _decode(prediction, parameters, source, refine, source.axes)
            return prediction, decoded, time.perf_counter() - started, parameters

        self.progress.setValue(0)
        self.progress.setFormat("segmenting…")
        self.status.setText(f"running the network on '{source.name}'…")
        self.worker = start_function(work, on_result=lambda result: self._predicted(result, source, model,
                                                                                    (axes, channel)),
                                     on_done=self._worker_done)
        self._update_buttons()

    def cancel(self) -> None:
        self._cancel.set()

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.setValue(int(1000 * done / max(total, 1)))
        self.progress.setFormat(f"tile {done} of {total}")

    def _worker_done(self) -> None:
        self.worker = None
        self._update_buttons()

    def _predicted(self, result, source, model, segmented_as: tuple) -> None:
        if isinstance(result, Failed):
            report(result.exception)
            self.status.setText(f"segmentation failed: {result.message}")
            self.progress.setFormat("failed")
            return
        if result is None:
            self.status.setText("cancelled")
            self.progress.setFormat("cancelled")
            return
        prediction, decoded, seconds, parameters = result
        if model is not self.model:  # the model changed meanwhile: this result is stale
            return
        self.prediction, self.source, self._segmented_as = prediction, source, segmented_as
        self._shown_parameters, self._decode_seconds = dict(parameters), {}
        self.labels_layer_name = f"{source.name} segmentation"
        self._show_labels(decoded, seconds)
        self.progress.setValue(1000)
        self.progress.setFormat("done")
        from ..inference import channel_conversion

        note = channel_conversion(model.net_config.in_channels, source.channels)
        if source.is_stack and source.image.shape[0] <= L.GUESSED_CHANNELS and not set("CS") & set(segmented_as[0]):
            note = ", ".join(filter(None, [note, f"segmented as {source.image.shape[0]} planes: if they are "
                                                 "channels, choose channels in Image axes"]))
        self.status.setText(f"{self._count(decoded.labels)} objects{_class_counts(decoded)} in '{source.name}'"
                            f"{' (' + note + ')' if note else ''}. Move the sliders to refine; the net does not "
                            "run again.")
        if note:
            show_info(f"'{source.name}': {note}.")
        if self.show_preview.isChecked():
            self._add_preview_layers()

    @staticmethod
    def _count(labels) -> int:
        return int(labels.max(initial=0))  # decoded ids are 1..N (unique across a stack)

    # -- labels layer ------------------------------------------------------------------
    def labels_layer(self):
        name = self.labels_layer_name
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def tracks_layer(self):
        name = f"{self.source.name} tracks" if self.source is not None else None
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _show_labels(self, decoded: "_Decoded", seconds: float = float("nan")) -> None:
        labels = decoded.labels
        self.decoded = decoded
        layer = self.labels_layer()
        if layer is None:
            layer = self.viewer.add_labels(labels, name=self.labels_layer_name, scale=self.source.scale,
                                           translate=self.source.translate,
                                           metadata={OUTPUT_KEY: "segmentation"})
        else:
            layer.data = labels
        features = L.class_features(self.prediction, labels, decoded.instances)
        if features is not None:  # napari's own tools then colour and list the objects by class
            layer.features = features
        self._measure_later(decoded, features)
        self._show_tracks(decoded)
        self.decode_count += 1
        self.last_decode_seconds = seconds
        if self.model_path:
            session.remember_decode_values(self.model_path, self.sliders.values())

    def _measure_later(self, decoded: "_Decoded", class_columns: dict | None) -> None:
        """Measure the objects in a worker (the labels are shown first: sliders stay quick), then give the
        labels layer the table as its features."""
        source = self.source

        def shown(table) -> None:
            if isinstance(table, Failed):
                report(table.exception)
                return
            self._tables[id(decoded)] = table
            layer = self.labels_layer()
            if self.decoded is decoded and layer is not None:
                layer.features = L.measurement_features(table, class_columns)
                self.measured_count += 1

        self._tables = {k: v for k, v in self._tables.items() if k == id(self.decoded)}
        start_function(lambda: _measure(decoded, source), on_result=shown)

    def _show_tracks(self, decoded: "_Decoded") -> None:
        """A time-lapse's tracks as a Tracks layer (removed when the image is not one)."""
        from ..stacks import napari_tracks, tracks_table

        existing = self.tracks_layer()
        rows = tracks_table(decoded.labels, decoded.axes, decoded.parents) if "T" in decoded.axes else []
        if not rows:
            if existing is not None:
                self.viewer.layers.remove(existing)
            return
        data, graph = napari_tracks(rows)
        if existing is not None:
            self.viewer.layers.remove(existing)  # Tracks layers do not take new data and graph together
        self.viewer.add_tracks(data, graph=graph, name=f"{self.source.name} tracks",
                               scale=self.source.scale, translate=self.source.translate,
                               metadata={OUTPUT_KEY: "tracks"})


    # -- live decoding ---------------------------------------------------------------------
    def _slider_moved(self) -> None:
        if self.prediction is not None:
            self._decode_throttled()

    def request_decode(self) -> None:
        """Decode the cached output with the sliders' values (in a worker, latest request wins)."""
        prediction = self.prediction
        if prediction is None:
            return
        try:
            parameters = prediction.model.decode_parameters(self.sliders.values())
        except DeepColorError as exc:
            report(exc)
            return

        axes = self._decode_axes()
        if axes is None:  # the chosen axes or channel need the network to run again
            return
        changed = {k for k, v in parameters.items() if self._shown_parameters.get(k) != v}
        refine, source = self.refine_check.isChecked(), self.source

        def decode():
            started = time.perf_counter()
            decoded = _decode(prediction, parameters, source, refine, axes)
            return prediction, decoded, time.perf_counter() - started, parameters, changed

        quick = not refine and bool(changed) and all(self._decode_seconds.get(k, 1.0) < INLINE_DECODE_SECONDS for k in changed)
        if quick and not self._decoder.busy:
            try:
                result = decode()
            except Exception as exc:  # noqa: BLE001
                result = Failed(error_message(exc), exc)
            self._decoded(result)
        else:
            self._decoder.submit(decode, self._decoded)

    def _decoded(self, result) -> None:
        if isinstance(result, Failed):
            report(result.exception)
            return
        prediction, decoded, seconds, parameters, changed = result
        if prediction is not self.prediction:
            return
        for name in changed:
            self._decode_seconds[name] = seconds
        self._shown_parameters = dict(parameters)
        self._show_labels(decoded, seconds)
        self.status.setText(f"{self._count(decoded.labels)} objects{_class_counts(decoded)} · decoded in "
                            f"{1000 * seconds:.0f} ms")

    @property
    def decoding(self) -> bool:
        return self._decoder.busy

    # -- preview layers --------------------------------------------------------------------
    def _preview_toggled(self, checked: bool) -> None:
        """On: add (or refresh) the preview layers. Off: remove them."""
        if checked and self.prediction is not None:
            self._add_preview_layers()
        elif not checked:
            self._remove_preview_layers()

    def _remove_preview_layers(self, keep=()) -> None:
        for name in self.preview_layer_names:
            if name not in keep and name in self.viewer.layers:
                self.viewer.layers.remove(name)
        self.preview_layer_names = [n for n in self.preview_layer_names if n in keep]

    def _add_preview_layers(self) -> None:
        prediction, source = self.prediction, self.source
        start_function(prediction.preview, on_result=lambda layers: self._show_preview_layers(layers, prediction,
                                                                                                source))

    def _show_preview_layers(self, previews, prediction, source) -> None:
        if isinstance(previews, Failed):
            report(previews.exception)
            return
        if prediction is not self.prediction or not self.show_preview.isChecked():
            return
        scale, translate = source.scale, source.translate
        names = []
        for preview in previews:
            name = f"{source.name} · {preview.name}"
            data = preview.data
            if preview.layer_type == "vectors" and prediction.is_stack:
                data = _stack_vectors(data)
            kwargs = {**preview.kwargs, "metadata": {OUTPUT_KEY: "preview"}}
            existing = self.viewer.layers[name] if name in self.viewer.layers else None
            if existing is not None and type(existing).__name__.lower() == preview.layer_type and existing.ndim == (
                    data.shape[-1] if preview.layer_type == "vectors" else data.ndim):
                existing.data = data
                existing.visible = kwargs.get("visible", True)
                existing.scale, existing.translate = scale, translate
            else:
                if existing is not None:
                    self.viewer.layers.remove(existing)
                adder = {"image": self.viewer.add_image, "vectors": self.viewer.add_vectors,
                         "labels": self.viewer.add_labels}[preview.layer_type]
                adder(data, name=name, scale=scale, translate=translate, **kwargs)
            names.append(name)
        self._remove_preview_layers(keep=names)  # those of an earlier image
        self.preview_layer_names = names
        if self.labels_layer() is not None:  # keep the labels on top
            layers = self.viewer.layers
            layers.move(layers.index(self.labels_layer()), len(layers))

    # -- tuning from an annotation ---------------------------------------------------------
    def tune(self) -> None:
        """Choose the decode parameters that score best on a ground-truth Labels layer."""
        from ..inference import Prediction

        if self.tune_worker is not None:
            return
        try:
            if self.prediction is None:
                raise DeepColorError("segment the image first; tuning then only re-decodes the network's output.")
            truth = chosen_layer(self.viewer, self.truth_combo)
            if truth is None:
                raise DeepColorError("choose the Labels layer with your annotation of this image (draw one with a "
                                     "new Labels layer: label every object inside the region you annotate).")
            pairs = L.tuning_pairs(self.prediction.output, np.asarray(truth.data))
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return
        model, start = self.prediction.model, self.prediction.model.decode_parameters(self.sliders.values())
        predictions = [Prediction(model, output) for output, _, _ in pairs]
        truths = [truth for _, truth, _ in pairs]

        def work():
            from ..tuning import score_parameters, tune_predictions

            before = score_parameters(predictions, truths, start)
            parameters, score = tune_predictions(predictions, truths, metric="ap", start=start)
            return parameters, score, before

        objects = sum(int(np.unique(t).size - 1) for t in truths)
        area = sum(t.size for t in truths)
        self.tune_result.setText(f"tuning on {objects} annotated objects ({area} pixels)…")
        self.tune_worker = start_function(work, on_result=lambda r: self._tuned(r, objects, pairs),
                                          on_done=self._tune_done)
        self._update_buttons()

    def _tune_done(self) -> None:
        self.tune_worker = None
        self._update_buttons()

    def _tuned(self, result, objects: int, pairs) -> None:
        if isinstance(result, Failed):
            report(result.exception)
            self.tune_result.setText(f"tuning failed: {result.message}")
            return
        parameters, score, before = result
        self.last_tuning = (parameters, score)
        self.sliders.set_values(parameters)
        self.request_decode()
        boxes = ", ".join(f"{b[0].stop - b[0].start}x{b[1].stop - b[1].start}" for _, _, b in pairs[:3])
        self.tune_result.setText(
            f"AP {score:.3f} (was {before:.3f}) on {objects} annotated objects (box {boxes}"
            f"{' …' if len(pairs) > 3 else ''}): " + ", ".join(f"{k} = {v:g}" for k, v in parameters.items()))
        show_info(f"Tuned: AP {score:.3f} on the annotation (was {before:.3f}).")

    # -- export ------------------------------------------------------------------------
    def export_labels(self, path: str | None = None) -> Path | None:
        """Write the segmentation layer (with any hand edits) to ``path`` (asks when None)."""
        layer = self.labels_layer()
        if layer is None:
            report(DeepColorError("there are no labels to export yet: segment an image first."))
            return None
        if path is None:
            path, chosen_filter = QFileDialog.getSaveFileName(self, "Export labels", f"{layer.name}.tif",
                                                              EXPORT_FILTER)
            if not path:
                return None
            if not Path(path).suffix:
                path += ".zarr" if "zarr" in chosen_filter else ".png" if "PNG" in chosen_filter else ".tif"
        try:
            from ..measure import measurements_path, write_table

            data = np.asarray(layer.data)
            write_table(measurements_path(path), self.measurements(data), overwrite=True)  # first: a label
            written = export_labels(path, data, scale=tuple(layer.scale))  # file always has its table
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return None
        self.status.setText(f"labels written to {written}, measurements to {measurements_path(written).name}")
        show_info(f"Labels written to {written}")
        return written

    def measurements(self, labels: np.ndarray | None = None) -> dict:
        """The measurements of ``labels`` (default: the labels layer as it is now, hand edits included)."""
        from ..measure import measure_objects

        decoded = self.decoded
        if decoded is None:
            raise DeepColorError("there are no labels to measure yet: segment an image first.")
        layer = self.labels_layer()
        labels = np.asarray(layer.data if labels is None and layer is not None else
                            decoded.labels if labels is None else labels)
        if np.array_equal(labels, decoded.labels):
            if id(decoded) not in self._tables:
                self._tables[id(decoded)] = _measure(decoded, self.source)
            return self._tables[id(decoded)]
        # edited by hand: measured again, without the decoder's scores
        return measure_objects(labels, decoded.axes, image=self.source.intensities)

    def export_table(self, path: str | None = None) -> Path | None:
        """Write the objects' measurements as CSV to ``path`` (asks when None)."""
        from ..measure import write_table

        layer = self.labels_layer()
        if layer is None or self.decoded is None:
            report(DeepColorError("there is no table to export yet: segment an image first."))
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export table", f"{layer.name}_objects.csv", "CSV (*.csv)")
            if not path:
                return None
        try:
            written = write_table(path, self.measurements(), overwrite=True)
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return None
        self.status.setText(f"measurements written to {written}")
        show_info(f"Measurements written to {written}")
        return written

    def _update_buttons(self) -> None:
        running = self.worker is not None
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.tune_button.setEnabled(self.tune_worker is None)


@dataclass(frozen=True, eq=False)
class _Decoded:
    """What one decode shows: the labels (linked through z or t), their axes and divisions."""

    labels: np.ndarray
    instances: object
    axes: str
    parents: dict
    class_names: tuple = ()


def _class_counts(decoded: _Decoded) -> str:
    """`` (alive 12, dead 3)``: the objects of each class, for a model with classes; '' otherwise."""
    from ..data.classes import class_counts

    if not decoded.class_names or decoded.instances.classes is None:
        return ""
    counts = class_counts(decoded.instances, decoded.class_names)
    return " (" + ", ".join(f"{name} {n}" for name, n in counts.items()) + ")"


def _decode(prediction, parameters: dict, source: L.SegmentInput, refine: bool, axes: str) -> _Decoded:
    """The labels shown and exported: the decode, the instance CRF if ``refine``, and a stack's objects
    linked through its first axis (``axes`` the labels': ZYX or TYX; QYX: planes apart)."""
    from ..stacks import link_instances

    instances = prediction.decode(**parameters)
    if refine:
        from ..refine import refine_prediction

        instances = refine_prediction(prediction, source.image, instances)
    instances, parents = link_instances(instances, axes)
    return _Decoded(instances.labels, instances, axes, parents, tuple(prediction.model.output_class_names))


def _measure(decoded: _Decoded, source: L.SegmentInput) -> dict:
    """The measurements table of decoded labels (napari_deepcolor.measure), intensities from ``source``
    (every channel of the image)."""
    from ..measure import measure_objects

    return measure_objects(decoded.labels, decoded.axes, image=source.intensities, instances=decoded.instances,
                           class_names=decoded.class_names)


def _stack_vectors(data: np.ndarray) -> np.ndarray:
    """Per-plane vectors (Z, N, 2, 2) as one napari vectors array (Z*N, 2, 3) with the plane as first axis."""
    planes, count = data.shape[:2]
    z = np.repeat(np.arange(planes, dtype=data.dtype), count)
    flat = data.reshape(planes * count, 2, 2)
    positions = np.column_stack([z, flat[:, 0]])
    directions = np.column_stack([np.zeros_like(z), flat[:, 1]])
    return np.stack([positions, directions], axis=1)
