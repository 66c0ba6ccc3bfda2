"""Small Qt pieces the dock widgets share: error reporting, guarded workers, path fields, device choice.

Nothing here knows about training or segmentation; the widgets hand every
decision to the library and only show what it reports.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Callable

from qtpy.QtCore import QEvent, QSize, Qt, Signal
from qtpy.QtWidgets import (QComboBox, QFileDialog, QFrame, QHBoxLayout, QLineEdit, QPushButton, QScrollArea,
                            QSpinBox, QVBoxLayout, QWidget)

from ..errors import DeepColorError

log = logging.getLogger(__name__)


# -- notifications -------------------------------------------------------------------

def show_error(message: str) -> None:
    from napari.utils.notifications import show_error as _show_error

    _show_error(message)


def show_warning(message: str) -> None:
    from napari.utils.notifications import show_warning as _show_warning

    _show_warning(message)


def show_info(message: str) -> None:
    from napari.utils.notifications import show_info as _show_info

    _show_info(message)


def error_message(exc: BaseException) -> str:
    """A :class:`DeepColorError` as it is; anything else says it is unexpected (details in the log)."""
    if isinstance(exc, DeepColorError):
        return str(exc)
    return (f"unexpected error ({type(exc).__name__}: {exc}). The details are in the log; "
            "please report it if it happens again.")


def report(exc: BaseException) -> str:
    """Show ``exc`` as a napari notification and return the message shown."""
    if not isinstance(exc, DeepColorError):
        log.error("unexpected error in napari-deepcolor", exc_info=exc)
    message = error_message(exc)
    show_error(message)
    return message


# -- workers that never fail silently ------------------------------------------------

@dataclass(frozen=True)
class Failed:
    """What a guarded worker yields or returns instead of raising."""

    message: str
    exception: BaseException


@dataclass(frozen=True)
class Status:
    """A line of text for the widget's status label (e.g. 'reading the data...')."""

    message: str


def _guarded_generator(function, *args, **kwargs):
    try:
        yield from function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - shown to the user by the widget, logged if unexpected
        if not isinstance(exc, DeepColorError):
            log.error("unexpected error in a napari-deepcolor worker", exc_info=exc)
        yield Failed(error_message(exc), exc)


def _guarded_function(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        if not isinstance(exc, DeepColorError):
            log.error("unexpected error in a napari-deepcolor worker", exc_info=exc)
        return Failed(error_message(exc), exc)


def start_generator(function, *args, on_event: Callable, on_done: Callable | None = None, **kwargs):
    """Run generator ``function`` in a thread; its events (and a :class:`Failed`) go to ``on_event``.

    Exceptions never escape the thread: they arrive as a :class:`Failed` event,
    so the widget always hears about them (a raising generator worker can
    otherwise be swallowed). ``on_done`` runs in the GUI thread at the end.
    """
    from napari.qt.threading import create_worker

    worker = create_worker(_guarded_generator, function, *args, _start_thread=False, **kwargs)
    worker.yielded.connect(on_event)
    if on_done is not None:
        worker.finished.connect(on_done)
    worker.errored.connect(lambda exc: on_event(Failed(error_message(exc), exc)))
    worker.start()
    return worker


def start_function(function, *args, on_result: Callable, on_done: Callable | None = None, **kwargs):
    """Run ``function`` in a thread; its result (or a :class:`Failed`) goes to ``on_result``."""
    from napari.qt.threading import create_worker

    worker = create_worker(_guarded_function, function, *args, _start_thread=False, **kwargs)
    worker.returned.connect(on_result)
    if on_done is not None:
        worker.finished.connect(on_done)
    worker.errored.connect(lambda exc: on_result(Failed(error_message(exc), exc)))
    worker.start()
    return worker


class LatestOnly:
    """Runs one job at a time in a thread; a job asked for while one runs replaces any waiting job.

    This is what keeps slider dragging smooth whatever the decode costs: the
    GUI never waits, at most one decode runs, and the last value asked for is
    always the one shown in the end.
    """

    def __init__(self):
        self._worker = None
        self._waiting = None

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def submit(self, function: Callable, on_result: Callable) -> None:
        if self._worker is not None:
            self._waiting = (function, on_result)
            return
        self._start(function, on_result)

    def _start(self, function, on_result) -> None:
        self._worker = start_function(function, on_result=on_result, on_done=self._next)

    def _next(self) -> None:
        self._worker = None
        if self._waiting is not None:
            function, on_result = self._waiting
            self._waiting = None
            self._start(function, on_result)


# -- widgets -------------------------------------------------------------------------

class _VerticalScroll(QScrollArea):
    """Scrolls vertically only: as wide as its content needs, as short as a few rows."""

    MINIMUM_HEIGHT = 160

    def eventFilter(self, watched, event) -> bool:
        """When the body's layout changes (e.g. a combo box gets longer choices), ask for the new width."""
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)

    def minimumSizeHint(self) -> QSize:
        body = self.widget()
        width = body.minimumSizeHint().width() if body is not None else 0
        return QSize(width + self.verticalScrollBar().sizeHint().width(), self.MINIMUM_HEIGHT)

    def sizeHint(self) -> QSize:
        body = self.widget()
        hint = body.sizeHint() if body is not None else QSize(0, 0)
        return QSize(hint.width() + self.verticalScrollBar().sizeHint().width(), hint.height())


