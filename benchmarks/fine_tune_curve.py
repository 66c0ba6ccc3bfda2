"""Fine-tuning as a user does it: a starter fine-tuned on 1, 3 or 10 annotated images, against the starter
alone and against training from scratch on the same images for the same time.

    python benchmarks/fine_tune_curve.py --dataset bbbc039 --images 1 3 10 --seeds 0 1 2 --minutes 1
    python benchmarks/fine_tune_curve.py --report            # print the table
    python benchmarks/fine_tune_curve.py --report --write    # and put it in docs/benchmarks.md

Each seed draws its images from the set's training split (accuracy.py's split: every 5th pair in name
order is the test split, never trained or tuned on). Both sides run ``Training`` exactly as ``train``
does (its validation share of the images tunes the decode and chooses the flips; a single image is
cut in two), on all the threads given, one after the other. Scores are on the whole test split with
the model's stored defaults, as ``predict`` applies them. The starter of a set was trained on the
rest of that set's training split, so this is the "same kind of data" case. Writes
benchmarks/results/fine_tune_curve/<dataset>_<minutes>min_<n>img_s<seed>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402  (benchmarks/accuracy.py: DATASETS)
from docs_table import write_between  # noqa: E402
from fine_tune import PAGE, split_samples, starter_for, test_scores  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "fine_tune_curve"
#: what the package does after a fine-tune, as the table names it, and the result files' suffix (session 16:
#: tuning.starter_or_fine_tune, the guard; tuning.starters_decode_unless_beaten, the decode margin and the
#: strip rule; session 17: the guard's margin, tuning.VALIDATION_GAIN, and the starter's refinement held
#: unless beaten, in tuning.choose_refinement). Files without a suffix were written before any of them existed;
#: "guard", "guard+decode margin" and "rules16" files record the earlier steps, the A/B rows
FINE_TUNE_RULE, RULE_SUFFIX = "guard+margins+strip rule+held refinement", "rules17"
START, END = "<!-- fine-tune-curve", "<!-- /fine-tune-curve -->"


def draw_images(train_samples: list, n_images: int, seed: int) -> list:
    """``n_images`` of the training split, drawn by ``seed`` (the same draw for both sides)."""
    import numpy as np

    if n_images > len(train_samples):
        raise SystemExit(f"{n_images} images asked for; the training split has {len(train_samples)}")
    chosen = np.random.default_rng(seed).choice(len(train_samples), size=n_images, replace=False)
    return [train_samples[i] for i in sorted(chosen)]


def train_side(samples: list, minutes: float, seed: int, init_from: str | None, learning_rate: float | None = None,
               keep_starter_unless_beaten: bool = True):
    """A model trained as ``train`` trains it (``init_from``: a starter to fine-tune, or None; ``learning_rate``:
    None for the package's default; ``keep_starter_unless_beaten=False``: as ``train --keep-fine-tune``)."""
    from napari_deepcolor.training import Finished, Training, TrainingConfig

    config = TrainingConfig(minutes=minutes, device="cpu", seed=seed, learning_rate=learning_rate,
                            keep_starter_unless_beaten=keep_starter_unless_beaten)
    started = time.perf_counter()
    finished = [e for e in Training(config, samples, init_from=init_from).run() if isinstance(e, Finished)][0]
    return finished, round(time.perf_counter() - started, 1)


def with_defaults_of(model, source):
    """``model``'s weights with ``source``'s decode parameters and test-time choices."""
    import copy

    kept = copy.copy(model)
    kept.decode_defaults, kept.inference_defaults = dict(source.decode_defaults), dict(source.inference_defaults)
    return kept


def measure(dataset: str, image_counts: list[int], seeds: list[int], minutes: float, threads: int,
            scratch: bool = True, learning_rate: float | None = None) -> list[Path]:
    import torch

    from napari_deepcolor.checkpoint import load_model

    torch.set_num_threads(threads)
    test, train_samples, test_samples = split_samples(dataset)
    starter = starter_for(dataset)
    starter_model = load_model(starter)
    starter_scores = test_scores(starter_model, test, test_samples)
    print(f"{starter} as shipped: AP {starter_scores['ap']:.3f}", flush=True)
    written = []
    for n_images, seed in ((n, seed) for n in image_counts for seed in seeds):
        chosen = draw_images(train_samples, n_images, seed)
        runs = [{"start": "starter as shipped", "iterations": 0, "test_mean": starter_scores}]
        sides = ((f"fine-tuned from '{starter}'", starter), ("from scratch", None))
        for start, init_from in sides if scratch else sides[:1]:
            finished, seconds = train_side(chosen, minutes, seed, init_from, learning_rate if init_from else None)
            runs.append({"start": start, "iterations": finished.iteration, "train_seconds": seconds,
                         "decode_parameters": finished.model.decode_parameters(),
                         "inference_defaults": finished.model.inference_defaults,
                         "starter_or_fine_tune": finished.model.provenance.get("starter_or_fine_tune"),
                         "test_mean": test_scores(finished.model, test, test_samples)})
            if init_from is not None:  # the A/B of which decode a fine-tune keeps: the starter's own
                kept = with_defaults_of(finished.model, starter_model)
                runs[-1]["test_mean_starter_decode"] = test_scores(kept, test, test_samples)
            print(f"n={n_images} seed={seed} {start}: {finished.iteration} steps, AP "
                  f"{runs[-1]['test_mean']['ap']:.3f}" + (f", with the starter's decode "
                  f"{runs[-1]['test_mean_starter_decode']['ap']:.3f}" if init_from else ""), flush=True)
        result = {"dataset": dataset, "starter": starter, "starter_iterations": starter_model.card["recipe"]["iterations"],
                  "minutes": minutes, "n_images": n_images, "seed": seed, "images": [s.name for s in chosen],
                  "threads": threads, "n_test_images": len(test), "runs": runs, "fine_tune_rule": FINE_TUNE_RULE
                  + (f", rate {learning_rate:g}" if learning_rate else ""),
                  "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                             f"{threads} thread(s)"}
        RESULTS.mkdir(parents=True, exist_ok=True)
        rate = f"_lr{learning_rate:g}" if learning_rate else ""
        out = RESULTS / f"{dataset}_{minutes:g}min_{n_images}img_s{seed}_{RULE_SUFFIX}{rate}.json"
        out.write_text(json.dumps(result, indent=1))
        written.append(out)
    return written


def _median_and_range(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 \
        else f"{values[0]:.3f}"


def _order(item) -> tuple:
    key = item[0]
    return (*key[:5], key[5] != "none", key[5])


def table(results_dir: Path = RESULTS) -> str:
    """Per set, minutes and number of images: the starter, and the median (range) over seeds of each side."""
    groups: dict[tuple, list[dict]] = {}
    for path in sorted(results_dir.glob("*.json")):
        result = json.loads(path.read_text())
        key = (result["dataset"], result["starter"], result["starter_iterations"], result["minutes"],
               result["n_images"], result.get("fine_tune_rule", "none"))
        groups.setdefault(key, []).append(result)
    lines = ["| dataset | starter (its steps) | minutes | images | after the fine-tune | seeds | starter AP | fine-tuned AP, median "
             "(range): decode re-tuned | starter's decode kept | from scratch AP | fine-tuned F1 (re-tuned) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, starter, steps, minutes, n_images, rule), results in sorted(groups.items(), key=_order):
        side = lambda i, k, scores="test_mean": [r["runs"][i][scores][k] for r in results]  # noqa: E731
        kept = sum((r["runs"][1].get("starter_or_fine_tune") or {}).get("kept") == "starter" for r in results)
        scratch = _median_and_range(side(2, 'ap')) if all(len(r["runs"]) > 2 for r in results) else "(not rerun)"
        lines.append(f"| {dataset} | {starter} ({steps}) | {minutes:g} | {n_images} | "
                     f"{rule}{f' (kept the starter {kept} of {len(results)})' if kept else ''} | {len(results)} | "
                     f"{side(0, 'ap')[0]:.3f} | {_median_and_range(side(1, 'ap'))} | "
                     f"{_median_and_range(side(1, 'ap', 'test_mean_starter_decode'))} | "
                     f"{scratch} | {_median_and_range(side(1, 'f1'))} |")
    if not groups:
        lines.append("| not yet run |" + " |" * 10)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=accuracy.DATASETS)
    parser.add_argument("--images", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-scratch", action="store_true", help="fine-tune only (the scratch side has no guard)")
    parser.add_argument("--learning-rate", type=float, default=None, help="the fine-tune's (default: the package's)")
    parser.add_argument("--report", action="store_true", help="print the table of the result files")
    parser.add_argument("--write", action="store_true", help="with --report: write it into docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.report:
        text = table()
        if args.write:
            write_between(PAGE, START, END, text)
        print(text, end="")
        return 0
    if args.dataset is None:
        parser.error("--dataset is required (or --report)")
    measure(args.dataset, args.images, args.seeds, args.minutes, args.threads, scratch=not args.no_scratch,
            learning_rate=args.learning_rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
