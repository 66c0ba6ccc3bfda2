"""Class annotations: which class (live / dead, cell type) each annotated instance belongs to.

Users have them in one of these forms, all turned into one per-pixel *class image*
(0 = no object, 1..K = class id) that :class:`~napari_deepcolor.data.AnnotatedImage` keeps:

* a class image beside the instance labels, ``FOLDER/NAME.tif`` named like the label image,
  the value of each pixel its class id, and the names in ``FOLDER/classes.json``
  (``{"1": "alive", "2": "dead"}``);
* a table ``FOLDER/NAME.csv`` with columns ``label`` (the instance id in the label image) and
  ``class`` (the class name), one row per instance;
* in napari, a Labels layer's ``features`` table with a ``class`` column, or a second Labels
  layer of class ids (the widget converts both to a class image).

Class ids are 1..K and every id used must have a name. Errors say which file and which
instance is wrong.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..errors import DeepColorError

__all__ = ["CLASS_NAMES_FILE", "class_image_from_table", "find_class_file", "object_classes",
           "read_class_names", "read_class_table", "validate_class_names"]

CLASS_NAMES_FILE = "classes.json"
#: file suffixes a class annotation may have, in order of preference
CLASS_FILE_SUFFIXES = (".tif", ".tiff", ".png", ".csv")


def validate_class_names(names, *, where: str = "the class names") -> tuple[str, ...]:
    """Class names as a tuple (index k - 1 names class id k); refuses empty or repeated names."""
    names = tuple(str(n).strip() for n in names)
    if any(not n for n in names):
        raise DeepColorError(f"{where}: a class name is empty; give every class a name.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DeepColorError(f"{where}: class name(s) {', '.join(repeated)} appear more than once; "
                             "names must be unique.")
    return names


def read_class_names(folder) -> tuple[str, ...] | None:
    """The names in ``folder/classes.json`` (``{"1": "alive", "2": "dead"}``) as a tuple, or None if absent.

    Ids must be the whole numbers 1..K, each once.
    """
    path = Path(folder) / CLASS_NAMES_FILE
    if not path.is_file():
        return None
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeepColorError(f"{path} could not be read as JSON ({exc}); write it as "
                             '{"1": "alive", "2": "dead"}.') from None
    if not isinstance(table, dict) or not table:
        raise DeepColorError(f'{path} must map class ids to names, e.g. {{"1": "alive", "2": "dead"}}.')
    try:
        ids = sorted(int(k) for k in table)
    except ValueError:
        raise DeepColorError(f"{path}: the keys must be class ids 1, 2, ...; got {', '.join(map(repr, table))}."
                             ) from None
    if ids != list(range(1, len(ids) + 1)):
        raise DeepColorError(f"{path}: class ids must be 1..K, each once (got {ids}); 0 is the background.")
    by_id = {int(k): v for k, v in table.items()}
    return validate_class_names([by_id[i] for i in ids], where=str(path))


def find_class_file(folder, names: tuple[str, ...]) -> Path | None:
    """The class annotation of an image in ``folder``: the first of ``NAME.tif/.tiff/.png/.csv``
    over the candidate stems ``names`` (the pair's name, then the label file's stem)."""
    folder = Path(folder)
    for stem in names:
        for suffix in CLASS_FILE_SUFFIXES:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def read_class_table(path) -> dict[int, str]:
    """``{instance id: class name}`` from a CSV with columns ``label`` and ``class``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DeepColorError(f"{path} could not be read as CSV ({exc}).") from None
    if not rows or not {"label", "class"} <= set(rows[0]):
        raise DeepColorError(f"{path} needs the columns 'label' (instance id) and 'class' (class name), "
                             "one row per instance.")
    table: dict[int, str] = {}
    for line, row in enumerate(rows, start=2):
        try:
            label = int(row["label"])
        except (TypeError, ValueError):
            raise DeepColorError(f"{path}, line {line}: label {row['label']!r} is not an instance id.") from None
        name = (row["class"] or "").strip()
        if not name:
            raise DeepColorError(f"{path}, line {line}: instance {label} has no class name.")
        if label in table and table[label] != name:
            raise DeepColorError(f"{path}: instance {label} has two classes, {table[label]!r} and {name!r}; "
                                 "give each instance one class.")
        table[label] = name
    return table


def class_image_from_table(labels: np.ndarray, table: dict, names: tuple[str, ...], *,
                           where: str = "the class table") -> np.ndarray:
    """A class image from ``{instance id: class name}``; every instance of ``labels`` must be in it."""
    index = {n: i for i, n in enumerate(names, start=1)}
    unknown = sorted({n for n in table.values() if n not in index})
    if unknown:
        raise DeepColorError(f"{where}: class(es) {', '.join(unknown)} are not among the known classes "
                             f"({', '.join(names)}); add them to {CLASS_NAMES_FILE} or fix the spelling.")
    labels = np.asarray(labels)
    present = np.unique(labels)
    missing = [int(i) for i in present if i > 0 and int(i) not in table]
    if missing:
        raise DeepColorError(f"{where}: instance(s) {_ids(missing)} have no class; give every instance "
                             "one row (label, class).")
    lookup = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    for label, name in table.items():
        if 0 < label < lookup.size:
            lookup[label] = index[name]
    return lookup[labels]


