"""Finding image/label pairs on disk: which folder layout is it, and which file goes with which.

Only file names are looked at here; nothing is read. Supported layouts:

``files``
    one image file and its label file, given explicitly.
``folders``
    an image folder and a label folder given explicitly, matched by file stem
    (label stems may carry a suffix such as ``_masks`` or ``_label``).
``subfolders``
    ``images/`` plus ``labels/`` (or ``masks/``) inside the given folder.
``object-masks``
    one binary mask per object, BBBC010 style: ``<well>_w1.tif`` images and
    ``<well>_<nn>_ground_truth.png`` masks, in the folders of the two layouts above.
``cellpose``
    ``NAME.tif`` with ``NAME_masks.tif`` (or ``.png``) in one folder.
``cvppp``
    CVPPP leaf challenge: ``plantNNN_rgb.png`` with ``plantNNN_label.png``,
    searched recursively (``A1/``, ``A2/`` ...); ``plantNNN_fg.png`` is skipped.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeepColorError
from .io import IMAGE_SUFFIXES

__all__ = ["AnnotatedPair", "DatasetLayout", "detect_layout", "LABEL_SUFFIXES", "LAYOUT_KINDS"]

logger = logging.getLogger(__name__)

#: Suffixes a label file's stem may add to its image's stem, longest first.
LABEL_SUFFIXES = ("_masks", "_labels", "_label", "_mask", "_gt")
#: Label folder names accepted inside a dataset folder, in order of preference.
LABEL_FOLDERS = ("labels", "masks")
LAYOUT_KINDS = {
    "files": "one image file and its label file",
    "folders": "an image folder and a label folder, files matched by name",
    "subfolders": "images/ and labels/ (or masks/) subfolders, files matched by name",
    "object-masks": "one binary mask per object (BBBC010 style: NAME_w1.tif + NAME_NN_ground_truth.png)",
    "cellpose": "Cellpose style: NAME.tif + NAME_masks.tif in one folder",
    "cvppp": "CVPPP leaf style: plantNNN_rgb.png + plantNNN_label.png (searched in subfolders too)",
}
_OBJECT_MASK = re.compile(r"^(?P<key>.+?)_(?P<index>\d+)_ground_truth$", re.IGNORECASE)
_CHANNEL_SUFFIX = re.compile(r"^(?P<key>.+)_w(?P<channel>\d+)$", re.IGNORECASE)
# Outputs of other tools that sit next to annotations but are not annotations.
_SKIPPED_STEM_SUFFIXES = ("_flows", "_cp_masks", "_cp_outlines", "_fg", "_outlines")
_HELP = "Supported layouts:\n" + "\n".join(f"  - {text}" for text in LAYOUT_KINDS.values())


@dataclass(frozen=True)
class AnnotatedPair:
    """One image file and its annotation: a label image, or one mask file per object."""

    name: str
    image: Path
    labels: Path | None = None
    object_masks: tuple[Path, ...] = ()

    @property
    def annotation_files(self) -> tuple[Path, ...]:
        """The file(s) holding the annotation."""
        return (self.labels,) if self.labels is not None else self.object_masks


@dataclass(frozen=True)
class DatasetLayout:
    """The outcome of :func:`detect_layout`."""

    kind: str
    root: Path
    pairs: tuple[AnnotatedPair, ...]
    unpaired_images: tuple[Path, ...] = ()

    @property
    def description(self) -> str:
        """One line for people: the layout and how many pairs it holds."""
        text = f"{LAYOUT_KINDS[self.kind]}: {len(self.pairs)} annotated image(s) in {self.root}"
        if self.unpaired_images:
            text += f"; {len(self.unpaired_images)} image(s) without labels skipped"
        return text


def detect_layout(path: str | os.PathLike, labels: str | os.PathLike | None = None) -> DatasetLayout:
    """Find the annotated image pairs under ``path`` (and ``labels``), reading no pixels.

    Parameters
    ----------
    path : path-like
        An image file, an image folder, or a dataset folder.
    labels : path-like, optional
        The label file (when ``path`` is a file) or label folder.

    Returns
    -------
    DatasetLayout
        ``kind`` names the layout; ``pairs`` are sorted by name.

    Raises
    ------
    DeepColorError
        If a path does not exist, a folder holds no images, label files have no
        image, or no image has labels.
    """
    path = Path(path)
    _require_exists(path)
    if labels is not None:
        labels = Path(labels)
        _require_exists(labels)
        if path.is_file() != labels.is_file():
            raise DeepColorError(
                f"{path} and {labels}: pass either two files (image, labels) or two folders "
                "(images, labels), not one of each."
            )
        if path.is_file():
            return DatasetLayout("files", path.parent, (AnnotatedPair(path.stem, path, labels),))
        if path.resolve() == labels.resolve():
            return _pair_flat(path)
        return _pair_folders(path, labels, kind="folders", root=path)
    if path.is_file():
        raise DeepColorError(
            f"{path} is a file: pass its label image too, read_annotated_folder(image_file, label_file), "
            "or pass the folder that holds images and labels."
        )
    image_dir = path / "images"
    for name in LABEL_FOLDERS:
        if image_dir.is_dir() and (path / name).is_dir():
            return _pair_folders(image_dir, path / name, kind="subfolders", root=path)
    if any(path.rglob("*_label.png")) and any(path.rglob("*_rgb.png")):
        return _pair_cvppp(path)
    return _pair_flat(path)


def _require_exists(path: Path) -> None:
    if not path.exists():
        raise DeepColorError(f"{path} does not exist. Check the path (and its spelling) and try again.")


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _listing(paths, limit: int = 5) -> str:
    names = [p.name if isinstance(p, Path) else str(p) for p in paths]
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _by_stem(files: list[Path], folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for file in files:
        if file.stem in found:
            raise DeepColorError(
                f"{folder} holds both {found[file.stem].name} and {file.name}: one file per name, "
                "please; move or rename one of them."
            )
        found[file.stem] = file
    return found


def _image_key_for_label(stem: str, image_stems) -> str | None:
    if stem in image_stems:
        return stem
    for suffix in LABEL_SUFFIXES:
        if stem.lower().endswith(suffix) and stem[: -len(suffix)] in image_stems:
            return stem[: -len(suffix)]
    return None


def _pair_folders(image_dir: Path, label_dir: Path, *, kind: str, root: Path) -> DatasetLayout:
    image_files = _image_files(image_dir)
    label_files = _image_files(label_dir)
    if not image_files:
        raise DeepColorError(f"{image_dir} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    if not label_files:
        raise DeepColorError(f"{label_dir} holds no label files ({', '.join(IMAGE_SUFFIXES)}).")
    if all(_OBJECT_MASK.match(f.stem) for f in label_files):
        return _pair_object_masks(image_files, label_files, root=root)
    images = _by_stem(image_files, image_dir)
    pairs: dict[str, AnnotatedPair] = {}
    orphans = []
    for label in label_files:
        key = _image_key_for_label(label.stem, images)
        if key is None:
            orphans.append(label)
        elif key in pairs:
            raise DeepColorError(
                f"{images[key].name} has two label files, {pairs[key].labels.name} and {label.name}; "
                "keep one of them."
            )
        else:
            pairs[key] = AnnotatedPair(key, images[key], label)
    if orphans:
        raise DeepColorError(
            f"label file(s) without an image in {image_dir}: {_listing(orphans)}. Label files must "
            f"be named like their image, optionally with one of {', '.join(LABEL_SUFFIXES)}."
        )
    return _finish(kind, root, pairs, [f for key, f in images.items() if key not in pairs])


def _pair_object_masks(image_files: list[Path], mask_files: list[Path], *, root: Path) -> DatasetLayout:
    images: dict[str, tuple[int, Path]] = {}
    for file in image_files:
        match = _CHANNEL_SUFFIX.match(file.stem)
        key, channel = (match["key"], int(match["channel"])) if match else (file.stem, 0)
        if key not in images or channel < images[key][0]:  # the first channel (w1) by default
            images[key] = (channel, file)
    masks: dict[str, list[Path]] = {}
    for file in mask_files:
        masks.setdefault(_OBJECT_MASK.match(file.stem)["key"], []).append(file)
    orphans = [f for key in masks if key not in images for f in masks[key]]
    if orphans:
        raise DeepColorError(
            f"object mask file(s) without an image: {_listing(orphans)}. A mask NAME_NN_ground_truth.png "
            "needs an image NAME.tif or NAME_w1.tif."
        )
    skipped = sorted(set(image_files) - {f for _, f in images.values()})
    if skipped:
        logger.info("using the first channel of each image; skipped %d other channel file(s): %s",
                    len(skipped), _listing(skipped))
    pairs = {
        key: AnnotatedPair(key, images[key][1], object_masks=tuple(sorted(files)))
        for key, files in masks.items()
    }
    return _finish("object-masks", root, pairs, [f for key, (_, f) in images.items() if key not in masks])


def _pair_cvppp(root: Path) -> DatasetLayout:
    pairs: dict[str, AnnotatedPair] = {}
    orphans = []
    rgb = {p.with_name(p.name[: -len("_rgb.png")]): p for p in root.rglob("*_rgb.png")}
    for label in sorted(root.rglob("*_label.png")):
        base = label.with_name(label.name[: -len("_label.png")])
        name = base.relative_to(root).as_posix()
        if base in rgb:
            pairs[name] = AnnotatedPair(name, rgb[base], label)
        else:
            orphans.append(label.relative_to(root))
    if orphans:
        raise DeepColorError(
            f"CVPPP label file(s) without their _rgb.png image in {root}: {_listing(orphans)}."
        )
    unpaired = [p for base, p in rgb.items() if base.relative_to(root).as_posix() not in pairs]
    return _finish("cvppp", root, pairs, unpaired)


def _pair_flat(folder: Path) -> DatasetLayout:
    files = [
        f for f in _image_files(folder)
        if not any(f.stem.lower().endswith(s) for s in _SKIPPED_STEM_SUFFIXES)
    ]
    if not files:
        sub = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        hint = f" Its subfolders: {', '.join(sub[:8])}." if sub else ""
        raise DeepColorError(
            f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}).{hint}\n{_HELP}"
        )
    is_label = [any(f.stem.lower().endswith(s) for s in LABEL_SUFFIXES) for f in files]
    label_files = [f for f, lab in zip(files, is_label) if lab]
    if not label_files:
        raise DeepColorError(
            f"{folder} holds {len(files)} image(s) but no label files, so its layout is unknown. "
            f"Name labels NAME_masks.tif next to NAME.tif, or pass the label folder.\n{_HELP}"
        )
    images = _by_stem([f for f, lab in zip(files, is_label) if not lab], folder)
    pairs: dict[str, AnnotatedPair] = {}
    orphans = []
    for label in label_files:
        key = _image_key_for_label(label.stem, images)
        if key is None or key == label.stem:
            orphans.append(label)
        elif key in pairs:
            raise DeepColorError(
                f"{images[key].name} has two label files, {pairs[key].labels.name} and {label.name}; "
                "keep one of them."
            )
        else:
            pairs[key] = AnnotatedPair(key, images[key], label)
    if orphans:
        raise DeepColorError(
            f"label file(s) without an image in {folder}: {_listing(orphans)}. NAME_masks.tif needs "
            "an image NAME.tif (or .png) in the same folder."
        )
    return _finish("cellpose", folder, pairs, [f for key, f in images.items() if key not in pairs])


def _finish(kind: str, root: Path, pairs: dict, unpaired: list[Path]) -> DatasetLayout:
    if not pairs:
        raise DeepColorError(f"no image in {root} has a label file.\n{_HELP}")
    if unpaired:
        logger.warning("%d image(s) in %s have no labels and are skipped: %s",
                       len(unpaired), root, _listing(sorted(unpaired)))
    ordered = tuple(pairs[key] for key in sorted(pairs))
    return DatasetLayout(kind, root, ordered, tuple(sorted(unpaired)))
