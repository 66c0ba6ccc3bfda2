"""napari layers to library inputs and back: image planes, annotated regions, labels layers.

Only NumPy and the library here; the functions take layer *data* (and a few
layer attributes read in the GUI thread), so the heavy part can run in a worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import AnnotatedImage, from_arrays
from ..errors import DeepColorError

#: how a partly annotated image is used for training (see the Train widget and docs/user-guide.md)
REGION_BOX = "box"
REGION_WHOLE = "whole"
REGION_CHOICES = {
    REGION_BOX: "Only the box around my labels",
    REGION_WHOLE: "The whole image (unlabelled = background)",
}
REGION_HELP = (
    "Which part of each image counts as annotated.\n\n"
    "Only the box around my labels (default): each image (each plane of a stack) is cropped to the "
    "bounding box of its labelled pixels before training. Inside the box, every pixel you did not "
    "label is taken as background, so label EVERY object inside that box; the rest of the image is "
    "not used. This lets you annotate just a corner of a large image. For a fully annotated image the "
    "box is (nearly) the whole image, so nothing is lost.\n\n"
    "The whole image: every unlabelled pixel anywhere is background. Use it when the image is fully "
    "annotated and has empty margins the box would cut off."
)


@dataclass(frozen=True)
class LayerInput:
    """An image layer's data as the library wants it, with what it takes to put results back."""

    data: np.ndarray
    rgb: bool
    name: str
    scale: tuple
    translate: tuple

    @property
    def spatial_shape(self) -> tuple:
        return self.data.shape[:-1] if self.rgb else self.data.shape

    @property
    def is_stack(self) -> bool:
        return len(self.spatial_shape) == 3


def spatial_shape(layer) -> tuple:
    """The spatial shape of a layer's data (an RGB image's colour axis left out)."""
    shape = tuple(layer.data.shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def image_input(layer, *, channels: bool = False) -> LayerInput:
    """Read an Image layer (2D, RGB, or a 3D stack of planes) in the GUI thread.

    ``channels``: 4D layers are accepted too (a stack with a channel axis, see :data:`AXES_CHOICES`).
    """
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]  # full resolution; the Batch widget handles images beyond memory
    data = np.asarray(data)
    rgb = bool(getattr(layer, "rgb", False))
    spatial = data.ndim - (1 if rgb else 0)
    if spatial not in ((2, 3, 4) if channels and not rgb else (2, 3)):
        raise DeepColorError(
            f"layer '{layer.name}' has {spatial} dimensions (shape {data.shape}); the widgets segment 2D images, "
            "RGB images and 3D stacks (each plane on its own)" + (", with or without a channel axis" if channels
                                                                   else "") +
            ". Take a 2D or 3D part first, or use the Batch widget on files.")
    return LayerInput(data, rgb, layer.name, tuple(layer.scale), tuple(layer.translate))


# -- the axes of an image layer, and the part of it a model segments ----------------------------

#: what the axes of an image layer can be, by its number of axes (an RGB layer's colour axis not counted):
#: (chooser text, axes). T and Z link objects through time and depth, Q leaves the planes apart, C holds
#: channels (all fed to a model that takes that many, else the one chosen)
AXES_CHOICES = {
    2: (("a 2D image", "YX"),),
    3: (("z-stack: one id per object through the planes", "ZYX"),
        ("time-lapse: objects followed frame to frame", "TYX"),
        ("planes on their own", "QYX"),
        ("channels (C, Y, X): one image, several channels", "CYX"),
        ("channels last (Y, X, C)", "YXC")),
    4: (("z-stack of channels (Z, C, Y, X)", "ZCYX"),
        ("time-lapse of channels (T, C, Y, X)", "TCYX"),
        ("channels of a z-stack (C, Z, Y, X)", "CZYX"),
        ("z-stack, channels last (Z, Y, X, C)", "ZYXC"),
        ("time-lapse, channels last (T, Y, X, C)", "TYXC")),
}
#: an axis at most this long may hold channels when guessing (as data.normalize guesses)
GUESSED_CHANNELS = 4


