"""The dask.distributed client every step runs on: an embedded LocalCluster, or an existing
scheduler given by address."""

from __future__ import annotations

import atexit
import importlib.util
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager
from pathlib import Path

import dask
from distributed import (
    Client,
    KilledWorker,
    LocalCluster,
    Security,
    WorkerPlugin,
    get_client,
    progress,
)
from distributed.diagnostics.progressbar import ProgressBar
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from geoclass.config import DaskOptions, DaskSecurity
from geoclass.errors import ClusterError
from geoclass.logs import CONSOLE, current_step
from geoclass.memory import Watch
from geoclass.workerserver import start_worker_server, worker_environ

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


def _profile_interval() -> dict:
    """The local workers' profiler samples every 100 ms instead of dask's 10 ms, unless the
    user set it: each sample walks every thread's stack holding the GIL, and a thread back
    from GDAL waits for it (the cube build reads hundreds of windows of files between GIL
    hand-offs: 9.9 s against 10.3 s on average over five alternated 2048 px builds, RESULTS.md
    issue 13). The dashboard's profile keeps a sample every 100 ms."""
    if dask.config.get("distributed.worker.profile.interval", "10ms") != "10ms":
        return {}
    return {"distributed.worker.profile.interval": "100ms"}


def run_everywhere(func) -> None:
    """`func()` in this process and on every worker of the active client (if any)."""
    func()
    try:
        client = get_client()
    except ValueError:
        return
    client.run(func)


@contextmanager
def _progress(client, futures, label: str):
    """A progress bar of the tasks behind `futures` while the block runs."""
    if not _show_progress():
        yield
        return
    if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None:
        progress(futures)  # dask's widget (without ipywidgets: the text bar below)
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


class QuickExit(WorkerPlugin):
    """Installed on the worker processes of the LocalCluster geoclass starts: once a worker
    has closed (its results delivered, its scratch folder removed), its process ends at once,
    without Python's teardown of every library its tasks loaded (seconds per worker: closing
    a 2-worker cluster went from 4.3 s to 0.3 s, RESULTS.md issue 20)."""

    name = "geoclass-quick-exit"

    def teardown(self, worker) -> None:
        if multiprocessing.parent_process() is not None:  # never a worker thread of the client
            atexit.register(quick_exit, 0)  # the last registered runs first


def quick_exit(status: int) -> None:
    """End this process now, its logs and output streams flushed: no library teardown."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _quiet_distributed() -> None:
    """distributed sets INFO on its own loggers; keep our console for what matters."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.ERROR)


LOOPBACK = ("127.", "localhost", "::1", "[::1]")


def is_local_only(address: str | None) -> bool:
    """Whether a host or `host:port` address listens on this machine's loopback only (":8787"
    and "0.0.0.0" listen on every interface)."""
    if address is None:
        return True  # nothing listens
    host = address.split("://")[-1]
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    return host.startswith(LOOPBACK)


def make_security(setting: str | DaskSecurity | None) -> Security | None:
    """The distributed.Security of `dask.security` / `--security`: None (no TLS), "temporary"
    (a self-signed certificate and key made now, in memory), or certificate files (one
    certificate for the client, the scheduler and the workers)."""
    if setting is None:
        return None
    if setting == "temporary":
        try:
            return Security.temporary()
        except ImportError:
            raise ClusterError("--security temporary makes a self-signed certificate with the "
                               "cryptography package: pip install cryptography") from None
    missing = [f"dask.security.{name}: no such file: {path}"
               for name in ("ca_file", "cert", "key")
               if (path := getattr(setting, name)) is not None and not Path(path).is_file()]
    if missing:
        raise ClusterError("; ".join(missing))
    cert, key = str(setting.cert), str(setting.key) if setting.key else None
    return Security(tls_ca_file=str(setting.ca_file), require_encryption=True,
                    tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key,
                    tls_worker_cert=cert, tls_worker_key=key)


