"""The registry of methods: one name, one module."""

from __future__ import annotations

from importlib import import_module

from ..errors import DeepColorError

#: name -> "module:class"; adding a method means adding one module and one line here
METHODS = {
    "coloring": "napari_deepcolor.methods.coloring:ColoringMethod",
    "boundary": "napari_deepcolor.methods.boundary:BoundaryMethod",
    "semiconv": "napari_deepcolor.methods.semiconv:SemiconvMethod",
    "dcme": "napari_deepcolor.methods.dcme:DcmeMethod",
    "metric": "napari_deepcolor.methods.metric_learning:MetricLearningMethod",
}
#: what a new training uses unless told: the 3-class U-Net, which scored best on every kind of data
#: measured at CPU budgets (docs/choosing.md)
DEFAULT_METHOD = "boundary"


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str):
    """The method instance registered under ``name``; an unknown name lists the options."""
    try:
        module, cls = METHODS[name].split(":")
    except KeyError:
        raise DeepColorError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}.") from None
    return getattr(import_module(module), cls)()
