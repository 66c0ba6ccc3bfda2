"""Sample data for File > Open Sample: annotated scenes as image + labels layers.

Synthetic scenes come from :mod:`napari_deepcolor.synthetic` (drawn on the fly,
seeded, so every user sees the same); the real one is a BBBC039 nuclei image
shipped in ``napari_deepcolor/sample_data`` (CC0, see its README).
"""

from __future__ import annotations

from importlib.resources import files

from .. import synthetic


def _scene(kind: str, title: str, **kwargs):
    image, labels = getattr(synthetic, kind)(seed=0, **kwargs)
    return [(image, {"name": f"{title} (synthetic)"}, "image"),
            (labels, {"name": f"{title} annotations", "opacity": 0.5}, "labels")]


def synthetic_nuclei():
    return _scene("nuclei", "nuclei", shape=(384, 384), count=70)


def synthetic_bacteria():
    return _scene("bacteria", "bacteria", shape=(384, 384), count=120)


def synthetic_worms():
    return _scene("worms", "worms", shape=(384, 384), count=14)


def synthetic_leaves():
    return _scene("leaves", "leaves", shape=(384, 384), count=12)


def bbbc039_nuclei():
    """U2OS nuclei (Hoechst) from BBBC039 with its expert annotation (CC0; Caicedo et al. 2019)."""
    from ..data import read_image, read_labels

    folder = files("napari_deepcolor") / "sample_data"
    image = read_image(folder / "bbbc039_A02_s1.tif")
    labels = read_labels(folder / "bbbc039_A02_s1_masks.tif")
    credit = "BBBC039 (CC0), Caicedo et al., Cytometry A 2019"
    return [(image, {"name": "BBBC039 nuclei", "metadata": {"source": credit}}, "image"),
            (labels, {"name": "BBBC039 nuclei annotations", "opacity": 0.5, "metadata": {"source": credit}},
             "labels")]
