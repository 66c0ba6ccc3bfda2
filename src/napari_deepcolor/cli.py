"""The ``napari-deepcolor`` command: thin over the library.

Every error a user can cause is a :class:`DeepColorError`; it is printed as
one line and the command exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import DeepColorError

log = logging.getLogger("napari_deepcolor")

DESCRIPTION = """\
Train and apply instance segmentation models (deep coloring and friends) on
your own annotated microscopy images. Typical use:

  napari-deepcolor train --images my_data/images --labels my_data/labels --output cells.safetensors --minutes 15
  napari-deepcolor predict --model cells.safetensors --input new_images/ --output segmented/
  napari-deepcolor evaluate --pred segmented/ --gt new_labels/

Run `napari-deepcolor COMMAND --help` for the options of each command.
"""


# -- flags generated from the methods' declarations -----------------------------

def _all_methods():
    from .methods import get_method, method_names

    return [get_method(name) for name in method_names()]


def _add_decode_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding (defaults: the values tuned and stored in the model)")
    seen = set()
    for method in _all_methods():
        for p in method.decode_parameters:
            if p.name in seen:
                continue
            seen.add(p.name)
            group.add_argument(p.flag, dest=p.name, type=int if p.integer else float, default=None,
                               metavar="N" if p.integer else "X",
                               help=f"{p.help} [{method.name}; range {p.minimum:g}-{p.maximum:g}]")


def _add_refine_flag(parser: argparse.ArgumentParser) -> None:
    from .refine import REFINEMENTS

    parser.add_argument("--refine", default="none", choices=REFINEMENTS,
                        help="refine the decoded instances: crf = the instance CRF of Arnab and Torr (2017), "
                             "with the weights fitted at training (default: none)")


def _decode_overrides(args, method) -> dict:
    names = {p.name for p in method.decode_parameters}
    given = {p.name: getattr(args, p.name) for m in _all_methods() for p in m.decode_parameters
             if getattr(args, p.name, None) is not None}
    wrong = sorted(set(given) - names)
    if wrong:
        raise DeepColorError(f"{', '.join('--' + w.replace('_', '-') for w in wrong)} does not apply to a "
                             f"'{method.name}' model; its decode parameters are: "
                             f"{', '.join('--' + n.replace('_', '-') for n in names)}.")
    return given


def _add_method_option_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("method options (each applies to the methods named in brackets)")
    fields: dict[str, tuple] = {}
    for method in _all_methods():
        for f in dataclasses.fields(method.Options):
            known = fields.setdefault(f.name, (f, []))
            known[1].append(f"{method.name}: {f.default}")
    for name, (f, defaults) in fields.items():
        kind = _boolean if isinstance(f.default, bool) else type(f.default)
        group.add_argument("--" + name.replace("_", "-"), dest="opt_" + name, type=kind, default=None,
                           help=f"[default {'; '.join(defaults)}]")


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def _method_options(args, method) -> dict:
    own = {f.name for f in dataclasses.fields(method.Options)}
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    wrong = sorted(set(given) - own)
    if wrong:
        raise DeepColorError(f"{', '.join('--' + w.replace('_', '-') for w in wrong)} does not apply to method "
                             f"'{method.name}'.")
    return given


# -- commands ----------------------------------------------------------------

def _cmd_evaluate(args) -> int:
    from .metrics import evaluate_folders, format_table, summarize

    rows = evaluate_folders(args.pred, args.gt)
    rows.append(summarize(rows))
    print(format_table(rows))
    if args.csv:
        _write_csv(args.csv, rows)
    if args.json:
        from .data.io import atomic_write

        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(rows, indent=2, default=float)), overwrite=True)
    return 0


def _write_csv(path, rows) -> None:
    import csv

    from .data.io import atomic_write

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write, overwrite=True)


def _cmd_train(args) -> int:
    from tqdm import tqdm

    from .data import describe_layout, read_annotated_folder
    from .methods import get_method
    from .training import Finished, Step, Training, TrainingConfig, Validated

    method = get_method(args.method)
    output = Path(args.output)
    if output.exists() and not (args.resume or args.overwrite):
        raise DeepColorError(f"{output} already exists; use --resume to continue training it, --overwrite to "
                             "replace it, or choose another --output.")
    if args.iterations is None and args.minutes is None:
        args.minutes = 15.0
    net = {k: v for k, v in (("depth", args.depth), ("width", args.width), ("norm", args.norm)) if v is not None}
    config = TrainingConfig(method=args.method, method_options=_method_options(args, method), net=net,
                            patch_size=args.patch_size, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            iterations=args.iterations, minutes=args.minutes,
                            validation_fraction=args.validation_fraction, validate_every=args.validate_every,
                            seed=args.seed, device=args.device, fit_crf=args.fit_crf)
    print(describe_layout(args.images, args.labels), file=sys.stderr)
    data = read_annotated_folder(args.images, args.labels)
    training = Training(config, data, output=output, init_from=args.fine_tune, resume=args.resume)
    bar = tqdm(total=1000, unit="‰", desc=f"training {args.method}", file=sys.stderr, dynamic_ncols=True)
    events = training.run()
    finished = None
    while True:
        try:
            event = next(events)
        except StopIteration:
            break
        except KeyboardInterrupt:
            print("\nstopping: saving the model trained so far (press Ctrl-C again to abort)", file=sys.stderr)
            training.stop()
            continue
        if isinstance(event, Step):
            bar.n = min(int(event.fraction_done * 1000), 1000)
            bar.set_postfix(it=event.iteration, loss=f"{event.loss:.3f}", rate=f"{event.patches_per_second:.1f}/s")
        elif isinstance(event, Validated):
            bar.write("validation @%d: %s" % (event.iteration, ", ".join(f"{k}={v:.3f}" for k, v in event.scores.items())))
        elif isinstance(event, Finished):
            finished = event
    bar.close()
    print(f"{finished.reason}: {finished.iteration} iterations; model saved to {finished.path}")
    print("decode defaults: " + ", ".join(f"{k}={v:g}" for k, v in finished.decode_parameters.items()))
    return 0


def _cmd_predict(args) -> int:
    from tqdm import tqdm

    from .checkpoint import load_model
    from .data.io import IMAGE_SUFFIXES, read_image, write_labels
    from .device import resolve_device
    from .inference import predict

    device = resolve_device(args.device)
    model = load_model(args.model, device=device)
    overrides = _decode_overrides(args, model.method)
    source = Path(args.input)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise DeepColorError(f"{source} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    elif source.is_file():
        files = [source]
    else:
        raise DeepColorError(f"{source}: no such file or folder.")
    out_dir = Path(args.output)
    failed = 0
    for path in tqdm(files, desc="segmenting", unit="image", file=sys.stderr):
        target = out_dir / (path.stem + ".tif")
        try:
            if target.exists() and not args.overwrite:
                raise DeepColorError(f"{target} exists; pass --overwrite to replace it.")
            image = read_image(path)
            prediction = predict(model, image, device=device, tile_size=args.tile_size)
            instances = prediction.decode(**overrides)
            if args.refine == "crf":  # the instance CRF (Arnab and Torr) on the decoded instances
                from .refine import refine_prediction

                instances = refine_prediction(prediction, image, instances)
            write_labels(target, instances.labels, overwrite=args.overwrite)
            tqdm.write(f"{path.name}: {instances.count} objects -> {target}", file=sys.stderr)
        except DeepColorError as exc:
            failed += 1
            tqdm.write(f"{path.name}: FAILED: {exc}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(files)} images failed (see above).", file=sys.stderr)
        return 1
    return 0


def _cmd_batch(args) -> int:
    from tqdm import tqdm

    from .batch import DEFAULT_PATTERNS, DONE, FAILED, SKIPPED, Batch, BatchConfig, BatchFinished, BatchStarted, FileDone, FileFailed
    from .checkpoint import read_model_config
    from .methods import get_method

    method = get_method(read_model_config(args.model)["method"])
    config = BatchConfig(model=args.model, input=args.input, output=args.output,
                         patterns=tuple(args.pattern or DEFAULT_PATTERNS), recursive=args.recursive, format=args.format,
                         decode=_decode_overrides(args, method), workers=args.workers, scheduler=args.scheduler,
                         overwrite=args.overwrite, device=args.device, tile_size=args.tile_size,
                         large_image_megapixels=args.large_image_mp, refine=args.refine)
    bar, finished = None, None
    for event in Batch(config).run():
        if isinstance(event, BatchStarted):
            bar = tqdm(total=event.total, unit="file", desc="segmenting", file=sys.stderr, dynamic_ncols=True)
        elif isinstance(event, (FileDone, FileFailed)):
            bar.update(1)
            r = event.result
            if r.status == DONE:
                bar.write(f"{r.file}: {r.objects} objects -> {r.output} ({r.seconds:.1f} s, {r.route})", file=sys.stderr)
            elif r.status == FAILED:
                bar.write(f"{r.file}: FAILED: {r.error}", file=sys.stderr)
        elif isinstance(event, BatchFinished):
            finished = event
    bar.close()
    print(f"{finished.count(DONE)} segmented, {finished.count(SKIPPED)} skipped (output exists; --overwrite redoes "
          f"them), {finished.count(FAILED)} failed; summary: {finished.summary}")
    return 1 if finished.count(FAILED) else 0


def _cmd_demo(args) -> int:
    """Train briefly on one bundled BBBC039 image, segment the other, score it, write labels."""
    from importlib.resources import files

    from .data import read_annotated_folder
    from .data.io import read_image, read_labels, write_labels
    from .inference import predict
    from .metrics import evaluate
    from .training import Finished, Step, Training, TrainingConfig

    bundled = files("napari_deepcolor") / "sample_data"
    train_image, unseen_image = bundled / "bbbc039_A02_s1.tif", bundled / "bbbc039_A09_s1.tif"
    out = Path(args.output)
    model_path = out / "demo_nuclei.safetensors"
    config = TrainingConfig(method="coloring", method_options={"halo_margin": 12}, minutes=args.minutes,
                            patch_size=192, batch_size=4, validation_fraction=0.15, device=args.device)
    data = read_annotated_folder(train_image, bundled / "bbbc039_A02_s1_masks.tif")
    print(f"training deep coloring for {args.minutes:g} min on {train_image.name} ...", file=sys.stderr)
    for event in Training(config, data, output=model_path).run():
        if isinstance(event, Step) and event.iteration % 10 == 0:
            print(f"  step {event.iteration}: loss {event.loss:.3f}, {event.eta_seconds:.0f} s left", file=sys.stderr)
        if isinstance(event, Finished):
            model = event.model
    instances = predict(model, read_image(unseen_image), device=args.device).decode()
    target = write_labels(out / "bbbc039_A09_s1_labels.tif", instances.labels, overwrite=True)
    scores = evaluate(read_labels(bundled / "bbbc039_A09_s1_masks.tif"), instances.labels)
    print(f"segmented {unseen_image.name} (not seen in training): {instances.count} nuclei "
          f"(annotated: {scores['n_gt']}); AP@0.5:0.95 {scores['ap']:.3f}, F1@0.5 {scores['f1']:.3f}, "
          f"SBD {scores['sbd']:.3f}")
    print(f"labels: {target}\nmodel:  {model_path}")
    return 0


# -- parser --------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .methods import method_names

    parser = argparse.ArgumentParser(prog="napari-deepcolor", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="print progress details and debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model on annotated images",
                       description="Train a model on a folder of annotated images. Layouts understood: IMAGES and "
                       "LABELS folders matched by file name; one folder with images/ and labels/ (or masks/); "
                       "Cellpose NAME.tif + NAME_masks.tif; CVPPP plantNNN_rgb.png + plantNNN_label.png; "
                       "one binary mask per object (BBBC010 <well>_<nn>_ground_truth.png).")
    p.add_argument("--method", default="coloring", choices=method_names(), help="method to train (default: coloring)")
    p.add_argument("--images", required=True, help="folder (or file) of images, or a folder holding images/ and labels/")
    p.add_argument("--labels", default=None, help="folder (or file) of label images, matched to the images by name")
    p.add_argument("--output", required=True, help="model file to write, e.g. cells.safetensors")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="training time budget (default: 15 minutes)")
    budget.add_argument("--iterations", type=int, default=None, help="training budget in iterations instead")
    p.add_argument("--device", default="auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--fine-tune", metavar="MODEL", default=None, help="start from this model instead of from scratch")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training of --output")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--patch-size", type=int, default=256, help="training patch size in pixels (default 256)")
    p.add_argument("--batch-size", type=int, default=8, help="patches per step (default 8)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default 1e-3, as the paper)")
    p.add_argument("--validation-fraction", type=float, default=0.15, help="share of images kept for validation")
    p.add_argument("--validate-every", type=int, default=100, help="validate every N iterations")
    p.add_argument("--depth", type=int, default=None, help="U-Net depth (poolings, default 4)")
    p.add_argument("--width", type=int, default=None, help="U-Net width (default 16 on CPU, 32 on GPU)")
    p.add_argument("--norm", default=None, choices=["batch", "instance", "group", "none"], help="normalisation layers")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data order)")
    p.add_argument("--fit-crf", action="store_true",
                   help="after training, fit the instance CRF's weights on the validation images (for --refine crf)")
    _add_method_option_flags(p)
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("predict", help="segment images with a trained model",
                       description="Segment one image or every image in a folder; writes one label TIFF per "
                       "input, named by its stem, into OUTPUT.")
    p.add_argument("--model", required=True, help="model file written by `train`")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the label images")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--tile-size", type=int, default=512, help="tile size for large images (memory is bounded by it)")
    p.add_argument("--overwrite", action="store_true", help="replace label files that already exist")
    _add_refine_flag(p)
    _add_decode_flags(p)
    p.set_defaults(run=_cmd_predict)

    p = sub.add_parser("evaluate", help="score predicted labels against ground truth",
                       description="Compare a folder of predicted label images with ground truth (matched by "
                       "name) and print SBD, |DiC|, AP@0.50:0.95, F1@0.5 and matching IoU per image and on average.")
    p.add_argument("--pred", required=True, help="folder of predicted label images")
    p.add_argument("--gt", required=True, help="folder of ground-truth label images or per-object masks")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--json", default=None, help="also write the table to this JSON file")
    p.set_defaults(run=_cmd_evaluate)

    p = sub.add_parser("batch", help="segment folders of TIFF stacks, zarr and large images, here or on dask",
                       description="Segment every image of a folder (2D, RGB, Z/T/C stacks; TIFF or zarr; images "
                       "larger than memory) into label images with the input's axes, mirrored under OUTPUT. "
                       "Finished outputs are skipped on a rerun, so an interrupted batch resumes; unreadable files "
                       "are reported and skipped. A summary CSV lands in OUTPUT. Exit status 1 if a file failed.")
    p.add_argument("--model", required=True, help="model file written by `train`")
    p.add_argument("--input", required=True, help="folder of images (or one image file / .zarr folder)")
    p.add_argument("--output", required=True, help="folder for the label images and the summary CSV")
    p.add_argument("--pattern", action="append", default=None, metavar="GLOB",
                   help="file names to segment, repeatable (default: *.tif, *.tiff and *.zarr)")
    p.add_argument("--recursive", action="store_true", help="also search sub-folders (mirrored under OUTPUT)")
    p.add_argument("--format", default="tif", choices=["tif", "zarr"], help="output format (default tif)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run on a local dask cluster of N processes (default: one file at a time in this process)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on an existing dask cluster, e.g. tcp://host:8786 (workers must see the same paths)")
    p.add_argument("--overwrite", action="store_true", help="redo files whose output exists")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (on each worker)")
    p.add_argument("--tile-size", type=int, default=512, help="tile size in pixels (memory is bounded by it)")
    p.add_argument("--large-image-mp", type=float, default=16.0, metavar="MP",
                   help="planes above this many megapixels are read, predicted and decoded out of core (default 16)")
    _add_refine_flag(p)
    _add_decode_flags(p)
    p.set_defaults(run=_cmd_batch)
    p = sub.add_parser("demo", help="train briefly on the bundled nuclei image and segment another one",
                       description="A two-minute tour: trains deep coloring on one bundled BBBC039 image, segments "
                       "a second one it has not seen, prints the scores and writes the labels and the model.")
    p.add_argument("--output", default="deepcolor-demo", help="folder for the labels and the model")
    p.add_argument("--minutes", type=float, default=2.0, help="training time (default 2 minutes)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(run=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except DeepColorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