def _connect(address: str, setting) -> Client:
    """A client of the scheduler at `address`, with the certificates of `setting` (else those
    of dask's own configuration, distributed.comm.tls)."""
    if setting == "temporary":
        raise ClusterError("--security temporary secures the LocalCluster geoclass starts; "
                           f"to reach the scheduler at {address}, give the certificates it "
                           "trusts (--security FILE, or dask.security in the configuration)")
    security = make_security(setting)
    tls = address.startswith("tls://")
    if security is not None and not tls:
        raise ClusterError(f"certificates were given (--security / dask.security) but the "
                           f"scheduler address {address} is not tls://: use its tls:// "
                           "address")
    if tls and security is None:
        security = Security()  # dask's configuration (distributed.comm.tls.*), if any
        if not security.tls_ca_file:
            raise ClusterError(f"the scheduler at {address} speaks TLS: give its "
                               "certificates with --security FILE (or dask.security in the "
                               "configuration)")
    try:
        return Client(address, timeout="15s", security=security)
    except (OSError, TimeoutError) as err:
        hint = ("; is this client's certificate one it trusts (same ca_file)?" if tls else
                "; if it speaks TLS, give its tls:// address and --security")
        raise ClusterError(f"cannot reach the dask scheduler at {address}: {err}{hint}") \
            from None


@contextmanager
def dask_client(
    options: DaskOptions | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    processes: bool = True,
    host: str | None = None,
    dashboard_address: str | None = None,
    security: str | DaskSecurity | None = None,
) -> Iterator[Client]:
    """Yield a client: connected to `scheduler` (or the config's `dask.scheduler`) when given,
    starting nothing; else to a new LocalCluster that is closed on exit, listening on `host`
    (default 127.0.0.1: this machine only), its dashboard on `dashboard_address` ("none": no
    dashboard). `security`: TLS with client certificates ("temporary", or a DaskSecurity).
    Command-line values win over the config's."""
    options = options or DaskOptions()
    setting = security or options.security
    address = scheduler or options.scheduler
    if address:
        client = _connect(address, setting)
        log.info("connected to dask scheduler %s (dashboard: %s)", address, client.dashboard_link)
        try:
            yield client
        finally:
            client.close()
        return
    n_workers, threads = local_cluster_size(
        workers or options.workers, threads_per_worker or options.threads_per_worker
    )
    host = host or options.host
    dashboard = options.dashboard_address if dashboard_address is None else dashboard_address
    dashboard = None if dashboard in ("", "none", "None") else dashboard
    secure = make_security(setting)
    forked = processes and options.fork_workers and start_worker_server()
    if not secure and not is_local_only(host):
        log.warning("the LocalCluster listens on %s without TLS: anyone who can reach it can "
                    "run code as you (add --security temporary)", host)
    if not is_local_only(dashboard):
        log.warning("the dask dashboard listens on %s: anyone who can reach it sees the "
                    "cluster's work", dashboard)
    method = {"distributed.worker.multiprocessing-method": "forkserver"} if forked else {}
    environ = {"distributed.nanny.pre-spawn-environ": worker_environ()}
    with dask.config.set({**method, **environ, **_profile_interval()}):  # also for the
        # workers the nannies restart
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads,
            memory_limit=memory_limit or options.memory_limit or "auto",
            processes=processes,
            host=host if processes or secure else None,  # threads alone talk in-process
            dashboard_address=dashboard,
            security=secure,
            protocol="tls://" if secure else None,
            silence_logs=logging.CRITICAL,  # task errors reach the client, which says them once
        )
        client = Client(cluster)
        if processes:
            client.register_plugin(QuickExit())
        _quiet_distributed()
        log.info(
            "LocalCluster: %d worker(s) x %d thread(s) at %s%s; dashboard: %s",
            n_workers, threads, cluster.scheduler_address, " (TLS)" if secure else "",
            client.dashboard_link if dashboard else "none",
        )
        try:
            yield client
        finally:
            client.close()
            cluster.close()
