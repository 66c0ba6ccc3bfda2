"""The Train dock widget: annotated layers or a folder in, a model file out, with live feedback.

The widget builds a :class:`~napari_deepcolor.training.TrainingConfig`, runs
:class:`~napari_deepcolor.training.Training` in a worker thread and shows its
events: progress with ETA, the loss curve, validation scores and, every so
often, the current model's labels on the part of the image in view. The
preview runs in the worker between two training steps, when the loop is
suspended, so it never reads weights that are being updated.

This module is the form and its reactions; the run in the worker (and the
preview it segments) is :mod:`.training_job`, the rows of image and labels
layers to train on are :mod:`.layer_pairs`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                            QLabel, QProgressBar, QPushButton, QSpinBox, QStackedWidget, QVBoxLayout, QWidget)
from superqt import QCollapsible

from ..errors import DeepColorError
from ..methods import DEFAULT_METHOD
from . import layers as L
from ._common import (MODEL_FILTER, OUTPUT_KEY, Failed, PathEdit, Status, chosen_layer, classes_source, compact_combo,
                      device_combo, format_scores, format_seconds, is_output, report, scrolling_body, show_info,
                      start_generator, starter_choices, starter_kept)
from ._session import session
from .forms import OptionsForm
from .layer_pairs import LayerPairs
from .lossplot import LossPlot
from .training_job import PREVIEW_KIND, PREVIEW_SIZE, PreviewReady, TrainingJob, preview_crop

log = logging.getLogger(__name__)

SOURCE_LAYERS, SOURCE_FOLDER = "layers", "folder"
#: "Start from" choices besides the starters (whose item data is the starter's name)
START_NEW, START_FILE = "__new__", "__file__"
STOP_HELP = "End training after the current step and keep the model trained so far"
SKIP_HELP = ("Stop tuning the decode parameters now: the model is saved with the best values found so far "
             "(tune them later from an annotation in the Segment widget)")


def _method_choices() -> list[tuple[str, object]]:
    from ..methods import get_method, method_names

    choices = []
    for name in method_names():
        try:
            choices.append((name, get_method(name)))
        except Exception as exc:  # noqa: BLE001 - a method module that does not import is left out
            log.warning("method '%s' is not available: %s", name, exc)
    return choices


class TrainWidget(QWidget):
    """Train a model on annotated layers or a folder; Stop keeps a usable model."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.job: TrainingJob | None = None
        self.worker = None
        self.finished = None  # the last Finished event
        self.model_path: Path | None = None
        self.events_seen: list = []  # kept for tests and the screenshot script
        self.preview_layer_name = "training preview"

        layout = scrolling_body(self)
        layout.addWidget(self._data_box())
        layout.addWidget(self._method_box())
        layout.addWidget(self._training_box())
        layout.addLayout(self._buttons())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.status = QLabel("Choose the annotated data, then press Train.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.plot = LossPlot()
        layout.addWidget(self.plot)
        self.scores = QLabel("")
        self.scores.setWordWrap(True)
        self.scores.setToolTip("Validation scores on the held-out part of the data: AP over IoU 0.5-0.95, F1 at "
                               "IoU 0.5, symmetric best Dice (SBD) and the absolute difference in count |DiC|.")
        layout.addWidget(self.scores)
        layout.addStretch(1)
        self.preview_timer = QTimer(self)
        self.preview_timer.timeout.connect(self.request_preview)
        self._set_running(False)

    def reset_choices(self, *_) -> None:
        """Bring the layer choosers up to date (napari calls this when the layer list changes)."""
        self.pairs.reset_choices()

    # -- building the form -------------------------------------------------------------
    def _data_box(self) -> QGroupBox:
        box = QGroupBox("Annotated data")
        form = QFormLayout(box)
        self.source = QComboBox()
        self.source.addItem("Layers in the viewer", SOURCE_LAYERS)
        self.source.addItem("A folder on disk", SOURCE_FOLDER)
        compact_combo(self.source, "Train on image + Labels layers open in napari, or on an annotated folder")
        form.addRow("Train on", self.source)
        self.source_pages = QStackedWidget()
        layers_page = QWidget()
        layers_form = QFormLayout(layers_page)
        layers_form.setContentsMargins(0, 0, 0, 0)
        self.pairs = LayerPairs(self.viewer)
        layers_form.addRow(self.pairs)
        self.region = QComboBox()
        for key, text in L.REGION_CHOICES.items():
            self.region.addItem(text, key)
        compact_combo(self.region, L.REGION_HELP)
        layers_form.addRow("Annotated area", self.region)
        folder_page = QWidget()
        folder_form = QFormLayout(folder_page)
        folder_form.setContentsMargins(0, 0, 0, 0)
        self.folder = PathEdit("folder", placeholder="dataset folder",
                               tooltip="images/ + labels/ (or masks/), Cellpose NAME + NAME_masks, CVPPP "
                                       "plantNNN_rgb + _label, BBBC010 per-object masks, or an image folder "
                                       "(then give the label folder below)")
        self.label_folder = PathEdit("folder", placeholder="(optional) label folder",
                                     tooltip="Only when the labels are in a separate folder, matched by file name")
        self.layout_info = QLabel("")
        self.layout_info.setWordWrap(True)
        folder_form.addRow("Folder", self.folder)
        folder_form.addRow("Labels", self.label_folder)
        folder_form.addRow(self.layout_info)
        self.folder.changed.connect(self._describe_folder)
        self.label_folder.changed.connect(self._describe_folder)
        self.source_pages.addWidget(layers_page)
        self.source_pages.addWidget(folder_page)
        self.source.currentIndexChanged.connect(self.source_pages.setCurrentIndex)
        form.addRow(self.source_pages)
        self.labels_are_masks = QCheckBox("Labels are masks")
        self.labels_are_masks.setToolTip(
            "Tick when one label (or a 0/255 mask) covers many objects: each separate piece then becomes an object "
            "of its own; objects that touch stay one. Unticked, such labels are refused with a message, since a "
            "model trained on them learns that all those objects are one.")
        form.addRow(self.labels_are_masks)
        return box

    def _method_box(self) -> QGroupBox:
        box = QGroupBox("Method")
        form = QFormLayout(box)
        self.method = QComboBox()
        self.method.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method.setMinimumContentsLength(10)  # the tooltip has the full title (set when the method changes)
        self._methods = dict(_method_choices())
        for name, method in self._methods.items():
            self.method.addItem(method.title, name)
            self.method.setItemData(self.method.count() - 1, method.paper, Qt.ItemDataRole.ToolTipRole)
        self.method.setCurrentIndex(max(self.method.findData(DEFAULT_METHOD), 0))
        form.addRow("Method", self.method)
        self.options_holder = QVBoxLayout()
        form.addRow(self.options_holder)
        self.options_form: OptionsForm | None = None
        self.method.currentIndexChanged.connect(self._method_changed)
        self._method_changed()
        return box

    def _training_box(self) -> QGroupBox:
        box = QGroupBox("Training")
        form = QFormLayout(box)
        self.start_from = QComboBox()
        self.start_from.addItem("a new network", START_NEW)
        self.start_from.addItem("a model file (fine-tune)", START_FILE)
        for label, name in starter_choices():  # the starters: fine-tune one on your own annotations
            self.start_from.addItem(f"{label.replace('(starter', '(fine-tune the starter')}", name)
        compact_combo(self.start_from, "Fine-tuning continues from a trained model: faster, and needs fewer "
                                       "annotations when the images look alike. The method and its options come "
                                       "from the file.")
        self.init_model = PathEdit("open", filter=MODEL_FILTER, placeholder="model to fine-tune")
        self.init_model.changed.connect(self._init_model_changed)
        self.start_from.currentIndexChanged.connect(self._start_from_changed)
        form.addRow("Start from", self.start_from)
        form.addRow("", self.init_model)

        self.patch_size = QSpinBox()
        self.patch_size.setRange(32, 2048)
        self.patch_size.setSingleStep(32)
        self.patch_size.setValue(256)
        self.patch_size.setToolTip("Side in pixels of the square patches the net trains on. Several object "
                                   "diameters (and the halo margin m) should fit in one.")
        form.addRow("Patch size", self.patch_size)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(0, 512)
        self.batch_size.setSpecialValueText("auto")  # 0: 4 on a CPU, 8 on a GPU
        self.batch_size.setValue(0)
        self.batch_size.setToolTip("Patches per step. auto: 4 on a CPU (twice the steps in the same minutes), 8 on "
                                   "a GPU. Larger is smoother but slower per step; lower it if memory runs out.")
        form.addRow("Batch size", self.batch_size)

        budget = QHBoxLayout()
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.1, 10_000)
        self.minutes.setDecimals(1)
        self.minutes.setValue(15)
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 10_000_000)
        self.iterations.setValue(2000)
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(["minutes", "iterations"])
        compact_combo(self.budget_unit)
        self.budget_stack = QStackedWidget()
        self.budget_stack.addWidget(self.minutes)
        self.budget_stack.addWidget(self.iterations)
        self.budget_unit.currentIndexChanged.connect(self.budget_stack.setCurrentIndex)
        for w in (self.minutes, self.iterations, self.budget_unit):
            w.setToolTip("How long to train: a time budget (the run stops after it) or a number of steps. "
                         "Stop ends earlier and keeps the model.")
        budget.addWidget(self.budget_stack, 1)
        budget.addWidget(self.budget_unit)
        form.addRow("Budget", budget)

        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(6)
        self.learning_rate.setRange(0.0, 0.5)
        self.learning_rate.setSingleStep(0.0001)
        self.learning_rate.setSpecialValueText("auto")  # 0: 1e-3 from scratch, 1e-4 from a model
        self.learning_rate.setValue(0.0)
        self.learning_rate.setToolTip("Adam's step size. auto: 1e-3 from scratch (the paper's), 1e-4 when starting "
                                      "from a model (fine-tuning). Lower it if the loss jumps around.")
        self.device = device_combo()

        advanced = QCollapsible("Advanced")
        inner = QWidget()
        adv = QFormLayout(inner)
        self.net_depth = QSpinBox()
        self.net_depth.setRange(1, 6)
        self.net_depth.setValue(4)
        self.net_depth.setToolTip("U-Net depth: poolings; the net sees about 2^depth x 8 pixels of context")
        self.net_width = QSpinBox()
        self.net_width.setRange(3, 256)
        self.net_width.setSpecialValueText("auto")
        self.net_width.setValue(3)
        self.net_width.setToolTip("Channels of the first U-Net level (auto: 16 on CPU, 32 on a GPU)")
        self.validation_fraction = QDoubleSpinBox()
        self.validation_fraction.setRange(0.0, 0.9)
        self.validation_fraction.setSingleStep(0.05)
        self.validation_fraction.setValue(0.15)
        self.validation_fraction.setToolTip("Part of the data held out to score the model (a single image is cut in "
                                            "two). 0: no validation and no tuning of the decode parameters.")
        self.validate_every = QSpinBox()
        self.validate_every.setRange(-1, 1_000_000)
        self.validate_every.setSpecialValueText("auto")  # shown at -1: TrainingConfig's device default
        self.validate_every.setValue(-1)
        self.validate_every.setToolTip("Score the model on the validation part every this many steps; 0: only at "
                                       "the end. auto: every 100 on a GPU, only at the end on a CPU (a pass there "
                                       "costs minutes)")
        self.augment = QCheckBox()
        self.augment.setChecked(True)
        self.augment.setToolTip("Random flips, turns, rotations, scaling and intensity changes of the patches")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Same seed, same data and settings: the same run")
        self.preview_seconds = QDoubleSpinBox()
        self.preview_seconds.setRange(0, 3600)
        self.preview_seconds.setValue(20)
        self.preview_seconds.setSpecialValueText("off")
        self.preview_seconds.setToolTip("Every this many seconds, segment the region in view with the current model "
                                        f"(up to {PREVIEW_SIZE} px square) into the '{self.preview_layer_name}' layer")
        for label, widget in (("Learning rate", self.learning_rate), ("Device", self.device),
                              ("Net depth", self.net_depth), ("Net width", self.net_width),
                              ("Validation fraction", self.validation_fraction),
                              ("Validate every", self.validate_every), ("Augment", self.augment),
                              ("Seed", self.seed), ("Preview every (s)", self.preview_seconds)):
            adv.addRow(label, widget)
        advanced.addWidget(inner)
        form.addRow(advanced)

        self.output = PathEdit("save", filter=MODEL_FILTER, placeholder="(optional) model file to write",
                               tooltip="Where the model is written (and checkpointed every 5 minutes). Empty: a "
                                       "temporary file; use 'Save model…' afterwards to keep it.")
        form.addRow("Save to", self.output)
        return box

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(STOP_HELP)
        self.stop_button.clicked.connect(self.stop)
        self.save_button = QPushButton("Save model…")
        self.save_button.setToolTip("Write the trained model to a file of your choice")
        self.save_button.clicked.connect(lambda: self.save_model())
        self.export_button = QPushButton("Export (bioimage.io)…")
        self.export_button.setToolTip("Write the trained model as a bioimage.io model package (.zip): weights, "
                                      "test data, cover, and the decode parameters in its config")
        self.export_button.clicked.connect(lambda: self.export_bioimageio())
        for button in (self.train_button, self.stop_button, self.save_button, self.export_button):
            row.addWidget(button)
        return row

    # -- reactions to the form ---------------------------------------------------------
    def _method_changed(self, *_) -> None:
        method = self._methods.get(self.method.currentData())
        if self.options_form is not None:
            self.options_form.native.setParent(None)
            self.options_form.native.deleteLater()
        self.options_form = OptionsForm(method.Options) if method is not None else None
        if self.options_form is not None:
            self.options_holder.addWidget(self.options_form.native)
        self.method.setToolTip(f"<b>{method.title}</b><br>{method.paper}" if method is not None else "")

    def _start_from_changed(self, *_) -> None:
        choice = self.start_from.currentData()
        fine_tune = choice != START_NEW
        self.init_model.setEnabled(choice == START_FILE)
        self.method.setEnabled(not fine_tune)
        if self.options_form is not None:
            self.options_form.enabled = not fine_tune
        if choice == START_FILE and self.init_model.path:
            self._init_model_changed(self.init_model.path)
        elif fine_tune and choice != START_FILE:
            self._init_model_changed(choice)

    def fine_tune_source(self) -> str | None:
        """What training starts from: None (a new network), a model file, or a starter's name."""
        choice = self.start_from.currentData()
        if choice == START_NEW:
            return None
        if choice == START_FILE:
            if not self.init_model.path:
                raise DeepColorError("choose the model file to fine-tune, or start from a new network.")
            return self.init_model.path
        return choice

    def _init_model_changed(self, path: str) -> None:
        """Show the method and options stored in the model to fine-tune."""
        if not path or self.start_from.currentData() == START_NEW:
            return
        from ..models import read_model_config

        try:
            config = read_model_config(path)
        except DeepColorError as exc:
            report(exc)
            return
        index = self.method.findData(config["method"])
        if index >= 0:
            self.method.setCurrentIndex(index)
            self.options_form.set_values(config.get("method_options", {}))
            self.options_form.enabled = False

    def _describe_folder(self, *_) -> None:
        from ..data import describe_layout

        if not self.folder.path:
            self.layout_info.setText("")
            return
        try:
            self.layout_info.setText(describe_layout(self.folder.path, self.label_folder.path or None))
        except DeepColorError as exc:
            self.layout_info.setText(f"<span style='color:#e66'>{exc}</span>")

    # -- running ---------------------------------------------------------------------
    def config(self):
        """The TrainingConfig of the form (raises DeepColorError with what to fix)."""
        from ..training import TrainingConfig

        net = {"depth": self.net_depth.value()}
        if self.net_width.value() > self.net_width.minimum():
            net["width"] = self.net_width.value()
        minutes = self.budget_unit.currentIndex() == 0
        return TrainingConfig(
            method=self.method.currentData(), method_options=self.options_form.values(), net=net,
            patch_size=self.patch_size.value(), batch_size=self.batch_size.value() or None,
            learning_rate=self.learning_rate.value() or None,
            minutes=self.minutes.value() if minutes else None, iterations=None if minutes else self.iterations.value(),
            validation_fraction=self.validation_fraction.value(), validate_every=None if self.validate_every.value() < 0 else self.validate_every.value(),
            seed=self.seed.value(), device=self.device.currentText(), augment=self.augment.isChecked())

    def _sample_loader(self):
        """A function for the worker that returns the training samples (layer data is read now)."""
        if self.source.currentData() == SOURCE_FOLDER:
            from ..data import describe_layout, read_annotated_folder

            folder, labels = self.folder.path, self.label_folder.path or None
            if not folder:
                raise DeepColorError("choose the folder with the annotated images (or train on layers instead).")
            describe_layout(folder, labels)  # file names only: a wrong folder is reported before anything starts
            masks = self.labels_are_masks.isChecked()
            return lambda: read_annotated_folder(folder, labels, labels_are_masks=masks)
        pairs, region, masks = self.pairs.pairs(), self.region.currentData(), self.labels_are_masks.isChecked()
        return lambda: L.training_samples(pairs, region, labels_are_masks=masks)

    def start(self) -> None:
        if self.job is not None:
            return
        try:
            config = self.config()
            loader = self._sample_loader()
            init_from = self.fine_tune_source()
            output = Path(self.output.path) if self.output.path else Path(
                tempfile.mkdtemp(prefix="napari-deepcolor-")) / f"model-{time.strftime('%Y%m%d-%H%M%S')}.safetensors"
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return
        self.finished, self.model_path, self.events_seen = None, output, []
        self.plot.clear()
        self.scores.setText("")
        self.job = TrainingJob(config, loader, output=output, init_from=init_from)
        self.destroyed.connect(self.job.stop)  # closing the widget stops the run (the model is saved)
        self._set_running(True)
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.worker = start_generator(self.job.events, on_event=self._on_event, on_done=self._on_done)
        if self.preview_seconds.value() > 0:
            self.preview_timer.start(int(self.preview_seconds.value() * 1000))

    def stop(self) -> None:
        """Stop: end training after this step (the model is kept). Skip (while tuning): keep the best decode so far."""
        if self.job is None:
            return
        if self._tuning:
            self.job.skip_tuning()
            self.status.setText("skipping the rest of the tuning; saving the model…")
        else:
            self.job.stop()
            self.status.setText("stopping after this step; the model trained so far is kept…")
        self.stop_button.setEnabled(False)  # enabled again as Skip if tuning follows

    def _show_tuning(self, event) -> None:
        self._tuning = True
        self.stop_button.setText("Skip")
        self.stop_button.setToolTip(SKIP_HELP)
        self.stop_button.setEnabled(True)
        self.progress.setFormat("tuning the decode…")
        self.status.setText(f"tuning the decode parameters on {event.n_validation} validation image(s)… "
                            "(Skip keeps the best values found so far)")

    def _set_running(self, running: bool) -> None:
        self._tuning = False
        self.stop_button.setText("Stop")
        self.stop_button.setToolTip(STOP_HELP)
        self.train_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.save_button.setEnabled(not running and self.finished is not None)

    def _on_done(self) -> None:
        self.preview_timer.stop()
        self.job, self.worker = None, None
        self._set_running(False)

    def _on_event(self, event) -> None:
        from ..training import CheckpointSaved, Finished, Started, Step, TuningDecode, Validated

        self.events_seen.append(event)
        if isinstance(event, Status):
            self.status.setText(event.message)
        elif isinstance(event, Started):
            budget = f"{event.total_iterations} iterations" if event.total_iterations else \
                f"{event.total_seconds / 60:g} minutes"
            self.status.setText(f"training on {event.device}: {event.n_train} image(s) for training, "
                                f"{event.n_validation} for validation; budget {budget}")
        elif isinstance(event, Step):
            self.progress.setValue(int(round(1000 * min(event.fraction_done, 1.0))))
            self.progress.setFormat(f"{100 * event.fraction_done:.0f}% · ETA {format_seconds(event.eta_seconds)}")
            self.status.setText(f"iteration {event.iteration} · loss {event.loss:.4g} · "
                                f"{event.patches_per_second:.1f} patches/s · {format_seconds(event.elapsed_seconds)}")
            self.plot.add_point(event.iteration, event.loss)
        elif isinstance(event, Validated):
            self.scores.setText(f"validation at iteration {event.iteration}: {format_scores(event.scores)}")
            if "ap" in event.scores:
                self.plot.add_validation(event.iteration, event.scores["ap"])
        elif isinstance(event, CheckpointSaved):
            self.status.setText(f"checkpoint saved at iteration {event.iteration}: {event.path}")
        elif isinstance(event, TuningDecode):
            self._show_tuning(event)
        elif isinstance(event, PreviewReady):
            self._show_preview(event)
        elif isinstance(event, Finished):
            self._finished(event)
        elif isinstance(event, Failed):
            report(event.exception)
            self.status.setText(f"training failed: {event.message}")
            self.progress.setFormat("failed")

    def _finished(self, event) -> None:
        self.finished = event
        self.progress.setValue(1000 if event.reason == "done" else self.progress.value())
        self.progress.setFormat("done" if event.reason == "done" else f"stopped at iteration {event.iteration}")
        where = f"model saved to {event.path}" if event.path else "model kept in memory"
        self.status.setText(f"{'finished' if event.reason == 'done' else 'stopped'} after {event.iteration} "
                            f"iterations; {where}. Decode parameters: "
                            + ", ".join(f"{k}={v:g}" for k, v in event.decode_parameters.items()))
        if event.scores:  # or why a fine-tune holds its starter's weights (TrainingConfig.keep_starter_unless_beaten)
            self.scores.setText(starter_kept(event.model) or f"final validation: {format_scores(event.scores)}"
                                f"{classes_source(event.model)}")
        if event.path is not None:
            session.model_saved.emit(str(event.path))
        show_info(f"Training {'finished' if event.reason == 'done' else 'stopped'}: {where}.")

    def save_model(self, path: str | None = None) -> Path | None:
        """Write the last trained model to ``path`` (asks with a file dialog when None)."""
        from ..models import save_model

        if self.finished is None:
            report(DeepColorError("there is no trained model yet: train first."))
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save model", "model.safetensors", MODEL_FILTER)
            if not path:
                return None
        try:
            written = save_model(self.finished.model, path, overwrite=True)
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return None
        self.model_path = written
        self.status.setText(f"model saved to {written}")
        session.model_saved.emit(str(written))
        return written

    def export_bioimageio(self, path: str | None = None) -> Path | None:
        """Export the last trained model as a bioimage.io package (asks where with a dialog when None)."""
        from ..models import export_bioimageio

        if self.finished is None or self.model_path is None:
            report(DeepColorError("there is no trained model yet: train first, then export it."))
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export as a bioimage.io package", "model.zip",
                                                  "bioimage.io package (*.zip)")
            if not path:
                return None
        self.status.setText("exporting the bioimage.io package…")
        try:
            written = export_bioimageio(self.model_path, path, overwrite=True)
        except Exception as exc:  # noqa: BLE001
            report(exc)
            self.status.setText("export failed")
            return None
        self.status.setText(f"bioimage.io package written to {written}")
        return written

    # -- live preview ------------------------------------------------------------------
    def _preview_image_layer(self):
        if self.source.currentData() == SOURCE_LAYERS and self.pairs.rows:
            layer = chosen_layer(self.viewer, self.pairs.rows[0].image)
            if layer is not None:
                return layer
        from napari.layers import Image

        images = [layer for layer in self.viewer.layers if isinstance(layer, Image) and layer.visible
                  and not is_output(layer)]
        return images[-1] if images else None

    def request_preview(self) -> bool:
        """Ask the worker to segment the region in view with the current model after its next step."""
        if self.job is None:
            return False
        layer = self._preview_image_layer()
        if layer is None:
            return False
        try:
            image = L.image_input(layer)
            world = np.array(self.viewer.dims.point, dtype=float)
            displayed = list(self.viewer.dims.displayed)[-2:]
            scene = getattr(self.viewer, "scene", None)  # napari >= 0.9; viewer.camera before
            camera = scene.camera if scene is not None else self.viewer.camera
            world[displayed] = np.asarray(camera.center)[-2:]
            point = np.asarray(layer.world_to_data(world), dtype=float)
            plane = L.plane_of(image, int(round(point[0])) if image.is_stack else None)
            crop, offset, inner = preview_crop(plane, point[-2], point[-1])
        except Exception as exc:  # noqa: BLE001 - a preview must never disturb training
            log.warning("no training preview: %s", exc)
            return False
        self._preview_source = layer
        self.job.request_preview(crop, offset, inner)
        return True

    def _show_preview(self, event: PreviewReady) -> None:
        source = getattr(self, "_preview_source", None)
        scale = tuple(source.scale[-2:]) if source is not None else (1, 1)
        translate = tuple(source.translate[-2:]) if source is not None else (0, 0)
        translate = tuple(t + o * s for t, o, s in zip(translate, event.offset, scale))
        name = self.preview_layer_name
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = event.labels
            layer.translate, layer.scale = translate, scale
        else:
            # outlines, so the annotation underneath stays visible; one layer, replaced at each preview
            layer = self.viewer.add_labels(event.labels, name=name, translate=translate, scale=scale, opacity=0.8,
                                           metadata={OUTPUT_KEY: PREVIEW_KIND})
            layer.contour = 2
        layer.metadata["iteration"] = event.iteration
        self.status.setText(self.status.text() + f" · preview of iteration {event.iteration} updated")
