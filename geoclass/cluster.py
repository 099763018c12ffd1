"""The dask.distributed client every step runs on: an embedded LocalCluster, or an existing
scheduler given by address."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager

import dask
from distributed import Client, KilledWorker, LocalCluster, get_client, progress
from distributed.diagnostics.progressbar import ProgressBar
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from geoclass.config import DaskOptions
from geoclass.errors import ClusterError
from geoclass.logs import CONSOLE, current_step
from geoclass.memory import Watch

log = logging.getLogger(__name__)


def local_cluster_size(workers: int | None, threads: int | None) -> tuple[int, int]:
    """Workers and threads per worker for this machine: by default one thread per core,
    in at most four worker processes."""
    cores = os.cpu_count() or 1
    workers = workers or max(1, min(4, cores // (threads or 1)))
    threads = threads or max(1, cores // workers)
    return workers, threads


def compute(*collections, label: str = "computing"):
    """Compute dask collections on the active client, with a progress bar named `label` on
    the console (a widget in Jupyter); without a client (plain dask in a notebook) compute
    as usual."""
    try:
        client = get_client()
    except ValueError:
        return dask.compute(*collections)
    log.info("%s", label)
    futures = client.compute(list(collections))
    step = current_step() or label
    stall = float(dask.config.get("geoclass.stall-timeout", 120))
    with Watch(client, futures, step, stall_after=stall) as watch, \
            _progress(client, futures, label):
        try:
            return tuple(client.gather(futures))
        except CancelledError:
            if watch.failure:
                raise ClusterError(watch.failure) from None
            raise
        except KilledWorker as err:
            raise ClusterError(
                f"step {step}: dask workers died {err.allowed_failures + 1} times while "
                f"running the same task ({err.task}): most likely it needs more memory than "
                "a worker's limit; raise --memory-limit, lower dask.chunk_size, or use "
                "fewer threads per worker") from None


@contextmanager
def _progress(client, futures, label: str):
    """A progress bar of the tasks behind `futures` while the block runs."""
    if not _show_progress():
        yield
        return
    if "ipykernel" in sys.modules:
        progress(futures)
        yield
        return
    bar = StepProgress(futures, label)
    client.loop.add_callback(bar.listen)
    try:
        yield
        bar.finished.wait(timeout=2)  # the scheduler's last word: the bar ends at 100 %
    finally:
        bar.close()


class StepProgress(ProgressBar):
    """dask's scheduler-fed progress bar, drawn with rich and named after its step."""

    def __init__(self, futures, label: str):
        super().__init__(futures, complete=True)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            TaskProgressColumn(), TimeElapsedColumn(), console=CONSOLE,
                            transient=False)
        self.task = self.bar.add_task(label, total=None)
        self.finished = threading.Event()
        self.bar.start()

    def _draw_bar(self, remaining, all, **kwargs):
        self.bar.update(self.task, total=all, completed=all - remaining)

    def _draw_stop(self, **kwargs):
        self.finished.set()

    def close(self) -> None:
        self.bar.stop()
        comm = getattr(self, "comm", None)
        if comm is not None:
            comm.abort()


def _show_progress() -> bool:
    """Progress bars on a terminal or in Jupyter, not in logs or pipes (GEOCLASS_PROGRESS=0
    turns them off, =1 forces them)."""
    wanted = os.environ.get("GEOCLASS_PROGRESS")
    if wanted is not None:
        return wanted != "0"
    return sys.stdout.isatty() or "ipykernel" in sys.modules


def _quiet_distributed() -> None:
    """distributed sets INFO on its own loggers; keep our console for what matters."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def dask_client(
    options: DaskOptions | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    processes: bool = True,
) -> Iterator[Client]:
    """Yield a client: connected to `scheduler` (or the config's `dask.scheduler`) when given,
    starting nothing; else to a new LocalCluster that is closed on exit. Command-line values
    win over the config's."""
    options = options or DaskOptions()
    address = scheduler or options.scheduler
    if address:
        try:
            client = Client(address, timeout="15s")
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"cannot reach the dask scheduler at {address}: {err}") from None
        log.info("connected to dask scheduler %s (dashboard: %s)", address, client.dashboard_link)
        try:
            yield client
        finally:
            client.close()
        return
    n_workers, threads = local_cluster_size(
        workers or options.workers, threads_per_worker or options.threads_per_worker
    )
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads,
        memory_limit=memory_limit or options.memory_limit or "auto",
        processes=processes,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,  # task errors reach the client, which says them once
    )
    client = Client(cluster)
    _quiet_distributed()
    log.info(
        "LocalCluster: %d worker(s) x %d thread(s); dashboard: %s",
        n_workers, threads, client.dashboard_link,
    )
    try:
        yield client
    finally:
        client.close()
        cluster.close()
