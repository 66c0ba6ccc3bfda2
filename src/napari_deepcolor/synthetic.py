"""Procedural annotated scenes (image + instance labels) for demos, sample data and tests.

Each generator returns ``(image, labels)``: a float32 grey image with noise
and uneven illumination, and the uint16 instance labels that made it. Objects
touch and crowd the way real ones do, which is what instance methods must
handle. Pass ``seed`` for a reproducible scene.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import ellipse, polygon


def _finish(labels: np.ndarray, rng: np.random.Generator, *, brightness=1.0, blur=1.0, noise=0.08,
            texture: np.ndarray | None = None):
    foreground = (labels > 0).astype(np.float32)
    edges = ndi.morphological_gradient(labels, size=3) > 0  # darker outlines between touching objects
    image = foreground * brightness - 0.35 * edges * foreground
    if texture is not None:
        image = image * texture
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]] / max(labels.shape)
    image = ndi.gaussian_filter(image, blur) + 0.15 * (1 + np.sin(2 * yy + 3 * xx))  # uneven illumination
    image += rng.normal(0, noise, labels.shape)
    return image.astype(np.float32), labels.astype(np.uint16)


def nuclei(shape=(256, 256), *, count=40, radius=(7, 12), seed=None):
    """Round-to-oval nuclei, some touching (like fluorescence nuclei, BBBC039)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for k in range(1, count + 1):
        r0, r1 = rng.uniform(*radius, size=2)
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        rr, cc = ellipse(cy, cx, r0, r1, shape=shape, rotation=rng.uniform(0, np.pi))
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = k
    return _finish(_consecutive(labels), rng)


def bacteria(shape=(256, 256), *, count=60, length=(14, 30), width=6, seed=None):
    """Rod-shaped bacteria packed in a colony, touching end to end and side by side (like E. coli)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    centre = np.array(shape) / 2
    spread = min(shape) / 3.2
    for k in range(1, count + 1):
        cy, cx = centre + rng.normal(0, spread, 2)
        angle = rng.uniform(0, np.pi)
        half = rng.uniform(*length) / 2
        d = np.array([np.sin(angle), np.cos(angle)]) * half
        n = np.array([np.cos(angle), -np.sin(angle)]) * width / 2
        corners = np.array([[cy, cx]]) + np.array([d + n, d - n, -d - n, -d + n])
        rr, cc = polygon(corners[:, 0], corners[:, 1], shape=shape)
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = k
    return _finish(_consecutive(labels), rng, brightness=-1.0)


def worms(shape=(256, 256), *, count=12, length=(60, 110), width=7, seed=None):
    """Long bent worms that touch and cross (like C. elegans, BBBC010); crossings go to the worm on top."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for k in range(1, count + 1):
        n_steps = int(rng.uniform(*length))
        heading = rng.uniform(0, 2 * np.pi)
        turn = rng.normal(0, 0.03)
        pos = rng.uniform(0.15, 0.85, 2) * shape
        mask = np.zeros(shape, bool)
        for _ in range(n_steps):
            heading += turn + rng.normal(0, 0.05)
            pos = pos + [np.sin(heading), np.cos(heading)]
            y, x = int(round(pos[0])), int(round(pos[1]))
            if 0 <= y < shape[0] and 0 <= x < shape[1]:
                mask[y, x] = True
        mask = ndi.distance_transform_edt(~mask) <= width / 2
        labels[mask] = k
    return _finish(_consecutive(labels), rng, brightness=-0.8, blur=1.5)


def leaves(shape=(256, 256), *, count=10, seed=None):
    """A rosette of elongated leaves around a centre, overlapping like Arabidopsis (CVPPP)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    centre = np.array(shape) / 2 + rng.normal(0, 5, 2)
    size = min(shape) * 0.42
    for k, angle in enumerate(np.sort(rng.uniform(0, 2 * np.pi, count)), start=1):
        reach = size * rng.uniform(0.45, 1.0)
        tip = centre + reach * 0.55 * np.array([np.sin(angle), np.cos(angle)])
        rr, cc = ellipse(tip[0], tip[1], reach * 0.5, reach * rng.uniform(0.17, 0.25), shape=shape,
                         rotation=-angle)
        labels[rr, cc] = k  # later leaves lie on top
    texture = 0.85 + 0.15 * ndi.gaussian_filter(rng.random(shape), 3) * 4
    return _finish(_consecutive(labels), rng, texture=texture)


#: the classes of :func:`round_and_elongated`, class id k named ``TWO_CLASS_NAMES[k - 1]``
TWO_CLASS_NAMES = ("round", "elongated")


def round_and_elongated(shape=(256, 256), *, count=30, seed=None):
    """Two classes of objects: round bright discs (class 1) and elongated dimmer rods (class 2).

    Returns ``(image, labels, classes)``: ``classes`` is the per-pixel class id of each object
    (0 on background), named by :data:`TWO_CLASS_NAMES`. The classes differ in shape and in
    brightness (1.0 against 0.55), so that a small model learns them in a few hundred steps;
    objects touch as in the other scenes.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    kind = np.zeros(count + 1, np.int32)
    for k in range(1, count + 1):
        kind[k] = 1 + int(rng.random() < 0.5)
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        radii = (rng.uniform(7, 10),) * 2 if kind[k] == 1 else (rng.uniform(4, 5), rng.uniform(14, 18))
        rr, cc = ellipse(cy, cx, *radii, shape=shape, rotation=rng.uniform(0, np.pi))
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = k
    brightness = np.where(kind == 2, 0.55, 1.0)[labels]
    image, _ = _finish(labels, rng, texture=np.where(labels > 0, brightness, 1.0))
    ids = np.unique(labels)
    ids = ids[ids > 0]
    consecutive = _consecutive(labels)
    classes = np.zeros(ids.size + 1, np.int32)
    classes[1:] = kind[ids]
    return image, consecutive.astype(np.uint16), classes[consecutive].astype(np.uint8)


def _consecutive(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lookup = np.zeros(labels.max() + 1, np.int32)
    lookup[ids] = np.arange(1, ids.size + 1)
    return lookup[labels]


SCENES = {"nuclei": nuclei, "bacteria": bacteria, "worms": worms, "leaves": leaves}
