"""The process the LocalCluster's workers are forked from (multiprocessing's forkserver).

It imports geoclass's task modules once, in the background, so that each worker starts with
them loaded. This module imports only dask's configuration, so that the command line can
start that server first thing: behind `geoclass.cluster` (0.7 s of imports: distributed,
pydantic, pandas) it started that much later, and the first LocalCluster waited for it."""

from __future__ import annotations

import multiprocessing
import os
import sys
from importlib.util import find_spec
from pathlib import Path

import dask.config
import yaml

try:  # where processes can be forked from a server process (not on Windows)
    from multiprocessing import forkserver
except ImportError:  # pragma: no cover
    forkserver = None

# the modules of geoclass's tasks: imported by the worker server, measured by `memory`
TASK_MODULES = ("geoclass.views.maps", "geoclass.views.cube", "geoclass.steps.samples",
                "geoclass.steps.mosaic")


def start_worker_server() -> bool:
    """Start, once per process, the process the LocalCluster's workers are forked from, and
    have it import geoclass's task modules and set numba up (kernels.warmup) now, in the
    background: each worker then starts with them loaded instead of doing it itself (seconds
    of CPU each). It holds the environment of `worker_environ` (one BLAS thread...), as
    spawned workers would. Returns False where fork is not available (Windows)."""
    if forkserver is None or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    environ = {key: str(value) for key, value in worker_environ().items()}
    saved = {key: os.environ.get(key) for key in environ}
    os.environ.update(environ)
    try:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["distributed", *TASK_MODULES, "geoclass.kernels.warmup"])
        forkserver.ensure_running()  # no-op once running
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return True


def worker_environ() -> dict:
    """dask's environment for new worker processes (one BLAS thread...) without its
    MALLOC_TRIM_THRESHOLD_: set at all, it turns off glibc's adaptive thresholds, so every
    block-sized buffer is a fresh mapping whose pages fault in and go back when freed. The
    cube build of a 2048 px, 24-date tile took 23.9 s with it (17.2 s of them in the
    kernel), 11.4 s without, for a peak RSS of 1.08 vs 1.19 GB (RESULTS.md, issue 13)."""
    _distributed_defaults()
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", None) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return environ


def _distributed_defaults() -> None:
    """distributed's default settings in dask's configuration, as `import distributed` puts
    them there (read from its distributed.yaml, without importing the package: 0.3 s)."""
    if "distributed" in sys.modules:
        return
    spec = find_spec("distributed")
    if spec is None or spec.origin is None:
        return
    path = Path(spec.origin).parent / "distributed.yaml"
    if path.exists():
        dask.config.update_defaults(yaml.safe_load(path.read_text()))
