"""Under memory pressure: limits that cannot work are refused before any work, with the limit
or chunk size that would; a cluster that cannot progress stops with a message, never hangs."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import dask
import pytest

from geoclass.errors import ClusterError
from geoclass.memory import CubeShape, MiB, Watch, fit_problem, largest_chunk, required_limit

SHAPE = CubeShape(dates=30, bands=10, grid_dates=36, features=400, classes=10,
                  tile_side=10980)


def test_a_limit_below_the_idle_footprint_is_refused_at_start(scene):
    """The reported hang: workers whose limit their idle footprint nearly fills. The run
    stops at once (a timeout guards the test) and says which limit would work."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "geoclass.cli", "run", str(scene),
                           "--workers", "1", "--memory-limit", "300MB"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "once geoclass is loaded" in done.stderr and "leaves no room" in done.stderr
    needed = int(done.stderr.split("--memory-limit ")[1].split("MB")[0])
    assert needed > 300
    assert time.monotonic() - start < 240
    assert not (scene.parent / "run" / "cubes").exists()  # no work started


def test_the_message_gives_the_limit_and_the_chunk_size_that_fit():
    foot = 450 * MiB
    limits = {"0": {"address": "tcp://a", "limit": 2_000 * MiB, "threads": 2}}
    problem = fit_problem(limits, {"0": foot}, 1024, SHAPE)
    task = max(SHAPE.task_bytes(1024).values())
    needed = required_limit(foot, task, 2)
    assert f"--memory-limit {-(-needed // 10**6)}MB" in problem
    chunk = largest_chunk(2_000 * MiB, foot, 2, SHAPE)
    assert 64 <= chunk < 1024 and f"dask.chunk_size {chunk} or less" in problem
    # the chunk it proposes does fit, the next one up does not
    assert fit_problem(limits, {"0": foot}, chunk, SHAPE) is None
    assert fit_problem(limits, {"0": foot}, chunk + 64, SHAPE) is not None
    # a tile smaller than the chunk: its own size sets the task
    small = CubeShape(30, 10, 36, 400, 10, tile_side=256)
    assert small.task_bytes(1024) == small.task_bytes(256)
    assert fit_problem(limits, {"0": foot}, 1024, small) is None
    # no limit (0): nothing to refuse
    assert fit_problem({"0": {"address": "a", "limit": 0, "threads": 2}}, {"0": foot}, 4096,
                       SHAPE) is None


def _state(**workers):
    return {"workers": {name: {"address": f"tcp://{name}:{w.get('port', 1)}",
                               "status": w.get("status", "running"),
                               "process": w.get("process", 400 * MiB),
                               "spilled": w.get("spilled", 0), "limit": 1000 * MiB,
                               "processing": 1} for name, w in workers.items()},
            "transitions": 0}


def test_the_watch_reports_pauses_spills_restarts_and_stops_a_stall(caplog):
    watch = Watch(client=None, futures=[], step="samples", stall_after=30)
    with caplog.at_level(logging.INFO, logger="geoclass"):
        watch.observe(_state(a={}, b={}), now=0)
        watch.observe(_state(a={"status": "paused", "process": 850 * MiB},
                             b={"spilled": 200 * MiB}), now=1)
        watch.observe(_state(a={"status": "paused"}, b={"port": 2}), now=2)
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "step samples: dask worker a paused: 850 MiB in use of its 1,000 MiB limit" in said
    assert "step samples: dask worker b spilled 200 MiB to its local disk" in said
    assert "step samples: dask worker b was restarted" in said
    assert watch.failure is None
    watch.observe(_state(a={"status": "paused"}, b={"status": "paused", "port": 2}), now=3)
    watch.observe(_state(a={"status": "paused"}, b={"status": "paused", "port": 2}), now=20)
    assert watch.failure is None  # paused, but not for long yet
    watch.observe(_state(a={"status": "paused"}, b={"status": "paused", "port": 2}), now=34)
    assert "step samples: every dask worker has been paused for 30 s" in watch.failure
    assert "a 400 MiB of 1,000 MiB" in watch.failure
    # one worker running again resets the clock; no worker at all is a stall too
    other = Watch(client=None, futures=[], step="train", stall_after=5)
    other.observe(_state(a={"status": "paused"}), now=0)
    other.observe(_state(a={}), now=4)
    other.observe(_state(a={"status": "paused"}), now=8)
    assert other.failure is None
    other.observe({"workers": {}, "transitions": 0}, now=9)
    other.observe({"workers": {}, "transitions": 0}, now=15)
    assert "no dask worker has been alive for 5 s" in other.failure


