"""Turning arrays or folders of annotated images into :class:`AnnotatedImage` lists.

Every reader normalises the images with :func:`normalize_percentile`, puts
channels last, checks that labels are integer ids of the image's shape, and
refuses a dataset without a single annotated object.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import DeepColorError
from .masks import label_pieces, mask_like_labels
from .classes import (CLASS_NAMES_FILE, class_image_from_table, find_class_file, read_class_names,
                      read_class_table)
from .io import as_label_image, read_image, read_labels, read_object_masks
from .layouts import AnnotatedPair, detect_layout
from .normalize import as_channels_last, normalize_percentile
from .sample import AnnotatedImage

__all__ = [
    "OVERLAP_RULES",
    "combine_object_masks",
    "describe_layout",
    "from_arrays",
    "read_annotated_folder",
]

logger = logging.getLogger(__name__)

#: the class annotations' folder found by itself beside ``images/`` and ``labels/``
CLASSES_FOLDER = "classes"

#: What pixels covered by two or more object masks become.
OVERLAP_RULES = {
    "ignore": "label 0 and ignore=True: excluded from every loss",
    "first": "the first object (in file order) covering the pixel",
    "last": "the last object (in file order) covering the pixel",
}
DEFAULT_PERCENTILES = (1.0, 99.8)


def combine_object_masks(
    masks: np.ndarray, *, overlap: str = "ignore"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Merge one mask per object into a single label image.

    Parameters
    ----------
    masks : (K, H, W) ndarray
        Object ``k`` covers the non-zero pixels of ``masks[k]``; masks may overlap.
    overlap : {"ignore", "first", "last"}
        What a pixel covered by several objects becomes: ``"ignore"`` sets it
        to label 0 and marks it ignored, ``"first"``/``"last"`` give it to the
        first/last covering object.

    Returns
    -------
    labels : (H, W) ndarray of int32
        Object ``k`` has id ``k + 1`` (before any renumbering).
    ignore : (H, W) ndarray of bool or None
        The overlap pixels for ``overlap="ignore"``, None when there are none.
    """
    _check_overlap(overlap)
    masks = np.asarray(masks) != 0
    if masks.ndim != 3:
        raise DeepColorError(f"object masks must be a (K, H, W) stack; got shape {masks.shape}.")
    count = masks.sum(axis=0, dtype=np.int32)
    if overlap == "last":
        labels = masks.shape[0] - np.argmax(masks[::-1], axis=0)
    else:
        labels = np.argmax(masks, axis=0) + 1
    labels = np.where(count > 0, labels, 0).astype(np.int32)
    ignore = None
    if overlap == "ignore" and np.any(count > 1):
        ignore = count > 1
        labels[ignore] = 0
    return labels, ignore


