"""Sample data for File > Open Sample: annotated scenes as image + labels layers."""

from __future__ import annotations

from .. import synthetic


def synthetic_nuclei():
    image, labels = synthetic.nuclei((384, 384), count=70, seed=0)
    return [(image, {"name": "nuclei (synthetic)"}, "image"),
            (labels, {"name": "nuclei annotations"}, "labels")]