def scrolling_body(widget: QWidget) -> QVBoxLayout:
    """Give a dock widget a vertically scrolling body and return the body's layout.

    The dock then asks the main window for little height (three docked widgets
    fit a 1366 x 768 screen); the body scrolls when it is taller than the dock.
    """
    body = QWidget()
    layout = QVBoxLayout(body)
    scroll = _VerticalScroll()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(body)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return layout


class PathEdit(QWidget):
    """A path in a line edit with a browse button. ``mode``: 'open', 'save' or 'folder'."""

    changed = Signal(str)

    def __init__(self, mode: str = "open", *, filter: str = "", placeholder: str = "", tooltip: str = "",
                 parent=None):
        super().__init__(parent)
        self.mode, self.filter = mode, filter
        self.line = QLineEdit()
        self.line.setPlaceholderText(placeholder)
        self.line.setToolTip(tooltip)
        self._emitted: str | None = None
        self.line.editingFinished.connect(self._emit_if_changed)
        button = QPushButton("…")
        button.setFixedWidth(28)
        button.setToolTip("Browse")
        button.clicked.connect(self.browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.line)
        layout.addWidget(button)

    @property
    def path(self) -> str:
        return self.line.text().strip()

    def set_path(self, path) -> None:
        self.line.setText(str(path))
        self._emitted = self.path
        self.changed.emit(self.path)

    def _emit_if_changed(self) -> None:
        """An edit of the field: ``changed`` unless the path is the one last announced (e.g. by ``set_path``)."""
        if self.path != self._emitted:
            self._emitted = self.path
            self.changed.emit(self.path)

    def browse(self) -> None:
        start = self.path
        if self.mode == "folder":
            chosen = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        elif self.mode == "save":
            chosen, _ = QFileDialog.getSaveFileName(self, "Save as", start, self.filter)
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, "Open", start, self.filter)
        if chosen:
            self.set_path(chosen)


MODEL_FILTER = "napari-deepcolor models (*.safetensors *.zip);;All files (*)"


def starter_choices() -> list[tuple[str, str]]:
    """(label, name) of each bundled starter model, in the order they are offered."""
    from ..models import starter_card, starter_names

    choices = []
    for name in starter_names():
        try:
            kind = starter_card(name).get("kind_of_data", "")
        except Exception:  # noqa: BLE001 - a damaged file is still listed; loading it reports why
            kind = ""
        choices.append((f"{name} (starter{': ' + kind if kind else ''})", name))
    return choices


class ModelChooser(QWidget):
    """The model of the Segment and Batch widgets: a starter by name (they segment out of the box), or a
    model file of one's own. ``changed`` fires with the chosen source: a starter name or a file path."""

    changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.combo = QComboBox()
        for label, name in starter_choices():
            self.combo.addItem(label, name)
        self.combo.addItem("a model file…", None)
        compact_combo(self.combo, "A starter model shipped with the plugin (see docs/models.md), or a model file "
                                  "of your own")
        self.path_edit = PathEdit("open", filter=MODEL_FILTER, placeholder="model file (.safetensors or .zip)",
                                  tooltip="A model trained with the Train widget or the napari-deepcolor train "
                                          "command, or a bioimage.io package exported by napari-deepcolor")
        self.path_edit.setEnabled(self.starter is None)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addWidget(self.path_edit)
        self.combo.currentIndexChanged.connect(self._choice_changed)
        self.path_edit.changed.connect(self._file_chosen)

    @property
    def starter(self) -> str | None:
        """The starter chosen, or None when a model file is."""
        return self.combo.currentData()

    @property
    def source(self) -> str:
        """The starter's name, or the model file's path ('' when none is given)."""
        return self.starter or self.path_edit.path

    def set_path(self, path) -> None:
        """Choose a model file (as if typed or browsed)."""
        self.path_edit.set_path(path)

    def _choice_changed(self, *_) -> None:
        self.path_edit.setEnabled(self.starter is None)
        if self.source:
            self.changed.emit(self.source)

    def _file_chosen(self, path: str) -> None:
        """A file given in the field (typed, browsed, or offered after training) is the model to use."""
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(self.combo.count() - 1)
        self.combo.blockSignals(False)
        self.path_edit.setEnabled(True)
        if path:
            self.changed.emit(path)