def from_arrays(
    images,
    labels,
    *,
    ignore=None,
    names: str | Sequence[str] | None = None,
    overlap: str = "ignore",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    skip_empty_planes: bool = True,
    classes=None,
    class_names=(),
    labels_are_masks: bool = False,
) -> list[AnnotatedImage]:
    """Build training samples from in-memory arrays, such as napari layer data.

    Parameters
    ----------
    images : ndarray or sequence of ndarray
        One image or several. Each is ``(H, W)``, ``(H, W, C)``, ``(C, H, W)``,
        or a stack ``(Z, H, W)``, ``(Z, H, W, C)``, ``(Z, C, H, W)``. The labels'
        shape decides which.
    labels : ndarray or sequence of ndarray
        One per image: ``(H, W)`` instance ids, ``(Z, H, W)`` ids for a stack,
        or ``(K, H, W)`` binary masks, one per object, for a 2D image. Any
        integer dtype; float with whole values is accepted.
    ignore : ndarray, sequence of (ndarray or None), or None
        True where pixels are excluded from the loss; the labels' shape, or
        ``(H, W)`` for all planes of a stack.
    names : str or sequence of str, optional
        Shown in messages and kept on the samples.
    overlap : {"ignore", "first", "last"}
        For per-object masks, what pixels covered by several objects become
        (see :func:`combine_object_masks`).
    percentiles : (float, float)
        The ``low`` and ``high`` percentiles of :func:`normalize_percentile`.
    skip_empty_planes : bool
        In a stack, planes without any labelled or ignored pixel are taken as
        not annotated yet and skipped. A 2D image without objects is always
        kept: it teaches the net what background looks like.
    classes : ndarray, sequence of (ndarray or None), or None
        Class images (:mod:`~napari_deepcolor.data.classes`): per pixel the class id 1..K of its
        instance, the labels' shape (``(H, W)`` for (K, H, W) object masks). All images or none.
    class_names : sequence of str
        The names of class ids 1..K; needed with ``classes``.
    labels_are_masks : bool
        The labels are masks (0/255, 0/1, or one label painted over many objects): each
        connected piece becomes an object of its own (:func:`~napari_deepcolor.data.masks.label_pieces`;
        objects that touch stay merged). Without it such labels are refused.

    Returns
    -------
    list of AnnotatedImage
        One per 2D image or annotated plane, images normalised per plane.

    Raises
    ------
    DeepColorError
        On mismatched shapes, non-integer labels, mixed channel counts, when
        no object is annotated anywhere, or when a label image looks like a mask
        (:func:`~napari_deepcolor.data.masks.mask_like_labels`) and
        ``labels_are_masks`` is not set.
    """
    _check_overlap(overlap)
    single = not isinstance(images, (list, tuple))
    image_list = [images] if single else list(images)
    if single != (not isinstance(labels, (list, tuple))):
        raise DeepColorError("pass images and labels alike: one array each, or two lists of the same length.")
    label_list = [labels] if single else list(labels)
    if len(image_list) != len(label_list):
        raise DeepColorError(
            f"got {len(image_list)} image(s) but {len(label_list)} label image(s); "
            "pass one label image per image."
        )
    count = len(image_list)
    ignore_list = _per_item(ignore, count, "ignore masks")
    if names is None:
        names = ["image"] if single else [f"image {i}" for i in range(count)]
    name_list = _per_item(names, count, "names")
    class_list = _per_item(classes, count, "class images")
    samples = []
    for image, label, ign, name, cls in zip(image_list, label_list, ignore_list, name_list, class_list):
        samples += _samples_from_pair(
            np.asarray(image), label, ign, str(name), overlap=overlap, percentiles=percentiles,
            skip_empty_planes=skip_empty_planes, classes=cls, class_names=tuple(class_names),
            labels_are_masks=labels_are_masks,
        )
    _check_dataset(samples, where="the given labels")
    return samples


def read_annotated_folder(
    path: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    *,
    overlap: str = "ignore",
    limit: int | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    skip_empty_planes: bool = True,
    progress: Callable[[int, int], None] | None = None,
    classes: str | os.PathLike | None = None,
    labels_are_masks: bool = False,
) -> list[AnnotatedImage]:
    """Read an annotated dataset from disk, detecting its layout.

    Parameters
    ----------
    path : path-like
        A dataset folder (``images/`` + ``labels/`` or ``masks/``; Cellpose
        ``NAME_masks.tif``; CVPPP ``plantNNN_rgb.png`` + ``plantNNN_label.png``;
        BBBC010 per-object masks), an image folder (with ``labels`` a label
        folder), or an image file (with ``labels`` its label file).
    labels : path-like, optional
        Label folder or file matching ``path``.
    overlap : {"ignore", "first", "last"}
        For per-object masks: what pixels covered by several objects become.
    limit : int, optional
        Read only the first ``limit`` pairs (sorted by name), e.g. for a preview.
    percentiles : (float, float)
        The percentiles of :func:`normalize_percentile`.
    skip_empty_planes : bool
        See :func:`from_arrays`.
    progress : callable, optional
        Called as ``progress(done, total)`` after each pair is read.
    classes : path-like, optional
        A folder of class annotations (:mod:`~napari_deepcolor.data.classes`): ``NAME.tif`` class
        images named like the label images with their names in ``classes.json``, or ``NAME.csv``
        tables of instance id and class name. Found by itself when a ``classes/`` folder sits
        beside ``images/`` and ``labels/``. Every image must then have one.
    labels_are_masks : bool
        See :func:`from_arrays`: each connected piece of the label images becomes an object.

    Returns
    -------
    list of AnnotatedImage
        Sorted by name; stacks give one sample per annotated plane.

    Raises
    ------
    DeepColorError
        If the folder is missing or empty, a label file has no image, a file is
        unreadable, shapes or channel counts disagree, labels are not integer,
        no object is annotated anywhere, or a label image looks like a mask and
        ``labels_are_masks`` is not set. Images without labels are skipped with a
        logged warning.
    """
    _check_overlap(overlap)
    layout = detect_layout(path, labels)
    pairs = layout.pairs if limit is None else layout.pairs[: max(int(limit), 0)]
    class_files, class_names = _class_annotations(layout, pairs, classes)
    samples: list[AnnotatedImage] = []
    for done, pair in enumerate(pairs, start=1):
        samples += _read_pair(pair, overlap=overlap, percentiles=percentiles,
                              skip_empty_planes=skip_empty_planes, class_file=class_files.get(pair.name),
                              class_names=class_names, labels_are_masks=labels_are_masks)
        if progress is not None:
            progress(done, len(pairs))
    _check_dataset(samples, where=str(path))
    return samples


