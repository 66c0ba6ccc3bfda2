"""The Train widget's data pairing: rows of an image layer, its labels layer and, optionally, a class layer.

Only labels of the image's shape are offered (never a preview or another output), the
labels named like the image first; :meth:`LayerPairs.pairs` reads the chosen layers'
data in the GUI thread, with a clear error when a choice is missing.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..errors import DeepColorError
from . import layers as L
from ._common import OUTPUT_KEY, chosen_layer, is_output, layer_chooser
from .training_job import PREVIEW_KIND


#: the class-layer chooser's entry for "no class layer" (classes may still come from the labels' features)
NO_CLASS_LAYER = "(no class layer)"


def _training_labels_of(viewer, image_combo):
    """``accept`` for a labels chooser: labels of the chosen image's shape, never a preview."""
    def accept(layer) -> bool:
        image = chosen_layer(viewer, image_combo)
        if image is None or layer.metadata.get(OUTPUT_KEY) in (PREVIEW_KIND, "preview"):
            return False
        return L.labels_fit(image.data.shape, bool(getattr(image, "rgb", False)), layer.data.shape)

    return accept


class PairRow(QWidget):
    """One image layer and the labels layer annotated on it (only labels of the image's shape are offered)."""

    def __init__(self, viewer, on_remove, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.image = layer_chooser(viewer, "image", accept=lambda layer: not is_output(layer),
                                   tooltip="An image layer with annotations")
        self.labels = layer_chooser(viewer, "labels", accept=_training_labels_of(viewer, self.image), tooltip=(
            "The Labels layer with the objects annotated on that image (one id per object). Only Labels layers "
            "of the image's shape are offered, your own annotations first."))
        self.classes = layer_chooser(viewer, "labels", accept=self._class_layer_candidate, none_choice=NO_CLASS_LAYER,
                                     tooltip=(
            "Optional: a second Labels layer painting the class of each object (class id 1, 2, ... per pixel), "
            "e.g. live and dead worms. Classes can also come from the annotation layer's features table (a "
            "'class' column). The model then gives every object it finds a class."))
        self.image.changed.connect(self._image_changed)
        remove = QPushButton("✕")
        remove.setFixedWidth(26)
        remove.setToolTip("Remove this pair")
        remove.clicked.connect(lambda: on_remove(self))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image.native, 1)
        layout.addWidget(QLabel("+"))
        layout.addWidget(self.labels.native, 1)
        layout.addWidget(self.classes.native, 1)
        layout.addWidget(remove)
        self._image_changed()

    def reset_choices(self, *_) -> None:
        self.image.reset_choices()
        self.labels.reset_choices()
        self.classes.reset_choices()

    def _class_layer_candidate(self, layer) -> bool:
        return layer.name != self.labels.value and _training_labels_of(self.viewer, self.image)(layer)

    def class_annotation(self, labels_layer) -> L.LayerClasses | None:
        """The classes of this pair: a class-id layer if one is chosen, else the labels' ``class`` feature."""
        class_layer = chosen_layer(self.viewer, self.classes)
        if class_layer is not None and class_layer is not labels_layer:
            names = L.classes_from_features(class_layer.features, class_layer.name) \
                if "class" in class_layer.features.columns else None
            return L.LayerClasses(class_layer.name, image=np.array(class_layer.data, copy=True), names=names)
        table = L.classes_from_features(labels_layer.features, labels_layer.name)
        return None if table is None else L.LayerClasses(labels_layer.name, table=table)

    def _image_changed(self, *_) -> None:
        """Offer the labels of the new image's shape; prefer one named like the image."""
        self.labels.reset_choices()
        self.classes.reset_choices()
        image = chosen_layer(self.viewer, self.image)
        if image is not None:
            stem = image.name.split(" ")[0]
            named = [n for n in self.labels.choices if n.startswith(stem)
                     and not is_output(self.viewer.layers[n])]
            if named and self.labels.value not in named:
                self.labels.value = named[0]


class LayerPairs(QWidget):
    """A list of (image layer, labels layer) pairs that follows the viewer's layers."""

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.rows: list[PairRow] = []
        self.rows_box = QVBoxLayout()
        self.rows_box.setContentsMargins(0, 0, 0, 0)
        add = QPushButton("Add a pair")
        add.setToolTip("Train on several images at once: one row per image and its labels")
        add.clicked.connect(lambda: self.add_row())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.rows_box)
        layout.addWidget(add, 0, Qt.AlignmentFlag.AlignLeft)
        self.add_row()

    def add_row(self) -> PairRow:
        used = {r.image.value for r in self.rows}
        row = PairRow(self.viewer, self.remove_row)
        free = [n for n in reversed(row.image.choices) if n not in used]  # the bottom-most unused image
        if free:
            row.image.value = free[0]
        self.rows.append(row)
        self.rows_box.addWidget(row)
        return row

    def remove_row(self, row: PairRow) -> None:
        if len(self.rows) == 1:
            return
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()

    def reset_choices(self, *_) -> None:
        for row in self.rows:
            row.reset_choices()

    def pairs(self) -> list[tuple[L.LayerInput, np.ndarray, str]]:
        """The chosen layers' data (read in the GUI thread); a clear error when a choice is missing."""
        out = []
        for row in self.rows:
            image_layer = chosen_layer(self.viewer, row.image)
            if image_layer is None:
                raise DeepColorError("choose an image layer and its Labels layer for every pair (open an image and "
                                     "add a Labels layer with your annotations, or try File > Open Sample).")
            labels_layer = chosen_layer(self.viewer, row.labels)
            if labels_layer is None:
                raise DeepColorError(self._no_labels_for(image_layer))
            image = L.image_input(image_layer, channels=True)  # (Z, C, H, W) with (Z, H, W) labels too
            labels = np.array(labels_layer.data, copy=True)
            out.append((image, L.check_labels_match(image, labels, labels_layer.name), labels_layer.name,
                        row.class_annotation(labels_layer)))
        return out

    def _no_labels_for(self, image_layer) -> str:
        """What to do when no Labels layer has the image's shape (saying which ones have another)."""
        from napari.layers import Labels

        shape = L.spatial_shape(image_layer)
        message = (f"no Labels layer has the shape {shape} of image layer '{image_layer.name}': add a Labels layer "
                   "on that image (layer list > new labels) and paint the objects.")
        others = [f"'{layer.name}' has shape {tuple(layer.data.shape)}"
                  + (" (it looks transposed)" if tuple(layer.data.shape) == shape[::-1] else "")
                  for layer in self.viewer.layers if isinstance(layer, Labels) and not is_output(layer)]
        return message + (" Of the Labels layers, " + "; ".join(others) + "." if others else "")
