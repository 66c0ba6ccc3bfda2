"""Widgets generated from the library's declarations: method options and decode-parameter sliders.

A method declares its training options as a dataclass (documented numpydoc
style) and its decode parameters as :class:`DecodeParameter`; the forms here
are built from those, so a new method gets its widgets for free.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QFormLayout, QLabel, QSpinBox, QWidget
from superqt import QLabeledDoubleSlider, QLabeledSlider

GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "lambda": "λ", "mu": "μ", "rho": "ρ",
         "sigma": "σ", "tau": "τ", "psi": "ψ", "phi": "φ", "theta": "θ"}
_SYMBOL_IN_OPTION = re.compile(r"^([A-Za-z]{1,6})(?:,| of eq)")
_SYMBOL_IN_HELP = re.compile(r"^([A-Za-z]{1,6}):\s")
#: the paper's symbol first in brackets, as the declarations write it for the CLI: "... [m, eq. 1]", "... [tau]"
_SYMBOL_IN_BRACKETS = re.compile(r"\[([A-Za-z]{1,6})[\],;]")


def field_docs(cls) -> dict[str, str]:
    """The numpydoc ``Attributes`` descriptions of a dataclass, by field name."""
    docs, name, lines = {}, None, []
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        match = re.match(r"^(\w+) : .+$", line)
        if match:
            if name:
                docs[name] = " ".join(lines)
            name, lines = match.group(1), []
        elif name and line.startswith((" ", "\t")):
            lines.append(line.strip())
        elif name and line.strip() == "":
            continue
        elif name:
            docs[name] = " ".join(lines)
            name, lines = None, []
    if name:
        docs[name] = " ".join(lines)
    return docs


def symbol(text: str, pattern=_SYMBOL_IN_OPTION) -> str | None:
    """The paper's symbol a description starts with or names in brackets ('m, the halo width' or
    'the halo width [m, eq. 1]' -> 'm'; 'mu' -> 'μ')."""
    match = pattern.match(text or "") or _SYMBOL_IN_BRACKETS.search(text or "")
    if not match:
        return None
    word = match.group(1)
    if word.lower() in GREEK:
        return GREEK[word.lower()]
    return word if len(word) <= 2 else None


def nice_label(name: str, sym: str | None = None) -> str:
    label = name.replace("_", " ")
    label = {"n colors": "Colours", "n_colors": "Colours"}.get(label, label[0].upper() + label[1:])
    return f"{label} ({sym})" if sym else label


class OptionsForm(QWidget):
    """Spin boxes and check boxes for the fields of a method's ``Options`` dataclass.

    Ranges are generous: the dataclass validates the values when training
    starts and its error message says what is allowed.
    """

    def __init__(self, options_class, parent=None):
        super().__init__(parent)
        self.options_class = options_class
        self.editors: dict[str, QWidget] = {}
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        docs = field_docs(options_class)
        for f in dataclasses.fields(options_class):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            help_text = docs.get(f.name, "")
            if isinstance(default, bool):
                editor = QCheckBox()
                editor.setChecked(default)
            elif isinstance(default, int):
                editor = QSpinBox()
                editor.setRange(0, 100_000)
                editor.setValue(default)
            elif isinstance(default, float):
                editor = QDoubleSpinBox()
                editor.setRange(0.0, 100_000.0)
                editor.setDecimals(3)
                editor.setSingleStep(0.5 if default >= 1 else 0.05)
                editor.setValue(default)
            else:  # not editable here; the default is used
                continue
            tip = f"<b>{f.name}</b> (default {default}): {help_text}" if help_text else f"{f.name} (default {default})"
            editor.setToolTip(tip)
            label = QLabel(nice_label(f.name, symbol(help_text)))
            label.setToolTip(tip)
            layout.addRow(label, editor)
            self.editors[f.name] = editor

    def values(self) -> dict:
        out = {}
        for name, editor in self.editors.items():
            out[name] = editor.isChecked() if isinstance(editor, QCheckBox) else editor.value()
        return out

    def set_values(self, values: dict) -> None:
        for name, value in values.items():
            editor = self.editors.get(name)
            if isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif editor is not None:
                editor.setValue(value)


class DecodeSliders(QWidget):
    """One labelled slider per declared decode parameter; ``changed`` fires on every move."""

    changed = Signal()

    def __init__(self, parameters=(), parent=None):
        super().__init__(parent)
        self.layout_ = QFormLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.sliders: dict[str, QLabeledSlider] = {}
        self.parameters = {}
        self.set_parameters(parameters)

    def set_parameters(self, parameters) -> None:
        """Rebuild for another method's declared parameters."""
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.sliders, self.parameters = {}, {p.name: p for p in parameters}
        for p in parameters:
            slider = QLabeledSlider(Qt.Orientation.Horizontal) if p.integer \
                else QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(int(p.minimum) if p.integer else p.minimum, int(p.maximum) if p.integer else p.maximum)
            slider.setSingleStep(int(p.step) if p.integer else p.step)
            if not p.integer:
                slider.setDecimals(max(0, -int(f"{p.step:e}".split("e")[1])))
            slider.setValue(int(p.default) if p.integer else p.default)
            tip = f"<b>{p.name}</b>: {p.help} (range {p.minimum:g} to {p.maximum:g}, declared default {p.default:g})"
            slider.setToolTip(tip)
            slider.valueChanged.connect(lambda *_: self.changed.emit())
            label = QLabel(nice_label(p.name, symbol(p.help, _SYMBOL_IN_HELP)))
            label.setToolTip(tip)
            self.layout_.addRow(label, slider)
            self.sliders[p.name] = slider

    def values(self) -> dict:
        return {name: (int(s.value()) if self.parameters[name].integer else float(s.value()))
                for name, s in self.sliders.items()}

    def set_values(self, values: dict, *, emit: bool = False) -> None:
        for name, value in values.items():
            slider = self.sliders.get(name)
            if slider is None:
                continue
            slider.blockSignals(not emit)
            slider.setValue(int(value) if self.parameters[name].integer else float(value))
            slider.blockSignals(False)