def describe_layout(path: str | os.PathLike, labels: str | os.PathLike | None = None) -> str:
    """Say which layout ``path`` (and ``labels``) has and how many annotated images it holds.

    Reads file names only, so it is quick enough to run as the user types a path.

    Raises
    ------
    DeepColorError
        As :func:`read_annotated_folder` would for the layout itself.
    """
    return detect_layout(path, labels).description


def _check_overlap(overlap: str) -> None:
    if overlap not in OVERLAP_RULES:
        options = "; ".join(f"{key!r}: {text}" for key, text in OVERLAP_RULES.items())
        raise DeepColorError(f"unknown overlap rule {overlap!r}; choose one of {options}.")


def _per_item(value, count: int, what: str) -> list:
    if value is None:
        return [None] * count
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise DeepColorError(f"got {len(value)} {what} for {count} image(s); pass one per image.")
        return list(value)
    if count != 1:
        raise DeepColorError(f"pass a list of {count} {what}, one per image.")
    return [value]


def find_classes_folder(layout) -> Path | None:
    """The ``classes/`` folder beside ``images/`` and ``labels/`` of a dataset folder, if there is one."""
    folder = Path(layout.root) / CLASSES_FOLDER
    return folder if layout.kind in ("subfolders", "object-masks") and folder.is_dir() else None


def _class_annotations(layout, pairs, classes) -> tuple[dict, tuple[str, ...]]:
    """``({pair name: class file}, class names)`` for the pairs; ({}, ()) for a dataset without classes."""
    folder = Path(classes) if classes is not None else find_classes_folder(layout)
    if folder is None:
        return {}, ()
    if not folder.is_dir():
        raise DeepColorError(f"the classes folder {folder} does not exist; check the path.")
    files, missing = {}, []
    for pair in pairs:
        stems = (pair.name,) + ((pair.labels.stem,) if pair.labels is not None else ())
        found = find_class_file(folder, stems)
        if found is None:
            missing.append(pair.name)
        else:
            files[pair.name] = found
    if not files:
        raise DeepColorError(f"{folder} holds no class annotation for any image: name them like the label "
                             "images (NAME.tif class images with classes.json, or NAME.csv tables).")
    if missing:
        raise DeepColorError(f"classes are annotated for some images and not others: no class file in {folder} "
                             f"for {_names(missing)}. Annotate classes for every image, or for none.")
    names = read_class_names(folder)
    if names is None:
        if any(f.suffix.lower() != ".csv" for f in files.values()):
            raise DeepColorError(f"{folder} holds class images but no {CLASS_NAMES_FILE} naming their ids; "
                                 'write one, e.g. {"1": "alive", "2": "dead"}.')
        names = tuple(sorted({n for f in files.values() for n in read_class_table(f).values()}))
    return files, names


