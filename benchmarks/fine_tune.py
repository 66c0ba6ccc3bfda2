"""Does fine-tuning a starter pay? A starter fine-tuned for N CPU minutes against N minutes from scratch.

    python benchmarks/fine_tune.py --dataset bbbc039 --minutes 2 --threads 1   # one measurement
    python benchmarks/fine_tune.py --report                                     # print the table
    python benchmarks/fine_tune.py --report --write                             # and put it in docs/benchmarks.md

Both runs train on the dataset's training split (accuracy.py's split: every 5th pair in name order is
held back) with the same recipe and budget; they differ only in the starting weights. Scores are on the
held-back test split, beside the starter as shipped (no training). The starter of a set was itself
trained on that set's training split, so this is the "same kind of data" case: the gain a user sees
on their own images, which the starter never saw, will differ. Writes
benchmarks/results/fine_tune_<dataset>_<minutes>min.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402  (benchmarks/accuracy.py: DATASETS, held_out, ground_truth)
from docs_table import write_between  # noqa: E402  (benchmarks/docs_table.py)

RESULTS = Path(__file__).parent / "results"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- fine-tune-table", "<!-- /fine-tune-table -->"
HEADER = ("| dataset | starter | minutes | starting point | learning rate | steps | test AP 0.5:0.95 | F1@0.5 | SBD |\n"
          "|---|---|---|---|---|---|---|---|---|")


def starter_for(dataset: str, method: str = "boundary") -> str:
    """The starter of ``method`` trained on ``dataset`` (from the cards of the bundled starters)."""
    from napari_deepcolor.starters import starter_card, starter_names

    for name in starter_names():
        card = starter_card(name)
        if card.get("dataset_key") == dataset and card.get("method") == method:
            return name
    raise SystemExit(f"no bundled starter was trained on {dataset}")


def split_samples(dataset: str) -> tuple[list, list, dict]:
    """accuracy.py's split of ``dataset``, read: ``(test pairs, training samples, {name: test sample})``
    (a sample of a stack is named after its file, with its plane in brackets)."""
    from napari_deepcolor.data import detect_layout, read_annotated_folder

    images, labels = accuracy.DATASETS[dataset]
    test = accuracy.held_out(detect_layout(images, labels).pairs)
    test_names = {p.name for p in test}
    samples = read_annotated_folder(images, labels)
    is_test = [s.name.split(" [")[0] in test_names for s in samples]
    return (test, [s for s, held in zip(samples, is_test) if not held],
            {s.name: s for s, held in zip(samples, is_test) if held})


def test_scores(model, test, test_samples) -> dict:
    """Mean scores of ``model`` on the test pairs, segmented with its stored defaults as ``predict`` does."""
    from napari_deepcolor.metrics import evaluate, summarize
    from napari_deepcolor.segment import segment

    rows = [{"name": p.name, **evaluate(accuracy.ground_truth(p),
                                        segment(model, test_samples[p.name].image, stack=False, device="cpu").labels)}
            for p in test]
    summary = summarize(rows)
    return {k: round(float(summary[k]), 4) for k in ("ap", "ap50", "f1", "sbd", "abs_dic", "matching_iou")}


def measure(dataset: str, minutes: float, threads: int, batch_size: int, patch_size: int,
            fine_tune_lr: float | None = None) -> dict:
    import torch

    from napari_deepcolor.checkpoint import load_model
    from napari_deepcolor.training import (FINE_TUNE_LEARNING_RATE, LEARNING_RATE, Finished, Training,
                                           TrainingConfig)

    torch.set_num_threads(threads)
    test, train_samples, test_samples = split_samples(dataset)
    starter = starter_for(dataset)
    model = load_model(starter)
    runs = [{"start": "starter as shipped", "iterations": 0, "train_seconds": 0.0,
             "test_mean": test_scores(model, test, test_samples)}]
    config = TrainingConfig(method=model.method_name, minutes=minutes, device="cpu", batch_size=batch_size,
                            patch_size=patch_size, validate_every=10**9)
    fine_tune_config = dataclasses.replace(config, learning_rate=fine_tune_lr or FINE_TUNE_LEARNING_RATE)
    config = dataclasses.replace(config, learning_rate=LEARNING_RATE)
    for start, init_from, run_config in ((f"fine-tuned from '{starter}'", starter, fine_tune_config),
                                         ("from scratch", None, config)):
        t0 = time.perf_counter()
        finished = [e for e in Training(run_config, train_samples, init_from=init_from).run()
                    if isinstance(e, Finished)][0]
        runs.append({"start": start, "iterations": finished.iteration, "learning_rate": run_config.learning_rate,
                     "train_seconds": round(time.perf_counter() - t0, 1),
                     "test_mean": test_scores(finished.model, test, test_samples)})
    return {"dataset": dataset, "starter": starter, "minutes": minutes, "threads": threads,
            "batch_size": batch_size, "patch_size": patch_size, "learning_rate": config.learning_rate,
            "n_train_images": len(train_samples), "n_test_images": len(test), "runs": runs,
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                       f"{threads} thread(s)"}


def table(results_dir: Path = RESULTS) -> str:
    results = sorted((json.loads(p.read_text()) for p in results_dir.glob("fine_tune_*.json")),
                     key=lambda r: (r["dataset"], r["minutes"], r["runs"][1].get("learning_rate", 1)))
    lines, shipped = [HEADER], set()
    for result in results:
        for run in result["runs"]:
            if run["iterations"] == 0 and result["dataset"] in shipped:
                continue  # the starter as shipped is one row per set
            shipped.add(result["dataset"])
            t = run["test_mean"]
            minutes = "0" if run["iterations"] == 0 else f"{result['minutes']:g}"
            rate = f"{run.get('learning_rate', result['learning_rate']):g}" if run["iterations"] else ""
            lines.append(f"| {result['dataset']} | {result['starter']} | {minutes} | {run['start']} | {rate} | "
                         f"{run['iterations']} | {t['ap']:.3f} | {t['f1']:.3f} | {t['sbd']:.3f} |")
    if not results:
        lines.append("| not yet run |" + " |" * 8)
    return "\n".join(lines) + "\n"


def write(text: str, page: Path = PAGE) -> None:
    write_between(page, START, END, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("bbbc039", "usiigaci", "bbbc010", "ecoli_synth"))
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--fine-tune-lr", type=float, default=None,
                        help="learning rate of the fine-tuned side (default: the package's for fine-tuning)")
    parser.add_argument("--report", action="store_true", help="print the table of the result files")
    parser.add_argument("--write", action="store_true", help="with --report: write it into docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.report:
        text = table()
        if args.write:
            write(text)
        print(text, end="")
        return 0
    if args.dataset is None:
        parser.error("--dataset is required (or --report)")
    result = measure(args.dataset, args.minutes, args.threads, args.batch_size, args.patch_size, args.fine_tune_lr)
    lr_tag = f"_lr{result['runs'][1]['learning_rate']:g}"
    out = RESULTS / f"fine_tune_{args.dataset}_{args.minutes:g}min{lr_tag}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
