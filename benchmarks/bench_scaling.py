"""Benchmark: geoclass's classification step scales linearly in time and flat in memory
(issues 4 and 8).

For each tile size (default 500, 1000, 2000 px: 1x, 4x and 16x the area) a scene is generated
and its cube, samples and model are built by `geoclass train` (not timed, in subprocesses);
then the classification step -- `classify(config, force=True)` + `mosaic(config, force=True)`:
per-tile classification to zarr, mosaic zarr, pixel validity, class and confidence COGs --
runs in a FRESH process on a fresh LocalCluster (1 worker x 2 threads), so that nothing an
earlier size left in memory counts. The RSS of that process tree (driver = client + scheduler +
the GDAL COG writes; nanny + worker) is sampled every 0.2 s, per phase of the step (see
classify_step.py). At the largest size the step also runs on 2 workers x 1 thread, then on
1 x 2 again (back to back, so that a change of the machine's load shows).

Scenes (--scene):
- `stack` (default): benchmarks/featstack.py, 156 float32 user features, 10 classes, 2000
  learning pixels per class whatever the size, random forest 100 trees / depth 25 / min leaf 5
  (geoclass's default), probabilities off; OA against the truth raster is printed too.
- `synth`: the issue-4 scene of the earlier bench_classify (geoclass.testing.synth THEIA scene, 6
  dates -> 78 features, 8 classes, 2 regions, boundary fusion and probability maps on, RF of
  --trees trees, sampling strategy left at `all`: every pixel of the learning polygons, so
  the learning table grows with the tile). Default sizes 1024 2048.

    python benchmarks/bench_scaling.py                            # ~6 min
    python benchmarks/bench_scaling.py --sizes 250 500 1000       # quicker
    python benchmarks/bench_scaling.py --scene synth --tracemalloc  # driver-memory diagnosis
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from classify_step import (
    ENV,
    generate,
    geoclass_step,
    load_average,
    machine,
    output_dir,
    overall_accuracy,
    phase_table,
    train,
)
from common import MiB, generate_scene, tune_config


def synth_scene(folder: Path, size: int, args) -> Path:
    """The earlier bench_classify's scene and settings (issue 4)."""
    config, _, _ = generate_scene(folder, size, 6, args.seed, 0.2)
    tune_config(config, args.chunk, 6)
    data = yaml.safe_load(config.read_text())
    data["models"] = {"params": {"n_estimators": args.trees}}
    data["classification"] = {"enable_probability_map": True,
                              "boundary_fusion": {"enable": True}}
    config.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return config


def prepare(root: Path, size: int, args) -> Path:
    folder = root / f"scene_{size}"
    start = time.perf_counter()
    if args.scene == "synth":
        config = synth_scene(folder, size, args)
    else:
        config, _ = generate(folder, size, 156, 10, args.chunk, args.seed)
    seconds = time.perf_counter() - start
    train_s = train(config, 1, 2)
    learn = output_dir(config) / "samples" / "learn_seed_0.parquet"
    print(f"[{size} px] scene {seconds:.0f} s; cube + samples + model {train_s:.0f} s (not "
          f"timed); learning table {learn.stat().st_size / MiB:.0f} MiB on disk", flush=True)
    return config


def step(config: Path, size: int, args, workers: int, threads: int) -> dict:
    train(config, 1, 2)  # no-op when up to date (guards against a concurrent edit of geoclass)
    result = geoclass_step(config, workers, threads, tracemalloc=args.tracemalloc)
    truth = config.parent / "truth.tif"
    if truth.exists():
        result["oa"] = overall_accuracy(truth, output_dir(config) / "final" /
                                        "Classif_Seed_0.tif")
    result.update(size=size, pixels=size * size)
    oa = f", OA {result['oa']:.4f}" if "oa" in result else ""
    print(f"[{size} px, {workers} x {threads}] {result['wall']:.1f} s (classify "
          f"{result['classify_s']:.1f} + maps {result['maps_s']:.1f}), "
          f"{result['pixels'] / result['wall'] / 1e3:.0f} kpx/s, peak RSS tree "
          f"{result['peak'] / MiB:.0f} MiB (driver {result['driver_peak'] / MiB:.0f}, workers "
          f"{result['workers_peak'] / MiB:.0f}){oa}; load {load_average()}", flush=True)
    return result


