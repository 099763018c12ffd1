"""Memory of the dask workers: what one task of each step needs, whether the workers' limits
can hold it (checked once the cluster is up, before any work), and a watch over the cluster
while it works (paused workers, spilling, restarts) that stops a run which cannot progress
instead of letting it hang.

Per-task working sets are estimated from the chunk size and the cube's shape; the constants
were measured with `benchmarks/bench_memory.py` (see benchmarks/RESULTS.md) and keep a margin
for numpy's temporaries. dask pauses a worker whose process memory passes
`distributed.worker.memory.pause` (80 % of its limit by default) until it falls back below:
a limit that the idle worker alone (its Python, geoclass and its libraries) nearly fills never
resumes, which is the hang this module prevents."""

from __future__ import annotations

import importlib
import logging
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import dask
import psutil

from geoclass.errors import ClusterError
from geoclass.workerserver import TASK_MODULES

log = logging.getLogger(__name__)

MiB = 2**20
MIN_CHUNK = 64  # smaller chunks cost more in task overhead than they save
HEADROOM = 0.9  # of the room below the pause threshold, for what the estimates miss


@dataclass(frozen=True)
class CubeShape:
    """What sets the size of a task: observation dates and bands read per chunk, dates of
    the gap-filled grid, features, classes."""

    dates: int
    bands: int
    grid_dates: int
    features: int
    classes: int
    tile_side: int = 0  # the largest tile side, pixels (0: unknown)
    smoothing_halo: int = 0  # Bayesian smoothing's window_size // 2 (0: no smoothing)

    def block(self, chunk: int) -> int:
        """The side of the largest block: the chunk, or the tile if it is smaller."""
        return min(chunk, self.tile_side) if self.tile_side else chunk

    def task_bytes(self, chunk: int) -> dict[str, int]:
        """Peak bytes of one task of each step on a chunk x chunk block (clipped to the
        largest tile)."""
        pixels = self.block(chunk) ** 2
        observations = self.dates * self.bands  # values of one pixel over all dates
        features = (self.dates * self.bands * 6  # raw, then decoded to float32
                    + self.grid_dates * self.bands * 4  # gap-filled
                    + self.features * 8)  # the features and the pixels' table
        return {
            # the stored observations of the block, one acquisition at a time read, then
            # its encoded chunk (in an aligned buffer) and one chunk handed to the writer
            # threads (directio.write_behind: at most one per task thread; each at most the
            # block's size)
            "cubes": pixels * (observations * 2 * 3 + self.bands * 12 + 8),
            # a block's features computed from its observations, and the rows taken
            "samples": pixels * features,
            # the features, float64 class sums, the uint16 output
            "classify": pixels * (features + 24 * self.classes + 2 * (2 + self.classes)),
            # each tile's maps on the block, warped, and the merged block
            "mosaic": pixels * 2 * 4 * (2 + self.classes),
            # Bayesian smoothing: the padded block's float64 probabilities, logits and
            # posteriors, and a strip of sorted windows (bounded, kernels.smoothing)
            **({"smoothing": (self.block(chunk) + 2 * self.smoothing_halo) ** 2 * 48
                * self.classes + 64 * MiB} if self.smoothing_halo else {}),
        }


def worker_limits(client) -> dict[str, dict]:
    """Per worker (by name): its address, memory limit (bytes, 0: none) and threads."""
    info = client.scheduler_info()["workers"]
    return {str(w["name"]): {"address": addr, "limit": int(w.get("memory_limit") or 0),
                             "threads": int(w["nthreads"])} for addr, w in info.items()}


def _footprint() -> int:
    """This process's resident memory once the modules of geoclass's tasks are imported."""
    for module in TASK_MODULES:
        importlib.import_module(module)
    return int(psutil.Process(os.getpid()).memory_info().rss)


def footprint_in_new_process() -> int:
    """A fresh Python's resident memory once it has imported geoclass's task modules: what a
    dask worker needs before its first task (measured outside the cluster, for workers that
    die before they can tell)."""
    code = "from geoclass.memory import _footprint; print(_footprint())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    return int(done.stdout.split()[-1])


def pause_fraction() -> float:
    value = dask.config.get("distributed.worker.memory.pause", 0.8)
    return float(value) if value else 1.0


def required_limit(footprint: int, task: int, threads: int) -> int:
    """The smallest worker memory limit that holds the footprint and `threads` tasks below
    the pause threshold."""
    return int(math.ceil((footprint + threads * task) / (pause_fraction() * HEADROOM)))


