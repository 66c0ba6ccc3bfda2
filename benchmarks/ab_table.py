"""A markdown table of A/B runs of benchmarks/accuracy.py (one row per result file).

    python benchmarks/ab_table.py benchmarks/results/ab/usiigaci_*.json

Columns: the run (file stem), method, its training options (and learning rate or schedule where not the default) and object scale, steps, test AP 0.5:0.95,
AP50, F1@0.5, SBD, |DiC|, and the tuned decode. Paste the output into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from napari_deepcolor.training import LEARNING_RATE, TrainingConfig


def row(path: Path) -> str:
    result = json.loads(path.read_text())
    test = result["test_mean"]
    scale = result.get("object_scale") or {}
    scaled = f"{scale['object_diameter']:.0f} -> {scale['net_object_diameter']:.0f} px" if scale else "native"
    options = dict(result.get("options") or {})
    # the recipe, where a run departs from it (older result files have no such keys)
    for key, default in (("learning_rate", LEARNING_RATE), ("lr_schedule", TrainingConfig.lr_schedule)):
        if result.get(key, default) != default:
            options[key] = result[key]
    options = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
    decode = ", ".join(f"{k}={v:g}" for k, v in result["decode_parameters"].items())
    return (f"| {path.stem} | {result['method']} | {options} | {scaled} | {result['iterations']} | {test['ap']:.3f} | "
            f"{test['ap50']:.3f} | {test['f1']:.3f} | {test['sbd']:.3f} | {test['abs_dic']:.1f} | {decode} |")


def main(paths: list[str]) -> None:
    print("| run | method | options | objects | steps | AP 0.5:0.95 | AP50 | F1@0.5 | SBD | abs DiC | tuned decode |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(paths):
        print(row(Path(path)))


if __name__ == "__main__":
    main(sys.argv[1:])
