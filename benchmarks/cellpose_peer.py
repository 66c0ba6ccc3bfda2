"""Cellpose 3 trained from scratch on a split file, under a wall-clock budget: the peer of benchmarks/peer.py.

    CELLPOSE_VENV/bin/python benchmarks/cellpose_peer.py --split split.json --minutes 15 --out DIR

Run with a Python that has ``cellpose<4`` (3.x) and torch, *not* napari_deepcolor: this script reads the
files itself and imports nothing from the project, so the peer runs exactly as a Cellpose user would run it.
benchmarks/peer.py writes the split file, starts this script next to our own runs and scores what it writes.

Split file (JSON)::

    {"train": [{"name": "A01", "image": "/path/A01.tif", "labels": "/path/A01_labels.tif"}, ...],
     "test":  [{"name": "B02", "image": "/path/B02.tif",
                "object_masks": ["/path/B02_01.png", "/path/B02_02.png", ...]}, ...]}

Each entry has either ``labels`` (an instance-label image, 0 = background) or ``object_masks`` (one binary
image per object, as BBBC010 ships its overlapping worms). Cellpose needs one label image per training
image, so overlapping masks are combined first-wins: a pixel belongs to the first mask (in the order given)
that covers it. Test entries need only ``name`` and ``image``.

Recipe (Cellpose 3's command-line training defaults, cellpose/cli.py, with ``--pretrained_model None``):
``models.CellposeModel(pretrained_model=False, diam_mean=30., nchan=2)`` (random initialisation; any attempt
to fetch pretrained weights is made an error here), then ``train.train_seg(net, train_data, train_labels,
channels=[0, 0], normalize=True, SGD=True, learning_rate=0.2, momentum=0.9, weight_decay=1e-5,
batch_size=8, bsize=224, rescale=True, min_train_masks=5, n_epochs=N)``. ``train_seg`` rescales each
training crop so that the image's median object diameter (``utils.diameters`` of its labels) becomes
``diam_mean`` = 30 px, and keeps its own learning-rate schedule for ``n_epochs`` (linear warm-up over 10
epochs, then constant; halving steps at the end of runs over 100 epochs).

Budget: the clock starts once the files are read. The flows (``dynamics.labels_to_flows``, which train_seg
would otherwise compute itself; seconds per image on a CPU) are computed once and count against the
budget unless ``--flows-outside-budget`` is given (``train_seconds`` then excludes them; ``flows_seconds``
is recorded either way). So does a calibration: ``CALIBRATION_STEPS`` full batches of 8 through
``train_seg`` on a throw-away copy of the net, timed step to step; the first two steps (the warm-up) are left
out and the median of the others is the seconds per step, and the time from the call to the first step,
per image, estimates train_seg's own set-up (normalising every image) for the real run.

The schedule must fit the budget. Cellpose's learning rate is per epoch: it rises linearly over 10 epochs,
stays at 0.2, and, in runs of more than 100 epochs, halves ten times over the last 50 epochs (100 in runs
of more than 300). A run cut short by the clock ends at the peak rate and never decays (the starved runs of
docs/benchmarks.md did). So the epochs are sized to end with the budget: with ``--nimg-per-epoch auto``
(default) an epoch is the whole training set (the CLI default) when 100 or more such epochs fit, and
otherwise one batch of 8 images drawn at random (cellpose's own ``nimg_per_epoch`` option), and
``n_epochs`` is as many as fit the time left (:func:`plan_epochs`). If no more than 100 one-batch epochs
fit, the schedule has no decay in the budget, and the script stops with "budget too small for the
schedule" instead of reporting a half-trained peer. A forward pre-hook on the net still ends training
before a step that would overrun the deadline (a slower machine than calibrated); the run file records
whether the whole schedule ran (``schedule_completed``).

Cellpose runs on the CPU here (``device=torch.device("cpu")``), as our side does in benchmarks/accuracy.py.

Prediction: ``model.eval(image, channels=[0, 0], diameter=D, flow_threshold=0.4, cellprob_threshold=0.0)``
(cellpose's defaults) with D the median over training images of their diameters: cellpose's size model is
not trained, so the user would give the diameter they measured on their annotations.

Writes ``DIR/<name>.tif`` (uint16, or uint32 above 65535 objects) for every test image and
``DIR/cellpose_run.json`` (epochs, steps, seconds, diameters, recipe, versions).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

LOG = logging.getLogger("cellpose_peer")

RECIPE = {"SGD": True, "learning_rate": 0.2, "momentum": 0.9, "weight_decay": 1e-5, "batch_size": 8,
          "bsize": 224, "rescale": True, "diam_mean": 30.0, "min_train_masks": 5, "normalize": True,
          "channels": [0, 0], "nchan": 2}
EVAL = {"flow_threshold": 0.4, "cellprob_threshold": 0.0}
#: full batches timed by :func:`calibrate`; the first two are left out of the median: on BBBC039 steps 2-4
#: took 8.0 s in the median against 6.8 s over the run that followed (the allocator and oneDNN warm up)
CALIBRATION_STEPS = 6
#: share of the estimated steps that is planned. None held back: on this machine 15 minutes fit ~102 of
#: BBBC039's steps, just past the 100 epochs from which the schedule decays, and a step that the deadline
#: cuts at the end runs at under 1/500 of the peak rate (the tenth halving), so it changes nothing
PLAN_MARGIN = 1.0


class PeerError(RuntimeError):
    """A problem with the split file or its images; the message says what to fix."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", type=Path, required=True, help="JSON split file (see the module docstring)")
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget (default 15)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="CPU threads for torch (default: every core, as a user running it alone has)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the label images and cellpose_run.json")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the random initialisation")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train exactly this many epochs instead of fitting them to --minutes")
    parser.add_argument("--flows-outside-budget", action="store_true",
                        help="start the clock after the flows are computed (default: they count, as in train_seg)")
    parser.add_argument("--nimg-per-epoch", default="auto",
                        help="images per epoch: 'auto' (default, see the docstring) or a number")
    return parser.parse_args(argv)


