"""Does a fine-tune's object diameter, measured on the few images it is given, move its scale? (session 15)

    python benchmarks/probes/fine_tune_scale.py ecoli_synth

Fine-tunes the set's starter on one training image (seeds 0 and 1) for 3 seconds and scores the test
split as trained and with the starter's object diameter and decode. Run before scale.SAME_SCALE_FACTOR
existed, it printed for E. coli: seed 0, diameter 16.06 px against the starter's 20.93, test AP 0.767 as
trained and 0.936 with the starter's; seed 1, 18.92 px, 0.930 and 0.937. Since then a fine-tune keeps the
starter's diameter within 1.6x, so both columns agree.
"""
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from fine_tune import split_samples, starter_for, test_scores  # noqa: E402
from fine_tune_curve import draw_images, train_side  # noqa: E402
from napari_deepcolor.checkpoint import load_model  # noqa: E402


def main(dataset: str) -> None:
    torch.set_num_threads(2)
    test, train, test_samples = split_samples(dataset)
    name = starter_for(dataset)
    starter = load_model(name)
    for seed in (0, 1):
        finished, _ = train_side(draw_images(train, 1, seed), 0.05, seed, name)
        kept = copy.copy(finished.model)
        kept.object_scale, kept.decode_defaults = dict(starter.object_scale), dict(starter.decode_defaults)
        print(f"seed {seed}: {finished.iteration} steps, diameter {finished.model.object_scale['object_diameter']} "
              f"(starter {starter.object_scale['object_diameter']}), test AP as trained "
              f"{test_scores(finished.model, test, test_samples)['ap']:.3f}, with the starter's diameter and "
              f"decode {test_scores(kept, test, test_samples)['ap']:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ecoli_synth")