def device_choices() -> list[str]:
    """'auto' first, then what this machine has (cpu, cuda[:N], mps)."""
    choices = ["auto", "cpu"]
    try:
        import torch

        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            choices += ["cuda"] if count == 1 else [f"cuda:{i}" for i in range(count)]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            choices.append("mps")
    except Exception:  # noqa: BLE001 - a broken torch install shows up when training starts
        pass
    return choices


def device_combo() -> QComboBox:
    combo = QComboBox()
    combo.addItems(device_choices())
    return compact_combo(combo, "Where the network runs. auto: a CUDA GPU if there is one, then Apple MPS, then "
                                "the CPU.")


def format_seconds(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or inf: not known yet
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def format_scores(scores: dict) -> str:
    names = {"ap": "AP", "tuned_ap": "AP after tuning", "f1": "F1", "sbd": "SBD", "abs_dic": "|DiC|", "ap50": "AP50"}
    return " · ".join(f"{names.get(k, k)} {v:.3f}" if isinstance(v, float) else f"{names.get(k, k)} {v}"
                      for k, v in scores.items())


def classes_source(model) -> str:
    """`` · classes come from ...`` for a model trained with classes (its object classifier's or pixel head's
    choice, :func:`~napari_deepcolor.object_classes.classes_choice_text`), else ``""``."""
    choice = getattr(model, "provenance", {}).get("object_classes")
    if not choice:
        return ""
    from ..object_classes import classes_choice_text

    return f" · {classes_choice_text(choice)}"


def starter_kept(model) -> str:
    """:func:`~napari_deepcolor.tuning.starter_kept_note`, imported when a training ends (not with the widget)."""
    from ..tuning import starter_kept_note

    return starter_kept_note(model)


#: metadata key marking the layers napari-deepcolor made (segmentations, previews): not offered as inputs
OUTPUT_KEY = "napari_deepcolor"


def is_output(layer) -> bool:
    """Whether napari-deepcolor made this layer (a segmentation or a preview)."""
    return OUTPUT_KEY in getattr(layer, "metadata", {})


def layer_chooser(viewer, kind: str, *, tooltip: str = "", accept: Callable | None = None,
                  none_choice: str | None = None):
    """A magicgui ComboBox of the names of the viewer's layers of one kind ('image' or 'labels').

    The choices are a callable, so ``reset_choices()`` (which napari calls on a
    dock widget's ``reset_choices`` when layers are added, removed, moved or
    renamed) brings them up to date. ``accept(layer)`` filters them; the
    top-most layer comes first, layers napari-deepcolor made come last.
    ``none_choice``, if given, is offered first and stands for no layer
    (:func:`chosen_layer` gives None for it).
    """
    from magicgui.widgets import ComboBox
    from napari.layers import Image, Labels

    cls = {"image": Image, "labels": Labels}[kind]

    def choices(_widget=None) -> list[str]:
        layers = [layer for layer in reversed(viewer.layers)
                  if isinstance(layer, cls) and (accept is None or accept(layer))]
        names = [layer.name for layer in sorted(layers, key=is_output)]
        return ([none_choice] if none_choice else []) + names

    combo = ComboBox(choices=choices)
    compact_combo(combo.native, tooltip)
    return combo


def chosen_layer(viewer, combo):
    """The layer chosen in a :func:`layer_chooser`, or None."""
    name = combo.value
    return viewer.layers[name] if name is not None and name in viewer.layers else None


def compact_combo(combo: QComboBox, tooltip: str = "") -> QComboBox:
    """Let a combo box be narrower than its longest text, and show the chosen text in full in its tooltip.

    A dock widget is then as narrow as its controls need, not as wide as its
    longest choice; the tooltip (the full chosen text above ``tooltip``) says
    what a truncated text reads.
    """
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(10)
    rest = [tooltip.replace("\n", "<br>")] if tooltip else []

    def update(text: str) -> None:
        combo.setToolTip("<br>".join(([f"<b>{html.escape(text)}</b>"] if text else []) + rest))

    combo.currentTextChanged.connect(update)
    update(combo.currentText())
    return combo


def channel_box(tooltip: str) -> QSpinBox:
    """The channel a one-channel model sees in a multi-channel image: -1 shows as 'all (as the model takes)'
    (None from :func:`chosen_channel`), else 0, 1, ... (the CLI's ``--channel``)."""
    box = QSpinBox()
    box.setRange(-1, 63)
    box.setSpecialValueText("all (as the model takes)")
    box.setValue(-1)
    box.setToolTip(tooltip)
    return box


def chosen_channel(box: QSpinBox) -> int | None:
    """The channel chosen in a :func:`channel_box`, or None for all of them (or when the box is disabled)."""
    return None if box.value() < 0 or not box.isEnabled() else box.value()
