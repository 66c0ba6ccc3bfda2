"""Decode tuned on the validation images (as training does) against validation + training images: test AP.

    python benchmarks/probes/tune_val_train.py DATASET SEED MODEL [MODEL ...]

MODELs saved by ``accuracy.py --seed SEED --model-out``; SEED picks the same validation carve. Prints one
JSON line per model: the decode each tuning chose and its mean AP on the held-out test images.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

from accuracy import ground_truth, split  # noqa: E402  (benchmarks/accuracy.py)
from napari_deepcolor.checkpoint import load_model  # noqa: E402
from napari_deepcolor.inference import predict  # noqa: E402
from napari_deepcolor.metrics import evaluate  # noqa: E402
from napari_deepcolor.training import TrainingConfig  # noqa: E402
from napari_deepcolor.tuning import tune_predictions  # noqa: E402


def compare(dataset: str, seed: int, path: str) -> dict:
    data = split(dataset, TrainingConfig.validation_fraction, seed)  # the carve accuracy.py trained with
    model = load_model(path)
    validation_names = {s.name for s in data.validation}

    def outputs(pairs):
        return [(predict(model, image, stack=False, device="cpu"), truth) for image, truth in pairs]

    validation = outputs((s.image, s.labels) for s in data.validation)
    training = outputs((s.image, s.labels) for s in data.train if s.name not in validation_names)
    test = outputs((data.test[t.name].image, ground_truth(t)) for t in data.test_pairs)
    result = {"model": "/".join(Path(path).parts[-2:]), "seed": seed}
    for name, images in (("val", validation), ("val+train", validation + training)):
        best, _ = tune_predictions([p for p, _ in images], [t for _, t in images])
        result[name] = {"decode": best, "test_ap": float(np.mean([evaluate(t, p.decode(**best).labels)["ap"]
                                                                  for p, t in test]))}
    return result


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    torch.set_num_threads(1)
    for model_path in sys.argv[3:]:
        print(json.dumps(compare(sys.argv[1], int(sys.argv[2]), model_path)), flush=True)
