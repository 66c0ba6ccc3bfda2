"""The ``napari-deepcolor`` command: thin over the library.

Every error a user can cause is a :class:`DeepColorError`; it is printed as
one line and the command exits with status 2, without a traceback.

Long on purpose: the parser (:func:`build_parser`, which ``scripts/cli_reference.py``
turns into docs/cli.md) and the thin functions behind its subcommands read best
side by side, one flag next to the line that uses it; each command's work is in
the library.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import logging
import math
import re
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .errors import DeepColorError
from .plaintext import plain_text

log = logging.getLogger("napari_deepcolor")

DESCRIPTION = """\
Train, fine-tune and apply instance segmentation models (deep coloring and friends)
on microscopy images. Typical use: segment with a starter model, then fine-tune it on
your own annotations:

  napari-deepcolor predict --model nuclei --input my_images/ --output segmented/
  napari-deepcolor train --fine-tune nuclei --images my_data/images --labels my_data/labels --output mine.safetensors --minutes 5
  napari-deepcolor evaluate --pred segmented/ --gt my_labels/

`napari-deepcolor models` lists the starter models (nuclei, cells, worms, bacteria).

Run `napari-deepcolor COMMAND --help` for the options of each command.
"""


# -- flags generated from the methods' declarations -----------------------------
#
# Decode flags come from each method's DecodeParameter declarations, method options from its Options
# dataclass (the first sentence of each attribute in its numpydoc docstring). Flags are grouped by the
# methods they apply to; `train --method NAME --help` and `predict/batch --model FILE --help` show only
# that method's groups.

def _all_methods(only: str | None = None):
    from .methods import get_method, method_names

    return [get_method(name) for name in method_names() if only is None or name == only]


def _by_methods(entries) -> dict[tuple[str, ...], list]:
    """``[(method name, key, item)]`` -> ``{(method names...): [(key, [(method name, item)...])]}`` in order."""
    found: dict[str, list] = {}
    for method_name, key, item in entries:
        found.setdefault(key, []).append((method_name, item))
    groups: dict[tuple[str, ...], list] = {}
    for key, owners in found.items():
        groups.setdefault(tuple(name for name, _ in owners), []).append((key, owners))
    return groups


def _group_title(names: tuple[str, ...], what: str, everyone: int) -> str:
    owners = "all methods" if len(names) == everyone > 1 else " and ".join(names)
    return f"{what} ({owners})"


def _add_decode_flags(parser: argparse.ArgumentParser, only: str | None = None) -> None:
    methods = _all_methods(only)
    entries = [(m.name, p.name, p) for m in methods for p in m.decode_parameters]
    parser.set_defaults(_decode_names=[p.name for m in _all_methods() for p in m.decode_parameters])
    for number, (names, flags) in enumerate(_by_methods(entries).items()):
        group = parser.add_argument_group(_group_title(names, "decoding", len(methods)), None if number else
                                          "Each default below is the declared one; a trained model stores the "
                                          "values tuned on its validation images, and those are used unless "
                                          "a flag is given.")
        for _, owners in flags:
            p = _most_common_help(owners)
            text, symbol = _split_symbol(plain_text(p.help))
            unit = " px" if _in_pixels(text) else ""
            group.add_argument(p.flag, dest=p.name, type=int if p.integer else float, default=None,
                               metavar=_decode_metavar(p, unit), help=f"{_sentence(text)} (default {p.default:g}"
                               f"{unit}; range {p.minimum:g} to {p.maximum:g}{unit}){symbol}")


def _most_common_help(owners):
    """The declaration whose help most methods share (e.g. the generic size threshold)."""
    helps = [p.help for _, p in owners]
    return max((p for _, p in owners), key=lambda p: helps.count(p.help))


def _in_pixels(text: str) -> bool:
    return bool(re.search(r"\b(many pixels|in pixels|pixels (apart|away))\b", text))


def _decode_metavar(p, unit: str) -> str:
    if p.integer and p.minimum == 0 and p.maximum == 1:
        return "{0,1}"
    return "PX" if unit else "N" if p.integer else "X"


def _split_symbol(text: str) -> tuple[str, str]:
    """``"... above this [tau]."`` -> ``("... above this", " [tau]")``: the paper's symbol goes last."""
    match = re.search(r"\s*(\[[^\[\]]*\])\.?$", text)
    if not match:
        return text.rstrip("."), ""
    return text[:match.start()].rstrip("."), " " + match.group(1)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _add_refine_flag(parser: argparse.ArgumentParser) -> None:
    from .refine import REFINEMENTS

    parser.add_argument("--refine", default=None, choices=REFINEMENTS,
                        help="refine the decoded instances: crf = the instance CRF of Arnab and Torr (2017), "
                             "with the weights fitted at training; none = the decode as it is (default: what the "
                             "model chose on its validation images when it was trained; `models` shows it)")
    parser.add_argument("--flips", action=argparse.BooleanOptionalAction, default=None,
                        help="average the net's output over the image's four flips (test-time augmentation; four "
                             "times the net's work; 3-class baseline models only; default: the model's choice)")


