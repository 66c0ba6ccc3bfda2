"""Where a training step's time goes, per method: sampling + targets, forward, loss, backward + Adam.

    python benchmarks/step_time.py --dataset usiigaci --methods boundary coloring metric --steps 10
    python benchmarks/step_time.py --dataset ecoli_synth --methods metric --option seed_targets=100000

The recipe of ``train`` (batch 4, 256 px patches, objects at the net's scale) on the training images of
accuracy.py's split, one thread. Medians over ``--steps`` steps after two warm-up steps; one JSON line per
method.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from accuracy import DATASETS, method_options, split
from napari_deepcolor.methods import get_method
from napari_deepcolor.training import Training, TrainingConfig, _PatchBatches

STAGES = ("data", "forward", "loss", "backward")


def step_times(dataset: str, method_name: str, steps: int, method_options: dict | None = None) -> dict:
    data = split(dataset, TrainingConfig.validation_fraction, 0)
    config = TrainingConfig(method=method_name, method_options=method_options or {}, iterations=steps, batch_size=4)
    training = Training(config, data.train, validation=data.validation)
    model = training.model = training._initial_model(torch.device("cpu"))
    method, options = get_method(method_name), model.method_options
    batches = iter(_PatchBatches(training._at_net_scale(model), method, options, config, seed=0))
    optimizer = torch.optim.Adam(model.net.parameters(), lr=1e-3)
    times = {stage: [] for stage in STAGES}
    for step in range(steps + 2):
        t0 = time.perf_counter()
        images, targets = next(batches)
        t1 = time.perf_counter()
        raw = model.net(images)
        t2 = time.perf_counter()
        loss = method.loss(raw[:, :model.method_channels], targets, options)
        t3 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t4 = time.perf_counter()
        if step >= 2:
            for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[stage].append(seconds)
    medians = {stage: round(float(np.median(v)), 3) for stage, v in times.items()}
    return {"dataset": dataset, "method": method_name, "options": method_options or {}, "steps": steps,
            "median_seconds": medians, "step_seconds": round(sum(medians.values()), 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--methods", nargs="+", default=["boundary", "coloring", "metric", "semiconv", "dcme"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a training option of the (single) method, e.g. --option seed_targets=100000")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = method_options(args.option)
    for name in args.methods:
        print(json.dumps(step_times(args.dataset, name, args.steps, options)), flush=True)


if __name__ == "__main__":
    main()
