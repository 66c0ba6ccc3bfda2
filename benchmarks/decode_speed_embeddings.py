"""Decode speed of the embedding methods (semiconv, dcme, metric) on a synthetic 512 x 512 image.

The image holds 100 disks (radius 12-22 px) on a jittered grid; each method's
"ideal" net output for it is built by hand, with noise, so that the decoders
do real work (spurious seeds, boundary pixels). Prints the median over
repeats of a fresh decode (every stage) and of a slider move (only the last
stage recomputed from the cache), plus how many objects came back and the
AP against the ground truth.

    python benchmarks/decode_speed_embeddings.py [--repeats 7] [--size 512]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from napari_deepcolor.methods import get_method
from napari_deepcolor.methods.dcme import centre_of_mass_displacement
from napari_deepcolor.methods.embedding import PIXELS_PER_UNIT
from napari_deepcolor.metrics import evaluate


def disks(size: int, rng) -> np.ndarray:
    """About 100 disks on a jittered 10 x 10 grid (fewer if ``size`` is small)."""
    labels = np.zeros((size, size), np.int32)
    step = size // 10
    yy, xx = np.mgrid[:size, :size]
    k = 0
    for cy in range(step // 2, size, step):
        for cx in range(step // 2, size, step):
            r = rng.uniform(min(12, step / 4), min(22, step / 2 - 1))
            y, x = cy + rng.uniform(-3, 3), cx + rng.uniform(-3, 3)
            k += 1
            labels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = k
    return labels


def semiconv_output(labels, rng, dims=8):
    displacement = centre_of_mass_displacement(labels) / PIXELS_PER_UNIT
    fg = labels > 0
    appearance = rng.normal(size=(labels.max() + 1, dims - 2)).astype(np.float32)[labels].transpose(2, 0, 1)
    phi = np.concatenate([displacement, appearance]) + rng.normal(0, 0.03, (dims,) + labels.shape)
    sigma = np.full(labels.shape, 0.3)
    foreground = np.clip(fg + rng.normal(0, 0.2, labels.shape), 0, 1)
    seediness = np.where(fg, 0.9 - 0.5 * np.hypot(*displacement), 0.1) + rng.normal(0, 0.05, labels.shape)
    return np.concatenate([phi, sigma[None], foreground[None], np.clip(seediness, 0, 1)[None]]).astype(np.float32)


def dcme_output(labels, rng):
    displacement = centre_of_mass_displacement(labels) + rng.normal(0, 1.0, (2,) + labels.shape)
    foreground = np.clip((labels > 0) + rng.normal(0, 0.2, labels.shape), 0, 1)
    return np.concatenate([displacement, foreground[None]]).astype(np.float32)


def metric_output(labels, rng, dims=8):
    centres = rng.normal(0, 3, size=(labels.max() + 1, dims)).astype(np.float32)
    embedding = centres[labels].transpose(2, 0, 1) + rng.normal(0, 0.1, (dims,) + labels.shape)
    # with this noise, masks at tau = 0.25 and 0.5 are good, at 0.75 and 0.9 too small
    good = np.where(labels > 0, np.array([0.9, 0.9, 0.3, 0.1])[:, None, None], 0.05)
    classification = np.clip(good + rng.normal(0, 0.05, (4,) + labels.shape), 0, 1)
    foreground = (labels > 0)[None].astype(np.float32)
    return np.concatenate([embedding, classification, foreground]).astype(np.float32)


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    labels = disks(args.size, rng)
    outputs = {"semiconv": semiconv_output(labels, rng), "dcme": dcme_output(labels, rng),
               "metric": metric_output(labels, rng)}
    slider = {"semiconv": "size_threshold", "dcme": "size_threshold", "metric": "size_threshold"}
    print(f"{args.size} x {args.size}, {labels.max()} objects, median of {args.repeats}")
    print(f"{'method':<10}{'fresh decode ms':>17}{'slider ms':>11}{'found':>7}{'AP':>7}")
    for name, output in outputs.items():
        method = get_method(name)
        instances = method.decode(output)
        fresh = median_seconds(lambda: method.decode(output), args.repeats)
        cache = {}
        method.decode(output, cache=cache)
        values = iter([10, 30] * args.repeats)
        moved = median_seconds(lambda: method.decode(output, cache=cache, **{slider[name]: next(values)}),
                               args.repeats)
        ap = evaluate(labels, instances.labels)["ap"]
        print(f"{name:<10}{fresh * 1e3:>17.1f}{moved * 1e3:>11.1f}{instances.count:>7}{ap:>7.3f}")


if __name__ == "__main__":
    main()
