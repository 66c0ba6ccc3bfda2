"""magicgui forms generated from the library's declarations: method options and decode-parameter sliders.

A method declares its training options as a dataclass (documented numpydoc
style) and its decode parameters as :class:`DecodeParameter`; the forms here
are magicgui :class:`~magicgui.widgets.Container` s built from those, so a new
method gets its widgets for free. Labels are plain words with a unit; the
paper's symbol and what moving the value does are in the tooltip.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, FloatSpinBox, Slider, SpinBox

from ..plaintext import plain_text

GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "lambda": "λ", "mu": "μ", "rho": "ρ",
         "sigma": "σ", "tau": "τ", "psi": "ψ", "phi": "φ", "theta": "θ"}
#: 'm, the halo width' / 'A of eq. (6)' / 'lambda of L = ...' in an option's description
_SYMBOL_IN_OPTION = re.compile(r"^([A-Za-z]{1,6})(?:, | of )")
#: 'tau: components smaller...' / 'sigma in pixels of ...' in a decode parameter's help
_SYMBOL_IN_HELP = re.compile(r"^([A-Za-z]{1,6})(?:: | in pixels)")
#: a description that measures in pixels
_IN_PIXELS = re.compile(r"\bin pixels\b|\bmany pixels\b|\bpx\b")
_WORDS = {"colors": "colours", "color": "colour", "dims": "dimensions", "iou": "IoU"}
#: the paper's symbol first in brackets, as the declarations write it for the CLI: "... [m, eq. 1]", "... [tau]"
_SYMBOL_IN_BRACKETS = re.compile(r"\[([A-Za-z]{1,6})[\],;]")


def field_docs(cls) -> dict[str, str]:
    """The numpydoc ``Attributes`` descriptions of a dataclass, by field name, in plain text (no markup)."""
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
    return {key: plain_text(text) for key, text in docs.items()}


def field_choices(cls) -> dict[str, tuple[str, ...]]:
    """The allowed values of the fields documented numpydoc style as ``name : {"a", "b"}``."""
    out = {}
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        match = re.match(r"^(\w+) : \{(.+)\}\s*$", line)
        if match:
            out[match.group(1)] = tuple(re.findall(r"[\"']([^\"']+)[\"']", match.group(2)))
    return out


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


def unit(text: str) -> str:
    """'px' when the first sentence of a description measures in pixels, else ''."""
    first = re.split(r"(?<=\.)\s", text or "", maxsplit=1)[0]
    return "px" if _IN_PIXELS.search(first) else ""


def plain_label(name: str, text: str = "") -> str:
    """A field name in plain words with its unit: 'n_colors' -> 'Number of colours', 'halo_margin' -> 'Halo margin (px)'."""
    words = name.split("_")
    if words[0] == "n" and len(words) > 1:
        words = ["number", "of"] + words[1:]
    words = [_WORDS.get(w, w) for w in words]
    label = " ".join(words)
    label = label[0].upper() + label[1:]
    return f"{label} ({unit(text)})" if unit(text) else label


def tooltip(label: str, text: str, sym: str | None, extra: str) -> str:
    """The label, the paper's symbol, the description (what moving the value does), range and default."""
    description = plain_text(text)
    if sym:
        description = re.sub(r"^[A-Za-z]{1,6}(?::\s|,\s)", "", description)
    head = f"<b>{label}</b>" + (f" (the paper's <i>{sym}</i>)" if sym else "")
    return f"{head}: {description[:1].upper() + description[1:]}<br><small>{extra}</small>"


# -- training options ------------------------------------------------------------------

def _option_editor(name: str, default, text: str, choices: tuple[str, ...] = ()):
    """A magicgui editor for one option field, or None for a type the form does not edit."""
    sym = symbol(text)
    label = plain_label(name, text)
    tip = tooltip(label, text, sym, f"default {default}")
    common = dict(name=name, label=label, value=default, tooltip=tip)
    if isinstance(default, bool):
        return CheckBox(**common)
    if isinstance(default, int):
        return SpinBox(min=0, max=100_000, **common)
    if isinstance(default, float):
        return FloatSpinBox(min=0.0, max=100_000.0, step=0.5 if default >= 1 else 0.05, **common)
    if isinstance(default, str) and default in choices:
        return ComboBox(choices=choices, **common)
    return None