def axes_choices(shape, rgb: bool) -> tuple[tuple[str, str], ...]:
    """The (text, axes) a layer of ``shape`` may have; an RGB layer's end in S (its colour samples)."""
    choices = AXES_CHOICES.get(len(shape) - (1 if rgb else 0), ())
    if rgb:
        return tuple((text, axes + "S") for text, axes in choices if "C" not in axes)
    return choices


def guess_axes(shape, rgb: bool, in_channels: int | None = None) -> str:
    """The axes a layer most likely has: a channel axis as long as the model's channels (a model that takes
    several), a short last axis after a long one (channels last: napari would show it as a volume), else the
    first axis enumerates z planes (a 4D layer: Z, C, Y, X, or C, Z, Y, X when only the first axis is short).

    >>> guess_axes((5, 64, 64), False)
    'ZYX'
    >>> guess_axes((64, 64, 2), False)
    'YXC'
    >>> guess_axes((2, 64, 64), False, in_channels=2)
    'CYX'
    """
    choices = [axes for _, axes in axes_choices(shape, rgb)]
    if not choices:
        raise DeepColorError(f"an image of shape {tuple(shape)} has no axes the widgets know; see AXES_CHOICES.")
    if rgb or len(choices) == 1:
        return choices[0]
    if in_channels and in_channels > 1:
        for axes in choices:
            if "C" in axes and shape[axes.index("C")] == in_channels:
                return axes
    if shape[-1] <= GUESSED_CHANNELS < shape[-2]:
        return "ZYXC" if len(shape) == 4 else "YXC"
    if len(shape) == 4 and shape[1] > GUESSED_CHANNELS >= shape[0]:
        return "CZYX"
    return choices[0]


def labels_axes(axes: str) -> str:
    """The axes of the labels of an image with ``axes``: its channel (C) and colour (S) axes dropped."""
    return "".join(a for a in axes if a not in "CS")


@dataclass(frozen=True)
class SegmentInput:
    """The part of an image layer a model segments, arranged as :func:`~napari_deepcolor.inference.predict`
    takes it, with what it takes to put the labels back and measure them."""

    image: np.ndarray  #: (H, W[, C]) or planes (P, H, W[, C]): what the model sees (C: the channels fed)
    axes: str  #: the labels' axes: the layer's without its channel axis, e.g. ZYX, TYX or YX
    intensities: np.ndarray  #: the labels' shape plus every channel of the layer (C >= 1), for measuring
    name: str
    scale: tuple  #: of the labels' axes
    translate: tuple
    channels: int  #: channels each plane gives the model (before conversion to the model's)

    @property
    def is_stack(self) -> bool:
        return len(self.axes) == 3

    @property
    def spatial_shape(self) -> tuple:
        return self.intensities.shape[:-1]


def segment_input(image: LayerInput, axes: str, in_channels: int, channel: int | None = None) -> SegmentInput:
    """What a model of ``in_channels`` segments of a layer with ``axes`` (one of :func:`axes_choices`).

    The channels are decided as for files (:func:`~napari_deepcolor.batch.sources.plan_layout`): a channel
    axis as long as the model's channels is fed whole, ``channel`` picks the one a one-channel model sees,
    and any other mismatch is an error that names the channels (never planes made of channels).
    """
    from ..batch.sources import Source, plan_layout

    data = image.data
    layout = plan_layout(axes, data.shape, data.dtype, in_channels, name=f"layer '{image.name}'", channel=channel,
                         channel_option="the Channel box")
    if len(layout.plane_axes) > 1:
        raise DeepColorError(f"layer '{image.name}' (axes {axes}): the widgets segment one stack axis (Z or T) at a "
                             "time; segment the files with the Batch widget instead.")
    kept = list(layout.plane_axes) + [axes.index("Y"), axes.index("X")]
    picked = layout.channel_pick is not None
    index = tuple(layout.channel_pick if picked and a == layout.channel_axis else slice(None) for a in range(data.ndim))
    remaining = [a for a in range(data.ndim) if not (picked and a == layout.channel_axis)]
    order = kept + ([layout.channel_axis] if layout.channel_axis is not None and not picked else [])
    planes = np.transpose(data[index], [remaining.index(a) for a in order])
    intensities = Source(data, axes, image.name).read_channels(layout)
    return SegmentInput(planes, layout.out_axes, intensities, image.name, tuple(image.scale[a] for a in kept),
                        tuple(image.translate[a] for a in kept), layout.channels_fed)