def _names(names, limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _read_pair(pair: AnnotatedPair, *, class_file=None, class_names=(), **options) -> list[AnnotatedImage]:
    image = read_image(pair.image)
    ignore = None
    if pair.object_masks:
        masks = read_object_masks(pair.object_masks)
        labels, ignore = combine_object_masks(masks, overlap=options["overlap"])
        label_name = f"the {len(pair.object_masks)} object masks in {pair.object_masks[0].parent}"
    else:
        labels = read_labels(pair.labels)
        label_name = f"the labels {pair.labels}"
    classes = None
    if class_file is not None:
        if class_file.suffix.lower() == ".csv":
            classes = class_image_from_table(labels, read_class_table(class_file), class_names,
                                             where=str(class_file))
        else:
            classes = read_labels(class_file)
    return _samples_from_pair(image, labels, ignore, pair.name, image_name=f"the image {pair.image}",
                              label_name=label_name, classes=classes, class_names=class_names,
                              class_name=None if class_file is None else str(class_file), **options)


def _samples_from_pair(image, labels, ignore, name, *, overlap, percentiles, skip_empty_planes,
                       image_name=None, label_name=None, classes=None, class_names=(),
                       class_name=None, labels_are_masks=False) -> list[AnnotatedImage]:
    image_name = image_name or "the image"
    label_name = label_name or "the labels"
    labels = as_label_image(labels, what=label_name)
    while labels.ndim > 2 and labels.shape[0] == 1 and image.ndim != labels.ndim + 1:
        labels = labels[0]  # a (1, H, W) file is one 2D label image
    if classes is not None:
        classes = _match_classes(np.asarray(classes), labels, class_name or f"{name}: the class image")
    if ignore is not None:
        ignore = np.asarray(ignore, dtype=bool)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4) and labels.shape[:2] == image.shape[:2] \
            and image.shape[:3] != labels.shape:
        raise DeepColorError(
            f"{label_name}: labels of shape {labels.shape} look like an RGB colouring, not object ids. "
            "Save one integer id per object in a single-channel image (e.g. a napari Labels layer)."
        )
    if labels.ndim == 2:
        planes = [(image, labels, ignore, name)]
    elif labels.ndim == 3:
        planes = _split_3d(image, labels, ignore, name, overlap, image_name, label_name)
    else:
        raise DeepColorError(
            f"{label_name}: labels must be (H, W), a (Z, H, W) stack or (K, H, W) object masks; "
            f"got shape {labels.shape}."
        )
    stack = len(planes) > 1
    if classes is None:
        plane_classes = [None] * len(planes)
    elif classes.ndim == 3 and stack:
        plane_classes = list(classes)
    else:
        plane_classes = [classes] * len(planes)
    samples = []
    for (plane_image, plane_labels, plane_ignore, plane_name), plane_class in zip(planes, plane_classes):
        if stack and skip_empty_planes and not plane_labels.any() and (
            plane_ignore is None or not plane_ignore.any()
        ):
            logger.info("%s: no annotation, skipped", plane_name)
            continue
        plane_labels = _one_id_per_object(plane_labels, labels_are_masks, f"{plane_name}: {label_name}")
        samples.append(_sample(plane_image, plane_labels, plane_ignore, plane_name, percentiles, image_name,
                               label_name, plane_class, class_names if plane_class is not None else ()))
    return samples


def _one_id_per_object(labels: np.ndarray, labels_are_masks: bool, where: str) -> np.ndarray:
    """``labels`` with each connected piece an object (``labels_are_masks``), else as they are, refused if
    they look like a mask."""
    if labels_are_masks:
        return label_pieces(labels)
    seen = mask_like_labels(labels)
    if seen:
        raise DeepColorError(
            f"{where}: {seen}. These labels look like a mask (one value painted over many objects), not one id "
            "per object: a model trained on them learns that all those objects are one. Give every object its "
            "own id (in napari, a new label per object), or have each separate piece taken as an object: "
            "train --labels-are-masks, or tick 'Labels are masks' in the Train widget (objects that touch then "
            "stay one)."
        )
    return labels


def _match_classes(classes: np.ndarray, labels: np.ndarray, where: str) -> np.ndarray:
    """The class image squeezed to the labels' shape ((H, W) is also fine for (K, H, W) object masks)."""
    while classes.ndim > labels.ndim and classes.shape[0] == 1:
        classes = classes[0]
    if classes.shape != labels.shape and not (labels.ndim == 3 and classes.shape == labels.shape[1:]):
        raise DeepColorError(f"{where} has shape {classes.shape} but the labels have shape {labels.shape}; "
                             "a class image must cover the same pixels as its label image.")
    return classes


