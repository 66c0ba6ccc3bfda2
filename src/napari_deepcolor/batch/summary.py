"""The summary CSV of a batch run, and the counts a later run reads back from it."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from ..data.io import atomic_write
from .config import DONE, SKIPPED

SUMMARY_NAME = "batch_summary.csv"
SUMMARY_FIELDS = ("file", "output", "status", "objects", "seconds", "route", "error", "axes", "planes", "note")
#: models with classes add one summary column per class: ``objects_alive``, ``objects_dead``, ...
CLASS_COUNT_PREFIX = "objects_"


def earlier_counts(folder) -> dict[str, tuple[int, tuple]]:
    """``{output: (objects, class counts)}`` from the summary of the last run into ``folder``, for the
    outputs it wrote or carried over; {} when there is none (or it cannot be read)."""
    path = Path(folder) / SUMMARY_NAME
    counts = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("status") in (DONE, SKIPPED) and (row.get("objects") or "").isdigit():
                    classes = tuple((key[len(CLASS_COUNT_PREFIX):], int(value)) for key, value in row.items()
                                    if key and key.startswith(CLASS_COUNT_PREFIX) and (value or "").isdigit())
                    counts[row["output"]] = (int(row["objects"]), classes)
    except (OSError, csv.Error, KeyError, ValueError):
        return {}
    return counts


def write_summary(folder, rows) -> Path:
    """Write ``batch_summary_<timestamp>.csv`` and its copy ``batch_summary.csv`` atomically."""
    folder = Path(folder)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"batch_summary_{stamp}.csv", 1
    while path.exists():
        path, n = folder / f"batch_summary_{stamp}-{n}.csv", n + 1

    class_fields = list(dict.fromkeys(CLASS_COUNT_PREFIX + name for row in rows for name, _ in row.class_counts))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(SUMMARY_FIELDS) + class_fields)
            writer.writeheader()
            for row in rows:
                counts = {CLASS_COUNT_PREFIX + name: n for name, n in row.class_counts}
                writer.writerow({**{k: "" if getattr(row, k) is None else getattr(row, k) for k in SUMMARY_FIELDS},
                                 **{k: counts.get(k, "") for k in class_fields}})

    atomic_write(path, write)
    atomic_write(folder / SUMMARY_NAME, write, overwrite=True)
    return path
