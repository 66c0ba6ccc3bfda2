"""The training loop: a plain generator of typed events with a cooperative stop.

The CLI prints the events, the napari widget plots them; neither knows how
training works. ``Training(config, data).run()`` yields :class:`Started`,
then :class:`Step` every iteration, :class:`Validated` now and then,
:class:`CheckpointSaved` periodically, :class:`TuningDecode` when the decode
parameters are tuned on the validation images after the loop, and
:class:`Finished` at the end (also after :meth:`Training.stop`, which keeps a
usable model; :meth:`Training.skip_tuning` cuts the tuning short).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .models import (Model, load_model, load_training_state, new_model, read_model_config, read_training_progress,
                     save_model, save_training_state)
from .data.augment import Augmentation
from .data.sample import AnnotatedImage
from .data.sampling import PatchSampler, split_for_tuning
from .device import autocast, memory_format, resolve_device
from .errors import DeepColorError
from .data.dataset import check_same_classes
from .methods import DEFAULT_METHOD, get_method, method_names
from .methods.classes import class_head_loss
from .nets import NetConfig, random_origins
from .tuning import validation_scores

log = logging.getLogger(__name__)

#: share of a budget in minutes kept for tuning the decode parameters after the loop (see Training._loop_end)
POST_LOOP_SHARE = 0.1
LR_SCHEDULES = ("cosine", "constant", "warmup_cosine")
#: share of the budget over which "warmup_cosine" rises linearly to its peak rate
WARMUP_SHARE = 0.05


#: Adam's step size from scratch, as in the paper
LEARNING_RATE = 1e-3
#: ... and when fine-tuning a model: a tenth. On nuclei unlike the starter's a minute gave AP 0.33 at 1e-5, 0.65-0.72
#: at 1e-4 (from 0.105); on images like its own, where 1e-4 once undid a starter, the guard keeps the starter unless
#: beaten (3 images: nuclei 0.773 at 1e-4, 0.762 at 1e-5; E. coli 0.927, 0.931; docs/benchmarks.md, session 16)
FINE_TUNE_LEARNING_RATE = 1e-4

@dataclass(frozen=True)
class TrainingConfig:
    """Everything that defines a training run; shared by the CLI, the widget and the saved model."""

    method: str = DEFAULT_METHOD
    method_options: dict = field(default_factory=dict)
    net: dict = field(default_factory=dict)  # depth, width, norm (see nets.NetConfig)
    patch_size: int = 256
    #: patches per step; None: 4 on a CPU (the recipe of every benchmark and starter here: twice the
    #: steps of 8 in the same minutes), 8 on a GPU
    batch_size: int | None = None
    #: Adam's step size; None: LEARNING_RATE (the paper's) from scratch, FINE_TUNE_LEARNING_RATE when
    #: starting from a model
    learning_rate: float | None = None
    #: "constant": the paper's fixed rate; "cosine": it falls from learning_rate to 0 over the budget
    #: (steps or minutes). Cosine did not beat constant in 300 steps (docs/benchmarks.md, A/B);
    #: "warmup_cosine": a linear rise over the first WARMUP_SHARE of the budget, then the cosine fall,
    #: so the schedule ends with the budget as Cellpose's does
    lr_schedule: str = "constant"
    iterations: int | None = None
    minutes: float | None = None
    validation_fraction: float = 0.15
    #: validation scores every this many steps (0: only the final one, after tuning). None: every 100 on
    #: a GPU, 0 on a CPU, where each pass cost about a quarter of a 15-minute budget (issue 11)
    validate_every: int | None = None
    checkpoint_minutes: float = 5.0
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    tune_decode: bool = True
    #: after training, fit the instance CRF's weights on the validation images (napari_deepcolor.refine)
    fit_crf: bool = False
    #: after tuning, let the validation images decide whether the instance CRF and test-time flips pay,
    #: and store the choice in the model (napari_deepcolor.tuning.choose_refinement)
    choose_refinement: bool = True
    #: with classes, after tuning: also fit an object classifier on the training objects' shape and intensity
    #: (napari_deepcolor.object_classes, seconds) and let the validation images keep it or the pixel class
    #: head, whichever classifies their objects better; the choice is stored in the model
    object_classes: bool = True
    workers: int | None = None  # data-loading processes; None: 0 on CPU, 4 on GPU
    #: the object diameter (px) the net is trained and run at: images are rescaled so that the median
    #: annotated object has it (see napari_deepcolor.scale); None trains at the images' own resolution
    net_object_diameter: float | None = 30.0
    #: fine-tuning: keep the starter's weights and defaults unless the fine-tune scores 0.01 AP higher on
    #: the validation images (napari_deepcolor.tuning.starter_or_fine_tune)
    keep_starter_unless_beaten: bool = True

    def __post_init__(self):
        if self.method not in method_names():
            raise DeepColorError(f"unknown method '{self.method}'; choose one of: {', '.join(method_names())}.")
        if (self.iterations is None) == (self.minutes is None):
            raise DeepColorError("give exactly one training budget: iterations (e.g. 2000) or minutes (e.g. 15).")
        if self.iterations is not None and self.iterations < 1:
            raise DeepColorError(f"iterations must be at least 1 (got {self.iterations}).")
        if self.minutes is not None and self.minutes <= 0:
            raise DeepColorError(f"minutes must be positive (got {self.minutes}).")
        if self.patch_size < 32 or self.patch_size > 2048:
            raise DeepColorError(f"patch_size must be in [32, 2048] (got {self.patch_size}).")
        if self.batch_size is not None and not 1 <= self.batch_size <= 512:
            raise DeepColorError(f"batch_size must be in [1, 512] (got {self.batch_size}).")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise DeepColorError(f"learning_rate must be in (0, 1) (got {self.learning_rate}).")
        if self.lr_schedule not in LR_SCHEDULES:
            raise DeepColorError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)} (got {self.lr_schedule!r}).")
        if self.net_object_diameter is not None and not 4 <= self.net_object_diameter <= 256:
            raise DeepColorError(f"net_object_diameter must be in [4, 256] px, or None for no rescaling "
                                 f"(got {self.net_object_diameter}).")
        if not 0 <= self.validation_fraction < 1:
            raise DeepColorError(f"validation_fraction must be in [0, 1) (got {self.validation_fraction}).")
        get_method(self.method).options(self.method_options)  # unknown keys, ranges
        if self.fit_crf:
            from .refine import check_crf_supported

            check_crf_supported(self.method)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def base_learning_rate(config: TrainingConfig, *, fine_tuning: bool) -> float:
    """``config.learning_rate``, or the default for a run from scratch or from a model."""
    if config.learning_rate is not None:
        return config.learning_rate
    return FINE_TUNE_LEARNING_RATE if fine_tuning else LEARNING_RATE


def default_batch_size(device) -> int:
    """Patches per step when the config leaves it open: 8 on a GPU, 4 on a CPU."""
    return 8 if torch.device(device).type == "cuda" else 4


def learning_rate_at(config: TrainingConfig, progress: float) -> float:
    """The step size at ``progress`` (0 to 1) of the budget: constant, a half cosine down to 0, or a
    linear warm-up over the first ``WARMUP_SHARE`` followed by that half cosine over the rest."""
    progress = min(max(progress, 0.0), 1.0)
    if config.lr_schedule == "constant":
        return config.learning_rate
    if config.lr_schedule == "warmup_cosine":
        if progress < WARMUP_SHARE:
            return config.learning_rate * max(progress / WARMUP_SHARE, 0.01)
        progress = (progress - WARMUP_SHARE) / (1 - WARMUP_SHARE)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Started:
    total_iterations: int | None
    total_seconds: float | None
    device: str
    n_train: int
    n_validation: int
    start_iteration: int


@dataclass(frozen=True)
class Step:
    iteration: int
    loss: float
    patches_per_second: float
    elapsed_seconds: float
    eta_seconds: float
    fraction_done: float
    learning_rate: float  # the step size this step took


@dataclass(frozen=True)
class Validated:
    iteration: int
    scores: dict


@dataclass(frozen=True)
class CheckpointSaved:
    iteration: int
    path: Path


@dataclass(frozen=True)
class TuningDecode:
    """The loop is over; the decode parameters are being tuned (``Training.skip_tuning`` ends it early)."""

    iteration: int
    n_validation: int


#: Finished.reason of a resume that found the model's training finished: nothing trained, nothing written
ALREADY_FINISHED = "already finished"


@dataclass(frozen=True)
class Finished:
    iteration: int
    reason: str  # "done", "stopped" or ALREADY_FINISHED
    path: Path | None
    decode_parameters: dict
    scores: dict
    model: Model = field(repr=False)


class _PatchBatches(torch.utils.data.IterableDataset):
    """Endless batches of (image, targets): sampling, augmentation and target preparation."""

    def __init__(self, samples, method, options, config: TrainingConfig, seed: int, n_classes: int = 0):
        self.samples, self.method, self.options, self.config, self.seed = samples, method, options, config, seed
        self.n_classes = n_classes

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        seed = self.seed + (info.id * 7919 if info else 0)
        sampler = PatchSampler(self.samples, patch_size=self.config.patch_size, seed=seed,
                               augmentation=Augmentation() if self.config.augment else None)
        patches = iter(sampler)
        while True:
            batch = [next(patches) for _ in range(self.config.batch_size)]
            images = torch.from_numpy(np.stack([p.image for p in batch]))
            targets = self.method.collate([self.method.prepare_targets(p.labels, p.ignore, self.options)
                                           for p in batch])
            if self.n_classes:  # the class head's target; coloring also reads it for class-specific colours
                targets["classes"] = torch.from_numpy(np.stack([p.classes for p in batch]))
                targets["n_classes"] = torch.tensor(self.n_classes)
            yield images, targets


def _to_device(targets, device):
    return {k: v.to(device, non_blocking=True) for k, v in targets.items()}


class Training:
    """One training run. Iterate :meth:`run` for events; call :meth:`stop` from any thread.

    ``model`` is the model being trained once :meth:`run` has started (None before). Read it only
    from the thread that iterates :meth:`run`, between two events (e.g. for a live preview): the
    loop is suspended there, so the weights are not changing.
    """

    def __init__(self, config: TrainingConfig, data: Sequence[AnnotatedImage], *, output=None,
                 validation: Sequence[AnnotatedImage] | None = None, init_from=None, resume: bool = False):
        if not data:
            raise DeepColorError("no training images: give at least one annotated image.")
        self.config, self.output = config, None if output is None else Path(output)
        if resume and (self.output is None or not self.output.is_file()):
            raise DeepColorError(f"cannot resume: no model at {self.output} yet; start without --resume.")
        self.validation_is_a_strip = validation is None and len(data) == 1  # cut from the only image given
        if validation is None:
            data, validation = split_for_tuning(list(data), validation_fraction=config.validation_fraction,
                                                seed=config.seed)
        self.train_data, self.validation = list(data), list(validation)
        #: the classes of the annotations (() for one class): the model gets a class head for them
        self.class_names = check_same_classes(self.train_data + self.validation)
        get_method(config.method).check_classes(get_method(config.method).options(config.method_options),
                                                self.class_names)
        self.init_from, self.resume = init_from, resume
        #: on resume, why there is nothing left to train (the budget given is spent already), else None
        self.finished_before = finished_before(self.output, config) if resume else None
        self.model: Model | None = None
        self._stop = threading.Event()
        self._skip_tuning = threading.Event()

    def stop(self) -> None:
        """Ask the loop to finish after the current step; it saves a usable model."""
        self._stop.set()

    def skip_tuning(self) -> None:
        """End the decode tuning after the candidate being scored, keeping the best found so far."""
        self._skip_tuning.set()

    # -- the loop ------------------------------------------------------------
    def run(self) -> Iterator:
        run_started = time.perf_counter()  # a budget in minutes is the wall time from here to Finished
        device = resolve_device(self.config.device)
        config = self.config = dataclasses.replace(
            self.config, learning_rate=base_learning_rate(self.config, fine_tuning=self.init_from is not None
                                                          and not self.resume),
            batch_size=self.config.batch_size or default_batch_size(device))
        method = get_method(config.method)
        if self.finished_before:  # say so and change nothing, rather than one more step over the model
            model = self.model = load_model(self.output, device="cpu")
            log.info("%s", self.finished_before)
            yield Finished(model.provenance.get("iterations", 0), ALREADY_FINISHED, self.output,
                           model.decode_parameters(), model.provenance.get("validation_scores", {}), model)
            return
        model = self.model = self._initial_model(device)
        options = model.method_options
        train_data = self._at_net_scale(model)
        optimizer = torch.optim.Adam(model.net.parameters(), lr=config.learning_rate)
        start, elapsed_before = 0, 0.0
        if self.resume:
            progress = load_training_state(self.output, optimizer)
            start, elapsed_before = progress["iteration"], progress["elapsed_seconds"]
        deadline = None if config.minutes is None else run_started + max(config.minutes * 60 - elapsed_before, 0.0)
        layout = memory_format(device)
        model.net.to(memory_format=layout)
        workers = config.workers if config.workers is not None else (4 if device.type == "cuda" else 0)
        method_channels, n_classes = model.method_channels, len(model.class_names)
        loader = torch.utils.data.DataLoader(
            _PatchBatches(train_data, method, options, config, seed=config.seed + start, n_classes=n_classes),
            batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=workers > 0)
        batches, places = iter(loader), torch.Generator().manual_seed(config.seed + start)  # places: position input
        yield Started(config.iterations, None if config.minutes is None else config.minutes * 60, str(device),
                      len(self.train_data), len(self.validation), start)

        every = validation_interval(config, device)
        validation_seconds = self._probe_validation(model, device, deadline)
        t0, last_checkpoint, iteration, losses = run_started, time.perf_counter(), start, []
        loop_started = time.perf_counter()
        reason = "done"
        scores: dict = {}
        while not self._done(iteration, elapsed_before + time.perf_counter() - t0) and \
                (iteration == start or not _past(self._loop_end(deadline, validation_seconds))):  # >= 1 step
            if self._stop.is_set():
                reason = "stopped"
                break
            model.net.train()
            images, targets = next(batches)
            images = images.to(device, non_blocking=True).contiguous(memory_format=layout)
            with autocast(device):
                raw = model.net(images, random_origins(len(images), model.net_config.position_periods, places))
            targets = _to_device(targets, device)
            loss = method.loss(raw[:, :method_channels], targets, options)
            if n_classes:
                loss = loss + class_head_loss(raw[:, method_channels:], targets["classes"], targets["ignore"])
            if not torch.isfinite(loss):
                raise DeepColorError("training diverged (the loss became NaN or infinite); lower the learning "
                                     "rate, or check the images for NaNs.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            progress = self._progress(iteration, elapsed_before + time.perf_counter() - t0,
                                      self._loop_end(deadline, validation_seconds), t0, elapsed_before)
            learning_rate = learning_rate_at(config, progress)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            optimizer.step()
            iteration += 1
            losses.append(loss.item())
            elapsed = elapsed_before + time.perf_counter() - t0
            done = self._fraction(iteration, elapsed)
            rate = (iteration - start) * config.batch_size / max(time.perf_counter() - loop_started, 1e-9)
            eta = deadline - time.perf_counter() if deadline is not None else \
                elapsed * (1 - done) / max(done, 1e-9) if done > 0 else math.inf
            yield Step(iteration, losses[-1], rate, elapsed, eta, done, learning_rate)

            loop_end = self._loop_end(deadline, validation_seconds)
            if self.validation and every and iteration % every == 0 and \
                    (loop_end is None or time.perf_counter() + validation_seconds < loop_end):
                validation_started = time.perf_counter()
                scores = validation_scores(model, self.validation, device)
                validation_seconds = time.perf_counter() - validation_started
                yield Validated(iteration, scores)
            if self.output is not None and time.perf_counter() - last_checkpoint > config.checkpoint_minutes * 60:
                self._save(model, optimizer, iteration, elapsed)
                last_checkpoint = time.perf_counter()
                yield CheckpointSaved(iteration, self.output)

        elapsed = elapsed_before + time.perf_counter() - t0
        decode, predictions = dict(model.decode_defaults), None
        choosing = bool(self.validation) and config.choose_refinement and iteration > start
        if self.validation and config.tune_decode and iteration > start:
            from .inference import predict
            from .tuning import starters_decode_unless_beaten, tune_predictions

            yield TuningDecode(iteration, len(self.validation))
            # the net runs once; tuning and the final scores decode its cached output
            predictions = []
            for sample in self.validation:
                if self._skip_tuning.is_set() and predictions:
                    break
                predictions.append(predict(model, sample.image, stack=False, device=device))
            truths = [s.labels for s in self.validation[:len(predictions)]]
            decode, best = tune_predictions(predictions, truths, deadline=deadline, stop=self._skip_tuning.is_set)
            if self.init_from is not None and not self.resume:
                decode, best = starters_decode_unless_beaten(model.decode_defaults, decode, best, predictions, truths,
                                                             strip_of_one_image=self.validation_is_a_strip)
            model.decode_defaults = decode
            if not self._skip_tuning.is_set():  # skipped: no second look at the validation images
                scores = validation_scores(model, self.validation, device, predictions=predictions)
            scores = {**scores, "tuned_ap": best}
            yield Validated(iteration, scores)
        crf_fit = None
        if self.validation and config.fit_crf and iteration > start:
            from .refine import fit_model_crf

            crf_fit = fit_model_crf(model, self.validation, device=device)
        refinement = None
        if choosing and not self._skip_tuning.is_set():  # in the time the tuning left: it matters more
            from .tuning import choose_refinement

            refinement = choose_refinement(model, self.validation, predictions if predictions and
                                           len(predictions) == len(self.validation) else None,
                                           device=device, deadline=deadline, stop=self._skip_tuning.is_set)
        object_classes = None
        if self.class_names and config.object_classes and iteration > start and not self._skip_tuning.is_set():
            object_classes = self._fit_object_classes(model, device, predictions)
        kept = self._keep_starter_unless_beaten(model, device, refinement, scores) \
            if self.init_from is not None and not self.resume and iteration > start else None
        model.provenance = {**model.provenance, "iterations": iteration, "train_seconds": round(elapsed, 1),
                            "training": config.to_dict(), "n_train_images": len(self.train_data),
                            "augmentation": dataclasses.asdict(Augmentation()) if config.augment else None,
                            "n_validation_images": len(self.validation), "validation_scores": scores,
                            "decode_tuning_skipped": self._skip_tuning.is_set(),
                            "torch": torch.__version__, **({"crf_fit": crf_fit} if crf_fit else {}),
                            **({"refinement_choice": refinement} if refinement else {}),
                            **({"object_classes": object_classes} if object_classes else {}),
                            **({"starter_or_fine_tune": kept} if kept else {})}
        if self.output is not None:
            self._save(model, optimizer, iteration, elapsed, finished=reason == "done")
        yield Finished(iteration, reason, self.output, model.decode_parameters(), scores, model)

    # -- helpers -------------------------------------------------------------
    def _initial_model(self, device) -> Model:
        config = self.config
        channels = self.train_data[0].image.shape[-1]
        source = self.output if self.resume else self.init_from
        if source is None:
            net = {"width": NetConfig.default_width(str(device)), **config.net}
            with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
                torch.manual_seed(config.seed)
                model = new_model(config.method, config.method_options, net, channels,
                                  class_names=self.class_names)
        else:
            model = load_model(source, device="cpu")
            if model.class_names != self.class_names:
                raise DeepColorError(f"{source} knows the classes ({', '.join(model.class_names) or 'none'}) but "
                                     f"the training images have ({', '.join(self.class_names) or 'none'}); "
                                     "continue with annotations of the same classes, or train a new model.")
            if model.method_name != config.method:
                raise DeepColorError(f"{source} is a '{model.method_name}' model; it cannot continue training "
                                     f"as '{config.method}'. Choose --method {model.method_name}.")
            if model.net_config.in_channels != channels:
                raise DeepColorError(f"{source} expects {model.net_config.in_channels}-channel images but the "
                                     f"training images have {channels}.")
            if not self.resume:
                model.provenance = {**model.provenance, "fine_tuned_from": str(source)}
                model.card = {}  # a starter's card (its data, its scores) no longer describes the result
        model.net.to(device)
        return model

    def _keep_starter_unless_beaten(self, model: Model, device, refinement: dict | None, scores: dict) -> dict | None:
        """``model`` gets its starter's weights and defaults back unless the fine-tune beat it on validation (on a
        strip of the one image given: if it lost there; :func:`~napari_deepcolor.tuning.starter_or_fine_tune`)."""
        from .tuning import give_starter_back, starter_kept_text, starter_or_fine_tune

        choice = refinement or {}  # the refinement chosen scored the fine-tune last; else the tuned decode
        fine_tuned = choice.get(choice.get("chosen"), scores.get("ap"))
        if not self.config.keep_starter_unless_beaten or fine_tuned is None or self._skip_tuning.is_set():
            return None
        starter = load_model(self.init_from, device="cpu")
        record = starter_or_fine_tune(starter, fine_tuned, self.validation, device=device,
                                      strip_of_one_image=self.validation_is_a_strip)
        if record["kept"] == "starter":
            log.warning("%s (--keep-fine-tune keeps the new weights anyway).", starter_kept_text(record))
            give_starter_back(model, starter)
        return record

    def _fit_object_classes(self, model: Model, device, predictions) -> dict:
        """Fit the object classifier on the training images' annotated objects and let the validation images
        choose it or the pixel class head (:func:`napari_deepcolor.object_classes.train_object_classifier`);
        sets ``model.object_classifier``. Returns what the provenance keeps: the choice and its scores, or
        why there is none. ``predictions``: the validation images' from the decode tuning, if it made them all.
        """
        from .object_classes import annotated_objects, train_object_classifier

        if not self.validation:
            return {"skipped": "no validation images to choose between the object classifier and the pixel "
                               "class head"}
        complete = predictions if predictions and len(predictions) == len(self.validation) else None
        try:
            classifier = train_object_classifier(
                model, annotated_objects(model, self.train_data, run_net=False),  # features need no net output
                validation=annotated_objects(model, self.validation, device=device, predictions=complete),
                seed=self.config.seed)
        except DeepColorError as exc:  # e.g. the training images' objects hold one class only
            log.warning("no object classifier: %s", exc)
            return {"skipped": str(exc)}
        model.object_classifier = classifier
        return {"use": classifier.use, **classifier.scores}

    def _at_net_scale(self, model: Model) -> list[AnnotatedImage]:
        """The training images rescaled so their objects have the net's object diameter; records the
        scale in ``model`` (a fine-tuned model keeps the diameter its net was trained at)."""
        from .scale import kept_object_diameter, object_diameter, rescale_sample

        net_diameter = model.object_scale.get("net_object_diameter") if (self.resume or self.init_from) \
            else self.config.net_object_diameter
        diameter = object_diameter([s.labels for s in self.train_data])
        if self.resume or self.init_from:
            diameter = kept_object_diameter(model.object_scale.get("object_diameter"), diameter,
                                            resume=self.resume)
        model.object_scale = {"object_diameter": round(diameter, 2), "net_object_diameter": net_diameter} \
            if net_diameter and diameter else {}
        factor = model.scale_factor()
        if factor != 1.0:
            log.info("objects are %.1f px across: training at %.2fx so that they are %g px", diameter, factor,
                     net_diameter)
        return [rescale_sample(s, factor) for s in self.train_data]

    def _probe_validation(self, model: Model, device, deadline: float | None) -> float:
        """Seconds one validation pass will take, timed on the first validation image (0 without a deadline)."""
        if deadline is None or not self.validation:
            return 0.0
        started = time.perf_counter()
        validation_scores(model, self.validation[:1], device)
        return (time.perf_counter() - started) * len(self.validation)

    def _progress(self, iteration: int, elapsed: float, loop_end: float | None, t0: float,
                  elapsed_before: float) -> float:
        """How far through its budget the loop is, 0 to 1: steps done, or time spent of the loop's time."""
        if self.config.iterations is not None:
            return iteration / self.config.iterations
        return elapsed / max(elapsed_before + loop_end - t0, 1e-9)

    def _loop_end(self, deadline: float | None, validation_seconds: float) -> float | None:
        """When the loop must stop so that the decode tuning and its validation end by ``deadline``.

        The post-loop work (one pass of the net over the validation images, then
        decodes) gets 1.5 validation passes, at least POST_LOOP_SHARE and at
        most half of the budget.
        """
        if deadline is None:
            return None
        if not (self.validation and self.config.tune_decode):
            return deadline
        budget = self.config.minutes * 60
        return deadline - min(max(POST_LOOP_SHARE * budget, 1.5 * validation_seconds), 0.5 * budget)

    def _done(self, iteration: int, elapsed: float) -> bool:
        return self._fraction(iteration, elapsed) >= 1.0

    def _fraction(self, iteration: int, elapsed: float) -> float:
        if self.config.iterations is not None:
            return iteration / self.config.iterations
        return elapsed / (self.config.minutes * 60)

    def _save(self, model: Model, optimizer, iteration: int, elapsed: float, *, finished: bool = False) -> None:
        save_model(model, self.output, overwrite=True)
        save_training_state(self.output, optimizer, {"iteration": iteration, "elapsed_seconds": elapsed,
                                                     "finished": finished})


