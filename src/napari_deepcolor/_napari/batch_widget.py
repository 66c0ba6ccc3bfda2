"""The Batch dock widget: a model over every image of a folder, with progress, cancel and a summary.

A thin listener of :class:`napari_deepcolor.batch.Batch`: the widget builds a
:class:`~napari_deepcolor.batch.BatchConfig`, runs the engine in a worker and
shows its per-file events. Cancel asks the engine to stop between files; what
was written stays written, and the summary CSV is written either way.
"""

from __future__ import annotations

import logging
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                            QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from ..errors import DeepColorError
from ._common import (Failed, ModelChooser, PathEdit, channel_box, chosen_channel, compact_combo, device_combo,
                      format_seconds, report, scrolling_body, show_info, show_warning, start_generator)
from ._session import session
from .forms import DecodeSliders

log = logging.getLogger(__name__)

#: axes offered for untagged stacks (the CLI's --axes takes any)
AXES_CHOICES = ("ZYX", "TYX", "CYX", "TZYX", "ZCYX", "TCYX", "TZCYX")


class BatchWidget(QWidget):
    """Segment a folder of TIFF/zarr images into a folder of label images."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.batch = None
        self.worker = None
        self.finished = None  # the last BatchFinished event
        self.events_seen: list = []
        self.model_method: str | None = None
        self.model_parameters: tuple = ()

        layout = scrolling_body(self)
        form = QFormLayout()
        self.input = PathEdit("folder", placeholder="folder of images to segment",
                              tooltip="TIFF files (2D, RGB, stacks, any axes) and .zarr arrays in this folder")
        form.addRow("Input", self.input)
        self.patterns = QLineEdit("*.tif, *.tiff, *.zarr")
        self.patterns.setToolTip("Which file names to segment (comma-separated patterns)")
        form.addRow("Files", self.patterns)
        self.recursive = QCheckBox("also in sub-folders (mirrored in the output)")
        form.addRow("", self.recursive)
        self.output = PathEdit("folder", placeholder="folder for the label images",
                               tooltip="One label image per input, same name; a summary CSV is written here too")
        form.addRow("Output", self.output)
        self.format = QComboBox()
        self.format.addItem("TIFF (compact integer labels)", "tif")
        self.format.addItem("zarr (chunked; for very large images)", "zarr")
        compact_combo(self.format, "TIFF for most images; zarr for images too large for memory")
        form.addRow("Format", self.format)
        self.overwrite = QCheckBox("replace existing outputs")
        self.overwrite.setToolTip("Unchecked: files whose output exists are skipped, so an interrupted batch "
                                  "resumes where it stopped")
        form.addRow("", self.overwrite)
        self.model = ModelChooser()  # the Segment widget's chooser: a starter, or a model file
        self.model.changed.connect(self.load_model)
        form.addRow("Model", self.model)
        self.device = device_combo()
        form.addRow("Device", self.device)
        self.workers = QSpinBox()
        self.workers.setRange(0, 64)
        self.workers.setSpecialValueText("this process")
        self.workers.setToolTip("0: segment the files one after the other here (no start-up cost). N: a local "
                                "dask cluster of N processes, for many files on a machine with many cores.")
        form.addRow("Workers", self.workers)
        self.axes = QComboBox()
        self.axes.addItem("as the files say (untagged stacks: guessed)", None)
        for axes in AXES_CHOICES:
            self.axes.addItem(axes, axes)
        compact_combo(self.axes, "What the axes of the stacks are: T time, Z depth, C channel. Used for the images "
                                 "with that many axes; others keep the axes their file names (or the guess: one "
                                 "leading axis is Z, two are TZ). Objects are stitched through Z and tracked "
                                 "through T.")
        form.addRow("Axes", self.axes)
        self.channel = channel_box("For a one-channel model and multi-channel images: the channel (0, 1, ...) that "
                                   "holds the objects")
        form.addRow("Channel", self.channel)
        layout.addLayout(form)

        decode_box = QGroupBox("Decode parameters")
        decode_layout = QVBoxLayout(decode_box)
        self.sliders = DecodeSliders()
        decode_box.setToolTip("Start from the model's tuned values; tune them on one image with the Segment "
                              "widget first")
        decode_layout.addWidget(self.sliders.native)
        self.from_segment = QPushButton("Use the values from the Segment widget")
        self.from_segment.setToolTip("The decode values last shown (e.g. tuned) in the Segment widget with this model")
        self.from_segment.clicked.connect(self.use_segment_values)
        decode_layout.addWidget(self.from_segment)
        layout.addWidget(decode_box)

        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Finish the file being segmented and stop; finished outputs stay")
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.status = QLabel("Choose the input and output folders and a model, then press Run.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.summary.setPlaceholderText("what was written and what failed appears here")
        self.summary.setMaximumHeight(180)
        layout.addWidget(self.summary)
        layout.addStretch(1)
        session.model_saved.connect(self._offer_model)
        session.decode_values_changed.connect(self._update_from_segment)
        self.load_model()  # the starter chosen at first: its sliders (reads the file's settings, not its weights)
        self._update_from_segment()
        self._set_running(False)

    def _update_from_segment(self, *_) -> None:
        known = session.decode_values(self.model.source) is not None
        self.from_segment.setEnabled(self.model_method is not None and known)

    def use_segment_values(self) -> None:
        values = session.decode_values(self.model.source)
        if values:
            self.sliders.set_values(values)

    def _offer_model(self, path: str) -> None:
        if not self.model.path_edit.path:
            self.model.set_path(path)

    def load_model(self, path: str | None = None) -> bool:
        """Read the model's method and decode values (no weights) to build the sliders."""
        from ..models import read_model_config
        from ..methods import get_method

        path = path if path is not None else self.model.source
        if not path:
            return False
        try:
            config = read_model_config(path)
            method = get_method(config["method"])
            values = method.resolve_decode_parameters(None, config.get("decode_defaults"))
            parameters = method.parameters_used(method.options(config.get("method_options")))
        except Exception as exc:  # noqa: BLE001
            report(exc)
            self.model_method = None
            self._update_from_segment()
            return False
        diameter = config.get("object_scale", {}).get("object_diameter")
        if self.model_parameters != parameters or self.sliders.object_diameter != diameter:
            self.sliders.set_parameters(parameters, object_diameter=diameter, values=values)
        self.model_method, self.model_parameters = method.name, parameters
        self.sliders.set_values(values)
        self._update_from_segment()
        return True

    def config(self):
        from ..batch import BatchConfig

        if not self.input.path:
            raise DeepColorError("choose the input folder with the images to segment.")
        if not self.output.path:
            raise DeepColorError("choose an output folder for the label images.")
        if not self.model.source:
            raise DeepColorError("choose a starter model or a model file (train one with the Train widget).")
        if self.model_method is None and not self.load_model():
            raise DeepColorError(f"{self.model.source} could not be read as a model; choose another.")
        patterns = tuple(p.strip() for p in self.patterns.text().replace(";", ",").split(",") if p.strip())
        return BatchConfig(model=self.model.source, input=self.input.path, output=self.output.path, patterns=patterns,
                           recursive=self.recursive.isChecked(), format=self.format.currentData(),
                           decode=self.sliders.values(), workers=self.workers.value() or None,
                           overwrite=self.overwrite.isChecked(), device=self.device.currentText(),
                           axes=self.axes.currentData(), channel=chosen_channel(self.channel))

    def run(self) -> None:
        from ..batch import Batch

        if self.worker is not None:
            return
        try:
            self.batch = Batch(self.config())
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return
        self.finished, self.events_seen = None, []
        self.summary.clear()
        self.progress.setRange(0, 0)  # busy until the number of files is known
        self.progress.setFormat("starting…")
        self.status.setText("looking for images…")
        self.worker = start_generator(self.batch.run, on_event=self._on_event, on_done=self._on_done)
        self.destroyed.connect(self.batch.stop)  # closing the widget stops after the current file
        self._set_running(True)

    def cancel(self) -> None:
        if self.batch is not None:
            self.batch.stop()
            self.status.setText("stopping after the file being segmented…")

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _on_done(self) -> None:
        self.worker, self.batch = None, None
        self._set_running(False)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _on_event(self, event) -> None:
        from ..batch import BatchFinished, BatchStarted, FileDone, FileFailed, FileStarted, PlaneDone

        self.events_seen.append(event)
        if isinstance(event, BatchStarted):
            self.progress.setRange(0, max(event.total, 1))
            self.progress.setValue(0)
            self.progress.setFormat(f"0 of {event.total}")
            self.status.setText(f"{event.total} file(s) to segment into {event.output}")
        elif isinstance(event, FileStarted):
            self.status.setText(f"segmenting {event.file} ({event.index + 1} of {event.total})…")
        elif isinstance(event, PlaneDone):
            if event.planes > 1:
                self.status.setText(f"segmenting {event.file}: plane {event.plane} of {event.planes}…")
        elif isinstance(event, (FileDone, FileFailed)):
            result = event.result
            self.progress.setValue(event.completed)
            self.progress.setFormat(f"{event.completed} of {event.total}")
            if isinstance(event, FileFailed):
                error = result.error[len(result.file) + 2:] if result.error.startswith(f"{result.file}: ") \
                    else result.error
                self.summary.appendPlainText(f"✗ {result.file}: {error}")
            elif result.status == "done":
                self.summary.appendPlainText(f"✓ {result.file} → {result.output} ({result.objects} objects, "
                                             f"{result.seconds:.1f} s){'; ' + result.note if result.note else ''}")
            else:
                self.summary.appendPlainText(f"– {result.file}: {result.status.replace('-', ' ')}")
        elif isinstance(event, BatchFinished):
            self._finished(event)
        elif isinstance(event, Failed):
            report(event.exception)
            self.status.setText(f"batch failed: {event.message}")
            self.progress.setFormat("failed")

    def _finished(self, event) -> None:
        self.finished = event
        counts = {status: event.count(status) for status in ("done", "skipped-existing", "failed", "cancelled")}
        parts = [f"{counts['done']} written"]
        if counts["skipped-existing"]:
            parts.append(f"{counts['skipped-existing']} skipped (output exists)")
        parts.append(f"{counts['failed']} failed")
        if counts["cancelled"]:
            parts.append(f"{counts['cancelled']} not started (cancelled)")
        text = f"{'Stopped' if event.stopped else 'Finished'} in {format_seconds(event.seconds)}: {', '.join(parts)}."
        self.status.setText(f"{'Stopped' if event.stopped else 'Finished'}; the output folder holds a summary table.")
        self.summary.appendPlainText(f"\n{text}\nsummary table: {event.summary}")
        self.progress.setFormat("stopped" if event.stopped else "done")
        (show_warning if counts["failed"] else show_info)(text)