def _split_3d(image, labels, ignore, name, overlap, image_name, label_name) -> list[tuple]:
    depth, spatial = labels.shape[0], labels.shape[1:]
    if image.shape[:3] == labels.shape:  # (Z, H, W) or (Z, H, W, C)
        plane_images = list(image)
    elif image.ndim == 4 and image.shape[0] == depth and image.shape[2:] == spatial:  # (Z, C, H, W)
        plane_images = list(image)
    elif _fits_2d(image, spatial):  # one 2D image with one mask per object
        values = np.unique(labels)
        if values.size > 2:
            raise DeepColorError(
                f"{label_name}: labels of shape {labels.shape} do not match the image of shape "
                f"{image.shape}. For a stack, pass one label plane per image plane; "
                f"a (K, H, W) stack of object masks must be binary (it holds {values.size} values)."
            )
        merged, merged_ignore = combine_object_masks(labels, overlap=overlap)
        return [(image, merged, _either(ignore, merged_ignore), name)]
    else:
        raise DeepColorError(
            f"{name}: {label_name} (shape {labels.shape}) do not match {image_name} "
            f"(shape {image.shape}). A stack of Z planes needs labels of shape (Z, H, W)."
        )
    if ignore is not None and ignore.shape not in (labels.shape, spatial):
        raise DeepColorError(
            f"{name}: ignore mask has shape {ignore.shape}; expected {labels.shape} or {spatial}."
        )
    plane_ignore = [None if ignore is None else (ignore[z] if ignore.ndim == 3 else ignore)
                    for z in range(depth)]
    return [(plane_images[z], labels[z], plane_ignore[z], f"{name} [z={z}]") for z in range(depth)]


def _fits_2d(image: np.ndarray, spatial: tuple) -> bool:
    return image.shape == spatial or (image.ndim == 3 and spatial in (image.shape[:2], image.shape[1:]))


def _either(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _sample(image, labels, ignore, name, percentiles, image_name, label_name, classes=None,
            class_names=()) -> AnnotatedImage:
    try:
        image = as_channels_last(image, spatial_shape=labels.shape)
    except DeepColorError as exc:
        message = f"{name}: {image_name} has shape {image.shape} but {label_name} have shape {labels.shape}"
        if image.shape[:2] == labels.shape[::-1] or image.shape[-2:] == labels.shape[::-1]:
            message += "; the labels look transposed (rows and columns swapped): transpose them"
        raise DeepColorError(message + ". Image and labels must cover the same pixels.") from exc
    if ignore is not None and ignore.shape != labels.shape:
        raise DeepColorError(
            f"{name}: ignore mask has shape {ignore.shape} but {label_name} have shape {labels.shape}."
        )
    low, high = percentiles
    return AnnotatedImage(normalize_percentile(image, low=low, high=high, channel_axis=-1),
                          labels, ignore, name, classes, class_names)


def _check_dataset(samples: list[AnnotatedImage], *, where: str) -> None:
    if not samples or not any(s.num_objects for s in samples):
        raise DeepColorError(
            f"no annotated objects found in {where}: every label image is empty (all 0). "
            "Annotate at least one object (label ids > 0) before training."
        )
    check_same_classes(samples, where=where)
    by_channels: dict[int, list[str]] = {}
    for sample in samples:
        by_channels.setdefault(sample.num_channels, []).append(sample.name)
    if len(by_channels) > 1:
        groups = "; ".join(
            f"{c} channel(s): {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
            for c, names in sorted(by_channels.items())
        )
        raise DeepColorError(
            f"images in {where} have different numbers of channels ({groups}). All images of one "
            "dataset need the same channels: convert them (e.g. RGB to grey) or train on one group."
        )


def check_same_classes(samples, *, where: str = "the training images") -> tuple[str, ...]:
    """The class names all ``samples`` share (() when none has classes); refuses a mix."""
    without = [s.name for s in samples if not s.has_classes]
    if without and len(without) < len(samples):
        raise DeepColorError(f"classes are annotated for some images and not others in {where}: "
                             f"{_names(without)} have none. Annotate classes for every image, or for none.")
    names = {s.class_names for s in samples if s.has_classes}
    if len(names) > 1:
        raise DeepColorError(f"the images in {where} name their classes differently "
                             f"({'; '.join(', '.join(n) for n in sorted(names))}); use one set of class names.")
    return names.pop() if names else ()