def row(r: dict) -> str:
    return (f"| {r['size']} | {r['pixels'] / 1e6:.2f} M | {r['workers']} x {r['threads']} "
            f"| {r['wall']:.1f} | {r['classify_s']:.1f} | {r['maps_s']:.1f} "
            f"| {r['pixels'] / r['wall'] / 1e3:.0f} | {r['peak'] / MiB:.0f} "
            f"| {r['driver_peak'] / MiB:.0f} | {r['workers_peak'] / MiB:.0f} "
            f"| {r['idle_driver'] / MiB:.0f} / {r['idle_workers'] / MiB:.0f} "
            f"| {r['driver_trimmed'] / MiB:.0f} |")


HEAD = ("| size (px) | pixels | workers x threads | wall (s) | classify (s) | maps (s) | kpx/s "
        "| peak RSS tree (MiB) | driver peak (MiB) | workers peak (MiB) "
        "| idle driver / workers (MiB) | driver RSS freed by malloc_trim after (MiB) |")


def report(results: list[dict], workers: list[dict]) -> str:
    lines = [HEAD, "|" + "---:|" * 12]
    lines += [row(r) for r in results]
    small = results[0]
    lines.append("")
    for big in results[1:]:
        area = big["pixels"] / small["pixels"]
        lines.append(f"{big['size']} vs {small['size']} px: area x{area:.1f}, time "
                     f"x{big['wall'] / small['wall']:.2f} (time per pixel x"
                     f"{big['wall'] / small['wall'] / area:.2f}; classify part x"
                     f"{big['classify_s'] / small['classify_s'] / area:.2f} per pixel), peak "
                     f"RSS tree x{big['peak'] / small['peak']:.2f}, driver peak "
                     f"x{big['driver_peak'] / small['driver_peak']:.2f}, workers peak "
                     f"x{big['workers_peak'] / small['workers_peak']:.2f}")
    if "oa" in small:
        lines.append("OA: " + ", ".join(f"{r['size']} px {r['oa']:.4f}" for r in results))
    for r in results:
        lines += ["", f"Phases at {r['size']} px ({r['workers']} x {r['threads']}):", "",
                  phase_table(r)]
        if "tracemalloc" in r:
            lines += ["", "tracemalloc (driver's Python allocations; traced MiB after the "
                      "phase, and the lines that grew most during it):"]
            for label, t in r["tracemalloc"].items():
                lines.append(f"- {label}: {t['traced_mib']} MiB traced; " + "; ".join(t["top"]))
    if workers:
        lines += ["", "Workers at the largest size (back to back):", "", HEAD,
                  "|" + "---:|" * 12]
        lines += [row(r) for r in workers]
        one, two = workers[0], workers[1]
        lines.append(f"\n2 x 1 vs 1 x 2: time x{two['wall'] / one['wall']:.2f}, peak RSS tree "
                     f"x{two['peak'] / one['peak']:.2f}")
        if len(workers) > 2:
            lines.append(f"1 x 2 repeated after: {workers[2]['wall']:.1f} s (first "
                         f"{one['wall']:.1f} s)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", choices=("stack", "synth"), default="stack")
    parser.add_argument("--sizes", type=int, nargs="+", help="tile sides, px, smallest first "
                        "(default 500 1000 2000; synth: 1024 2048)")
    parser.add_argument("--chunk", type=int, default=512, help="dask.chunk_size (512)")
    parser.add_argument("--trees", type=int, default=50, help="synth scene: RF trees (50)")
    parser.add_argument("--no-workers", action="store_true",
                        help="skip the 2 x 1 vs 1 x 2 comparison at the largest size")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the driver's Python allocations per phase (slower)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, deleted")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([1024, 2048] if args.scene == "synth" else [500, 1000, 2000])
    temporary = args.workdir is None
    root = Path(tempfile.mkdtemp(prefix="bench_scaling_")) if temporary else args.workdir
    root.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    print(f"scene {args.scene}, sizes {sizes}, chunk {args.chunk}", flush=True)
    results, workers = [], []
    try:
        for size in sizes:
            config = prepare(root, size, args)
            results.append(step(config, size, args, 1, 2))
            if size == sizes[-1] and not args.no_workers:
                workers = [results[-1], step(config, size, args, 2, 1),
                           step(config, size, args, 1, 2)]
            if not args.keep:
                shutil.rmtree(config.parent, ignore_errors=True)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(report(results, workers))
    print(f"\nload average at the end: {load_average()}; whole run "
          f"{(time.perf_counter() - began) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    os.environ.update(ENV)
    sys.exit(main())
