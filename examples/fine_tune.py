"""Fine-tune an existing model on a few new annotations and compare the scores before and after.

What it shows: starting a training from a model file (``Training(..., init_from=MODEL)``, the
CLI's ``--fine-tune`` and the Train widget's *Start from: a model file*) with a lower learning
rate, then scoring both models on images neither was trained on, with the package's metrics.

How long: about 2 minutes on a CPU with the defaults. Without ``--model`` a "pretrained" model is
first trained for a minute on synthetic nuclei (``napari_deepcolor.synthetic``), standing in for
a model trained on someone else's data; it is then fine-tuned for a minute on the bundled real
BBBC039 image and both are scored on the second bundled image. With ``--data`` the first
``--shots`` images of that folder are the new annotations and every 5th image is scored.

    python examples/fine_tune.py
    python examples/fine_tune.py --model cells.safetensors --data ../shared/data/bbbc039 --shots 3
    python examples/fine_tune.py --iterations 2 --output /tmp/out   # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from importlib.resources import files
from pathlib import Path

import torch

from napari_deepcolor import synthetic
from napari_deepcolor.data import from_arrays, read_annotated_folder
from napari_deepcolor.inference import predict
from napari_deepcolor.metrics import evaluate, format_table, summarize
from napari_deepcolor.models import load_model
from napari_deepcolor.training import TrainingConfig, train

BUNDLED = files("napari_deepcolor") / "sample_data"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="the model to fine-tune (default: train a stand-in on synthetic nuclei first)")
    parser.add_argument("--data", type=Path, default=None,
                        help="an annotated dataset folder (default: the two bundled BBBC039 images)")
    parser.add_argument("--shots", type=int, default=2, help="with --data: how many annotated images to fine-tune on")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=1.0, help="budget of each training (default 1 minute)")
    budget.add_argument("--iterations", type=int, default=None, help="budget in iterations instead")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="fine-tuning learning rate (default: the package's for fine-tuning, 1e-4)")
    parser.add_argument("--output", type=Path, default=Path("deepcolor-fine-tune"), help="folder for the models")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def new_annotations(args):
    """(a few annotated images to fine-tune on, held-out annotated images to score on)."""
    if args.data is None:
        return (read_annotated_folder(BUNDLED / "bbbc039_A02_s1.tif", BUNDLED / "bbbc039_A02_s1_masks.tif"),
                read_annotated_folder(BUNDLED / "bbbc039_A09_s1.tif", BUNDLED / "bbbc039_A09_s1_masks.tif"))
    samples = read_annotated_folder(args.data)
    held_out = [s for i, s in enumerate(samples) if i % 5 == 4]
    rest = [s for i, s in enumerate(samples) if i % 5 != 4]
    return rest[: args.shots], held_out


def pretrained_stand_in(path: Path, budget: dict, device: str) -> Path:
    scenes = [synthetic.nuclei((256, 256), count=45, radius=(8, 13), seed=seed) for seed in range(6)]
    data = from_arrays([image for image, _ in scenes], [labels for _, labels in scenes])
    config = TrainingConfig(method="coloring", method_options={"halo_margin": 12}, patch_size=192, batch_size=4,
                            device=device, **budget)
    print(f"no --model: training a stand-in on synthetic nuclei ({budget}) ...")
    train(config, data, output=path)
    return path


def score(model, samples, device) -> dict:
    rows = [{"name": s.name, **evaluate(s.labels, predict(model, s.image, device=device).decode().labels)}
            for s in samples]
    return summarize(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    budget = {"iterations": args.iterations} if args.iterations else {"minutes": args.minutes}
    base_path = args.model or pretrained_stand_in(args.output / "pretrained.safetensors", budget, args.device)
    few, held_out = new_annotations(args)

    base = load_model(base_path)
    before = score(base, held_out, args.device)

    # Fine-tune: same method and net as the base model (read from its file), lower learning rate.
    config = TrainingConfig(method=base.method_name, method_options=dataclasses.asdict(base.method_options), patch_size=192,
                            batch_size=4, learning_rate=args.learning_rate, device=args.device, **budget)
    tuned_path = args.output / "fine_tuned.safetensors"
    print(f"fine-tuning {base_path} on {len(few)} new annotated image(s) ({budget}) ...")
    finished = train(config, few, output=tuned_path, init_from=base_path)
    after = score(finished.model, held_out, args.device)

    print(f"scored on {len(held_out)} held-out image(s):")
    print(format_table([{**before, "name": "before"}, {**after, "name": "after fine-tuning"}]))
    print(f"fine-tuned model: {tuned_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