def labels_fit(image_shape, rgb: bool, labels_shape) -> bool:
    """Whether labels of ``labels_shape`` can annotate an image layer of ``image_shape``: the same spatial shape,
    or, for an image with a channel axis (not RGB), its shape without that axis: (C, H, W) or (H, W, C) with
    (H, W) labels, (Z, C, H, W) or (Z, H, W, C) with (Z, H, W) labels."""
    image_shape, labels_shape = tuple(image_shape), tuple(labels_shape)
    spatial = image_shape[:-1] if rgb else image_shape
    if labels_shape == spatial:
        return True
    if rgb or len(image_shape) != len(labels_shape) + 1 or len(labels_shape) not in (2, 3):
        return False
    channel_axes = (0, len(image_shape) - 1) if len(labels_shape) == 2 else (1, len(image_shape) - 1)
    return any(image_shape[:a] + image_shape[a + 1:] == labels_shape for a in channel_axes)


def check_labels_match(image: LayerInput, labels: np.ndarray, labels_name: str) -> np.ndarray:
    """The labels of ``image`` as an integer array of its spatial shape (or its shape without its channel
    axis, see :func:`labels_fit`), or a clear error."""
    labels = np.asarray(labels)
    if not labels_fit(image.data.shape, image.rgb, labels.shape):
        message = (f"labels layer '{labels_name}' has shape {labels.shape} but image layer '{image.name}' has "
                   f"spatial shape {image.spatial_shape}; pair each image with labels drawn on it.")
        if len(labels.shape) == 2 and labels.shape == image.spatial_shape[::-1]:
            message += " The labels look transposed."
        raise DeepColorError(message)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DeepColorError(f"labels layer '{labels_name}' holds {labels.dtype} values; labels must be integer ids.")
    return labels


