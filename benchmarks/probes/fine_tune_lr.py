"""The learning rate of fine-tuning, on the demo's case: the nuclei starter, a few steps on one annotated image.

    python benchmarks/probes/fine_tune_lr.py --steps 16 --rates 1e-5 3e-5 1e-4

The starter is fine-tuned from the same seed for ``--steps`` steps (batch 4, 256 px) on the bundled
``bbbc039_A09_s1`` (one of the starter's training images: the user's "own annotated image") at each
rate, and scored on the bundled ``bbbc039_A02_s1`` (in the starter's held-back test split), beside the
starter as shipped. Prints a markdown table.
"""

from __future__ import annotations

import argparse
from importlib.resources import files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rates", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4])
    args = parser.parse_args(argv)

    import torch

    from napari_deepcolor.checkpoint import load_model
    from napari_deepcolor.data import read_annotated_folder
    from napari_deepcolor.data.io import read_image, read_labels
    from napari_deepcolor.inference import predict
    from napari_deepcolor.metrics import evaluate
    from napari_deepcolor.training import Finished, Training, TrainingConfig

    torch.set_num_threads(1)
    bundled = files("napari_deepcolor") / "sample_data"
    image, truth = read_image(bundled / "bbbc039_A02_s1.tif"), read_labels(bundled / "bbbc039_A02_s1_masks.tif")
    data = read_annotated_folder(bundled / "bbbc039_A09_s1.tif", bundled / "bbbc039_A09_s1_masks.tif")
    print("| starting point | learning rate | steps | AP 0.5:0.95 | F1@0.5 | SBD |\n|---|---|---|---|---|---|")
    shipped = evaluate(truth, predict(load_model("nuclei"), image, device="cpu").decode().labels)
    print(f"| 'nuclei' as shipped | | 0 | {shipped['ap']:.3f} | {shipped['f1']:.3f} | {shipped['sbd']:.3f} |")
    for rate in args.rates:
        config = TrainingConfig(method="boundary", iterations=args.steps, patch_size=256, batch_size=4,
                                learning_rate=rate, validation_fraction=0.0, device="cpu", seed=0)
        model = [e for e in Training(config, data, init_from="nuclei").run() if isinstance(e, Finished)][0].model
        scores = evaluate(truth, predict(model, image, device="cpu").decode().labels)
        print(f"| fine-tuned | {rate:g} | {args.steps} | {scores['ap']:.3f} | {scores['f1']:.3f} | {scores['sbd']:.3f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
