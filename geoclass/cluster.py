"""The dask.distributed client every step runs on: an embedded LocalCluster, or an existing
scheduler given by address."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from geoclass.config import DaskOptions
from geoclass.errors import GeoclassError

log = logging.getLogger(__name__)


class ClusterError(GeoclassError):
    """The dask scheduler cannot be reached or the local cluster cannot start."""


def local_cluster_size(workers: int | None, threads: int | None) -> tuple[int, int]:
    """Workers and threads per worker for this machine: by default one thread per core,
    in at most four worker processes."""
    cores = os.cpu_count() or 1
    workers = workers or max(1, min(4, cores // (threads or 1)))
    threads = threads or max(1, cores // workers)
    return workers, threads


def compute(*collections, label: str = "computing"):
    """Compute dask collections on the active client, with dask's progress bar on the console
    (a widget in Jupyter); without a client (plain dask in a notebook) compute as usual."""
    import dask
    from distributed import get_client, progress

    try:
        client = get_client()
    except ValueError:
        return dask.compute(*collections)
    log.info("%s", label)
    futures = client.compute(list(collections))
    if _show_progress():
        progress(futures)
    return tuple(client.gather(futures))


def _show_progress() -> bool:
    """Progress bars on a terminal or in Jupyter, not in logs or pipes (GEOCLASS_PROGRESS=0
    turns them off, =1 forces them)."""
    import sys

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
        silence_logs=logging.ERROR,
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