def annotated_box(labels: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of the non-zero pixels of a 2D label image, or None when there are none."""
    rows = np.flatnonzero(labels.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(labels.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def crop_to_annotation(sample: AnnotatedImage) -> AnnotatedImage | None:
    """The sample cropped to the box around its labelled pixels (None if it has none)."""
    box = annotated_box(sample.labels)
    if box is None:
        return None
    if box == (slice(0, sample.shape[0]), slice(0, sample.shape[1])):
        return sample
    ignore = None if sample.ignore is None else sample.ignore[box]
    classes = None if sample.classes is None else sample.classes[box]
    return AnnotatedImage(sample.image[box], sample.labels[box], ignore,
                          f"{sample.name} [box {box[0].start}:{box[0].stop}, {box[1].start}:{box[1].stop}]",
                          classes, sample.class_names)


@dataclass(frozen=True)
class LayerClasses:
    """Class annotations read from layers in the GUI thread, in one of the two forms napari has.

    ``table``: {label: class name}, from a Labels layer's ``features`` table with a ``class``
    column. ``image``: a second Labels layer of class ids (``names`` from its own ``features``
    ``class`` column, row ``index`` = class id, or else ``class 1``, ``class 2``, ...).
    """

    source: str
    table: dict | None = None
    image: np.ndarray | None = None
    names: dict | None = None  # class id -> name, for ``image``


def classes_from_features(features, labels_name: str) -> dict | None:
    """{label: class name} from a Labels layer's features (``class`` column; ``index`` = label, else the
    row number); None without a ``class`` column. Rows without a class (empty, NaN) are left out."""
    if features is None or "class" not in getattr(features, "columns", features):
        return None
    classes = list(features["class"])
    index = list(features["index"]) if "index" in getattr(features, "columns", features) else range(len(classes))
    table = {}
    for label, name in zip(index, classes):
        if label is None or int(label) <= 0 or name is None or (isinstance(name, float) and np.isnan(name)):
            continue
        if str(name).strip():
            table[int(label)] = str(name).strip()
    if not table:
        raise DeepColorError(f"labels layer '{labels_name}' has a 'class' feature column but no object has a class; "
                             "fill in the class of every object (or remove the column to train without classes).")
    return table


def _class_names(classes: list[LayerClasses | None]) -> tuple[str, ...]:
    """One set of names for all pairs: class ids keep their order, names from tables are added sorted."""
    by_id: dict[int, str] = {}
    for c in classes:
        if c is not None and c.image is not None:
            for k in range(1, int(np.max(c.image, initial=0)) + 1):
                name = (c.names or {}).get(k, f"class {k}")
                if by_id.setdefault(k, name) != name:
                    raise DeepColorError(f"class id {k} is named both '{by_id[k]}' and '{name}' in the class layers; "
                                         "use one name per class id.")
    names = [by_id[k] for k in sorted(by_id)]
    names += sorted({n for c in classes if c is not None and c.table for n in c.table.values()} - set(names))
    return tuple(names)


def _class_image(labels: np.ndarray, classes: LayerClasses, names: tuple[str, ...], labels_name: str):
    from ..data.classes import class_image_from_table

    if classes.table is not None:
        return class_image_from_table(labels, classes.table, names, where=f"labels layer '{labels_name}' (features)")
    if np.shape(classes.image) != labels.shape:
        raise DeepColorError(f"the class layer '{classes.source}' has shape {np.shape(classes.image)} but labels layer "
                             f"'{labels_name}' has shape {labels.shape}; paint the classes on the same image.")
    ids = {(classes.names or {}).get(k, f"class {k}"): k for k in range(1, int(np.max(classes.image, initial=0)) + 1)}
    remap = np.zeros(int(np.max(classes.image, initial=0)) + 1, np.int32)
    for name, k in ids.items():
        remap[k] = names.index(name) + 1
    return remap[np.asarray(classes.image).astype(np.int64)]


def training_samples(pairs: list[tuple], region: str = REGION_BOX, *,
                     labels_are_masks: bool = False) -> list[AnnotatedImage]:
    """Training samples from (image, labels, labels name[, LayerClasses or None]) layer pairs; runs in a worker.

    Each image is normalised as a whole (as prediction will normalise it), then,
    with ``region="box"``, cropped to the box around its labels. A labels layer
    painted with one label over many objects is refused, unless ``labels_are_masks``
    makes each separate piece an object.
    """
    if region not in REGION_CHOICES:
        raise DeepColorError(f"unknown annotated region '{region}'; choose one of: {', '.join(REGION_CHOICES)}.")
    if not pairs:
        raise DeepColorError("no training data: add at least one pair of an image layer and the labels layer "
                             "annotated on it.")
    pairs = [tuple(p) + (None,) * (4 - len(p)) for p in pairs]
    names = _class_names([p[3] for p in pairs])
    samples = []
    for image, labels, labels_name, classes in pairs:
        labels = check_labels_match(image, labels, labels_name)
        class_image = None if classes is None else _class_image(labels, classes, names, labels_name)
        samples += from_arrays(image.data, labels, names=image.name,
                               skip_empty_planes=True, classes=class_image,
                               class_names=names if class_image is not None else (),
                               labels_are_masks=labels_are_masks) \
            if labels.any() else []
    if not samples:
        raise DeepColorError("the labels layers are empty: paint at least one object (label > 0) before training.")
    if region == REGION_BOX:
        samples = [cropped for cropped in map(crop_to_annotation, samples) if cropped is not None]
    return samples


def plane_of(image: LayerInput, plane: int | None) -> np.ndarray:
    """One 2D plane (H, W[, C]) of an image input (the whole image when it is 2D)."""
    if not image.is_stack:
        return image.data
    return image.data[int(np.clip(plane or 0, 0, image.data.shape[0] - 1))]


def tuning_pairs(output: np.ndarray, ground_truth: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
    """(output crop, ground-truth crop, box) for every annotated plane, cropped to the annotated box.

    ``output`` is a prediction's cached net output, (C, H, W) or (Z, C, H, W);
    ``ground_truth`` the labels (H, W) or (Z, H, W). Only the box around the
    annotation is scored, so annotating part of an image is enough (every
    object inside the box must be annotated).
    """
    stack = output.ndim == 4
    spatial = output.shape[-2:] if not stack else (output.shape[0],) + output.shape[-2:]
    ground_truth = np.asarray(ground_truth)
    if ground_truth.shape != spatial:
        raise DeepColorError(f"the ground-truth labels have shape {ground_truth.shape} but the segmented image "
                             f"has shape {spatial}; draw the annotation on the segmented image.")
    planes = [(output, ground_truth)] if not stack else list(zip(output, ground_truth))
    pairs = []
    for plane_output, plane_truth in planes:
        box = annotated_box(plane_truth)
        if box is not None:
            pairs.append((plane_output[(slice(None),) + box], plane_truth[box], box))
    if not pairs:
        raise DeepColorError("the ground-truth labels layer is empty: annotate some objects (label > 0) on the "
                             "image, all objects within the region you annotate.")
    return pairs


def class_features(prediction, labels: np.ndarray, instances=None) -> dict | None:
    """The ``features`` table of a labels layer decoded from ``prediction``: one row per object with
    ``index`` (its label), ``class`` (the class name) and ``score`` (the class head's confidence);
    None for a model without classes. The same classes as ``NAME_classes.csv`` of ``predict``.
    A model whose object classifier classifies takes the classes of the decoded ``instances`` (ids as
    ``labels``').
    """
    from ..data.classes import class_table_rows
    from ..methods.base import Instances
    from ..methods.classes import classify_instances

    if prediction is not None and prediction.model.uses_object_classifier:
        if instances is None or instances.classes is None:
            return None
        rows = class_table_rows(instances, prediction.model.output_class_names)
        return _class_columns(rows)
    if prediction is None or prediction.class_output is None:
        return None
    labels = np.asarray(labels)
    probabilities = prediction.class_output if labels.ndim == 2 else np.moveaxis(prediction.class_output, 1, 0)
    n = int(labels.max(initial=0))
    classes, scores = classify_instances(labels, probabilities, n)
    instances = Instances(labels, np.zeros(n, np.float32), classes, scores)
    return _class_columns(class_table_rows(instances, prediction.model.class_names))


def _class_columns(rows: list[dict]) -> dict:
    return {"index": np.array([r["label"] for r in rows], np.int64),
            "class": np.array([r["class"] for r in rows], dtype=object),
            "score": np.array([r["score"] for r in rows], np.float32)}


def measurement_features(table: dict, extra: dict | None = None) -> dict:
    """A labels layer's ``features`` from a measurements table (:func:`napari_deepcolor.measure.measure_objects`):
    one row per object, ``index`` its label. A time-lapse's rows (one per object and frame) are reduced to each
    track's first frame, with ``frames``: how many frames it spans. ``extra`` columns (indexed by ``index``,
    e.g. :func:`class_features`) are kept and win over the table's own."""
    labels = np.asarray(table.get("label", []), np.int64)
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    features = {"index": ids}
    for name, values in table.items():
        if name != "label":
            features[name] = np.asarray(values, dtype=object if values and isinstance(values[0], str) else None)[first]
    if "frame" in table:
        features["frames"] = counts
    if extra:
        order = {int(i): k for k, i in enumerate(extra["index"])}
        rows = [order.get(int(i)) for i in ids]
        if all(r is not None for r in rows):
            for name, values in extra.items():
                if name != "index":
                    features[name] = np.asarray(values)[rows]
    return features
