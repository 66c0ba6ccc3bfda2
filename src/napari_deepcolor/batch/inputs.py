"""Which files a batch segments, what their outputs are called, and the temporaries a killed run left."""

from __future__ import annotations

import logging
import os
import re
import shutil
from fnmatch import fnmatch
from pathlib import Path

from .config import DEFAULT_PATTERNS

log = logging.getLogger(__name__)

#: prefix of the scratch folders of the out-of-core route (inside the output folder)
SCRATCH_PREFIX = ".batch-scratch-"
#: names of the temporaries of atomic writes (``.NAME.RANDOM.part[.SUFFIX]``) and replaced stores
_TEMPORARY = re.compile(r"^\..+\.part(\.[A-Za-z0-9]+)?$|^\..+\.[0-9a-f]{8}\.old$")


def find_inputs(folder, patterns=DEFAULT_PATTERNS, *, recursive: bool = False, exclude=()) -> list[Path]:
    """Image files (and ``.zarr`` folders) in ``folder`` whose names match one of ``patterns``.

    Hidden names are skipped, matching folders are not searched, symbolic links
    to folders are not followed and folders in ``exclude`` are left out.
    """
    folder = Path(folder)
    excluded = {os.path.realpath(p) for p in exclude}
    found = []
    for root, dirs, files in os.walk(folder):
        root = Path(root)
        searched = []
        for name in sorted(dirs):
            path = root / name
            if name.startswith(".") or os.path.realpath(path) in excluded:
                continue
            if _matches(name, patterns):
                found.append(path)
            elif recursive and not name.lower().endswith(".zarr"):  # a store's chunks are not images
                searched.append(name)
        dirs[:] = searched
        found += [root / name for name in files if not name.startswith(".") and _matches(name, patterns)]
    return sorted(found)


def _matches(name: str, patterns) -> bool:
    return any(fnmatch(name.lower(), pattern.lower()) for pattern in patterns)


def output_name(name: str, fmt: str) -> str:
    """``cells.ome.tif`` -> ``cells.tif`` (or ``cells.zarr``): the label file of an input."""
    stem = Path(name).stem
    if stem.lower().endswith(".ome"):
        stem = stem[:-4]
    return f"{stem}.{fmt}"


def _inside(path: Path, folder: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, base]) == base


def clean_stale_temporaries(folder) -> list[Path]:
    """Remove the temporary files and scratch folders a killed run left in ``folder`` (recursively)."""
    removed = []
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            if name.startswith(SCRATCH_PREFIX) or _TEMPORARY.match(name):
                path = Path(root) / name
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.lower().endswith(".zarr")]
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run in %s", len(removed), folder)
    return removed