def limit_threads(threads: int) -> None:
    """Cap the BLAS/OpenMP/numba pools before numpy and torch are imported."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(threads)


def read_array(path: str):
    """An image as stored: TIFF through tifffile, anything else through OpenCV (unchanged depth)."""
    import numpy as np

    if not Path(path).is_file():
        raise PeerError(f"{path}: no such file; check the split file's paths")
    if str(path).lower().endswith((".tif", ".tiff")):
        import tifffile

        return np.asarray(tifffile.imread(path))
    import cv2

    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise PeerError(f"{path}: OpenCV could not read it; is it a complete PNG/TIFF file?")
    return array


def read_image(path: str):
    """A 2-D grey image; a colour image becomes its mean channel (the data sets here are single-channel)."""
    image = read_array(path)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3].mean(axis=-1)
    if image.ndim != 2:
        raise PeerError(f"{path}: expected a 2-D image, got shape {image.shape}")
    return image.astype("float32")


def first_wins(mask_paths) -> "np.ndarray":
    """One label image from per-object binary masks: each pixel goes to the first mask that covers it."""
    import numpy as np

    labels = None
    for index, path in enumerate(mask_paths, start=1):
        mask = read_array(path)
        mask = (mask if mask.ndim == 2 else mask[..., 0]) > 0
        if labels is None:
            labels = np.zeros(mask.shape, np.int32)
        if mask.shape != labels.shape:
            raise PeerError(f"{path}: mask shape {mask.shape} differs from the first mask's {labels.shape}")
        labels[mask & (labels == 0)] = index
    if labels is None:
        raise PeerError("an entry has an empty object_masks list; give labels or at least one mask")
    return labels


def read_labels(entry: dict) -> "np.ndarray":
    """The entry's instance labels (int32), from ``labels`` or first-wins ``object_masks``."""
    import numpy as np

    if entry.get("labels"):
        labels = read_array(entry["labels"])
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise PeerError(f"{entry['labels']}: expected a 2-D integer label image, got {labels.dtype} "
                            f"{labels.shape}")
        return labels.astype(np.int32)
    if entry.get("object_masks"):
        return first_wins(entry["object_masks"])
    raise PeerError(f"split entry {entry.get('name')!r} has neither 'labels' nor 'object_masks'")


def read_split(path: Path) -> tuple[list, list]:
    """The split file's train and test entries, checked for the keys this script needs."""
    try:
        split = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PeerError(f"{path}: not a readable JSON split file ({exc})") from exc
    for part in ("train", "test"):
        if not split.get(part):
            raise PeerError(f"{path}: the '{part}' list is missing or empty")
        for entry in split[part]:
            if "name" not in entry or "image" not in entry:
                raise PeerError(f"{path}: every {part} entry needs 'name' and 'image' (got {sorted(entry)})")
            if not re.fullmatch(r"[\w.\- ]+", entry["name"]):
                raise PeerError(f"{path}: name {entry['name']!r} cannot be a file name")
    return split["train"], split["test"]