def largest_chunk(limit: int, footprint: int, threads: int, shape: CubeShape) -> int:
    """The largest chunk (a multiple of 64 px) whose tasks fit in `limit`; 0 if none does."""
    room = limit * pause_fraction() * HEADROOM - footprint
    chunk = 0
    for size in range(MIN_CHUNK, 4097, MIN_CHUNK):
        if threads * max(shape.task_bytes(size).values()) > room:
            break
        chunk = size
    return chunk


def _mib(value: float) -> str:
    return f"{value / MiB:,.0f} MiB"


def fit_problem(limits: dict[str, dict], footprints: dict[str, int], chunk: int,
                shape: CubeShape) -> str | None:
    """Why a worker cannot run the chain with its memory limit (None: every one can)."""
    tasks = shape.task_bytes(chunk)
    step, task = max(tasks.items(), key=lambda kv: kv[1])
    for name, worker in sorted(limits.items()):
        limit, threads = worker["limit"], worker["threads"]
        foot = footprints.get(name)
        if not limit or foot is None:
            continue
        pause = pause_fraction()
        needed = required_limit(foot, task, threads)
        if foot >= limit * pause * HEADROOM:
            return (f"dask worker {name} uses {_mib(foot)} once geoclass is loaded, and dask "
                    f"pauses a worker at {pause:.0%} of its memory limit: a limit of "
                    f"{_mib(limit)} leaves no room for any task (it would wait forever). Give "
                    f"each worker at least {_mib(needed)} (--memory-limit "
                    f"{math.ceil(needed / 1e6)}MB with dask.chunk_size {chunk}), or use "
                    "fewer, larger workers (--workers)")
        if limit < needed:
            largest = largest_chunk(limit, foot, threads, shape)
            instead = (f"dask.chunk_size {largest} or less" if largest else
                       "no chunk size is small enough")
            return (f"with dask.chunk_size {chunk}, one {step} task needs about "
                    f"{_mib(task)}; dask worker {name} runs {threads} at once on top of its "
                    f"{_mib(foot)}, which needs a memory limit of about {_mib(needed)} "
                    f"(--memory-limit {math.ceil(needed / 1e6)}MB); with its "
                    f"{_mib(limit)}: {instead}, or fewer threads per worker")
    return None


def check_workers(client, chunk: int, shape: CubeShape) -> None:
    """Refuse, before any work, workers whose memory limit cannot hold geoclass's idle
    footprint plus one task per thread (ClusterError with the limit or chunk size that
    would)."""
    limits = worker_limits(client)
    if not any(w["limit"] for w in limits.values()):
        return
    by_address = {w["address"]: name for name, w in limits.items()}
    try:
        measured = client.run(_footprint, wait=True)
        footprints = {by_address[a]: v for a, v in measured.items() if a in by_address}
    except Exception:  # noqa: BLE001 - workers killed while loading: measure one elsewhere
        foot = footprint_in_new_process()
        footprints = dict.fromkeys(limits, foot)
    problem = fit_problem(limits, footprints, chunk, shape)
    if problem:
        raise ClusterError(problem)
    foot = max(footprints.values(), default=0)
    log.info("workers' memory: %s idle, %s limit; largest task about %s",
             _mib(foot), _mib(min(w["limit"] for w in limits.values() if w["limit"])),
             _mib(max(shape.task_bytes(chunk).values())))


def fit_bytes(rows: int, features: int, params: dict) -> int:
    """Peak bytes of fitting one model on `rows` x `features` samples: the float32 table and
    the copies estimators make of it, plus, for forests, their nodes (about 150 bytes each,
    two per leaf, a leaf per `min_samples_leaf` samples, capped by `max_depth`). A forest
    reads the table once (models.fitting.read_table: the table and one row group) and its
    trees index it without copying (bootstrap draws are sample weights): 1.5 tables.
    Gradient boosting (a `learning_rate`): 2 tables (the table, its binned copy, gradients;
    small trees). Other estimators: 3 tables (scaling, float64 or Fortran-ordered copies)."""
    table = rows * features * 4
    if "learning_rate" in params:
        return 2 * table
    trees = int(params.get("n_estimators") or 0)
    if not trees:
        return 3 * table
    leaves = rows / max(int(params.get("min_samples_leaf") or 1), 1)
    depth = params.get("max_depth")
    if depth:
        leaves = min(leaves, 2.0 ** int(depth))
    return int(1.5 * table + trees * 2 * leaves * 150)


def fit_problem_of(rows: int, features: int, params: dict, limit: int, footprint: int,
                   what: str) -> str | None:
    """Why a worker with `limit` bytes cannot fit one model on that many samples."""
    need = fit_bytes(rows, features, params)
    room = limit * pause_fraction() * HEADROOM - footprint
    if not limit or need <= room:
        return None
    return (f"{what}: fitting on {rows:,} samples x {features} features needs about "
            f"{_mib(need)}, more than a dask worker with a {_mib(limit)} limit can hold "
            f"({_mib(max(room, 0))} left beside geoclass): cap the learning samples "
            "(sampling.sample_selection, e.g. strategy: constant), use smaller models "
            "(models.params), or raise --memory-limit")


