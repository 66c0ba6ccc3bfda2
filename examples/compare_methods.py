"""Compare the methods (coloring, boundary, semiconv, dcme, metric) on one dataset, with the package's metrics.

What it shows: the method registry (``napari_deepcolor.methods.method_names``), one
``TrainingConfig`` per method with the same net, patches and budget, and a table of
``evaluate`` scores (AP over IoU 0.5:0.95, F1@0.5, SBD, |DiC|, ...) on held-out images, each
method decoded with the parameters tuned on its own validation split.

How long: about 2.5 minutes on a CPU with the defaults (30 s of training per method on the bundled
BBBC039 image, scored on the second bundled image). Such short runs rank the methods only
roughly: see docs/benchmarks.md for 15-minute runs. With ``--data`` every 5th image of the
folder is held out and scored.

    python examples/compare_methods.py
    python examples/compare_methods.py --data ../shared/data/bbbc039 --minutes 5
    python examples/compare_methods.py --methods coloring boundary --iterations 2   # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.resources import files
from pathlib import Path

import torch

from napari_deepcolor.data import read_annotated_folder
from napari_deepcolor.inference import predict
from napari_deepcolor.methods import method_names
from napari_deepcolor.metrics import evaluate, format_table, summarize
from napari_deepcolor.training import TrainingConfig, train

BUNDLED = files("napari_deepcolor") / "sample_data"
COLUMNS = ("ap", "ap50", "f1", "sbd", "abs_dic", "matching_iou")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="an annotated dataset folder (default: the two bundled BBBC039 images)")
    parser.add_argument("--methods", nargs="+", default=method_names(), choices=method_names(),
                        help="methods to compare (default: all)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=0.5, help="training budget per method (default 0.5)")
    budget.add_argument("--iterations", type=int, default=None, help="budget per method in iterations instead")
    parser.add_argument("--halo-margin", type=int, default=12, help="coloring's m in px, about one object diameter")
    parser.add_argument("--depth", type=int, default=4, help="U-Net depth, the same for every method (default 4)")
    parser.add_argument("--width", type=int, default=16, help="U-Net width (default 16)")
    parser.add_argument("--no-tune", action="store_true",
                        help="skip tuning the decode parameters on validation (faster; uses each method's defaults)")
    parser.add_argument("--output", type=Path, default=None, help="folder to keep the models in (default: none)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def split(folder: Path | None):
    if folder is None:
        return (read_annotated_folder(BUNDLED / "bbbc039_A02_s1.tif", BUNDLED / "bbbc039_A02_s1_masks.tif"),
                read_annotated_folder(BUNDLED / "bbbc039_A09_s1.tif", BUNDLED / "bbbc039_A09_s1_masks.tif"))
    samples = read_annotated_folder(folder)
    return ([s for i, s in enumerate(samples) if i % 5 != 4], [s for i, s in enumerate(samples) if i % 5 == 4])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_data, test_data = split(args.data)
    budget = {"iterations": args.iterations} if args.iterations else {"minutes": args.minutes}
    results = []
    for method in args.methods:
        options = {"halo_margin": args.halo_margin} if method == "coloring" else {}
        config = TrainingConfig(method=method, method_options=options, net={"depth": args.depth, "width": args.width},
                                patch_size=192, batch_size=4,
                                device=args.device, seed=0, tune_decode=not args.no_tune, **budget)
        output = None if args.output is None else args.output / f"{method}.safetensors"
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
        print(f"training {method} ({budget}) ...", flush=True)
        t0 = time.perf_counter()
        finished = train(config, train_data, output=output)
        seconds = time.perf_counter() - t0
        rows = [evaluate(s.labels, predict(finished.model, s.image, device=args.device).decode().labels)
                for s in test_data]
        mean = summarize([{"name": s.name, **row} for s, row in zip(test_data, rows)])
        results.append({"name": method, "iterations": finished.iteration, "train_s": round(seconds),
                        **{k: mean[k] for k in COLUMNS}})
    decoded = "default decode parameters" if args.no_tune else "decode parameters tuned on each validation split"
    print(f"\nheld-out images: {len(test_data)}; {decoded}")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