def forbid_downloads() -> None:
    """Make any attempt to fetch pretrained weights an error instead of a silent download."""
    from cellpose import models, utils

    def refuse(*args, **kwargs):
        raise PeerError(f"cellpose tried to download pretrained weights ({args[:1]}); this benchmark trains "
                        "from scratch: pass pretrained_model=False")

    utils.download_url_to_file = refuse
    models.cache_model_path = refuse


def fresh_model(seed: int, device):
    """A randomly initialised CellposeModel (no weights loaded), checked to be so."""
    import torch
    from cellpose import models

    torch.manual_seed(seed)
    model = models.CellposeModel(pretrained_model=False, diam_mean=RECIPE["diam_mean"], nchan=RECIPE["nchan"],
                                 device=device)
    if model.pretrained_model:
        raise PeerError(f"cellpose loaded weights from {model.pretrained_model}; expected a random net")
    if float(model.net.diam_mean.item()) != RECIPE["diam_mean"]:
        raise PeerError(f"the net's diam_mean is {model.net.diam_mean.item()}, expected {RECIPE['diam_mean']}")
    return model


class EpochTimes(logging.Handler):
    """Collects train_seg's own progress lines: ``<epoch>, train_loss=..., time <s>s``."""

    PATTERN = re.compile(r"^(\d+), train_loss=([\d.naninf]+).*time ([\d.]+)s")

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        match = self.PATTERN.match(record.getMessage())
        if match:
            self.records.append({"epoch": int(match[1]), "train_loss": float(match[2]),
                                 "seconds": float(match[3])})


def train(net, data, flows, *, n_epochs: int, save_path: Path, nimg_per_epoch=None,
          epoch_log: list | None = None) -> tuple[list, float]:
    """One ``train_seg`` call with the recipe: (its epoch log, wall seconds of the call).

    ``epoch_log``, if given, is filled as train_seg logs, so it survives a :class:`BudgetSpent`.
    """
    from cellpose import train as cp_train

    handler = EpochTimes()
    if epoch_log is not None:
        handler.records = epoch_log
    cp_train.train_logger.addHandler(handler)
    cp_train.train_logger.setLevel(logging.INFO)
    t0 = time.perf_counter()
    try:
        cp_train.train_seg(net, train_data=data, train_labels=flows, channels=RECIPE["channels"],
                           normalize=RECIPE["normalize"], SGD=RECIPE["SGD"], learning_rate=RECIPE["learning_rate"],
                           momentum=RECIPE["momentum"], weight_decay=RECIPE["weight_decay"],
                           batch_size=RECIPE["batch_size"], bsize=RECIPE["bsize"], rescale=RECIPE["rescale"],
                           min_train_masks=RECIPE["min_train_masks"], n_epochs=n_epochs,
                           nimg_per_epoch=nimg_per_epoch, save_path=str(save_path), save_every=10**9,
                           model_name="cellpose_peer")
    finally:
        cp_train.train_logger.removeHandler(handler)
    return handler.records, time.perf_counter() - t0


def training_diameters(labels_list) -> "np.ndarray":
    """Each training image's diameter as train_seg computes it (``utils.diameters``, floored at 5 px)."""
    import numpy as np
    from cellpose import utils

    diameters, counts = [], []
    for labels in labels_list:
        diameter, per_object = utils.diameters(labels)
        diameters.append(max(float(diameter), 5.0))
        counts.append(len(per_object))
    return np.array(diameters), np.array(counts)


class BudgetSpent(Exception):
    """Raised by :class:`StepGuard` to end ``train_seg`` when the next step would overrun the budget."""


class StepGuard:
    """A forward pre-hook that counts training steps and stops before one would end past ``deadline``."""

    def __init__(self, deadline: float, first_step_seconds: float):
        self.deadline = deadline
        self.steps = 0
        self.last = None
        self.step_seconds = []
        self.first_step_seconds = first_step_seconds
        self.first_step_at = None

    def __call__(self, module, inputs):
        if not module.training:
            return
        now = time.perf_counter()
        if self.last is not None:
            self.step_seconds.append(now - self.last)
        expected = self.step_seconds[-1] if self.step_seconds else self.first_step_seconds
        if now + expected > self.deadline:
            raise BudgetSpent
        if self.first_step_at is None:
            self.first_step_at = now
        self.last = now
        self.steps += 1


