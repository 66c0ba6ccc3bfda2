"""Decode speed of deep coloring and the 3-class baseline from a cached output.

A synthetic 1024x1024 scene with ~300 touching nuclei; the output is the
one-hot colour map of a greedy graph colouring of the objects (what a trained
net converges to), softened and with 2 % of pixels flipped to random colours
(noise a real net leaves). Reports medians over repeats, in milliseconds:

* full decode (fresh cache): argmax, components, size threshold;
* size threshold changed only (cache hit on the components stage): a slider move;
* merge radius 8 px changed (cache hit on components);
* the same with a semantic head (the paper's fusion decode, sec. 4.3), whose
  3 classes are made from the colours: full, size threshold, interior threshold;
* the 3-class baseline on those 3 classes: full, size threshold, foreground threshold.

    python benchmarks/decode_speed.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from napari_deepcolor import synthetic
from napari_deepcolor.methods import get_method


def coloured_output(labels: np.ndarray, n_colors: int = 9, seed: int = 0) -> np.ndarray:
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(seed)
    n = labels.max()
    # adjacency by dilation: objects that touch or nearly touch get different colours
    from scipy import ndimage as ndi

    grown = ndi.grey_dilation(labels, size=5)
    pairs = np.unique(np.stack([labels.ravel(), grown.ravel()], 1), axis=0)
    pairs = pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0) & (pairs[:, 0] != pairs[:, 1])]
    colour = np.zeros(n + 1, int)
    for k in range(1, n + 1):
        used = set(colour[pairs[pairs[:, 0] == k, 1]])
        colour[k] = next(c for c in range(1, n_colors) if c not in used)
    colours = colour[labels]
    colours[find_boundaries(labels, mode="inner")] = 0
    flip = rng.random(labels.shape) < 0.02
    colours[flip] = rng.integers(0, n_colors, flip.sum())
    out = np.full((n_colors, *labels.shape), 0.05 / (n_colors - 1), np.float32)
    np.put_along_axis(out, colours[None], 0.95, axis=0)
    return out


def median_ms(fn, repeats):
    """Median CPU time of ``fn`` (one thread): what a free core takes, however loaded the machine is."""
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return 1000 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    _, labels = synthetic.nuclei((1024, 1024), count=330, radius=(14, 22), seed=0)
    output = coloured_output(labels)
    method = get_method("coloring")
    n = method.decode(output, size_threshold=20).count
    full = median_ms(lambda: method.decode(output, cache={}, size_threshold=20), args.repeats)
    cache = {}
    method.decode(output, cache=cache, size_threshold=20)
    values = iter(np.tile([10, 30, 50, 70], args.repeats))
    threshold = median_ms(lambda: method.decode(output, cache=cache, size_threshold=int(next(values))), args.repeats)
    radii = iter(np.tile([8, 0], args.repeats))
    merge = median_ms(lambda: method.decode(output, cache=cache, size_threshold=20, merge_radius=float(next(radii))),
                      args.repeats)

    boundary = get_method("boundary")
    three = np.stack([output[0], output[1:].sum(0) * 0.9, output[1:].sum(0) * 0.1]).astype(np.float32)
    b_full = median_ms(lambda: boundary.decode(three, cache={}), args.repeats)
    cache = {}
    boundary.decode(three, cache=cache)
    values = iter(np.tile([10, 30, 50, 70], args.repeats))
    b_threshold = median_ms(lambda: boundary.decode(three, cache=cache, size_threshold=int(next(values))), args.repeats)
    foregrounds = iter(np.tile([0.5, 0.7], args.repeats))
    b_foreground = median_ms(lambda: boundary.decode(three, cache=cache, foreground_threshold=float(next(foregrounds))),
                             args.repeats)

    options = method.options({"n_colors": output.shape[0], "semantic_head": True})
    fused = np.concatenate([output, three])
    f_full = median_ms(lambda: method.decode(fused, cache={}, options=options, size_threshold=20), args.repeats)
    cache = {}
    method.decode(fused, cache=cache, options=options, size_threshold=20)
    values = iter(np.tile([10, 30, 50, 70], args.repeats))
    f_threshold = median_ms(lambda: method.decode(fused, cache=cache, options=options,
                                                  size_threshold=int(next(values))), args.repeats)
    interiors = iter(np.tile([0.4, 0.6], args.repeats))
    f_interior = median_ms(lambda: method.decode(fused, cache=cache, options=options, size_threshold=20,
                                                 interior_threshold=float(next(interiors))), args.repeats)

    print(f"machine: {platform.machine()}, {__import__('os').cpu_count()} cores; 1024x1024, {n} objects; "
          f"median of {args.repeats}")
    print("| decode | median ms |")
    print("|---|---|")
    print(f"| coloring, full (fresh cache) | {full:.1f} |")
    print(f"| coloring, size threshold changed (cached components) | {threshold:.1f} |")
    print(f"| coloring, merge radius 8 px <-> 0 (cached components) | {merge:.1f} |")
    print(f"| coloring + semantic head, full (fresh cache) | {f_full:.1f} |")
    print(f"| coloring + semantic head, size threshold changed | {f_threshold:.1f} |")
    print(f"| coloring + semantic head, interior threshold changed | {f_interior:.1f} |")
    print(f"| 3-class baseline, full | {b_full:.1f} |")
    print(f"| 3-class baseline, size threshold changed | {b_threshold:.1f} |")
    print(f"| 3-class baseline, foreground threshold 0.5 <-> 0.7 (the seeds grown again) | {b_foreground:.1f} |")


if __name__ == "__main__":
    main()
