"""Reading images and label images from disk, and writing labels atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DeepColorError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as it is stored (no conversion, no normalisation).

    TIFF goes through tifffile, other formats through Pillow. A palette PNG is
    returned as its palette *indices* (that is how CVPPP stores leaf ids).
    """
    path = Path(path)
    if not path.is_file():
        raise DeepColorError(f"{path}: no such file. Check the path and try again.")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        from PIL import Image

        with Image.open(path) as img:
            if img.mode == "P":
                return np.asarray(img)  # indices, not colours
            if img.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img).astype(np.uint16)
            return np.asarray(img)
    except DeepColorError:
        raise
    except Exception as exc:  # any decoder error is the user's file, not our bug
        raise DeepColorError(
            f"{path}: could not be read as an image ({type(exc).__name__}: {exc}). "
            "Is it a complete TIFF/PNG/JPEG file?"
        ) from exc


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an instance-label image: integer ids, 0 = background."""
    labels = read_image(path)
    return as_label_image(labels, what=str(path))


def as_label_image(labels: np.ndarray, *, what: str = "labels") -> np.ndarray:
    """Check that ``labels`` holds integer instance ids and return it.

    Float arrays whose values are all whole numbers are accepted (some tools
    save labels as float); anything else is an error that says how to fix it.
    RGB label images are refused: they are colourings, not ids.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DeepColorError(
                f"{what}: label images must hold integer object ids (got dtype {labels.dtype} "
                "with fractional values). Save the labels as an integer image, e.g. from a "
                "napari Labels layer."
            )
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DeepColorError(f"{what}: label images must be integer (got dtype {labels.dtype}).")
    if labels.size and labels.min() < 0:
        raise DeepColorError(f"{what}: label ids must be >= 0 (0 = background); found {labels.min()}.")
    return labels


def smallest_label_dtype(max_label: int) -> np.dtype:
    """The smallest unsigned dtype that holds ``max_label``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_label <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def atomic_write(path: str | os.PathLike, write, *, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``, so a crash never leaves half a file.

    ``write`` receives a temporary path in the same folder (same file system, so
    the rename is atomic). Refuses to replace an existing file unless ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise DeepColorError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_folder(path: str | os.PathLike, write, *, overwrite: bool = False) -> Path:
    """Like :func:`atomic_write` for a folder (e.g. a zarr store): build it under a temporary
    name beside ``path``, then rename; an existing folder is replaced only with ``overwrite``."""
    import shutil
    import uuid

    path = Path(path)
    if path.exists() and not overwrite:
        raise DeepColorError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes owner-only folders
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _umask() -> int:
    """The process umask, read without changing it (Linux), else the common 022."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_labels(path: str | os.PathLike, labels: np.ndarray, *, overwrite: bool = False,
                 scale: tuple[float, ...] | None = None) -> Path:
    """Write a label image atomically as compressed TIFF (PNG for 2D ``.png``, a zarr array for ``.zarr``).

    The smallest unsigned integer dtype that holds the largest id is used.
    ``scale`` (pixel size per axis, as a napari layer's scale) is stored in the
    TIFF resolution tags for the last two axes.
    """
    labels = as_label_image(labels)
    labels = labels.astype(smallest_label_dtype(int(labels.max(initial=0))), copy=False)
    path = Path(path)

    if path.suffix.lower() == ".zarr":
        return atomic_write_folder(path, lambda tmp: _write_zarr(tmp, labels, scale), overwrite=overwrite)

    def write(tmp: Path) -> None:
        if path.suffix.lower() == ".png":
            if labels.ndim != 2 or labels.dtype.itemsize > 2:
                raise DeepColorError("PNG holds 2D labels with at most 65535 objects; use .tif instead.")
            from PIL import Image

            Image.fromarray(labels).save(tmp, format="PNG")
            return
        import tifffile

        kwargs = {}
        if scale is not None and len(scale) >= 2 and all(s > 0 for s in scale[-2:]):
            kwargs["resolution"] = (1.0 / scale[-1], 1.0 / scale[-2])
        tifffile.imwrite(tmp, labels, compression="zlib", photometric="minisblack", **kwargs)  # 3 planes: not RGB

    return atomic_write(path, write, overwrite=overwrite)


def _write_zarr(folder: Path, labels: np.ndarray, scale) -> None:
    import zarr

    chunks = (1,) * (labels.ndim - 2) + tuple(min(1024, n) for n in labels.shape[-2:])
    attributes = {"scale": [float(v) for v in scale]} if scale is not None else {}
    array = zarr.create_array(store=str(folder), shape=labels.shape, chunks=chunks, dtype=labels.dtype,
                              fill_value=0, attributes=attributes, overwrite=True)
    array[...] = labels


def read_object_masks(paths) -> np.ndarray:
    """Read one binary mask per object (e.g. BBBC010's ``*_ground_truth.png``) into a stack.

    Parameters
    ----------
    paths : sequence of path-like
        One 2D file per object; any non-zero pixel belongs to the object (an
        RGB mask counts a pixel when any channel is non-zero).

    Returns
    -------
    (K, H, W) ndarray of bool
        ``K = len(paths)``; masks may overlap.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise DeepColorError("no object mask files given; pass at least one binary mask file.")
    masks = []
    for path in paths:
        mask = read_image(path)
        if mask.ndim == 3 and mask.shape[-1] in (3, 4):
            mask = np.any(mask[..., :3], axis=-1)
        if mask.ndim != 2:
            raise DeepColorError(f"{path}: an object mask must be a 2D image; got shape {mask.shape}.")
        if masks and mask.shape != masks[0].shape:
            raise DeepColorError(
                f"{path}: mask has shape {mask.shape} but {paths[0].name} has shape {masks[0].shape}; "
                "all masks of one image must have the image's shape."
            )
        masks.append(mask != 0)
    return np.stack(masks)
