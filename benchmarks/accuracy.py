"""Accuracy of a method on one dataset of ../shared/data under a fixed CPU budget.

    python benchmarks/accuracy.py --dataset bbbc039 --method coloring --minutes 15 --threads 1

Split: the pairs sorted by name; every 5th is held out for testing (never seen
in training, nor in decode tuning); the rest trains, of which 15 % is the
validation set that tunes the decode parameters. Test scores use the tuned
defaults stored in the model. Overlapping ground truth (BBBC010) is scored as
per-object masks. Writes benchmarks/results/accuracy_<dataset>_<method>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_deepcolor.checkpoint import load_model, save_model
from napari_deepcolor.data import detect_layout, read_annotated_folder
from napari_deepcolor.data.io import read_labels, read_object_masks
from napari_deepcolor.segment import segment
from napari_deepcolor.metrics import evaluate, summarize
from napari_deepcolor.data.sampling import split_train_validation
from napari_deepcolor.training import LEARNING_RATE, LR_SCHEDULES, Finished, Training, TrainingConfig
from napari_deepcolor.tuning import choose_refinement, tune_decode_parameters, validation_scores

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# where the images and labels are; every method runs with its defaults (one recipe for all data: the
# objects are brought to the nets' canonical size, so no option follows the dataset)
DATASETS = {
    "bbbc039": (DATA / "bbbc039", None),
    "bbbc010": (DATA / "bbbc010", None),
    "usiigaci": (DATA / "usiigaci" / "images", DATA / "usiigaci" / "labels"),
    "ecoli_synth": (DATA / "ecoli_synth" / "images", DATA / "ecoli_synth" / "labels"),
}
RESULTS = Path(__file__).parent / "results"


def held_out(pairs) -> list:
    """The test pairs of a dataset: every 5th in name order (never trained on, nor tuned on)."""
    return sorted(pairs, key=lambda p: p.name)[::5]


@dataclass
class Split:
    """One dataset split as every benchmark here uses it (see the module docstring)."""

    train: list  # AnnotatedImage: the training samples (validation included, as Training takes them)
    validation: list  # the part of ``train`` that tunes the decode (Training's own split, same seed)
    test_pairs: list  # ImagePair, never trained or tuned on
    test: dict  # pair name -> its AnnotatedImage


def split(dataset: str, validation_fraction: float = 0.15, seed: int = 0) -> Split:
    images, labels = DATASETS[dataset]
    pairs = detect_layout(images, labels).pairs
    test_pairs = held_out(pairs)
    train_names = {p.name for p in pairs} - {p.name for p in test_pairs}
    samples = read_annotated_folder(images, labels)
    train = [s for s in samples if s.name.split(" [")[0] in train_names]
    _, validation = split_train_validation(train, validation_fraction=validation_fraction, seed=seed)
    return Split(train, validation, test_pairs, {s.name: s for s in samples if s.name not in train_names})


def ground_truth(pair):
    return read_labels(pair.labels) if pair.labels is not None else read_object_masks(pair.object_masks)


def retune(path: Path, config: TrainingConfig, validation):
    """A saved model's decode tuned again on the validation split its training used: (Finished, seconds)."""
    model = load_model(path)
    if model.method_name != config.method:
        raise SystemExit(f"{path} is a '{model.method_name}' model, not '{config.method}'")
    decode, best = tune_decode_parameters(model, validation, device="cpu")
    model.decode_defaults = decode
    if config.choose_refinement:
        model.provenance = {**model.provenance, "refinement_choice": choose_refinement(model, validation)}
    provenance = model.provenance
    scores = {**validation_scores(model, validation, device="cpu"), "tuned_ap": best}
    finished = Finished(provenance["iterations"], "done", None, model.decode_parameters(), scores, model)
    return finished, provenance["train_seconds"]