def test_a_cluster_that_cannot_progress_stops_with_a_message():
    """A worker held above dask's pause threshold by memory no task will free: the step
    stops after dask.stall_timeout instead of waiting for ever."""
    from distributed import Client, LocalCluster

    from geoclass.cluster import compute

    def hold(n_bytes):  # unmanaged memory that stays (a leak, a library's cache...)
        import numpy as np
        from distributed import get_worker

        get_worker().geoclass_test_held = np.ones(n_bytes // 8)
        return 0

    def small(i, _):
        return i

    with LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="1GB",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) \
            as cluster, Client(cluster) as client, \
            dask.config.set({"geoclass.stall-timeout": 4}):
        held = client.submit(hold, 780 * 10**6)
        held.result()
        _wait_until_paused(client)  # else the next task may run before the pause comes
        start = time.monotonic()
        with pytest.raises(ClusterError, match="every dask worker has been paused for 4 s"):
            compute(dask.delayed(small)(1, held), label="a task behind a paused worker")
        assert time.monotonic() - start < 90


def _wait_until_paused(client, timeout: float = 60) -> None:
    """Wait until dask's memory monitor has paused every worker of `client`'s cluster."""
    def statuses(dask_scheduler):
        return [ws.status.name for ws in dask_scheduler.workers.values()]

    deadline = time.monotonic() + timeout
    while set(client.run_on_scheduler(statuses)) != {"paused"}:
        assert time.monotonic() < deadline, "the worker was never paused"
        time.sleep(0.1)


def test_a_task_that_kills_its_workers_is_one_message():
    from distributed import Client, LocalCluster

    from geoclass.cluster import compute

    def explode(_):
        import numpy as np

        return np.ones(2 * 10**9 // 8).sum()  # far past the worker's 400 MB

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="400MB",
                         dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) \
            as cluster, Client(cluster):
        with pytest.raises(ClusterError, match="dask workers died 2 times while running"):
            compute(dask.delayed(explode)(0), label="too big")


def test_a_model_too_big_for_a_worker_is_refused_before_fitting():
    from geoclass.memory import fit_bytes, fit_problem_of

    forest = {"n_estimators": 100, "max_depth": 25, "min_samples_leaf": 5}
    small, big = fit_bytes(10_000, 150, forest), fit_bytes(2_000_000, 400, forest)
    assert small < 100 * MiB < 1_000 * MiB < big
    # deeper trees than the samples allow cost nothing more; a shallow cap costs less
    assert fit_bytes(10_000, 150, {**forest, "max_depth": None}) == small
    assert fit_bytes(10_000, 150, {**forest, "max_depth": 4}) < small
    assert fit_problem_of(10_000, 150, forest, 2_000 * MiB, 500 * MiB, "region 1 run 0") is None
    problem = fit_problem_of(2_000_000, 400, forest, 2_000 * MiB, 500 * MiB, "region 3 run 1")
    assert problem.startswith("region 3 run 1: fitting on 2,000,000 samples x 400 features")
    assert "sampling.sample_selection" in problem and "--memory-limit" in problem
    assert fit_problem_of(2_000_000, 400, forest, 0, 500 * MiB, "no limit") is None
    # gradient boosting: the table, its binned copy and the gradients; small trees
    boosting = {"n_estimators": 100, "num_leaves": 15, "learning_rate": 0.2, "max_depth": -1}
    assert fit_bytes(2_000_000, 400, boosting) == 2 * 2_000_000 * 400 * 4


def test_bayesian_smoothing_adds_its_task():
    plain = CubeShape(30, 10, 36, 400, 10, tile_side=256)
    smooth = CubeShape(30, 10, 36, 400, 10, tile_side=256, smoothing_halo=4)
    assert "smoothing" not in plain.task_bytes(256)
    # the block padded by the window's reach, 48 bytes per class, and a strip of windows
    assert smooth.task_bytes(256)["smoothing"] == 264**2 * 48 * 10 + 64 * 2**20