def _add_stack_flags(parser: argparse.ArgumentParser) -> None:
    from .stacks import STITCH_THRESHOLD, TRACK_THRESHOLD

    group = parser.add_argument_group("stacks, time-lapses and channels")
    group.add_argument("--axes", default=None, metavar="AXES",
                       help="what the axes of the images are, one letter each of T (time), Z (depth), C (channel), "
                            "Y, X, e.g. ZYX, TYX, CYX, TZCYX; used for images with that many axes instead of the "
                            "file's own or the guess (untagged stacks: one leading axis is taken as Z, two as TZ, "
                            "and the guess is printed)")
    group.add_argument("--channel", type=int, default=None, metavar="N",
                       help="the channel (0, 1, ...) holding the objects, for a one-channel model and a "
                            "multi-channel image (without it such an image is an error)")
    group.add_argument("--stitch-threshold", type=float, default=STITCH_THRESHOLD, metavar="IOU",
                       help="z-stacks: an object in one plane continues one in the plane before when their overlap "
                            f"(IoU) is at least this; 0 keeps the planes apart (default {STITCH_THRESHOLD:g})")
    group.add_argument("--track-threshold", type=float, default=TRACK_THRESHOLD, metavar="IOU",
                       help="time-lapses: an object in one frame is the same as one in the frame before when their "
                            f"overlap (IoU) is at least this; 0 links nothing (default {TRACK_THRESHOLD:g}); a "
                            "NAME_tracks.csv table lists the tracks")


def _stack_options(args) -> dict:
    return dict(axes=args.axes, channel=args.channel, stitch_threshold=args.stitch_threshold,
                track_threshold=args.track_threshold)


def _decode_overrides(args, method) -> dict:
    names = {p.name for p in method.decode_parameters}
    given = {name: getattr(args, name) for name in dict.fromkeys(getattr(args, "_decode_names", []))
             if getattr(args, name, None) is not None}
    wrong = sorted(set(given) - names)
    if wrong:
        raise DeepColorError(f"{', '.join('--' + w.replace('_', '-') for w in wrong)} does not apply to a "
                             f"'{method.name}' model; its decode parameters are: "
                             f"{', '.join('--' + n.replace('_', '-') for n in names)}.")
    return given


def option_help(options_class) -> dict[str, str]:
    """The first sentence of each attribute's description in a numpydoc ``Attributes`` section."""
    doc = inspect.getdoc(options_class) or ""
    heading = "Attributes\n----------\n"
    if heading not in doc:
        return {}
    lines: dict[str, list[str]] = {}
    name = None
    for line in doc.split(heading, 1)[1].splitlines():
        match = re.match(r"^(\w+) : ", line)
        if match:
            name = match.group(1)
            lines[name] = []
        elif name and line.startswith(" "):
            lines[name].append(line.strip())
        elif line.strip():  # the next section
            break
    return {name: _first_sentence(plain_text(" ".join(text))) for name, text in lines.items()}


def _first_sentence(text: str) -> str:
    """Up to the first full stop that ends a sentence (not the one of "eq. 3", "sec. 3.5", "e.g.")."""
    match = re.search(r"""(?<!\beq)(?<!\beqs)(?<!\bsec)(?<!\bfig)(?<!e\.g)\.(\s+(?=[A-Z"'(])|$)""", text)
    return text[:match.start() + 1] if match else text


def _add_method_option_flags(parser: argparse.ArgumentParser, only: str | None = None) -> None:
    methods = _all_methods(only)
    entries = [(m.name, f.name, (f, option_help(m.Options).get(f.name, ""))) for m in methods
               for f in dataclasses.fields(m.Options)]
    for names, options in _by_methods(entries).items():
        group = parser.add_argument_group(_group_title(names, "training options", len(methods)))
        for name, owners in options:
            f, description = owners[0][1]
            text, symbol = _split_symbol(description)
            unit = " px" if _in_pixels(text) else ""
            defaults = "; ".join(f"{m}: {_shown(g.default)}{unit}" for m, (g, _) in owners) if len(owners) > 1 \
                else _shown(f.default) + unit
            if isinstance(f.default, bool):
                kind, metavar, text = _boolean, "yes|no", f"{text}; pass yes or no"
            else:
                kind, metavar = type(f.default), "PX" if unit else "N" if isinstance(f.default, int) else \
                    "NAME" if isinstance(f.default, str) else "X"
            group.add_argument("--" + name.replace("_", "-"), dest="opt_" + name, type=kind, default=None,
                               metavar=metavar, help=f"{text} (default {defaults}){symbol}")


