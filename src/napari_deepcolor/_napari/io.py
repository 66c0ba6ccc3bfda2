"""napari writer for Labels layers: compact TIFF (smallest integer dtype, layer scale kept)."""

from __future__ import annotations

from ..data.io import write_labels as _write_labels


def write_labels(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer: refuses nothing napari would not, overwrites as napari asks."""
    written = _write_labels(path, data, overwrite=True, scale=tuple(meta.get("scale", ())) or None)
    return [str(written)]