def worker_room(client) -> tuple[int, int]:
    """The smallest worker memory limit of the cluster (0: none) and the largest resident
    memory of its workers now."""
    limits = [w["limit"] for w in worker_limits(client).values() if w["limit"]]
    try:
        used = client.run(_resident, wait=True)
    except Exception:  # noqa: BLE001 - no answer: count no footprint
        used = {}
    return (min(limits) if limits else 0), max(used.values(), default=0)


def _resident() -> int:
    return int(psutil.Process(os.getpid()).memory_info().rss)


# --- while working ----------------------------------------------------------------------------


def _cluster_state(dask_scheduler) -> dict:
    """Runs on the scheduler: each worker's status and memory, and the transition count."""
    workers = {}
    for address, ws in dask_scheduler.workers.items():
        memory = ws.memory
        workers[str(ws.name)] = {"address": address, "status": ws.status.name,
                                 "process": int(memory.process),
                                 "spilled": int(memory.spilled), "limit": ws.memory_limit,
                                 "processing": len(ws.processing)}
    return {"workers": workers, "transitions": dask_scheduler.transition_counter}


class Watch:
    """A thread that polls the scheduler while a step computes: says when workers pause,
    spill or restart, and cancels the computation (the reason in `failure`) when every
    worker has been paused, or none has been alive, for `stall_after` seconds."""

    def __init__(self, client, futures, step: str, stall_after: float = 120.0,
                 every: float = 1.0):
        self.client, self.futures, self.step = client, futures, step
        self.stall_after, self.every = stall_after, every
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="geoclass-watch", daemon=True)
        self._seen: dict[str, dict] = {}
        self._stalled_since: float | None = None

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                state = self.client.run_on_scheduler(_cluster_state)
            except Exception:  # noqa: BLE001 - the client is closing; nothing to watch
                return
            self.observe(state, time.monotonic())
            if self.failure:
                self.client.cancel(self.futures)
                return

    def observe(self, state: dict, now: float) -> None:
        """Report the changes since the last poll; set `failure` on a stall."""
        workers = state["workers"]
        for name, worker in workers.items():
            before = self._seen.get(name)
            if before and before["address"] != worker["address"]:
                log.warning("step %s: dask worker %s was restarted (its process was killed, "
                            "e.g. past its memory limit; %s before)", self.step, name,
                            _mib(before["process"]))
            if worker["status"] == "paused" and (not before or before["status"] != "paused"):
                log.warning("step %s: dask worker %s paused: %s in use of its %s limit (dask "
                            "pauses at %.0f %%)", self.step, name, _mib(worker["process"]),
                            _mib(worker["limit"] or 0), 100 * pause_fraction())
            if before and before["status"] == "paused" and worker["status"] != "paused":
                log.info("step %s: dask worker %s resumed", self.step, name)
            spilled = worker["spilled"] - (before["spilled"] if before else 0)
            if spilled >= 64 * MiB:
                log.info("step %s: dask worker %s spilled %s to its local disk", self.step,
                         name, _mib(spilled))
            if not before or spilled >= 64 * MiB or spilled < 0:
                self._seen[name] = dict(worker)
            else:
                self._seen[name] = {**worker, "spilled": before["spilled"]}
        for name in set(self._seen) - set(workers):
            log.warning("step %s: dask worker %s left the cluster", self.step, name)
            del self._seen[name]
        stuck = not workers or all(w["status"] == "paused" for w in workers.values())
        if not stuck:
            self._stalled_since = None
            return
        self._stalled_since = self._stalled_since or now
        if now - self._stalled_since >= self.stall_after:
            self.failure = self._stall_message(workers)

    def _stall_message(self, workers: dict) -> str:
        wait = f"{self.stall_after:.0f} s"
        if not workers:
            return (f"step {self.step}: no dask worker has been alive for {wait}: they keep "
                    "dying (memory limit too small for a task?) or cannot start; see the log, "
                    "raise --memory-limit or lower dask.chunk_size")
        held = ", ".join(f"{n} {_mib(w['process'])} of {_mib(w['limit'] or 0)}"
                         for n, w in sorted(workers.items()))
        return (f"step {self.step}: every dask worker has been paused for {wait} (memory "
                f"above {pause_fraction():.0%} of its limit: {held}), so no task can run; "
                "raise --memory-limit, lower dask.chunk_size, or use fewer threads per "
                "worker (dask.stall_timeout sets how long to wait)")