def plan_epochs(left_s: float, seconds_per_batch: float, n_train: int, nimg_per_epoch) -> tuple[int, int]:
    """(n_epochs, images per epoch) that end Cellpose's schedule within ``left_s`` seconds.

    Raises :class:`PeerError` when no more than 100 epochs fit: the schedule would then never decay.

    >>> plan_epochs(900, 5.0, 120, "auto")     # 180 one-batch steps fit: 180 one-batch epochs
    (180, 8)
    >>> plan_epochs(900, 0.1, 120, "auto")     # 600 full epochs of 15 batches fit
    (600, 120)
    """
    batch = RECIPE["batch_size"]
    steps = math.floor(PLAN_MARGIN * left_s / seconds_per_batch)
    if nimg_per_epoch == "auto":
        nimg_per_epoch = n_train if steps / math.ceil(n_train / batch) >= 100 else batch
    n_epochs = steps // math.ceil(int(nimg_per_epoch) / batch)
    if n_epochs <= 100:
        raise PeerError(f"budget too small for the schedule: {steps} steps of {seconds_per_batch:.1f} s fit in "
                        f"{left_s:.0f} s, {n_epochs} epochs of {nimg_per_epoch} images; cellpose's learning rate "
                        "only decays in runs of more than 100 epochs. Give more --minutes or more threads.")
    return n_epochs, int(nimg_per_epoch)