def option_value(text: str):
    """A JSON value (10, false, "paper"), or the text itself: ``color_choice=distinct`` needs no quotes."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def method_options(pairs: list[str]) -> dict:
    """``--option KEY=VALUE`` arguments as a dict of training options."""
    return {key: option_value(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--method", default=TrainingConfig.method)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="training time (default 15)")
    budget.add_argument("--iterations", type=int, default=None,
                        help="training steps instead, e.g. as many as another method reached in 15 minutes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=None, help="patches per step (default: the CLI's, 4 on a CPU)")
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=TrainingConfig.lr_schedule)
    parser.add_argument("--model-out", type=Path, default=None, help="also save the trained model here, to study it")
    parser.add_argument("--model-in", type=Path, default=None,
                        help="no training: re-tune the decode of this model (saved by --model-out from the same "
                             "dataset and split) on the validation split and score it again")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a training option of the method (a JSON value or a word), e.g. --option semantic_head=false; "
                             "repeatable")
    parser.add_argument("--net-object-diameter", type=float, default=TrainingConfig.net_object_diameter,
                        help="object diameter (px) the net trains at; 0: the images' own resolution")
    parser.add_argument("--seed", type=int, default=TrainingConfig.seed,
                        help="seed of the run: the net's initialisation, the patches and which training images "
                             "tune the decode (the test images stay the same)")
    parser.add_argument("--intensity", action="append", default=[], metavar="FIELD=LOW,HIGH",
                        help="an A/B of the intensity augmentation: a range of data.augment.Augmentation over its "
                             "default, e.g. --intensity gain_range=0.4,2.5; repeatable")
    parser.add_argument("--result", type=Path, default=None,
                        help="write the result JSON here (default benchmarks/results/accuracy_<dataset>_<method>.json)")
    args = parser.parse_args()
    if args.iterations is None and args.minutes is None:
        args.minutes = 15.0
    torch.set_num_threads(args.threads)

    data = split(args.dataset, TrainingConfig.validation_fraction, args.seed)

    options = method_options(args.option)
    intensity = {field: tuple(float(v) for v in value.split(",")) for field, _, value in
                 (item.partition("=") for item in args.intensity)}
    if intensity:  # the training loop builds Augmentation(); this run's has other ranges
        import functools

        import napari_deepcolor.training as training_module
        from napari_deepcolor.data.augment import Augmentation

        training_module.Augmentation = functools.partial(Augmentation, **intensity)
    config = TrainingConfig(method=args.method, method_options=options, minutes=args.minutes, iterations=args.iterations,
                            device="cpu", net_object_diameter=args.net_object_diameter or None,
                            patch_size=args.patch_size, batch_size=args.batch_size, validate_every=0,
                            learning_rate=args.learning_rate, lr_schedule=args.lr_schedule, seed=args.seed)
    if args.model_in is None:
        t0 = time.perf_counter()
        finished = [e for e in Training(config, data.train).run() if isinstance(e, Finished)][0]
        train_seconds = time.perf_counter() - t0
    else:
        finished, train_seconds = retune(args.model_in, config, data.validation)
    if args.model_out is not None:
        args.model_out.parent.mkdir(parents=True, exist_ok=True)
        save_model(finished.model, args.model_out)

    rows, plain_rows, predict_seconds = [], [], []
    model = finished.model
    for pair in data.test_pairs:
        sample, truth = data.test[pair.name], ground_truth(pair)
        t = time.perf_counter()
        labels_pred = segment(model, sample.image, stack=False, device="cpu").labels  # as predict/batch do
        predict_seconds.append(time.perf_counter() - t)
        rows.append({"name": pair.name, **evaluate(truth, labels_pred)})
        if model.inference_defaults:  # what the model's refinement choice changed
            plain = segment(model, sample.image, refine="none", flips=False, stack=False, device="cpu").labels
            plain_rows.append({"name": pair.name, **evaluate(truth, plain)})
    summary = summarize(rows)
    means = ("sbd", "abs_dic", "ap", "ap50", "f1", "matching_iou")
    result = {"dataset": args.dataset, "method": args.method, "options": options,
              **({"intensity_augmentation": intensity} if intensity else {}),
              "object_scale": finished.model.object_scale, "minutes": args.minutes,
              "budget_iterations": args.iterations, "threads": args.threads, "seed": args.seed,
              "learning_rate": args.learning_rate, "lr_schedule": args.lr_schedule,
              "iterations": finished.iteration, "train_seconds": round(train_seconds, 1),
              "n_train_images": len(data.train), "n_test_images": len(rows),
              "decode_parameters": finished.decode_parameters, "validation": finished.scores,
              "refinement": {**model.inference_defaults,
                             "validation": model.provenance.get("refinement_choice"),
                             **({"test_mean_plain": {k: summarize(plain_rows)[k] for k in means}}
                                if plain_rows else {})},
              "test_mean": {k: summary[k] for k in means},
              "median_predict_seconds": float(np.median(predict_seconds)), "per_image": rows,
              "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                         f"{args.threads} thread(s)"}
    out = args.result or RESULTS / f"accuracy_{args.dataset}_{args.method}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=1, default=float))


if __name__ == "__main__":
    main()
