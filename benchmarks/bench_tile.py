"""A real-size benchmark (issue 13): `geoclass run` end to end on a generated quarter tile, with
per step the wall time, the peak RSS of the command's process tree and the disk written; then an
extrapolation to one full tile and to a country of 110 tiles.

    python benchmarks/bench_tile.py                              # 5490 px, 30 dates (the issue)
    python benchmarks/bench_tile.py --size 1024 --dates 12       # quick

1. A one-tile THEIA scene (10 bands, CLM/EDG masks, 10 classes, 2 regions) is generated in a
   subprocess: its wall time and peak RSS are printed too (generation works window by window).
2. The config gets a constant sample selection (`--per-class` pixels per class and region, as a
   national run would set) and 1 run.
3. `geoclass run CONFIG --workers W --threads-per-worker T` runs once; its log lines
   (`step i/n: name`) split the run into steps. A thread samples the RSS of the command and every
   process it started (driver, nanny, workers) every 0.25 s; the disk under the output folder is
   measured at every step boundary.
4. The extrapolation scales each step by what it is proportional to (printed with the table):
   the cube by pixels x acquisitions, samples / classify / mosaic / assess by pixels, training
   by nothing (constant selection), and assumes tiles run in parallel with no loss across
   cores (an upper bound of the speed: it ignores the shared file system and the training of
   regions that span tiles)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from common import GiB, MiB, TreeSampler, du

STEP_LINE = re.compile(r"step (\d+)/(\d+): (\w+)")
REAL_TILE_PX = 10980**2
REAL_DATES = 70  # Sentinel-2 A+B acquisitions of one tile in a year, about
COUNTRY_TILES = 110


class StepClock:
    """Time, peak RSS and disk of each step, from the command's log lines."""

    def __init__(self, output: Path, sampler: TreeSampler):
        self.output, self.sampler = output, sampler
        self.rows: list[dict] = []
        self._start = time.perf_counter()
        self._name = "start-up"
        self._disk = 0

    def boundary(self, name: str) -> None:
        now, disk = time.perf_counter(), du(self.output) if self.output.exists() else 0
        peak = self.sampler.peak
        self.rows.append({"step": self._name, "wall": now - self._start,
                          "rss": peak.total, "disk": disk - self._disk})
        peak.total = 0  # the next step's own peak
        self._start, self._name, self._disk = now, name, disk


def read_lines(stream, clock: StepClock, echo: list[str]) -> None:
    for line in stream:
        echo.append(line)
        found = STEP_LINE.search(line)
        if found:  # the cluster starts after the checks, before step 2's line
            name = found.group(3)
            clock.boundary("check+cluster" if name == "check" else name)


