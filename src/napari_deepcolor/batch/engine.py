"""The engine: plan the files of a folder, hand them to an executor, yield events, write the summary."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from ..errors import DeepColorError
from .config import (CANCELLED, FAILED, SKIPPED, BatchConfig, BatchFinished, BatchStarted, FileDone, FileFailed,
                     FileResult, FileStarted, FileTask, PlaneDone)
from .executors import _Dask, _Deferred, _InProcess
from .inputs import _inside, clean_stale_temporaries, find_inputs, output_name
from .segment import segment_file
from .summary import earlier_counts, write_summary


class Batch:
    """Segment every image of a folder; :meth:`run` yields events, :meth:`stop` stops between files."""

    def __init__(self, config: BatchConfig):
        self.config = config
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the files being segmented, start no more (safe from another thread)."""
        self._stop.set()

    def run(self) -> Iterator[BatchStarted | FileStarted | PlaneDone | FileDone | FileFailed | BatchFinished]:
        from ..models import model_file

        # a starter name or an exported .zip becomes the model file itself, which workers load by path
        self.config = replace(self.config, model=str(model_file(self.config.model)))
        config, started = self.config, time.perf_counter()
        source, output = Path(config.input).absolute(), Path(config.output).absolute()
        stamp = self._check_inputs()
        jobs = self._plan(source, output, stamp)
        output.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(output)
        executor = _InProcess() if config.workers is None and config.scheduler is None else \
            _Dask(workers=config.workers, scheduler=config.scheduler)
        total, results, pending, queue = len(jobs), {}, {}, deque(enumerate(jobs))
        try:
            yield BatchStarted(total, str(output), executor.slots)
            while queue or pending:
                while queue and len(pending) < executor.slots and not self._stop.is_set():
                    index, job = queue.popleft()
                    if isinstance(job, FileResult):  # decided without work: existing output, bad name
                        results[index] = job
                        yield _event(job, len(results), total)
                    else:
                        pending[executor.submit(segment_file, job)] = index
                        yield FileStarted(job.file, index, total)
                if not pending:
                    if self._stop.is_set():
                        break
                    continue
                for future in executor.wait_first(pending):
                    index = pending.pop(future)
                    if isinstance(future, _Deferred):
                        for done, planes in future.steps():
                            yield PlaneDone(jobs[index].file, done, planes)
                    results[index] = _result(future, jobs[index])
                    yield _event(results[index], len(results), total)
        finally:
            executor.close()
            rows = [results.get(i) or _cancelled(job) for i, job in enumerate(jobs)]
            summary = str(write_summary(output, rows)) if config.summary else ""
        yield BatchFinished(tuple(rows), summary, len(results) < total, round(time.perf_counter() - started, 3))

    def _check_inputs(self) -> tuple:
        """Fail before any work if the model file, the decode overrides or the device are wrong."""
        from ..models import read_model_config
        from ..methods import get_method

        if self.config.workers is None and self.config.scheduler is None:
            from ..device import resolve_device

            resolve_device(self.config.device)  # in this process; dask workers check their own
        model_config = read_model_config(self.config.model)
        method = get_method(model_config["method"])
        method.resolve_decode_parameters(self.config.decode, model_config.get("decode_defaults"))
        if self.config.flips:
            from ..inference import check_flips

            check_flips(method)
        info = Path(self.config.model).stat()
        return info.st_mtime_ns, info.st_size

    def _plan(self, source: Path, output: Path, stamp: tuple) -> list:
        config = self.config
        if not source.exists():
            raise DeepColorError(f"{source}: no such file or folder; check --input.")
        if os.path.realpath(source) == os.path.realpath(output):
            raise DeepColorError("the output folder must differ from the input folder; choose another --output.")
        single = source.is_file() or source.suffix.lower() == ".zarr"
        files = [source] if single else find_inputs(source, config.patterns, recursive=config.recursive,
                                                    exclude=[output])
        if not files:
            raise DeepColorError(f"{source} holds no files matching {', '.join(config.patterns)}"
                                 f"{'' if config.recursive else ' (add --recursive to search sub-folders)'}.")
        jobs, claimed, inputs = [], {}, {os.path.realpath(path) for path in files}
        earlier = {} if config.overwrite else earlier_counts(output)
        for path in files:
            relative = Path(path.name) if single else path.relative_to(source)
            target = output / relative.parent / output_name(relative.name, config.format)
            name, out_name = relative.as_posix(), target.relative_to(output).as_posix()
            if not _inside(target, output):
                jobs.append(FileResult(name, out_name, FAILED, error=f"refusing to write {target}: it resolves "
                                       "outside the output folder (through a symbolic link)."))
            elif os.path.realpath(target) in inputs:
                jobs.append(FileResult(name, out_name, FAILED, error=f"refusing to write its labels over the input "
                                       f"image {target}; choose an --output folder that holds no input images."))
            elif out_name in claimed:
                jobs.append(FileResult(name, out_name, FAILED, error=f"its output {out_name} is also the output of "
                                       f"{claimed[out_name]}; rename one of the two inputs."))
            elif target.exists() and not config.overwrite:  # the counts of the run that wrote it, if on record
                objects, class_counts = earlier.get(out_name, (None, ()))
                jobs.append(FileResult(name, out_name, SKIPPED, objects, class_counts=class_counts))
            else:
                jobs.append(FileTask(config, str(Path(config.model).absolute()), stamp, str(path), str(target),
                                     name, out_name))
            claimed.setdefault(out_name, name)
        return jobs


def _event(result: FileResult, completed: int, total: int):
    return (FileFailed if result.status == FAILED else FileDone)(result, completed, total)


def _result(future, task: FileTask) -> FileResult:
    try:
        return future.result()
    except Exception as exc:  # the worker died (e.g. out of memory) or the cluster went away
        return FileResult(task.file, task.output, FAILED, error=f"the worker running it failed ({type(exc).__name__}: "
                          f"{exc}); if it ran out of memory, lower --large-image-mp or use fewer workers.")


def _cancelled(job) -> FileResult:
    return job if isinstance(job, FileResult) else FileResult(job.file, job.output, CANCELLED)
