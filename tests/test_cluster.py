"""The chain on a real dask cluster (a scheduler and two workers as separate processes), with a
worker killed mid-run, and a CLI killed mid-run then resumed: the maps are always the same."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoclass.io.configfile import load_config
from geoclass.pipeline import run_chain

from .test_pipeline import chain_scene

BIN = Path(sys.executable).parent
SMALL = dict(dask={"chunk_size": 32}, models={"params": {"n_estimators": 30}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(*argv, log: Path) -> subprocess.Popen:
    """A process in its own session (so that killing its group kills its children too)."""
    return subprocess.Popen([str(a) for a in argv], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "GEOCLASS_PROGRESS": "0"})


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def reference(scene_template, tmp_path_factory, client):
    """The maps of an uninterrupted run on the in-process cluster."""
    path = chain_scene(scene_template, tmp_path_factory.mktemp("reference") / "scene", **SMALL)
    run_chain(load_config(path))
    return _outputs(path)


def _outputs(config_path: Path) -> dict:
    final = config_path.parent / "run" / "final"
    out = {}
    for tif in sorted(final.glob("*.tif")):
        with rasterio.open(tif) as src:
            out[tif.name] = src.read()
    metrics = json.loads((final / "metrics.json").read_text())
    out["metrics"] = [r["confusion"] for r in metrics["runs"]]
    return out


def _assert_same(outputs: dict, reference: dict) -> None:
    assert outputs.keys() == reference.keys()
    for name, value in reference.items():
        np.testing.assert_array_equal(outputs[name], value, err_msg=name)


@pytest.fixture
def scheduler(tmp_path):
    """A dask scheduler and two single-thread workers on 127.0.0.1, as separate processes."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{_free_port()}"
    procs = [_spawn(BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port",
                    address.rsplit(":", 1)[1], "--dashboard-address", ":0",
                    log=tmp_path / "scheduler.log")]
    for k in range(2):
        procs.append(_spawn(BIN / "dask", "worker", address, "--nthreads", "1",
                            "--memory-limit", "3GB", "--no-dashboard", "--local-directory",
                            tmp_path / f"worker{k}", log=tmp_path / f"worker{k}.log"))
    try:
        deadline = time.time() + 60
        while True:
            try:
                with Client(address, timeout="5s") as c:
                    c.wait_for_workers(2, timeout=60)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        yield address, procs
    finally:
        for proc in reversed(procs):
            _kill(proc)


def _started_classifying(out: Path) -> bool:
    classif = out / "classif"
    return classif.exists() and any(classif.iterdir())


def _wait_for(condition, proc, timeout=240):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the awaited moment"
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_run_on_an_existing_scheduler_gives_the_local_maps(scheduler, reference,
                                                           scene_template, tmp_path):
    address, _ = scheduler
    path = chain_scene(scene_template, tmp_path / "scene", **SMALL)
    done = subprocess.run([BIN / "geoclass", "run", path, "--scheduler", address],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "GEOCLASS_PROGRESS": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "overall accuracy" in done.stdout
    _assert_same(_outputs(path), reference)


def test_a_worker_killed_mid_run_does_not_change_the_maps(scheduler, reference,
                                                          scene_template, tmp_path):
    address, procs = scheduler
    path = chain_scene(scene_template, tmp_path / "scene", **SMALL)
    run = _spawn(BIN / "geoclass", "run", path, "--scheduler", address,
                 log=tmp_path / "run.log")
    try:
        _wait_for(lambda: _started_classifying(path.parent / "run"), run)
        _kill(procs[1])  # one of the two workers, with its nanny
        assert run.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        _kill(run)
    _assert_same(_outputs(path), reference)


def test_a_killed_run_resumes_to_the_same_maps(reference, scene_template, tmp_path):
    path = chain_scene(scene_template, tmp_path / "scene", **SMALL)
    out = path.parent / "run"
    command = [BIN / "geoclass", "run", path, "--workers", "1", "--threads-per-worker", "2"]
    run = _spawn(*command, log=tmp_path / "killed.log")
    try:
        _wait_for(lambda: _started_classifying(out), run)
    finally:
        _kill(run)  # kill -9 of the CLI and its local cluster
    assert not (out / "final" / "metrics.json").exists()
    for tif in (out / "final").glob("*.tif"):  # whatever is there is complete
        with rasterio.open(tif) as src:
            src.read()
    run = _spawn(*command, log=tmp_path / "resumed.log")
    assert run.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    _assert_same(_outputs(path), reference)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_local_workers_profile_every_100_ms_unless_the_user_says_otherwise():
    import dask

    from geoclass.cluster import dask_client

    key = "distributed.worker.profile.interval"
    with dask_client(workers=1, threads_per_worker=1, dashboard_address="none") as client:
        assert set(client.run(lambda: dask.config.get(key)).values()) == {"100ms"}
    with dask.config.set({key: "25ms"}), \
            dask_client(workers=1, threads_per_worker=1, dashboard_address="none") as client:
        assert set(client.run(lambda: dask.config.get(key)).values()) == {"25ms"}