def object_classes(labels: np.ndarray, class_image: np.ndarray, n_classes: int, *,
                   where: str = "the class image") -> np.ndarray:
    """The class of every instance, ``(max_label + 1,)`` with entry 0 = 0, from a per-pixel class image.

    An instance must carry one class: pixels of class 0 inside it are allowed (a brush that missed its
    edge) as long as one class id covers the rest.

    Raises
    ------
    DeepColorError
        If an instance has two class ids, none at all, or an id above ``n_classes`` (one without a name).
    """
    labels = np.asarray(labels)
    class_image = np.asarray(class_image)
    if class_image.shape != labels.shape:
        raise DeepColorError(f"{where} has shape {class_image.shape} but the labels have shape {labels.shape}; "
                             "a class image must cover the same pixels as its label image.")
    if not np.issubdtype(class_image.dtype, np.integer):
        if not np.all(np.mod(class_image, 1) == 0):
            raise DeepColorError(f"{where} holds fractional values; class ids are whole numbers 1..K.")
        class_image = class_image.astype(np.int64)
    if class_image.min(initial=0) < 0:
        raise DeepColorError(f"{where} holds negative values; class ids are 1..K and 0 is no class.")
    inside = labels > 0
    ids, cls = labels[inside].astype(np.int64), class_image[inside].astype(np.int64)
    unnamed = sorted(set(np.unique(cls[cls > n_classes]).tolist()))
    if unnamed:
        raise DeepColorError(f"{where}: class id(s) {_ids(unnamed)} have no name (the names know "
                             f"{n_classes} class(es)); add them to {CLASS_NAMES_FILE}.")
    result = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    pairs = np.unique(np.stack([ids, cls])[:, cls > 0], axis=1)
    label_of_pair, class_of_pair = pairs
    doubled = np.unique(label_of_pair[np.r_[False, label_of_pair[1:] == label_of_pair[:-1]]])
    if doubled.size:
        first = int(doubled[0])
        found = class_of_pair[label_of_pair == first].tolist()
        raise DeepColorError(f"{where}: instance(s) {_ids(doubled.tolist())} have two or more classes "
                             f"(instance {first}: class ids {found}); give each instance one class.")
    result[label_of_pair] = class_of_pair
    present = np.unique(ids)
    unclassed = present[result[present] == 0]
    if unclassed.size:
        raise DeepColorError(f"{where}: instance(s) {_ids(unclassed.tolist())} have no class (class id 0 "
                             "on all their pixels); give every instance a class.")
    return result


def _ids(values, limit: int = 8) -> str:
    values = [int(v) for v in values]
    text = ", ".join(map(str, values[:limit]))
    return text + (f" and {len(values) - limit} more" if len(values) > limit else "")


# -- output: the class of each predicted instance ------------------------------------------

#: what is appended to a label file's stem for its class table: ``a.tif`` -> ``a_classes.csv``
CLASS_TABLE_SUFFIX = "_classes.csv"
CLASS_TABLE_FIELDS = ("label", "class", "score")


def class_table_path(label_path) -> Path:
    """Where the class table of a label file goes: ``out/a.tif`` -> ``out/a_classes.csv`` (also for ``a.zarr``)."""
    path = Path(label_path)
    return path.with_name(path.stem + CLASS_TABLE_SUFFIX)


def class_table_rows(instances, class_names) -> list[dict]:
    """One row per instance: ``label`` (1..N), ``class`` (its name) and ``score`` (the class head's confidence)."""
    if instances.classes is None:
        return []
    return [{"label": i, "class": class_names[int(c) - 1], "score": round(float(s), 4)}
            for i, (c, s) in enumerate(zip(instances.classes, instances.class_scores), start=1)]


def class_counts(instances, class_names) -> dict[str, int]:
    """How many instances each class has, every class named (0 for a class without instances)."""
    found = np.bincount(np.asarray(instances.classes, np.int64), minlength=len(class_names) + 1)
    return {name: int(found[k]) for k, name in enumerate(class_names, start=1)}


def write_class_table(path, instances, class_names, *, overwrite: bool = False) -> Path:
    """Write :func:`class_table_rows` as a CSV atomically (temporary file, then rename)."""
    from .io import atomic_write

    rows = class_table_rows(instances, class_names)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CLASS_TABLE_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write, overwrite=overwrite)
