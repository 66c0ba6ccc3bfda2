"""Files per minute of ``napari-deepcolor batch`` on a folder of 512x512 images: in process, 1 and 2 dask workers.

    python benchmarks/batch_throughput.py --files 64 --workers 0 1 2

``0`` workers is the default executor (one file at a time in this process, no
cluster); N > 0 is a dask LocalCluster of N processes with one thread each.
Reported: the whole run (cluster start-up included) and the rate once the
executor is up (from the BatchStarted event to the end). The in-process run
uses ``--threads`` torch threads (default 1, like each dask worker). The net is
a tiny random-weight U-Net (depth 2, width 8, 9 colours) unless ``--model``
names a trained one. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def make_folder(folder: Path, files: int, size: int) -> None:
    import tifffile
    from scipy import ndimage as ndi

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(files):
        image = ndi.gaussian_filter(rng.random((size, size)), 4) * 60000
        tifffile.imwrite(folder / f"image_{i:04d}.tif", image.astype(np.uint16))


def run(config) -> tuple[float, float, int]:
    """(total seconds, seconds after the executor was up, files done)."""
    from napari_deepcolor.batch import Batch, BatchFinished, BatchStarted

    started = time.perf_counter()
    up = started
    for event in Batch(config).run():
        if isinstance(event, BatchStarted):
            up = time.perf_counter()
        elif isinstance(event, BatchFinished):
            done = event.count("done")
    end = time.perf_counter()
    return end - started, end - up, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="0 = in process (default executor)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the in-process run (default 1)")
    parser.add_argument("--model", default=None, help="model file (default: a tiny random-weight coloring net)")
    args = parser.parse_args()

    import torch

    from napari_deepcolor.batch import BatchConfig

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="batch_throughput_"))
    try:
        make_folder(work / "in", args.files, args.size)
        model = args.model
        if model is None:
            from napari_deepcolor.checkpoint import new_model, save_model

            with torch.random.fork_rng():
                torch.manual_seed(0)
                model = str(save_model(new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1),
                                       work / "tiny.safetensors"))
        rows = []
        for workers in args.workers:
            config = BatchConfig(model=model, input=str(work / "in"), output=str(work / f"out_{workers}"),
                                 workers=workers or None, device="cpu")
            total, steady, done = run(config)
            name = f"in process ({args.threads} torch thread{'s' * (args.threads > 1)})" if not workers else \
                f"LocalCluster, {workers} worker{'s' * (workers > 1)} x 1 thread"
            rows.append(f"| {name} | {done} | {total:.1f} | {60 * done / total:.0f} | {total - steady:.1f} "
                        f"| {60 * done / steady:.0f} |")
        net = "tiny random-weight U-Net (depth 2, width 8, 9 colours)" if args.model is None else args.model
        print(f"\n{platform.machine()}, {os.cpu_count()} CPUs; {args.files} images of {args.size}x{args.size} "
              f"uint16; net: {net}\n")
        print("| executor | files | total (s) | files/min | start-up (s) | files/min after start-up |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
