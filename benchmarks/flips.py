"""Does test-time flipping pay? Each starter on its test split, with and without ``flips``.

    python benchmarks/flips.py --threads 1            # measure, write benchmarks/results/flips.json
    python benchmarks/flips.py --only worms           # measure one starter again (e.g. a new one)
    python benchmarks/flips.py --report               # print the docs table from that file
    python benchmarks/flips.py --report --write       # and put it in docs/benchmarks.md

The starters are scored as docs/models.md scores them (accuracy.py's split, its metrics), with the
decode parameters stored in each file: the flips are not re-tuned for, so a gain here is one a
user gets without re-tuning. Seconds are the median CPU time of one prediction (net and decode).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import accuracy  # benchmarks/accuracy.py: its split and scoring
from docs_table import write_between  # benchmarks/docs_table.py
from napari_deepcolor.data import detect_layout, read_annotated_folder
from napari_deepcolor.inference import predict
from napari_deepcolor.metrics import evaluate, summarize
from napari_deepcolor.checkpoint import load_model
from napari_deepcolor.starters import starter_card, starter_names, starter_path

RESULT = Path(__file__).parent / "results" / "flips.json"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
KEYS = ("ap", "ap50", "f1", "sbd", "abs_dic")


def test_split(dataset: str) -> list:
    """(pair, annotated image) of each test image of ``dataset`` (accuracy.py's split)."""
    images, labels = accuracy.DATASETS[dataset]
    test = accuracy.held_out(detect_layout(images, labels).pairs)
    names = {p.name for p in test}
    samples = {s.name: s for s in read_annotated_folder(images, labels) if s.name in names}
    return [(pair, samples[pair.name]) for pair in test]


def score(model, test: list, flips: bool) -> dict:
    rows, seconds = [], []
    for pair, sample in test:
        started = time.process_time()
        predicted = predict(model, sample.image, stack=False, device="cpu", flips=flips).decode().labels
        seconds.append(time.process_time() - started)
        rows.append(evaluate(accuracy.ground_truth(pair), predicted))
    summary = summarize(rows)
    return {**{k: round(float(summary[k]), 4) for k in KEYS}, "median_cpu_seconds": round(float(np.median(seconds)), 2),
            "n_test_images": len(rows)}


def report(result: dict) -> str:
    lines = ["| starter | data | flips | test images | AP 0.5:0.95 | AP50 | F1@0.5 | SBD | abs DiC | CPU s / image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in result["starters"].items():
        for flips in ("off", "on"):
            s = entry[flips]
            lines.append(f"| `{name}` | {entry['dataset']} | {flips} | {s['n_test_images']} | {s['ap']:.3f} | "
                         f"{s['ap50']:.3f} | {s['f1']:.3f} | {s['sbd']:.3f} | {s['abs_dic']:.1f} | "
                         f"{s['median_cpu_seconds']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="print the docs table from the result file")
    parser.add_argument("--write", action="store_true", help="with --report: put the table in docs/benchmarks.md")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", action="append", choices=starter_names(), default=None,
                        help="measure only this starter (repeatable); the others' rows are kept")
    args = parser.parse_args()
    if args.report:
        text = report(json.loads(RESULT.read_text())) + "\n"
        print(text, end="")
        if args.write:
            write_between(PAGE, "<!-- flips-table", "<!-- /flips-table -->", text)
        return 0
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "torch": torch.__version__, "starters": {}}
    if args.only and RESULT.is_file():
        result["starters"] = json.loads(RESULT.read_text())["starters"]
    for name in args.only or starter_names():
        dataset = starter_card(name)["dataset_key"]
        model, test = load_model(starter_path(name)), test_split(dataset)
        result["starters"][name] = {"dataset": dataset, "off": score(model, test, False),
                                    "on": score(model, test, True)}
        print(name, result["starters"][name], flush=True)
    RESULT.write_text(json.dumps(result, indent=1))
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
