"""Peak memory and time of segmenting one image larger than memory (the batch's out-of-core route).

    python benchmarks/large_image.py --size 16384            # the 268-megapixel benchmark
    python benchmarks/large_image.py --size 4096 --threads 2 # a quick look

A synthetic grey image (bright discs on a smooth background, uint16) is written
as a tiled, zlib-compressed TIFF without ever holding it in memory, then
segmented by ``napari_deepcolor.batch`` in a child process: read window by
window, predicted tile by tile into a scratch zarr store, decoded block by
block. Peak memory is the child's maximum resident set size
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), cross-checked by sampling
the child's process tree with psutil. The net is a tiny random-weight U-Net
(depth 2, width 8, 9 colours) unless ``--model`` names a trained one: the
memory and the I/O do not depend on the weights; the time does, through the
net's size. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def write_synthetic_tiff(path: Path, size: int, *, tile: int = 512, seed: int = 0) -> None:
    """A (size, size) uint16 tiled TIFF of discs, generated tile by tile (bounded memory)."""
    import tifffile

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:tile, :tile]

    def tiles():
        for _ in range((-(-size // tile)) ** 2):
            image = 200 + 20 * rng.standard_normal((tile, tile))
            for cy, cx, r in zip(*rng.integers(12, tile - 12, (2, 12)), rng.integers(5, 12, 12)):
                image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += 800
            yield np.clip(image, 0, 65535).astype(np.uint16)

    tifffile.imwrite(path, tiles(), shape=(size, size), dtype=np.uint16, tile=(tile, tile), compression="zlib",
                     photometric="minisblack", bigtiff=True)


def child(args) -> None:
    """Run the batch on the folder and print its result as JSON (run in a fresh process)."""
    import torch

    torch.set_num_threads(args.threads)
    from napari_deepcolor.batch import Batch, BatchConfig, BatchFinished

    config = BatchConfig(model=args.model, input=args.input, output=args.output, tile_size=args.tile_size,
                         large_image_megapixels=args.large_image_mp, device=args.device, overwrite=True)
    for event in Batch(config).run():
        if isinstance(event, BatchFinished):
            print(json.dumps([r.__dict__ for r in event.results]))


def tiny_model(path: Path) -> str:
    import torch

    from napari_deepcolor.checkpoint import new_model, save_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = new_model("coloring", {}, {"depth": 2, "width": 8}, in_channels=1)
    return str(save_model(model, path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=16384, help="image side in pixels (default 16384)")
    parser.add_argument("--model", default=None, help="model file (default: a tiny random-weight coloring net)")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--large-image-mp", type=float, default=16.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the child (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", default=None, help="where to put the image and labels (default: a temp dir)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="large_image_"))
    (work / "in").mkdir(parents=True, exist_ok=True)
    image = work / "in" / f"synthetic_{args.size}.tif"
    started = time.perf_counter()
    if not image.exists():
        write_synthetic_tiff(image, args.size)
    written = time.perf_counter() - started
    model = args.model or tiny_model(work / "tiny.safetensors")
    command = [sys.executable, __file__, "--child", "--model", model, "--input", str(work / "in"),
               "--output", str(work / "out"), "--tile-size", str(args.tile_size), "--threads", str(args.threads),
               "--large-image-mp", str(args.large_image_mp), "--device", args.device]
    peak_sampled = [0]

    def sample(process):
        try:
            import psutil
        except ImportError:
            return
        parent = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
                peak_sampled[0] = max(peak_sampled[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    sampler = threading.Thread(target=sample, args=(process,), daemon=True)
    sampler.start()
    out, _ = process.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
    if process.returncode:
        sys.exit(f"the batch failed with status {process.returncode}")
    row = json.loads(out.strip().splitlines()[-1])[0]
    labels = work / "out" / row["output"]
    megapixels = args.size ** 2 / 1e6
    net = args.model or "tiny random-weight U-Net (depth 2, width 8, 9 colours)"
    print(f"\n{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, device {args.device}; "
          f"net: {net}\n")
    print("| image | route | status | objects | time (s) | MP/s | peak RSS (GB) | peak RSS sampled, tree (GB) | label file (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.size}x{args.size} ({megapixels:.0f} MP, uint16, tiled TIFF) | {row['route']} | {row['status']} "
          f"| {row['objects']} | {seconds:.0f} | {megapixels / seconds:.2f} | {peak / 1e9:.2f} "
          f"| {peak_sampled[0] / 1e9:.2f} | {labels.stat().st_size / 1e6 if labels.is_file() else float('nan'):.0f} |")
    print(f"\n(writing the synthetic input took {written:.0f} s; work folder {work})")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