def generate(folder: Path, args) -> tuple[Path, float, int]:
    code = ("import sys; from geoclass.testing.synth import synth; "
            "print(synth(sys.argv[1], tiles=1, size=int(sys.argv[2]), dates=int(sys.argv[3]), "
            "classes=int(sys.argv[4]), regions=int(sys.argv[5]), seed=int(sys.argv[6])))")
    cmd = [sys.executable, "-c", code, str(folder), str(args.size), str(args.dates),
           str(args.classes), str(args.regions), str(args.seed)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    with TreeSampler(proc.pid, 0.25) as sampler:
        out, _ = proc.communicate()
    if proc.returncode:
        sys.exit(f"scene generation failed (exit {proc.returncode})")
    return Path(out.strip().splitlines()[-1]), time.perf_counter() - start, sampler.peak.total


def tune(config: Path, per_class: int) -> Path:
    data = yaml.safe_load(config.read_text())
    data["chain"]["runs"] = 1
    data.setdefault("sampling", {})["sample_selection"] = {
        "strategy": "constant", "strategy.constant.nb": per_class}
    data["chain"]["output_path"] = "bench_run"
    tuned = config.with_name("config_bench.yaml")
    tuned.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return tuned


def run(config: Path, args) -> tuple[list[dict], float, int, list[str]]:
    output = config.parent / "bench_run"
    shutil.rmtree(output, ignore_errors=True)
    cmd = [sys.executable, "-m", "geoclass.cli", "run", str(config), "--workers",
           str(args.workers), "--threads-per-worker", str(args.threads)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    lines: list[str] = []
    with TreeSampler(proc.pid, 0.25) as sampler:
        clock = StepClock(output, sampler)
        reader = threading.Thread(target=read_lines, args=(proc.stdout, clock, lines))
        reader.start()
        proc.wait()
        reader.join()
        clock.boundary("end")
    if proc.returncode:
        sys.stdout.write("".join(lines[-30:]))
        sys.exit(f"geoclass run failed (exit {proc.returncode})")
    return clock.rows, time.perf_counter() - start, du(output), lines


SCALES = {"cubes": "px x dates", "samples": "px", "classify": "px", "mosaic": "px",
          "validate": "px", "autocontext": "px"}


def extrapolate(rows: list[dict], args) -> None:
    px = REAL_TILE_PX / args.size**2
    dates = REAL_DATES / args.dates
    factor = {"px x dates": px * dates, "px": px, "1": 1.0}
    tile = 0.0
    print(f"\nextrapolation: full tile = x{px:.2f} pixels, {REAL_DATES} acquisitions "
          f"(x{dates:.2f}); cores used here: {args.workers * args.threads}")
    print(f"{'step':<14}{'scales with':>13}{'one tile, h':>13}")
    for row in rows:
        scale = SCALES.get(row["step"], "1")
        hours = row["wall"] * factor[scale] / 3600
        tile += hours
        print(f"{row['step']:<14}{scale:>13}{hours:>13.2f}")
    core_hours = tile * args.workers * args.threads
    print(f"one full tile: {tile:.2f} h on {args.workers * args.threads} cores "
          f"({core_hours:.1f} core-hours)")
    for cores in (2, 64, 512):
        wall = core_hours * COUNTRY_TILES / cores
        print(f"{COUNTRY_TILES} tiles on {cores:>3} cores: {wall:8.1f} h "
              f"({wall / 24:.1f} days), if tiles scale perfectly")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5490)
    parser.add_argument("--dates", type=int, default=30)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--regions", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=2000,
                        help="constant sample selection: pixels per class and region")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder for the scene (default: temporary, "
                        "deleted at the end); an existing scene there is reused")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_tile_"))
    try:
        config = folder / "config.yaml"
        if config.exists():
            print(f"scene: reused {folder}")
        else:
            config, wall, rss = generate(folder, args)
            print(f"scene: {args.size} px, {args.dates} dates, {args.classes} classes, "
                  f"{args.regions} regions: generated in {wall:.0f} s, peak RSS "
                  f"{rss / MiB:.0f} MiB")
        inputs = du(folder / "sensor_data")
        chunk = yaml.safe_load(config.read_text())["dask"]["chunk_size"]
        print(f"inputs on disk: {inputs / GiB:.2f} GiB; chunk {chunk}; "
              f"{args.workers} worker(s) x {args.threads} thread(s)")
        rows, total, disk, lines = run(tune(config, args.per_class), args)
        print(f"\n{'step':<14}{'wall s':>9}{'peak RSS MiB':>14}{'disk MiB':>10}")
        for row in rows:
            print(f"{row['step']:<14}{row['wall']:>9.1f}{row['rss'] / MiB:>14.0f}"
                  f"{row['disk'] / MiB:>10.0f}")
        print(f"{'total':<14}{total:>9.1f}{max(r['rss'] for r in rows) / MiB:>14.0f}"
              f"{disk / MiB:>10.0f}")
        metrics = folder / "bench_run" / "final" / "metrics.json"
        if metrics.exists():
            oa = json.loads(metrics.read_text())["runs"][0]["scores"]["overall_accuracy"]
            print(f"overall accuracy: {oa:.3f}")
        extrapolate(rows, args)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