def _shown(value) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) \
        else str(value)


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
    from .metrics import MISSING, evaluate_folders, format_table, summarize

    rows = evaluate_folders(args.pred, args.gt)
    if args.classes:
        from .metrics import evaluate_class_folders, pooled_class_accuracy

        by_name = {row["name"]: row for row in evaluate_class_folders(args.pred, args.gt, args.classes)}
        rows = [{**row, **by_name.get(row["name"], {})} for row in rows]
    missing = [row["name"] for row in rows if row.get("prediction") == MISSING]
    listed = f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
    ground_truths = len(rows)
    if args.only_predicted:
        rows = [row for row in rows if row.get("prediction") != MISSING]
    mean = summarize(rows)
    if args.classes:  # over all matched objects, not the mean of the images' accuracies
        mean["class_accuracy"] = pooled_class_accuracy(rows)
    scored = len(rows)
    rows.append(mean)
    print(format_table(rows))
    print(f"{scored} of {ground_truths} ground-truth images scored.")
    if missing and args.only_predicted:
        print(f"{len(missing)} ground-truth images have no prediction in {args.pred} {listed}; left out of the "
              "mean (--only-predicted).")
    elif missing:
        print(f"{len(missing)} of {ground_truths} ground-truth images have no prediction in {args.pred} {listed}; "
              "each counts as all misses (every object a false negative) in the mean. If you segmented only "
              "some images on purpose, add --only-predicted to score those alone.")
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
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write, overwrite=True)


def _cmd_train(args) -> int:
    from .data import describe_layout, read_annotated_folder
    from .methods import get_method
    from .training import Training, TrainingConfig
    from .tuning import starter_kept_note

    if args.method is None:  # fine-tuning continues the model's own method
        from .models import read_model_config

        args.method = read_model_config(args.fine_tune)["method"] if args.fine_tune else TrainingConfig.method
    method = get_method(args.method)
    output = Path(args.output)
    if output.exists() and not (args.resume or args.overwrite):
        raise DeepColorError(f"{output} already exists; use --resume to continue training it, --overwrite to "
                             "replace it, or choose another --output.")
    if args.iterations is None and args.minutes is None:
        args.iterations, args.minutes = _earlier_budget(output) if args.resume else (None, 15.0)
    net = {k: v for k, v in (("depth", args.depth), ("width", args.width), ("norm", args.norm)) if v is not None}
    config = TrainingConfig(method=args.method, method_options=_method_options(args, method), net=net,
                            patch_size=args.patch_size, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            iterations=args.iterations, minutes=args.minutes,
                            validation_fraction=args.validation_fraction, validate_every=args.validate_every,
                            seed=args.seed, device=args.device, net_object_diameter=args.net_object_diameter or None,
                            fit_crf=args.fit_crf, choose_refinement=args.choose_refinement,
                            object_classes=args.object_classes, keep_starter_unless_beaten=not args.keep_fine_tune,
                            **({"lr_schedule": args.lr_schedule} if args.lr_schedule else {}))
    print(describe_layout(args.images, args.labels), file=sys.stderr)
    data = read_annotated_folder(args.images, args.labels, classes=args.classes,
                                 labels_are_masks=args.labels_are_masks)
    if data[0].has_classes:
        print(f"classes: {', '.join(data[0].class_names)}", file=sys.stderr)
    training = Training(config, data, output=output, init_from=args.fine_tune, resume=args.resume)
    if training.finished_before:
        print(training.finished_before)
        return 0
    with _first_ctrl_c_stops(training):
        finished = _show_training(training.run(), f"training {args.method}")
    print("decode defaults: " + ", ".join(f"{k}={v:g}" for k, v in finished.decode_parameters.items()))
    kept = starter_kept_note(finished.model)  # then the refinement scores were the discarded weights'
    if kept or finished.model.inference_defaults:
        print(kept or f"applied by default: {_refinement_text(finished.model)}")
    if finished.model.provenance.get("object_classes"):
        from .object_classes import classes_choice_text

        print(classes_choice_text(finished.model.provenance["object_classes"]))
    if finished.reason == "stopped":
        print(f"stopped by Ctrl-C after {finished.iteration} iterations; model saved to {finished.path}. "
              "Continue it with the same command plus --resume.")
        return EXIT_INTERRUPTED
    print(f"{finished.reason}: {finished.iteration} iterations; model saved to {finished.path}")
    return 0


def _refinement_text(model) -> str:
    """What segmenting applies by default, and the validation scores the choice was made on."""
    scores = model.provenance.get("refinement_choice", {})  # {"skipped": why} when no time was left
    tried = ", ".join(f"{name} {value:.3f}" for name, value in scores.items() if isinstance(value, float))
    return f"{' and '.join(model.refinement_names()) or 'the plain decode'}" + \
        (f" (validation AP: {tried})" if tried else "")


def _earlier_budget(model_path) -> tuple[int | None, float | None]:
    """The budget (iterations, minutes) the training of ``model_path`` was started with; 15 minutes if unknown."""
    from .models import read_model_config

    try:
        earlier = read_model_config(model_path).get("provenance", {}).get("training", {})
    except DeepColorError:
        earlier = {}
    if earlier.get("iterations"):
        return earlier["iterations"], None
    return None, earlier.get("minutes") or 15.0


