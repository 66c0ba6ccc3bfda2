"""Inference time per megapixel and peak memory for a 4096x4096 image (tiled).

    python benchmarks/inference_speed.py [--device cpu|cuda] [--threads 2] [--default-layout]

Uses the default coloring net (U-Net depth 4, width 16 on CPU, 32 on GPU,
random weights: speed does not depend on them). Peak memory is the process's
maximum resident set size (ru_maxrss) measured after the large image, and on
CUDA also torch.cuda.max_memory_allocated. ``--default-layout`` runs the net in PyTorch's default memory
layout instead of channels-last (what inference used on a CPU before session 13), for the A/B.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch

from napari_deepcolor.checkpoint import new_model
from napari_deepcolor.device import resolve_device
from napari_deepcolor import inference
from napari_deepcolor.inference import predict
from napari_deepcolor.nets import NetConfig


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", type=int, default=4096)
    parser.add_argument("--default-layout", action="store_true")
    args = parser.parse_args()
    if args.default_layout:
        inference.memory_format = lambda device: torch.contiguous_format
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = new_model("coloring", {}, {"width": NetConfig.default_width(str(device))}, in_channels=1)
    rng = np.random.default_rng(0)
    image = rng.random((1024, 1024)).astype(np.float32)
    predict(model, image[:256, :256], device=device)  # warm-up
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predict(model, image, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    per_mp = float(np.median(times)) / (image.size / 1e6)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    large = rng.random((args.large, args.large)).astype(np.float32)
    t = time.perf_counter()
    prediction = predict(model, large, device=device)
    labels = prediction.decode().labels
    large_seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else platform.machine()}), "
          f"torch threads {torch.get_num_threads()}, net width {model.net_config.width}, "
          f"{'default' if args.default_layout else 'channels-last'} layout")
    print("| measure | value |")
    print("|---|---|")
    print(f"| inference, seconds per megapixel (median of {args.repeats}, 1024x1024) | {per_mp:.2f} |")
    print(f"| {args.large}x{args.large}: predict + decode, seconds | {large_seconds:.1f} |")
    print(f"| {args.large}x{args.large}: peak resident memory, MB (before it: {rss_before:.0f}) | {peak:.0f} |")
    if device.type == "cuda":
        print(f"| {args.large}x{args.large}: peak GPU memory, MB | {torch.cuda.max_memory_allocated() / 2**20:.0f} |")
    assert labels.shape == large.shape


if __name__ == "__main__":
    main()