class OptionsForm(Container):
    """One editor per field of a method's ``Options`` dataclass (int, float, bool, and str with documented choices).

    Ranges are generous: the dataclass validates the values when training
    starts and its error message says what is allowed.
    """

    def __init__(self, options_class):
        super().__init__(labels=True)
        self.options_class = options_class
        self.margins = (0, 0, 0, 0)
        docs, choices = field_docs(options_class), field_choices(options_class)
        for f in dataclasses.fields(options_class):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            editor = _option_editor(f.name, default, docs.get(f.name, ""), choices.get(f.name, ()))
            if editor is not None:  # not editable here: the default is used
                self.append(editor)

    @property
    def editors(self) -> dict:
        """The editors by field name."""
        return {w.name: w for w in self}

    def values(self) -> dict:
        return self.asdict()

    def set_values(self, values: dict) -> None:
        self.update({k: v for k, v in values.items() if k in self.editors})


# -- decode parameters -----------------------------------------------------------------

def _decimals(step: float) -> int:
    return max(0, -int(f"{step:e}".split("e")[1]))


def decode_slider(parameter, object_diameter: float | None = None, value: float | None = None):
    """A magicgui slider (with a typed readout) for one declared decode parameter.

    A size in pixels spans the range its model's training objects make useful
    (:meth:`DecodeParameter.useful_range`), not the whole declared range.
    """
    p = parameter
    sym = symbol(p.help, _SYMBOL_IN_HELP)
    label = plain_label(p.name, p.help)
    low, high = p.useful_range(object_diameter, value)
    shown = f"slider {low:g} to {high:g}" + (f" (the model's objects are {object_diameter:.0f} px across)"
                                             if object_diameter and high < p.maximum else "")
    tip = tooltip(label, p.help, sym, f"{shown}; declared range {p.minimum:g} to {p.maximum:g} (the command "
                  f"line's {p.flag} takes all of it), declared default {p.default:g}")
    start = min(max(p.default if value is None else value, low), high)
    if p.integer:
        return Slider(name=p.name, label=label, tooltip=tip, min=int(low), max=int(high), step=int(p.step),
                      value=int(start))
    return FloatSlider(name=p.name, label=label, tooltip=tip, min=low, max=high, step=p.step, value=start)


class DecodeSliders(Container):
    """One labelled slider per declared decode parameter; ``changed`` fires on every move."""

    def __init__(self, parameters=()):
        super().__init__(labels=True)
        self.margins = (0, 0, 0, 0)
        self.parameters: dict = {}
        self.object_diameter: float | None = None
        self.set_parameters(parameters)

    @property
    def sliders(self) -> dict:
        """The sliders by parameter name."""
        return {w.name: w for w in self}

    def set_parameters(self, parameters, *, object_diameter: float | None = None, values: dict | None = None) -> None:
        """Rebuild for another method's declared parameters (the pixel sizes' range from ``object_diameter``,
        the median diameter of the model's training objects, and the model's ``values``)."""
        self.clear()
        self.parameters = {p.name: p for p in parameters}
        self.object_diameter = object_diameter
        self.extend([decode_slider(p, object_diameter, (values or {}).get(p.name)) for p in parameters])

    def values(self) -> dict:
        """The sliders' values, integers for integer parameters, floats rounded to the step."""
        out = {}
        for name, value in self.asdict().items():
            p = self.parameters[name]
            out[name] = int(round(value)) if p.integer else round(float(value), _decimals(p.step) + 1)
        return out

    def set_values(self, values: dict, *, emit: bool = False) -> None:
        """Move the sliders to ``values`` (unknown names ignored); ``changed`` fires only with ``emit``."""
        known = {k: v for k, v in values.items() if k in self.parameters}
        for name, value in known.items():  # a value past the slider's end (tuned, remembered) widens it
            slider, declared = self.sliders[name], self.parameters[name]
            if value > slider.max:
                slider.max = min(declared.useful_range(self.object_diameter, value)[1], declared.maximum)
        if emit:
            self.update(known)
            return
        with self.changed.blocked():
            for name, value in known.items():
                self.sliders[name].value = value
