"""Does a training step of the default net get faster on a CPU with channels-last, torch.compile or batch norm?

    python benchmarks/probes/cpu_step_layout.py --steps 12 --threads 2

Issue 31 lists the channels-last layout and ``torch.compile`` among the recipe candidates "where they
measure faster on CPU", and batch norm (Cellpose's) against our group norm. This times what they change,
one training step of the default recipe (batch 4 of 256 px, one input channel, the baseline's 3 outputs,
cross-entropy, Adam), on random data: forward, backward and the optimiser, nothing of the data pipeline.
Medians over ``--steps`` steps after 3 warm-up steps (compilation happens in the warm-up and is reported
apart). The ``inference`` variants time one 1024 x 1024 tile through the net in eval mode instead. One JSON
line per variant, with the ratio to ``default`` (``inference`` for the inference variants).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from napari_deepcolor.nets.unet import NetConfig, build_net

VARIANTS = {
    "default": {},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "compile_channels_last": {"compile": True, "channels_last": True},
    "batch_norm": {"norm": "batch"},
    "batch_norm_channels_last": {"norm": "batch", "channels_last": True},
    "inference": {"inference": True},
    "inference_channels_last": {"inference": True, "channels_last": True},
}


def time_variant(steps: int, norm: str = "group", channels_last: bool = False, compile: bool = False,
                 inference: bool = False) -> dict:
    torch.manual_seed(0)
    net = build_net(NetConfig(in_channels=1, out_channels=3, norm=norm))
    if inference:  # one 1024 px tile through the net in eval mode, as predict runs it
        return time_inference(net, steps, channels_last)
    images = torch.randn(4, 1, 256, 256)
    target = torch.randint(0, 3, (4, 256, 256))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    forward = torch.compile(net) if compile else net
    warmup, times = [], []
    for step in range(steps + 3):
        t0 = time.perf_counter()
        loss = F.cross_entropy(forward(images), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        (warmup if step < 3 else times).append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 4), "warmup_s": round(sum(warmup), 2)}


def time_inference(net, steps: int, channels_last: bool) -> dict:
    image = torch.randn(1, 1, 1024, 1024)
    net = net.eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            net(image).softmax(dim=1)
            times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times[1:]), 4), "warmup_s": round(times[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = None
    for name in args.variants:
        try:
            row = time_variant(args.steps, **VARIANTS[name])
        except Exception as error:  # noqa: BLE001  (a variant that fails to compile is a result too)
            row = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
        if name in ("default", "inference"):
            base = row.get("median_s")
        if base and "median_s" in row:
            row["ratio_to_default"] = round(row["median_s"] / base, 3)
        print(json.dumps({"variant": name, "threads": args.threads, "torch": torch.__version__, **row}), flush=True)


if __name__ == "__main__":
    main()
