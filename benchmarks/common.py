"""Helpers shared by the benchmarks: the RSS of a process tree sampled in a thread, a scene
generated in a subprocess (its peak RSS measured), the chunk and date step of a config, disk
usage."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

MiB = 1024**2
GiB = 1024**3


# --- RSS sampling of a process tree ---------------------------------------------------------


@dataclass
class TreePeak:
    """Peak RSS (bytes) of a process tree, sampled: all together, the root alone, and the
    descendants alone (each peak is taken over its own samples)."""

    total: int = 0
    root: int = 0
    children: int = 0
    samples: int = 0
    first_total: int = 0


@dataclass
class TreeSampler:
    """Sample the RSS of `pid` and all its descendants every `interval` seconds, in a thread."""

    pid: int
    interval: float = 0.2
    peak: TreePeak = field(default_factory=TreePeak)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int]:
        """(root RSS, sum of the descendants' RSS) now; vanished processes count as 0."""
        try:
            root = psutil.Process(self.pid)
            root_rss = root.memory_info().rss
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0, 0
        child_rss = 0
        for child in children:
            try:
                child_rss += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return root_rss, child_rss

    def _record(self) -> None:
        root, children = self.sample()
        peak = self.peak
        if peak.samples == 0:
            peak.first_total = root + children
        peak.samples += 1
        peak.total = max(peak.total, root + children)
        peak.root = max(peak.root, root)
        peak.children = max(peak.children, children)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._record()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._record()  # one last sample, so a very short run still has one


# --- scene generation -----------------------------------------------------------------------


_SYNTH = """
import json, sys
from geoclass.testing.synth import synth
kwargs = json.loads(sys.argv[1])
print(synth(**kwargs))
"""


def generate_scene(folder: Path, size: int, dates: int, seed: int, interval: float,
                   layout: str = "theia"):
    """Write a one-tile scene in a subprocess; returns (config path, seconds, peak RSS)."""
    kwargs = dict(
        out_dir=str(folder), tiles=1, size=size, dates=dates, classes=8, regions=2, seed=seed,
        format=layout,
    )
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SYNTH, json.dumps(kwargs)], stdout=subprocess.PIPE, text=True
    )
    with TreeSampler(proc.pid, interval) as sampler:
        out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"scene generation failed for size {size} (exit {proc.returncode})")
    return Path(out.strip().splitlines()[-1]), time.perf_counter() - start, sampler.peak.total


def tune_config(path: Path, chunk: int, out_dates: int) -> int:
    """Set the chunk size and a date step giving about `out_dates` gap-filled dates;
    returns the step in days."""
    data = yaml.safe_load(path.read_text())
    scene = json.loads((path.parent / "scene.json").read_text())
    days = [dt.date.fromisoformat(d) for d in next(iter(scene["dates"].values()))]
    span = (days[-1] - days[0]).days
    step = max(1, math.ceil(span / max(1, out_dates - 1))) if out_dates > 1 else span + 1
    data.setdefault("dask", {})["chunk_size"] = chunk
    data.setdefault("sensors", {}).setdefault("sentinel_2", {})["temporal_resolution"] = step
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return step


def du(path: Path) -> int:
    """Bytes on disk under `path`."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total




# --- a model named on the command line --------------------------------------------------------


def model_spec(text: str, known: dict[str, dict]) -> tuple[str, dict]:
    """('lightgbm', {...}) from 'lightgbm' (its entry in `known`, else no parameters) or from
    'lightgbm:n_estimators=100,learning_rate=0.2' (values read as YAML scalars)."""
    name, _, given = text.partition(":")
    params = dict(known.get(name, {}))
    for item in filter(None, given.split(",")):
        key, _, value = item.partition("=")
        params[key.strip()] = yaml.safe_load(value)
    return name, params
