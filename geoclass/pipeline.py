"""The runner: the chain as a declarative list of steps, and "is it up to date?" decided once,
here, for every step, with one manifest format.

A step's manifest (`manifests/<step>.json`, written last, once its outputs are complete)
records what it was made from: the settings it depends on, a fingerprint of the input files
it reads, and a digest of each upstream step's manifest (so a change anywhere upstream redoes
it), plus what it recorded of its outputs (keys, hashes). A step is skipped when its manifest
says the same and its outputs exist; steps never call one another: each reads what it needs
from the run store."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import dask
from distributed import get_client

from geoclass import fs, logs
from geoclass.cluster import dask_client
from geoclass.config import Config
from geoclass.errors import InputError
from geoclass.memory import check_workers
from geoclass.store import RunStore, fingerprint, plain

log = logging.getLogger(__name__)

FORMAT = 1  # of the manifests: bump to redo every step of existing runs


def _nothing(*args, **kwargs):
    return None


def _no_inputs(config):
    return []


def _no_outputs(config, store, record):
    return []


def _not_current(config, store):
    return False


HOOK_DEFAULTS = {"settings": _nothing, "inputs": _no_inputs, "outputs": _no_outputs,
                 "record": _nothing, "current": _not_current}


@dataclass(frozen=True)
class Step:
    """One step of the chain, done by the module `geoclass.steps.<module>`, imported when the
    step is first used (a command loads only the steps it runs). The module's
    `run(config, store, force)` does its work through the store; its optional `settings(config)`
    is what of the config it depends on, `inputs(config)` the files it reads besides upstream
    outputs, `outputs(config, store, record)` what it writes, `record(result)` what later
    steps need to know of it. `items`: the step decides per item (tile) itself, so the
    runner calls it unless `current(config, store)` says that every item is up to date."""

    name: str
    module: str
    after: tuple[str, ...] = ()
    items: bool = False
    run: Callable | None = None  # instead of the module's `run` (a test's stand-in)

    def hook(self, name: str) -> Callable:
        if name == "run" and self.run is not None:
            return self.run
        module = importlib.import_module(f"geoclass.steps.{self.module}")
        return getattr(module, name) if name == "run" else getattr(module, name,
                                                                      HOOK_DEFAULTS[name])


STEPS = (
    Step("check", "check"),
    Step("cubes", "cube", items=True),
    Step("samples", "samples", after=("cubes",)),
    Step("train", "train", after=("samples",)),
    Step("classify", "classify", after=("train",)),
    Step("mosaic", "mosaic", after=("classify", "cubes")),
    Step("validate", "assess", after=("mosaic", "samples")),
    Step("report", "report", after=("validate",)),
)
BY_NAME = {step.name: step for step in STEPS}


def _digest(manifest: dict | None) -> str | None:
    if manifest is None:
        return None
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def stamp(step: Step, config: Config, store: RunStore) -> dict:
    """What `step` would be made from now."""
    return plain({"format": FORMAT, "settings": step.hook("settings")(config),
                  "inputs": fingerprint(step.hook("inputs")(config)),
                  "upstream": {name: _digest(store.manifest(name)) for name in step.after}})


def is_current(step: Step, config: Config, store: RunStore) -> bool:
    """Whether `step` can be skipped: its manifest records what it would be made from now,
    and its outputs exist."""
    manifest = store.manifest(step.name)
    if manifest is None or (step.items and not step.hook("current")(config, store)):
        return False
    now = stamp(step, config, store)
    if any(manifest.get(key) != value for key, value in now.items()):
        return False
    return all(fs.exists(p) for p in step.hook("outputs")(config, store, manifest.get("record")))


def run_step(step: Step, config: Config, store: RunStore, force: bool,
             current: bool | None = None):
    """Run one step unless it is up to date (`current`, when the caller knows it); record
    its manifest once it is done."""
    if not force and (is_current(step, config, store) if current is None else current):
        log.info("%s: up to date", step.name)
        return None
    store.forget(step.name)
    result = step.hook("run")(config, store, force=force)
    manifest = {**stamp(step, config, store), "record": plain(step.hook("record")(result))}
    store.write_manifest(step.name, manifest)
    return result


@contextmanager
def run_log(store: RunStore) -> Iterator[Path]:
    """The run's log file in `logs/`; on an object store (no appending there) the log is
    written in the local temporary folder, where it stays, and uploaded at the end."""
    if not store.remote:
        with logs.log_to_file(store.logs) as path:
            yield path
        return
    with logs.log_to_file(Path(tempfile.gettempdir()) / "geoclass-logs") as path:
        try:
            yield path
        finally:
            try:
                fs.upload(path, store.logs / path.name)
            except Exception as err:  # noqa: BLE001 - the log stays local, the run goes on
                log.warning("could not upload the log %s to %s: %s", path, store.logs, err)


def _active_client():
    try:
        return get_client()
    except ValueError:
        return None


def _selected(from_step, only_step, until) -> list[str]:
    for name in (from_step, only_step, until):
        if name is not None and name not in BY_NAME:
            raise InputError([f"unknown step {name!r}; steps: {', '.join(BY_NAME)}"])
    names = list(BY_NAME)
    last = only_step or until
    return names[:names.index(last) + 1] if last else names


def owner_of(config: Config) -> str:
    return str(Path(config.source).resolve()) if config.source else "<python>"


def run_steps(config: Config, from_step: str | None = None, only_step: str | None = None,
              until: str | None = None, force: tuple[str, ...] = (), overwrite: bool = False,
              cluster: dict | None = None) -> dict:
    """Run the steps in order, up to the last (or `until`, or `only_step`), each unless it is
    up to date; `from_step` and every later one, `only_step` and the steps in `force` are
    redone even if up to date. The input checks run first and once, before anything is written and
    before the dask cluster starts; then the steps run on the cluster `cluster` describes
    (the options of `cluster.dask_client`: the command line's), else on the active client,
    else on a new LocalCluster, started with the first step that has work to do (none when
    every step is up to date). Returns each step's result, by name."""
    selected = _selected(from_step, only_step, until)
    names = list(BY_NAME)
    first = names.index(from_step) if from_step else len(names)
    store = RunStore(config.chain.output_path)
    store.claim(owner_of(config), overwrite)
    results, total = {}, len(selected)
    if "check" in selected:
        with logs.running("check"):
            log.info("step 1/%d: check", total)
            results["check"] = BY_NAME["check"].hook("run")(config, store)
    store.mark(owner_of(config))
    store.remove_stale_temporaries()
    if cluster is None and _active_client():
        session = nullcontext()  # a notebook's client
    else:
        session = dask_client(config.dask, **(cluster or {}))
    stall = {"geoclass.stall-timeout": config.dask.stall_timeout}
    shape = getattr(results.get("check"), "shape", None)
    with run_log(store) as log_path, ExitStack() as stack, dask.config.set(stall):
        log.info("log file: %s", log_path)
        cluster_up = False
        for number, name in enumerate(selected, start=1):
            if name == "check":
                continue
            with logs.running(name):
                log.info("step %d/%d: %s", number, total, name)
                step = BY_NAME[name]
                redo = name in force or name == only_step or names.index(name) >= first
                current = not redo and is_current(step, config, store)
                if not current and not cluster_up:
                    # the cluster starts with the first step that has work to do: a run
                    # whose steps are all up to date starts none
                    stack.enter_context(session)
                    cluster_up = True
                    if shape is not None:
                        check_workers(_active_client(), config.dask.chunk_size, shape)
                results[name] = run_step(step, config, store, redo, current)
    return results


def run_chain(config: Config, from_step: str | None = None, only_step: str | None = None,
              overwrite: bool = False, cluster: dict | None = None) -> dict:
    """Run the chain on the active dask client (or a new LocalCluster if there is none).
    `from_step`: redo that step and every later one; `only_step`: redo that step alone.
    Returns the accuracy figures (`final/metrics.json`)."""
    run_steps(config, from_step=from_step, only_step=only_step, overwrite=overwrite,
              cluster=cluster)
    return RunStore(config.chain.output_path).metrics()
