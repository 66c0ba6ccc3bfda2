"""napari reader and writer: annotated folders in (image + labels layers), compact label files out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.io import smallest_label_dtype
from ..data.io import write_labels as _write_labels
from ..errors import DeepColorError

#: label file formats :func:`export_labels` writes, by suffix
EXPORT_FILTER = "TIFF, compact (*.tif);;PNG, 2D only (*.png);;Zarr (*.zarr)"
#: a folder with more pairs than this opens only the first ones (the rest: use the Train widget's folder source)
MAX_PAIRS_OPENED = 50


# -- writing ---------------------------------------------------------------------------

def write_labels(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer: TIFF (smallest integer dtype, layer scale kept), PNG (2D) or zarr."""
    return [str(export_labels(path, data, scale=tuple(meta.get("scale", ())) or None))]


def export_labels(path, labels, *, scale=None, overwrite: bool = True) -> Path:
    """Write a label image as ``.tif``/``.tiff`` (compact, scale in the resolution tags), ``.png`` or ``.zarr``.

    The smallest unsigned integer dtype that holds the largest id is used in
    every format. Zarr keeps the scale in the array's ``scale`` attribute.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff", ".png", ".zarr"):
        raise DeepColorError(f"{path.name}: labels can be saved as .tif, .png (2D) or .zarr; choose one of these.")
    return _write_labels(path, np.asarray(labels), overwrite=overwrite, scale=scale)


# -- reading annotated folders -------------------------------------------------------------

def get_reader(path):
    """npe2 reader: an annotated dataset folder opens as image + labels layers; anything else: not ours."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if not path.is_dir() or path.suffix.lower() == ".zarr":
        return None
    from ..data import detect_layout

    try:
        layout = detect_layout(path)
    except DeepColorError:
        return None
    if not layout.pairs:
        return None
    return lambda _path: read_annotated_layers(layout)


def read_annotated_layers(layout) -> list[tuple]:
    """Image and labels layer data for the pairs of a detected layout (raw pixel values).

    Pairs of one shape are stacked into one image and one labels layer (a
    slider moves through them); otherwise each pair gives its own two layers.
    """
    from ..data import combine_object_masks, read_image, read_labels, read_object_masks

    pairs = layout.pairs[:MAX_PAIRS_OPENED]
    images, labels, names = [], [], []
    for pair in pairs:
        image = read_image(pair.image)
        if pair.object_masks:
            label, _ = combine_object_masks(read_object_masks(pair.object_masks), overlap="last")
        else:
            label = read_labels(pair.labels)
        images.append(image)
        labels.append(label)
        names.append(pair.name)
    root = layout.root.name or str(layout.root)
    same = len({(i.shape, i.dtype) for i in images}) == 1 and len({l.shape for l in labels}) == 1
    if same and len(images) > 1 and images[0].ndim == labels[0].ndim:  # 2D images: one stack
        label_stack = np.stack(labels)
        label_stack = label_stack.astype(smallest_label_dtype(int(label_stack.max(initial=0))), copy=False)
        meta = {"name": f"{root} images", "metadata": {"files": names}}
        if images[0].ndim == 3 and images[0].shape[-1] in (3, 4):
            meta["rgb"] = True
        return [(np.stack(images), meta, "image"),
                (label_stack, {"name": f"{root} labels", "metadata": {"files": names}}, "labels")]
    out = []
    for image, label, name in zip(images, labels, names):
        meta = {"name": name}
        if image.ndim == 3 and image.shape[-1] in (3, 4) and image.shape[:2] == label.shape:
            meta["rgb"] = True
        out += [(image, meta, "image"), (label, {"name": f"{name} labels"}, "labels")]
    return out