def finished_before(model_path, config: TrainingConfig) -> str | None:
    """Why resuming ``model_path`` under ``config`` has nothing to train, or None when budget is left.

    Budget is left when the run was interrupted before its end, or when ``config`` asks for more
    than the finished run had: more iterations than it did, or more minutes than its budget.
    """
    progress = read_training_progress(model_path)
    if not progress:
        return None
    done, seconds = progress.get("iteration", 0), progress.get("elapsed_seconds", 0.0)
    earlier = read_model_config(model_path).get("provenance", {}).get("training", {})
    if config.iterations is not None:
        if config.iterations > done:
            return None
        asked = f"--iterations {config.iterations}"
    else:
        finished = progress.get("finished", earlier.get("iterations") is not None
                                and done >= earlier["iterations"])
        budget = earlier.get("minutes") if finished else None
        if config.minutes * 60 > (budget * 60 if budget else seconds):
            return None
        asked = f"--minutes {config.minutes:g}"
    return (f"{Path(model_path).name} has finished its training already ({done} iterations, {seconds / 60:.1f} "
            f"minutes) and {asked} asks for no more; nothing was trained or written. To train it further, give "
            f"more: --minutes {math.ceil(max(seconds / 60, earlier.get('minutes') or 0)) + 5:g} or --iterations "
            f"{done + 100} (totals, counted from its start).")


def _past(moment: float | None) -> bool:
    return moment is not None and time.perf_counter() >= moment


def validation_interval(config: TrainingConfig, device) -> int:
    """Steps between validation passes during training (0: none), ``config.validate_every`` or the device's default."""
    if config.validate_every is not None:
        return config.validate_every
    return 100 if torch.device(device).type == "cuda" else 0


def train(config: TrainingConfig, data: Sequence[AnnotatedImage], *, output=None, **kwargs) -> Finished:
    """Run a whole training and return its :class:`Finished` event (the library's one-call form)."""
    finished = None
    for event in Training(config, data, output=output, **kwargs).run():
        if isinstance(event, Finished):
            finished = event
    return finished
