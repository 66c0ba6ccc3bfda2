"""The executors that run the file tasks: here, one at a time, or on a dask.distributed cluster."""

from __future__ import annotations

import logging

from ..errors import DeepColorError
from .segment import segment_file, segment_file_steps


class _Deferred:
    """A task run here when asked: :meth:`steps` runs it plane by plane (yielding progress), :meth:`result`
    gives its row (running it whole if the steps were not taken)."""

    _unset = object()

    def __init__(self, fn, args):
        self.fn, self.args, self._value = fn, args, self._unset

    def steps(self):
        if self.fn is segment_file:
            self._value = yield from segment_file_steps(*self.args)

    def result(self):
        return self.fn(*self.args) if self._value is self._unset else self._value


class _InProcess:
    """Runs each task in this process when its result is asked for; no cluster to start."""

    slots = 1

    def submit(self, fn, *args):
        return _Deferred(fn, args)

    def wait_first(self, pending):
        return [next(iter(pending))]

    def close(self):
        pass


class _Dask:
    """Runs tasks on a dask.distributed cluster: a LocalCluster we start, or one at an address."""

    def __init__(self, *, workers: int | None = None, scheduler: str | None = None):
        from distributed import Client, LocalCluster

        self.cluster = None
        if scheduler is not None:
            try:
                self.client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise DeepColorError(f"could not reach a dask scheduler at {scheduler} ({exc}); check the address "
                                     "(e.g. tcp://host:8786) and that the scheduler is running.") from exc
        else:
            import dask

            # dask's default worker environment also sets MALLOC_TRIM_THRESHOLD_=65536, which turns every
            # large array of a prediction into fresh mmap'd pages: 2-2.5x slower per file here. Keep one
            # BLAS/OpenMP thread per worker, drop the trim threshold.
            environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                       if k != "MALLOC_TRIM_THRESHOLD_"}
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        self.slots = max(1, sum(self.client.nthreads().values()))

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def wait_first(self, pending):
        from distributed import wait

        return wait(list(pending), return_when="FIRST_COMPLETED").done

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
