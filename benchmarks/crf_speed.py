"""Cost of the instance CRF refinement in ms per megapixel, on synthetic nuclei images.

    python benchmarks/crf_speed.py --threads 1

Times :func:`napari_deepcolor.refine.crf.refine_instances` (building the
potentials plus mean field, default parameters) on 1024 x 1024 images with a
growing number of objects, since the number of slots, and so the cost, grows
with how densely the objects pack. Times are CPU time of this process
(time.process_time), so that other work on a shared machine does not inflate
them. Prints a JSON line per setting and writes benchmarks/results/crf_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_deepcolor import synthetic
from napari_deepcolor.methods.base import Instances
from napari_deepcolor.refine.crf import CrfParameters, build_problem, refine_instances


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for count in (50, 200, 600):
        image, labels = synthetic.nuclei((args.size, args.size), count=count, radius=(7, 12), seed=0)
        foreground = ndi.gaussian_filter((labels > 0).astype(np.float32), 1.0)
        instances = Instances(labels, np.full(int(labels.max()), 0.9, np.float32))
        problem = build_problem(instances, foreground, image, CrfParameters())
        times = []
        for _ in range(args.repeats):
            t = time.process_time()
            refine_instances(instances, foreground, image)
            times.append(time.process_time() - t)
        megapixels = labels.size / 1e6
        row = {"objects": instances.count, "slots": problem.n_slots, "megapixels": megapixels,
               "ms_per_megapixel": round(1e3 * float(np.median(times)) / megapixels, 1)}
        rows.append(row)
        print(json.dumps(row))
    result = {"parameters": CrfParameters().to_dict(), "rows": rows,
              "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                         f"{args.threads} thread(s)"}
    out = Path(__file__).parent / "results" / "crf_speed.json"
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