def calibrate(net, images, flows, save_path: Path) -> tuple[float, float]:
    """(seconds per batch of 8, set-up seconds per image) of ``train_seg`` on this machine.

    Trains a copy of ``net`` for ``CALIBRATION_STEPS`` one-batch epochs on ``images`` (a few of the training
    images), timing each step from one forward call to the next; the first two are left out (warm-up).
    The time from the call to the first step, per image, is train_seg's set-up (normalisation).
    """
    import copy

    net = copy.deepcopy(net)
    guard = StepGuard(float("inf"), 0.0)
    handle = net.register_forward_pre_hook(guard)
    started = time.perf_counter()
    try:
        train(net, images, flows, n_epochs=CALIBRATION_STEPS, save_path=save_path,
              nimg_per_epoch=RECIPE["batch_size"])
    finally:
        handle.remove()
    timed = sorted(guard.step_seconds[2:])
    if not timed or guard.first_step_at is None:
        raise PeerError("the calibration ran fewer than 4 training steps; is this cellpose 3.x?")
    return timed[len(timed) // 2], (guard.first_step_at - started) / len(images)


def train_in_budget(net, data, flows, *, deadline: float, n_epochs: int, nimg_per_epoch: int,
                    save_path: Path, first_step_seconds: float = 0.0) -> dict:
    """Train ``net`` in place with the recipe until done or until ``deadline``; what happened."""
    guard = StepGuard(deadline, first_step_seconds)
    handle = net.register_forward_pre_hook(guard)
    stopped, epoch_log = False, []
    try:
        train(net, data, flows, n_epochs=n_epochs, save_path=save_path, nimg_per_epoch=nimg_per_epoch,
              epoch_log=epoch_log)
    except BudgetSpent:
        stopped = True
    finally:
        handle.remove()
    steps_per_epoch = math.ceil(nimg_per_epoch / RECIPE["batch_size"])
    return {"n_epochs_scheduled": n_epochs, "nimg_per_epoch": nimg_per_epoch, "steps": guard.steps,
            "steps_scheduled": n_epochs * steps_per_epoch, "epochs": guard.steps / steps_per_epoch,
            "stopped_by_budget": stopped, "schedule_completed": guard.steps == n_epochs * steps_per_epoch,
            "median_step_seconds": sorted(guard.step_seconds)[len(guard.step_seconds) // 2]
            if guard.step_seconds else None, "epoch_log": epoch_log}


def write_labels(path: Path, labels) -> None:
    """Write a label image atomically, in the smallest of uint16/uint32 that holds it."""
    import numpy as np
    import tifffile

    dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tif")
    os.close(fd)
    try:
        tifffile.imwrite(tmp, labels.astype(dtype))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=1)
    os.replace(tmp, path)


def versions() -> dict:
    import cellpose
    import numpy
    import torch

    return {"cellpose": str(cellpose.version), "torch": torch.__version__,
            "numpy": numpy.__version__, "python": platform.python_version(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"}


def main(argv=None) -> dict:
    args = parse_args(argv)
    limit_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    import numpy as np
    import torch
    from cellpose import dynamics

    torch.set_num_threads(args.threads)
    forbid_downloads()
    train_entries, test_entries = read_split(args.split)
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    images = [read_image(e["image"]) for e in train_entries]
    labels = [read_labels(e) for e in train_entries]
    for entry, image, label in zip(train_entries, images, labels):
        if image.shape != label.shape:
            raise PeerError(f"{entry['name']}: image {image.shape} and labels {label.shape} differ in shape")

    budget_s = args.minutes * 60.0
    t_start = time.perf_counter()
    diameters, counts = training_diameters(labels)
    used = counts >= RECIPE["min_train_masks"]
    flows = dynamics.labels_to_flows(labels, device=device)
    flows_s = time.perf_counter() - t_start
    if args.flows_outside_budget:
        t_start = time.perf_counter()
    model = fresh_model(args.seed, device)
    n_used = int(used.sum())
    if n_used == 0:
        raise PeerError(f"no training image has {RECIPE['min_train_masks']} or more objects; cellpose skips them")
    work = Path(tempfile.mkdtemp(prefix="cellpose_peer_", dir=args.out))
    some = [int(i) for i in np.flatnonzero(used)[:RECIPE["batch_size"]]]
    seconds_per_batch, setup_per_image = calibrate(model.net, [images[i] for i in some], [flows[i] for i in some],
                                                   work) if args.epochs is None else (None, None)
    calibration_s = time.perf_counter() - t_start - (0.0 if args.flows_outside_budget else flows_s)
    if args.epochs is None:
        setup_s = setup_per_image * len(images)  # train_seg normalises every image before its first step
        n_epochs, nimg_per_epoch = plan_epochs(budget_s - (time.perf_counter() - t_start) - setup_s,
                                               seconds_per_batch, n_used, args.nimg_per_epoch)
        deadline = t_start + budget_s
    else:
        n_epochs, deadline = args.epochs, float("inf")
        nimg_per_epoch = n_used if args.nimg_per_epoch == "auto" else int(args.nimg_per_epoch)
    LOG.info("training up to %d epochs of %d images (calibrated %s s per batch)", n_epochs, nimg_per_epoch,
             seconds_per_batch)
    done = train_in_budget(model.net, images, flows, deadline=deadline, n_epochs=n_epochs,
                           nimg_per_epoch=nimg_per_epoch, save_path=work,
                           first_step_seconds=seconds_per_batch or 0.0)
    train_s = time.perf_counter() - t_start

    median_diameter = float(np.median(diameters[used]))
    predict_s, per_image = [], []
    for entry in test_entries:
        image = read_image(entry["image"])
        t = time.perf_counter()
        masks = model.eval(image, channels=RECIPE["channels"], diameter=median_diameter, **EVAL)[0]
        predict_s.append(time.perf_counter() - t)
        write_labels(args.out / f"{entry['name']}.tif", np.asarray(masks))
        per_image.append({"name": entry["name"], "objects": int(np.asarray(masks).max(initial=0)),
                          "predict_seconds": round(predict_s[-1], 2)})

    run = {"budget_seconds": None if args.epochs is not None else budget_s, "fixed_epochs": args.epochs,
           **{k: v for k, v in done.items() if k != "epoch_log"},
           "train_seconds": round(train_s, 1), "flows_seconds": round(flows_s, 1),
           "flows_in_budget": not args.flows_outside_budget,
           "calibration_seconds": round(calibration_s, 1), "calibrated_seconds_per_batch": seconds_per_batch,
           "calibrated_setup_seconds_per_image": setup_per_image, "calibration_steps": CALIBRATION_STEPS,
           "over_budget": args.epochs is None and train_s > budget_s,
           "final_logged_train_loss": done["epoch_log"][-1]["train_loss"] if done["epoch_log"] else None,
           "epoch_log": done["epoch_log"],
           "n_train_images": len(train_entries), "n_train_images_used": n_used,
           "n_test_images": len(test_entries),
           "diameter_used": median_diameter, "diameter_rule": "median over training images of utils.diameters",
           "train_diameters_mean": float(diameters[used].mean()), "train_diameters": diameters.round(2).tolist(),
           "recipe": RECIPE, "eval": EVAL, "pretrained_model": False, "seed": args.seed, "threads": args.threads,
           "torch_threads": torch.get_num_threads(), "cores": os.cpu_count(),
           "load_average_after": [round(x, 2) for x in os.getloadavg()],
           "predict_seconds_total": round(sum(predict_s), 1),
           "median_predict_seconds": float(np.median(predict_s)), "per_image": per_image, "versions": versions()}
    write_json(args.out / "cellpose_run.json", run)
    shutil.rmtree(work)  # train_seg's saved weights: the labels are the result
    LOG.info("done: %d steps, %.0f s training, %d test images", done["steps"], train_s, len(test_entries))
    return run


if __name__ == "__main__":
    try:
        main()
    except PeerError as exc:
        sys.exit(f"cellpose_peer: {exc}")
