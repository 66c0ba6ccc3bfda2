"""The Segment widget's "Object classes" box: click objects, pick their class, train a forest in seconds.

The user names the classes (``alive, dead``), adds a Points layer whose new points carry the class
chosen in the box, clicks a few objects of each class, and presses Train: the objects under the
points train :mod:`napari_deepcolor.object_classes`' random forest on their shape and intensity in
a worker (the net does not run again), the segmentation is decoded again with every object
classified (the labels layer's ``class`` feature, the per-class counts in the widget) and the model,
forest included, can be saved as a new model file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton

from ..errors import DeepColorError
from ._common import OUTPUT_KEY, Failed, report, show_info, start_function

#: the Points layer's colours per class, in class order
CLASS_COLORS = ("#33dd55", "#ee33cc", "#ffaa22", "#33bbff", "#ffee33", "#aa66ff")


class ObjectClassesBox(QGroupBox):
    """Classes of whole objects from points on them; owned by a :class:`~.segment_widget.SegmentWidget`."""

    def __init__(self, segment_widget):
        super().__init__("Object classes (click objects; the net does not run again)")
        self.segment = segment_widget
        self.worker = None
        form = QFormLayout(self)
        self.names_edit = QLineEdit()
        self.names_edit.setPlaceholderText("e.g. alive, dead")
        self.names_edit.setToolTip("The names of the classes, separated by commas")
        self.names_edit.editingFinished.connect(self._names_changed)
        form.addRow("Classes", self.names_edit)
        self.class_choice = QComboBox()
        self.class_choice.setToolTip("The class that new points get: click objects of this class in the "
                                     "points layer, then choose the next class")
        self.class_choice.currentTextChanged.connect(self._class_chosen)
        form.addRow("New points are", self.class_choice)
        row = QHBoxLayout()
        self.points_button = QPushButton("Add class points")
        self.points_button.setToolTip("A Points layer over the segmentation: each point gives its class to the "
                                      "object under it")
        self.points_button.clicked.connect(lambda: self.points_layer(create=True))
        self.train_button = QPushButton("Train classes")
        self.train_button.setToolTip("Fit a random forest on the clicked objects' shape (length, curvature, "
                                     "solidity, ...) and intensity, in seconds; then every object is classified")
        self.train_button.clicked.connect(self.train)
        row.addWidget(self.points_button)
        row.addWidget(self.train_button)
        form.addRow(row)
        self.save_button = QPushButton("Save model with classes…")
        self.save_button.setToolTip("Write the model with its object classifier to a new model file (for "
                                    "predict, batch and the Batch widget)")
        self.save_button.clicked.connect(lambda: self.save_model())
        form.addRow(self.save_button)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        form.addRow(self.result)

    # -- classes and points --------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        from ..data.classes import validate_class_names

        text = self.names_edit.text().strip()
        return validate_class_names(n for n in text.split(",")) if text else ()

    def _names_changed(self) -> None:
        try:
            names = self.class_names
        except DeepColorError as exc:
            report(exc)
            return
        current = self.class_choice.currentText()
        self.class_choice.blockSignals(True)
        self.class_choice.clear()
        self.class_choice.addItems(names)
        self.class_choice.blockSignals(False)
        if current in names:
            self.class_choice.setCurrentText(current)
        self._class_chosen(self.class_choice.currentText())

    def _class_chosen(self, name: str) -> None:
        layer = self.points_layer()
        if layer is not None and name:
            layer.feature_defaults = {"class": name}
            layer.current_face_color = self._color(name)

    def _color(self, name: str) -> str:
        names = self.class_names
        return CLASS_COLORS[names.index(name) % len(CLASS_COLORS)] if name in names else "white"

    def points_layer_name(self) -> str | None:
        source = self.segment.source
        return None if source is None else f"{source.name} object classes"

    def points_layer(self, create: bool = False):
        """The Points layer of object classes of the segmented image (made, if ``create``, over the labels)."""
        viewer, name = self.segment.viewer, self.points_layer_name()
        if name is not None and name in viewer.layers:
            return viewer.layers[name]
        if not create:
            return None
        try:
            labels = self.segment.labels_layer()
            if labels is None:
                raise DeepColorError("segment an image first: the points give their class to the objects found.")
            if labels.ndim != 2:
                raise DeepColorError("object classes from points work on 2D images; segment one plane.")
            if not self.class_names:
                raise DeepColorError("name the classes first (e.g. 'alive, dead'), then click objects of each.")
        except DeepColorError as exc:
            report(exc)
            return None
        first = self.class_choice.currentText() or self.class_names[0]
        layer = viewer.add_points(np.zeros((0, 2)), name=name, scale=labels.scale, translate=labels.translate,
                                  features={"class": np.array([], dtype=object)},
                                  feature_defaults={"class": first}, face_color=self._color(first), size=12,
                                  metadata={OUTPUT_KEY: "object classes"})
        layer.mode = "add"
        return layer

    def point_classes(self) -> tuple[np.ndarray, list[str]]:
        """The points (data coordinates of the labels) and the class of each."""
        layer = self.points_layer()
        if layer is None or len(layer.data) == 0:
            raise DeepColorError("click a few objects of each class first (Add class points).")
        return np.asarray(layer.data), [str(c) for c in layer.features["class"]]

    # -- training --------------------------------------------------------------------------
    def train(self) -> None:
        """Fit the object classifier on the objects under the points, in a worker."""
        from ..object_classes import AnnotatedObjects, objects_from_points, train_object_classifier

        if self.worker is not None:
            return
        segment = self.segment
        try:
            if segment.prediction is None or segment.labels_layer() is None:
                raise DeepColorError("segment an image first: the points give their class to the objects found.")
            if segment.prediction.is_stack:
                raise DeepColorError("object classes from points work on 2D images; segment one plane.")
            labels = np.asarray(segment.labels_layer().data)
            points, classes = self.point_classes()
            annotated = objects_from_points(labels, points, classes)
            names = segment.model.class_names or self.class_names
            example = AnnotatedObjects(segment.prediction, labels, annotated)
        except DeepColorError as exc:
            report(exc)
            return
        model = segment.model

        def work():
            return train_object_classifier(model, [example], class_names=names)

        self.result.setText(f"training on {len(annotated)} clicked objects…")
        self.worker = start_function(work, on_result=lambda r: self._trained(r, model, len(annotated)),
                                     on_done=self._done)
        self._update_buttons()

    def _done(self) -> None:
        self.worker = None
        self._update_buttons()

    def _trained(self, result, model, objects: int) -> None:
        if isinstance(result, Failed):
            report(result.exception)
            self.result.setText(f"training failed: {result.message}")
            return
        if model is not self.segment.model:
            return  # another model was loaded meanwhile
        model.object_classifier = result
        scores = result.scores
        if result.use == "pixel":
            text = (f"the model's own class head measured better on the clicked objects "
                    f"({scores.get('pixel_accuracy', 0):.2f} against {scores.get('object_accuracy', 0):.2f}); "
                    "it keeps classifying")
        else:
            oob = scores.get("out_of_bag_accuracy")
            text = f"trained on {objects} objects" + (f" (out-of-bag accuracy {oob:.2f})" if oob is not None else "")
        self.result.setText(text)
        self.segment.request_decode()

    def _update_buttons(self) -> None:
        self.train_button.setEnabled(self.worker is None)

    # -- saving ----------------------------------------------------------------------------
    def save_model(self, path: str | None = None) -> Path | None:
        """Write the model with its object classifier to a new file (asks where when ``path`` is None)."""
        from ..models import save_model

        model = self.segment.model
        if model is None or model.object_classifier is None:
            report(DeepColorError("train the object classes first (click objects, then Train classes)."))
            return None
        asked = path is None
        if asked:
            start = Path(self.segment.model_path or "model").with_suffix("")
            path, _ = QFileDialog.getSaveFileName(self, "Save model with classes",
                                                  f"{start}_classes.safetensors", "Model (*.safetensors)")
            if not path:
                return None  # the dialog asked before replacing a file
        try:
            written = save_model(model, path, overwrite=asked)
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return None
        show_info(f"Model with object classes written to {written}")
        self.result.setText(f"model written to {written}")
        return written
