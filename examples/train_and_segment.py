"""Train a deep coloring model on annotated images and segment new ones, with the Python API.

What it shows: ``read_annotated_folder`` -> ``TrainingConfig`` + ``Training`` (a generator of
events) -> ``save_model`` / ``load_model`` -> ``predict(...).decode()`` -> ``write_labels``, then
``evaluate`` against the held-out annotation. The CLI (``napari-deepcolor train / predict``) is a
thin layer over exactly these calls.

How long: about 2 minutes on a CPU with the defaults (training on the bundled BBBC039 image
``bbbc039_A02_s1`` and segmenting the unseen ``bbbc039_A09_s1``). With ``--data`` it trains on a
real annotated folder (any layout the CLI reads, e.g. ``../shared/data/bbbc039``) and
segments every 5th image, which it holds out.

    python examples/train_and_segment.py
    python examples/train_and_segment.py --data ../shared/data/bbbc039 --minutes 10
    python examples/train_and_segment.py --iterations 2 --output /tmp/out   # a smoke run
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from pathlib import Path

import torch

from napari_deepcolor.data import read_annotated_folder, read_image, write_labels
from napari_deepcolor.inference import predict
from napari_deepcolor.metrics import evaluate, format_table, summarize
from napari_deepcolor.models import load_model
from napari_deepcolor.training import Finished, Step, Training, TrainingConfig, Validated

BUNDLED = files("napari_deepcolor") / "sample_data"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="an annotated dataset folder (default: the bundled BBBC039 image)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=2.0, help="training budget (default 2 minutes)")
    budget.add_argument("--iterations", type=int, default=None, help="training budget in iterations instead")
    parser.add_argument("--halo-margin", type=int, default=12, help="m in px, about one object diameter")
    parser.add_argument("--output", type=Path, default=Path("deepcolor-example"), help="folder for model and labels")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def load_data(folder: Path | None):
    """(training samples, list of (name, image, labels) to segment and score)."""
    if folder is None:
        train = read_annotated_folder(BUNDLED / "bbbc039_A02_s1.tif", BUNDLED / "bbbc039_A02_s1_masks.tif")
        test = read_annotated_folder(BUNDLED / "bbbc039_A09_s1.tif", BUNDLED / "bbbc039_A09_s1_masks.tif")
        raw = [read_image(BUNDLED / "bbbc039_A09_s1.tif")]
    else:
        samples = read_annotated_folder(folder)  # sorted by name; detects the layout
        train = [s for i, s in enumerate(samples) if i % 5 != 4]
        test = [s for i, s in enumerate(samples) if i % 5 == 4]
        raw = [s.image for s in test]  # already normalised; predict() normalises again, which is harmless
    return train, [(s.name, image, s.labels) for s, image in zip(test, raw)]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    train_data, to_segment = load_data(args.data)

    # 1. Train. The config is the same object the CLI and the Train widget build.
    budget = {"iterations": args.iterations} if args.iterations else {"minutes": args.minutes}
    config = TrainingConfig(method="coloring", method_options={"halo_margin": args.halo_margin},
                            patch_size=192, batch_size=4, device=args.device, **budget)
    model_path = args.output / "model.safetensors"
    print(f"training on {len(train_data)} image(s) for {budget} ...")
    for event in Training(config, train_data, output=model_path).run():
        if isinstance(event, Step) and event.iteration % 10 == 0:
            print(f"  step {event.iteration}: loss {event.loss:.3f}, {event.eta_seconds:.0f} s left")
        elif isinstance(event, Validated):
            print(f"  validation: {event.scores}")
        elif isinstance(event, Finished):
            print(f"trained {event.iteration} steps; tuned decode parameters {event.decode_parameters}")

    # 2. Segment new images with the saved model (a model file is data: weights + JSON config).
    model = load_model(model_path)
    rows = []
    for name, image, labels in to_segment:
        prediction = predict(model, image, device=args.device)  # runs the net once, caches its output
        instances = prediction.decode()  # the model's tuned values; decode(size_threshold=...) overrides
        path = write_labels(args.output / f"{name}_labels.tif", instances.labels, overwrite=True)
        rows.append({"name": name, **evaluate(labels, instances.labels)})
        print(f"{name}: {instances.count} objects -> {path}")
    print(format_table(rows + [summarize(rows)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