#: exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def _first_ctrl_c_stops(training):
    """The first Ctrl-C asks the training to stop (it saves the model); a second one aborts.

    A KeyboardInterrupt raised inside the training generator would end it without
    saving, so the first SIGINT only sets the stop flag. Outside the main thread
    (signals cannot be caught there) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def stop(signum, frame):
        print("\nstopping: saving the model trained so far (press Ctrl-C again to abort without saving)",
              file=sys.stderr, flush=True)
        training.stop()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _show_training(events, description: str):
    """Show a training's events on stderr (a progress bar, validation lines); return its Finished event."""
    from tqdm import tqdm

    from .training import Finished, Step, Validated

    finished = None
    with _logs_above_the_bar(), tqdm(total=1000, desc=description, file=sys.stderr, dynamic_ncols=True,
                                     bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
        for event in events:
            if isinstance(event, Step):
                bar.n = min(int(event.fraction_done * 1000), 1000)
                bar.set_postfix_str(f"iteration {event.iteration}, {event.patches_per_second:.1f} patches/s, "
                                    f"loss {event.loss:.3f}, {_duration(event.eta_seconds)} left")
            elif isinstance(event, Validated):
                bar.write("validation @%d: %s" % (event.iteration,
                                                  ", ".join(f"{k}={v:.3f}" for k, v in event.scores.items())))
            elif isinstance(event, Finished):
                finished = event
    return finished


def _logs_above_the_bar():
    """Log records printed as lines of their own above a progress bar, not glued to the end of its line."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _duration(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``; unknown (infinite) -> ``?``."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(max(seconds, 0))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _cmd_train_classes(args) -> int:
    """Fit the object classifier of a model on annotated objects with classes; the net is not retrained."""
    from .checkpoint import load_model, save_model
    from .data import read_annotated_folder
    from .data.sampling import split_train_validation
    from .object_classes import annotated_objects, train_object_classifier

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise DeepColorError(f"{output} already exists; use --overwrite to replace it, or choose another --output.")
    model = load_model(args.model)
    data = read_annotated_folder(args.images, args.labels, classes=args.classes,
                                 labels_are_masks=args.labels_are_masks)
    if not data[0].has_classes:
        raise DeepColorError("the annotations have no classes: give --classes FOLDER (classes.json and NAME.csv "
                             "tables of label, class, or class images), or put a classes/ folder beside images/.")
    train, validation = split_train_validation(data, validation_fraction=args.validation_fraction, seed=args.seed) \
        if model.class_names and args.validation_fraction > 0 else (data, [])
    device = args.device
    # the forest needs only the images; the net's output only where the training objects themselves choose
    # between the forest and a pixel class head (no validation images)
    examples = annotated_objects(model, train, device=device, run_net=bool(model.class_names) and not validation)
    classifier = train_object_classifier(model, examples,
                                         validation=annotated_objects(model, validation, device=device),
                                         class_names=data[0].class_names, n_trees=args.trees, seed=args.seed)
    model.object_classifier = classifier
    save_model(model, output, overwrite=args.overwrite)
    scores = ", ".join(f"{k} {v}" for k, v in classifier.scores.items())
    print(f"object classes {', '.join(classifier.class_names)} ({scores}); classes come from the "
          f"{'object classifier' if classifier.use == 'object' else 'pixel class head'}; model saved to {output}")
    return 0


def _cmd_predict(args) -> int:
    """``batch`` with predict's defaults: every image of a folder (TIFF, PNG, JPEG, BMP, zarr), no summary CSV."""
    from .batch import BatchConfig
    from .models import read_model_config
    from .data.io import IMAGE_SUFFIXES
    from .methods import get_method

    method = get_method(read_model_config(args.model)["method"])
    config = BatchConfig(model=args.model, input=args.input, output=args.output,
                         patterns=tuple(f"*{suffix}" for suffix in IMAGE_SUFFIXES) + ("*.zarr",),
                         decode=_decode_overrides(args, method), overwrite=args.overwrite, device=args.device,
                         tile_size=args.tile_size, summary=False,
                         object_diameter=args.object_diameter, refine=args.refine, flips=args.flips,
                         **_stack_options(args))
    return _run_batch(config)


def _cmd_batch(args) -> int:
    from .batch import DEFAULT_PATTERNS, BatchConfig
    from .models import read_model_config
    from .methods import get_method

    method = get_method(read_model_config(args.model)["method"])
    config = BatchConfig(model=args.model, input=args.input, output=args.output,
                         patterns=tuple(args.pattern or DEFAULT_PATTERNS), recursive=args.recursive, format=args.format,
                         decode=_decode_overrides(args, method), workers=args.workers, scheduler=args.scheduler,
                         overwrite=args.overwrite, device=args.device, tile_size=args.tile_size,
                         large_image_megapixels=args.large_image_mp, object_diameter=args.object_diameter, refine=args.refine,
                         flips=args.flips, **_stack_options(args))
    return _run_batch(config)


def _run_batch(config) -> int:
    """Run the batch engine with a progress bar; exit status 1 if a file failed."""
    from tqdm import tqdm

    from .batch import DONE, FAILED, SKIPPED, Batch, BatchFinished, BatchStarted, FileDone, FileFailed, PlaneDone

    bar, finished = None, None
    try:
        with _logs_above_the_bar():
            for event in Batch(config).run():
                if isinstance(event, BatchStarted):
                    bar = tqdm(total=event.total, unit="file", desc="segmenting", file=sys.stderr, dynamic_ncols=True)
                elif isinstance(event, PlaneDone):
                    bar.set_postfix_str(f"{event.file}: plane {event.plane}/{event.planes}" if event.planes > 1 else "")
                elif isinstance(event, (FileDone, FileFailed)):
                    bar.update(1)
                    bar.set_postfix_str("")
                    r = event.result
                    if r.status == DONE:
                        classes = f" ({', '.join(f'{n} {name}' for name, n in r.class_counts)})" if r.class_counts else ""
                        note = f"; {r.note}" if r.note else ""
                        bar.write(f"{r.file}: {r.objects} objects{classes} -> {r.output} ({r.seconds:.1f} s, {r.route})"
                                  f"{note}", file=sys.stderr)
                    elif r.status == FAILED:
                        bar.write(f"{r.file}: FAILED: {r.error}", file=sys.stderr)
                elif isinstance(event, BatchFinished):
                    finished = event
    finally:
        if bar is not None:
            bar.close()
    summary = f"; summary: {finished.summary}" if finished.summary else ""
    print(f"{finished.count(DONE)} segmented, {finished.count(SKIPPED)} skipped (output exists; --overwrite redoes "
          f"them), {finished.count(FAILED)} failed{summary}")
    return 1 if finished.count(FAILED) else 0


def _cmd_models(args) -> int:
    """One line per starter model: name, data, licence, test-split scores."""
    from .models import describe_starter, starter_names

    names = starter_names()
    if not names:
        print("no starter models are installed (the package was built without them).")
        return 0
    for name in names:
        print(describe_starter(name))
    print("use one by name: predict --model NAME, batch --model NAME, train --fine-tune NAME; "
          "model cards: docs/models.md")
    return 0


def _cmd_export(args) -> int:
    from .models import export_bioimageio

    test_image = None
    if args.test_image:
        from .data.io import read_image

        test_image = read_image(args.test_image)
    target = export_bioimageio(args.model, args.output, name=args.name, test_image=test_image,
                               authors=tuple(args.author or ("napari-deepcolor user",)), license=args.license,
                               overwrite=args.overwrite)
    print(f"bioimage.io package written: {target}")
    return 0


#: the starter the demo begins from
DEMO_STARTER = "nuclei"


def _cmd_demo(args) -> int:
    """The nuclei starter on an image of its own kind and on nuclei unlike them, fine-tuned on half of those."""
    from importlib.resources import files

    from .baseline import otsu_watershed
    from .data import from_arrays
    from .data.io import read_image, read_labels, write_labels
    from .metrics import evaluate
    from .models import load_model, state_path
    from .segment import segment
    from .training import Finished, Step, Training, TrainingConfig

    bundled = files("napari_deepcolor") / "sample_data"
    out = Path(args.output)
    model_path = out / "demo_nuclei.safetensors"
    own_labels, unlike_labels = out / "bbbc039_A02_s1_labels.tif", out / "dsb2018_nuclei_labels.tif"
    earlier = [p for p in (model_path, state_path(model_path), own_labels, unlike_labels) if p.exists()]
    if earlier and not args.overwrite:
        raise DeepColorError(f"{out} already holds an earlier demo's results ({', '.join(p.name for p in earlier)}); "
                             "pass --overwrite to replace them, or choose another --output folder.")
    starter = load_model(DEMO_STARTER)

    def rows_for(image, truth, *models):
        rows = [("Otsu + watershed (no training)", otsu_watershed(image))]
        rows += [(name, segment(model, image, device=args.device).labels) for name, model in models]
        return [(name, evaluate(truth, labels), labels) for name, labels in rows]

    # A02_s1 is in the starter's held-back test split (accuracy.py's split of BBBC039): its own kind of image
    print(f"segmenting bbbc039_A02_s1.tif with the '{DEMO_STARTER}' starter model ...", file=sys.stderr)
    own = rows_for(read_image(bundled / "bbbc039_A02_s1.tif"), read_labels(bundled / "bbbc039_A02_s1_masks.tif"),
                   (f"'{DEMO_STARTER}' starter, as shipped", starter))
    # the DSB2018 nuclei come from another lab and microscope: the user's own images, annotated on the left half
    image, truth = read_image(bundled / "dsb2018_nuclei.tif"), read_labels(bundled / "dsb2018_nuclei_masks.tif")
    half = image.shape[1] // 2
    config = TrainingConfig(method=starter.method_name, minutes=args.minutes, device=args.device,
                            seed=args.seed)  # as `train --fine-tune` does: 1e-4, its validation share, its rules
    data = from_arrays([image[:, :half]], [truth[:, :half]], names=["dsb2018_nuclei_left_half"])
    print(f"fine-tuning it for {args.minutes:g} min on the annotated left half of dsb2018_nuclei.tif ...",
          file=sys.stderr)
    for event in Training(config, data, output=model_path, init_from=DEMO_STARTER).run():
        if isinstance(event, Step) and event.iteration % 10 == 0:
            print(f"  step {event.iteration}: loss {event.loss:.3f}, {event.eta_seconds:.0f} s left", file=sys.stderr)
        if isinstance(event, Finished):
            model = event.model
    unlike = rows_for(image[:, half:], truth[:, half:], (f"'{DEMO_STARTER}' starter, as shipped", starter),
                      (f"'{DEMO_STARTER}' fine-tuned {args.minutes:g} min", model))
    write_labels(own_labels, own[-1][2], overwrite=True)
    write_labels(unlike_labels, segment(model, image, device=args.device).labels, overwrite=True)
    for title, rows in (("bbbc039_A02_s1.tif: the starter's own kind of image, seen by no model", own),
                        ("dsb2018_nuclei.tif, right half: nuclei unlike the starter's, seen by no model", unlike)):
        print(f"\n{title} ({rows[0][1]['n_gt']} annotated nuclei):")
        width = max(len(name) for name, _, _ in rows)
        print(f"  {'':{width}}  objects  AP@0.5:0.95  F1@0.5    SBD")
        for name, scores, _ in rows:
            print(f"  {name:{width}}  {scores['n_pred']:7d}  {scores['ap']:11.3f}  {scores['f1']:6.3f}  "
                  f"{scores['sbd']:.3f}")
    print(f"\nfine-tuning gain on the unlike nuclei: AP {unlike[2][1]['ap'] - unlike[1][1]['ap']:+.3f}")
    print(f"labels: {own_labels}, {unlike_labels}\nmodel:  {model_path}")
    return 0


# -- parser --------------------------------------------------------------------

def build_parser(only_method: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``only_method`` limits the method options and decode flags to one method (for --help)."""
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
                       "one binary mask per object (BBBC010 <well>_<nn>_ground_truth.png). Ctrl-C stops after the "
                       "current step and saves the model (exit status 130); --resume continues it.")
    p.add_argument("--method", default=None, choices=method_names(),
                   help="method to train (default: boundary, the 3-class U-Net, best at CPU budgets here; with "
                        "--fine-tune, the model's own method)")
    p.add_argument("--images", required=True, help="folder (or file) of images, or a folder holding images/ and labels/")
    p.add_argument("--labels", default=None, help="folder (or file) of label images, matched to the images by name")
    p.add_argument("--classes", default=None, metavar="FOLDER",
                   help="class of each object: FOLDER/NAME.tif class images (value = class id) named like the label "
                        "images, with the names in FOLDER/classes.json ({\"1\": \"alive\", \"2\": \"dead\"}), or "
                        "FOLDER/NAME.csv tables of label, class; found by itself as classes/ beside images/ and "
                        "labels/. The model then gives every object a class (predict writes NAME_classes.csv)")
    p.add_argument("--labels-are-masks", action="store_true",
                   help="the label images are masks (0/255, 0/1, or one value over many objects): each separate "
                        "piece becomes an object of its own (objects that touch stay one). Without it such labels "
                        "are refused with a message")
    p.add_argument("--output", required=True, help="model file to write, e.g. cells.safetensors")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="training time budget (default: 15 minutes)")
    budget.add_argument("--iterations", type=int, default=None, help="training budget in iterations instead")
    p.add_argument("--device", default="auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--fine-tune", metavar="MODEL", default=None,
                   help="start from this model instead of from scratch: a starter name (nuclei, cells, worms, "
                        "bacteria; see `napari-deepcolor models`) or a model file")
    p.add_argument("--keep-fine-tune", action="store_true",
                   help="with --fine-tune: keep the new weights even where they do not score 0.01 AP above the "
                        "starter on the validation images (by default the model then keeps the starter's weights, "
                        "with a warning)")
    p.add_argument("--resume", action="store_true",
                   help="continue the training of --output to its budget (the one it started with, unless "
                        "--minutes or --iterations give a larger total); a training that finished its budget is "
                        "left as it is, with a message")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--patch-size", type=int, default=256, help="training patch size in pixels (default 256)")
    p.add_argument("--batch-size", type=int, default=None, help="patches per step (default 4 on a CPU, 8 on a GPU)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="Adam learning rate (default 1e-3 from scratch, as the paper; 1e-4 with --fine-tune)")
    p.add_argument("--validation-fraction", type=float, default=0.15, help="share of images kept for validation")
    p.add_argument("--validate-every", type=int, default=None,
                   help="score the validation images every N iterations; 0: only at the end (default: every 100 "
                        "on a GPU, only at the end on a CPU, where each pass costs minutes)")
    p.add_argument("--depth", type=int, default=None, help="U-Net depth (poolings, default 4)")
    p.add_argument("--width", type=int, default=None, help="U-Net width (default 16 on CPU, 32 on GPU)")
    p.add_argument("--norm", default=None, choices=["batch", "instance", "group", "none"], help="normalisation layers")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data order)")
    p.add_argument("--fit-crf", action="store_true",
                   help="after training, fit the instance CRF's weights on the validation images (for --refine crf)")
    p.add_argument("--choose-refinement", action=argparse.BooleanOptionalAction, default=True,
                   help="after training, let the validation images decide whether the instance CRF and test-time "
                        "flips are applied by default when segmenting with this model (default: on)")
    p.add_argument("--object-classes", action=argparse.BooleanOptionalAction, default=True,
                   help="with --classes: after training, also fit an object classifier on the training objects' "
                        "shape and intensity (seconds) and let the validation images keep it or the pixel class "
                        "head, whichever classifies better (default: on)")
    # spelt out, not imported: importing training (torch) would slow every command's start by seconds;
    # tests/test_cli.py checks them against training.LR_SCHEDULES
    p.add_argument("--lr-schedule", default=None, choices=("cosine", "constant", "warmup_cosine"),
                   help="the learning rate over the budget (default: constant, the paper's)")
    p.add_argument("--net-object-diameter", type=float, default=30.0, metavar="PX",
                   help="the net sees the images rescaled so that the median annotated object is this many pixels "
                        "across (default 30, as Cellpose); 0 trains at the images' own resolution")
    _add_method_option_flags(p, only_method)
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("train-classes", help="learn object classes from the shape of whole objects, in seconds",
                       description="Fit a random forest on the annotated objects' shape and intensity (length, "
                       "curvature, solidity, ...) and store it in a copy of the model; the net is not retrained. "
                       "predict and batch then give every object a class (NAME_classes.csv, objects_<class> "
                       "counts in the batch summary). For a model with a class head, the validation images keep "
                       "whichever of the two classifies better.")
    p.add_argument("--model", required=True, help="the segmentation model (file, starter name or .zip)")
    p.add_argument("--images", required=True, help="folder of annotated images (as for train)")
    p.add_argument("--labels", default=None, help="folder of instance labels (as for train)")
    p.add_argument("--classes", default=None, metavar="FOLDER", help="class of each object (as for train)")
    p.add_argument("--labels-are-masks", action="store_true", help="LABELS holds one binary mask per object")
    p.add_argument("--output", required=True, help="the new model file (.safetensors)")
    p.add_argument("--validation-fraction", type=float, default=0.15,
                   help="share of the images that choose between the forest and a class head (models with one)")
    p.add_argument("--trees", type=int, default=200, help="trees of the forest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=_cmd_train_classes)

    p = sub.add_parser("predict", help="segment images with a trained model",
                       description="Segment one image or every image in a folder (TIFF, PNG, JPEG, BMP, zarr); "
                       "writes one label TIFF per input, named by its stem, into OUTPUT. Labels that exist already "
                       "are kept (an interrupted run resumes; --overwrite redoes them), and an input image is "
                       "never written over. Stacks keep their Z and T axes: objects are followed through the planes "
                       "and frames. Beside each label file: NAME_objects.csv (one row per object: position, size, "
                       "intensity per channel) and, for time-lapses, NAME_tracks.csv. Exit status 1 if an image "
                       "failed.")
    p.add_argument("--model", required=True, help="a starter name (nuclei, cells, worms, bacteria; see "
                   "`napari-deepcolor models`), a model file written by `train`, or an exported bioimage.io .zip")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the label images")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--tile-size", type=int, default=512, help="tile size for large images (memory is bounded by it)")
    p.add_argument("--overwrite", action="store_true", help="replace label files that already exist")
    p.add_argument("--object-diameter", type=float, default=None, metavar="PX",
                   help="typical object diameter in these images, in pixels, if it differs from the training "
                        "images' (the model rescales the images to the size it was trained at)")
    _add_stack_flags(p)
    _add_refine_flag(p)
    _add_decode_flags(p, only_method)
    p.set_defaults(run=_cmd_predict)

    p = sub.add_parser("evaluate", help="score predicted labels against ground truth",
                       description="Compare a folder of predicted label images with ground truth (matched by "
                       "name) and print SBD, |DiC|, AP@0.50:0.95, F1@0.5 and matching IoU per image and on average.")
    p.add_argument("--pred", required=True, help="folder of predicted label images")
    p.add_argument("--gt", required=True, help="folder of ground-truth label images or per-object masks")
    p.add_argument("--classes", default=None, metavar="FOLDER",
                   help="the true classes of the ground truth (class images + classes.json, or NAME.csv tables of "
                        "label, class): adds per-class AP and F1 and the class accuracy of matched objects, the "
                        "predicted classes read from each prediction's NAME_classes.csv")
    p.add_argument("--only-predicted", action="store_true",
                   help="score only the ground-truth images that have a prediction (for a subset segmented on "
                        "purpose); by default a missing prediction counts as all misses")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--json", default=None, help="also write the table to this JSON file")
    p.set_defaults(run=_cmd_evaluate)

    p = sub.add_parser("batch", help="segment folders of TIFF stacks, zarr and large images, here or on dask",
                       description="Segment every image of a folder (2D, RGB, Z/T/C stacks; TIFF or zarr; images "
                       "larger than memory) into label images with the input's axes, mirrored under OUTPUT. "
                       "Finished outputs are skipped on a rerun, so an interrupted batch resumes; unreadable files "
                       "are reported and skipped. A summary CSV lands in OUTPUT. Exit status 1 if a file failed.")
    p.add_argument("--model", required=True, help="a starter name (nuclei, cells, worms, bacteria; see "
                   "`napari-deepcolor models`), a model file written by `train`, or an exported bioimage.io .zip")
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
    p.add_argument("--object-diameter", type=float, default=None, metavar="PX",
                   help="typical object diameter in these images, in pixels, if it differs from the training "
                        "images' (the model rescales the images to the size it was trained at)")
    _add_stack_flags(p)
    _add_refine_flag(p)
    _add_decode_flags(p, only_method)
    p.set_defaults(run=_cmd_batch)
    p = sub.add_parser("models", help="list the starter models shipped with the package",
                       description="List the starter models that segment out of the box (use them by name with "
                       "predict --model, batch --model and train --fine-tune); their model cards are in "
                       "docs/models.md.")
    p.set_defaults(run=_cmd_models)

    p = sub.add_parser("export", help="write a model as a bioimage.io model package (.zip)",
                       description="Export a model (file, starter name or package) as a bioimage.io model package: "
                       "rdf.yaml (format 0.5), TorchScript weights, test input and output, cover image, and the "
                       "method and decode parameters in its config. Needs the bioimageio extra. "
                       "`predict --model OUT.zip` reads the package back.")
    p.add_argument("model", help="model file, starter name or exported package")
    p.add_argument("output", help="the .zip to write")
    p.add_argument("--format", default="bioimageio", choices=["bioimageio"], help="package format (default bioimageio)")
    p.add_argument("--name", default=None, help="the package's name (default: the model's)")
    p.add_argument("--author", action="append", default=None, metavar="NAME",
                   help="an author of the model, repeatable (default: 'napari-deepcolor user')")
    p.add_argument("--license", default=None, metavar="SPDX",
                   help="licence of the weights as an SPDX id (default: a starter's own, else CC-BY-4.0)")
    p.add_argument("--test-image", default=None, metavar="FILE",
                   help="an image the package's test input is cut from (default: a synthetic nuclei image)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=_cmd_export)

    p = sub.add_parser("demo", help="segment bundled nuclei images with the nuclei starter, then fine-tune it",
                       description="A two-minute tour: segments a bundled BBBC039 image (the starter's own kind) "
                       "with the 'nuclei' starter model at once, then nuclei from another lab (a DSB2018 image): "
                       "fine-tunes the starter for about a minute on the annotated left half, as train --fine-tune "
                       "does, and prints the scores on the right half before and after, beside a classical Otsu + "
                       "watershed baseline; writes the labels and the fine-tuned model.")
    p.add_argument("--output", default="deepcolor-demo", help="folder for the labels and the model")
    p.add_argument("--minutes", type=float, default=1.0, help="fine-tuning time (default 1 minute)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="seed of the fine-tuning's patch sampling")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier demo in --output")
    p.set_defaults(run=_cmd_demo)
    return parser


def _method_asked_for_help(argv: list[str]) -> str | None:
    """With --help: the method named by ``--method NAME`` or by the model of ``--model FILE``, if any."""
    if not ({"-h", "--help"} & set(argv)):
        return None
    from .methods import method_names

    values = {}
    for i, arg in enumerate(argv):
        for flag in ("--method", "--model"):
            if arg == flag and i + 1 < len(argv):
                values[flag] = argv[i + 1]
            elif arg.startswith(flag + "="):
                values[flag] = arg.split("=", 1)[1]
    if values.get("--method") in method_names():
        return values["--method"]
    if "--model" in values:
        from .models import read_model_config

        try:
            return read_model_config(values["--model"])["method"]
        except DeepColorError:
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_method_asked_for_help(argv))
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
