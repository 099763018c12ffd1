"""Benchmark: geoclass's classification step against plain scikit-learn and OTB (issue 8).

One generated feature stack (benchmarks/featstack.py: by default 2000 x 2000 px x 156 float32
features, 10 classes, a truth raster), read by geoclass as user features (a config whose only
input is `chain.user_feat_path`); geoclass builds the zarr cube, draws 2000 learning pixels per
class (20000) from half of the ground-truth polygons and trains its random forest (100 trees,
max depth 25, min 5 samples per leaf); none of that is timed. Then, one after the other, each
in a fresh process whose whole process tree's RSS is sampled:

  (a)  geoclass's classification step, end to end: features read from the zarr cube -> class +
       confidence COGs (per-tile classification to zarr, mosaic zarr, pixel validity, COGs;
       probabilities off), LocalCluster of 1 worker x 2 threads;
  (b)  plain scikit-learn over the same zarr blocks (the DEA `predict_xr` / dask-ml
       ParallelPostFit recipe: `map_blocks` calling the same fitted estimator's predict_proba,
       the estimator in the graph; class = argmax, confidence = 100 x max) writing class +
       confidence to zarr, same cluster;
  (c)  OTB 8.1.1 `otbcli_ImageClassifier` on the stack's GeoTIFF with `-confmap`, with an OTB
       random forest of the same hyper-parameters (`-classifier rf -classifier.rf.nbtrees 100
       -classifier.rf.max 25 -classifier.rf.min 5`) trained by `otbcli_TrainVectorClassifier`
       on the same 20000 learning pixels (a GeoPackage of points with the 156 feature
       fields); `-ram 512`, OTB_MAX_RAM_HINT=512, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=2;
       skipped (with the install hint) when otb-bin is missing;
  (a') (a) with GEOCLASS_FASTFOREST=0 (geoclass's block kernel on plain predict_proba);
  (a2) (a) again, so that the ratios use the mean of two (a) runs around (b) and (c).

It prints wall time, pixels/s, peak RSS and the overall accuracy (OA, every pixel of the
truth raster) of each map, the ratios a/b, a/c, a'/b; then the same end-to-end step (a) for
other classifiers (retrained by geoclass on the same samples, via the config's `models`
section), to choose geoclass's default: OA and pixels/s each, against OTB's.

    python benchmarks/bench_classify.py                          # 2000 px, ~12 min
    python benchmarks/bench_classify.py --size 500 --alternatives none     # quick run
    python benchmarks/bench_classify.py --alternatives rf50 hgb  # some alternatives only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from classify_step import (
    ENV,
    generate,
    geoclass_step,
    load_average,
    machine,
    measure,
    output_dir,
    overall_accuracy,
    phase_table,
    set_model,
    train,
)
from common import MiB

OTB_HINT = ("OTB is not installed: `apt-get install -y otb-bin` (Debian 12: OTB 8.1.1) "
            "puts otbcli_ImageClassifier and otbcli_TrainVectorClassifier on the PATH")

# name: (what, classifier, params) -- run through geoclass's end-to-end step
ALTERNATIVES = {
    "rf100": ("RF 100 trees, depth 25, min leaf 5 (iota2's classifier)", "random_forest", {}),
    "rf50": ("RF 50 trees, depth 25, min leaf 5", "random_forest", {"n_estimators": 50}),
    "rf100_d16": ("RF 100 trees, depth 16, min leaf 5", "random_forest", {"max_depth": 16}),
    "et100": ("ExtraTrees 100 trees, depth 25, min leaf 5 (geoclass default)", "extra_trees", {}),
    "et100_d16": ("ExtraTrees 100 trees, depth 16, min leaf 5", "extra_trees",
                  {"max_depth": 16}),
    "et60_d20": ("ExtraTrees 60 trees, depth 20, min leaf 5", "extra_trees",
                 {"n_estimators": 60, "max_depth": 20}),
    "et50": ("ExtraTrees 50 trees, depth 25, min leaf 5", "extra_trees", {"n_estimators": 50}),
    # scikit-learn's own predict (no fast path): ~5-20 kpx/s, i.e. minutes at 2000 px
    "hgb": ("HistGradientBoosting (max_iter 200, early stopping)", "hist_gradient_boosting",
            {}),
}
DEFAULT_ALTERNATIVES = ["rf100_d16", "rf50", "et100", "et100_d16", "et60_d20", "et50"]
PRIME = "a'"  # the key of run (a')


# --- (b): plain scikit-learn over the zarr blocks ---------------------------------------------


def _sklearn_block(block: np.ndarray, estimator) -> np.ndarray:
    """The DEA predict_xr / ParallelPostFit kernel on one (F, h, w) block: predict_proba on
    the pixels (a C-contiguous (h*w, F) copy), class and 100 x the highest probability."""
    features, height, width = block.shape
    pixels = np.ascontiguousarray(block.reshape(features, -1).T)
    proba = estimator.predict_proba(pixels)
    out = np.empty((2, height, width), np.uint8)
    out[0] = np.asarray(estimator.classes_)[proba.argmax(axis=1)].reshape(height, width)
    out[1] = np.rint(proba.max(axis=1) * 100).reshape(height, width)
    return out


def _sklearn_imports() -> None:
    import sklearn.ensemble  # noqa: F401
    import zarr  # noqa: F401


def sklearn_child(config_path: Path, out: Path, workers: int, threads: int) -> int:
    """Run (b) in this process and print its JSON line."""
    import dask.array as da
    import zarr
    from common import TreeSampler

    from geoclass.api import cube_path, load_model, model_path
    from geoclass.cluster import compute, dask_client
    from geoclass.io.configfile import load_config

    config = load_config(config_path)
    tile = config.chain.list_tile[0]
    with dask_client(config.dask, workers=workers, threads_per_worker=threads) as client:
        client.wait_for_workers(workers)
        client.run(_sklearn_imports)
        time.sleep(1.0)
        with TreeSampler(os.getpid()) as sampler:
            start = time.perf_counter()
            estimator = load_model(model_path(config, 1, 0)).estimator
            features = da.from_zarr(zarr.open_group(str(cube_path(config, tile)),
                                                    mode="r")["features"])
            result = da.map_blocks(_sklearn_block, features, estimator,
                                   chunks=((2,), *features.chunks[1:]), dtype=np.uint8)
            group = zarr.open_group(str(out), mode="w")
            chunks = tuple(max(c) for c in features.chunks[1:])
            targets = [group.create_array(name, shape=features.shape[1:], dtype=np.uint8,
                                          chunks=chunks)
                       for name in ("classification", "confidence")]
            compute(da.store([result[0], result[1]], targets, lock=False, compute=False))
            wall = time.perf_counter() - start
    print(json.dumps({"wall": wall, "peak": sampler.peak.total,
                      "driver_peak": sampler.peak.root,
                      "workers_peak": sampler.peak.children}))
    return 0


# --- (c): OTB -------------------------------------------------------------------------------


def otb_available() -> bool:
    return all(shutil.which(f"otbcli_{app}") for app in ("ImageClassifier",
                                                          "TrainVectorClassifier"))


def otb_env(threads: int, ram: int) -> dict:
    return {"ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(threads),
            "OTB_MAX_RAM_HINT": str(ram), "OTB_LOGGER_LEVEL": "WARNING"}


def otb_train(config: Path, folder: Path, args) -> tuple[Path, float]:
    """The learning pixels of geoclass's samples as points with their feature fields, and an
    OTB random forest trained on them; (model path, training seconds)."""
    import geopandas as gpd
    import pandas as pd

    from geoclass.api import load_model

    learn = pd.read_parquet(output_dir(config) / "samples" / "learn_seed_0")  # every region
    names = load_model(output_dir(config) / "model" / "model_1_seed_0.joblib").features
    points = gpd.GeoDataFrame(learn[["code", *names]].astype({"code": "int32"}),
                              geometry=gpd.points_from_xy(learn["x"], learn["y"]),
                              crs="EPSG:32631")
    vector = folder / "otb_samples.gpkg"
    points.to_file(vector, driver="GPKG")
    model = folder / "otb_rf.yml"
    cmd = ["otbcli_TrainVectorClassifier", "-io.vd", str(vector), "-io.out", str(model),
           "-cfield", "code", "-feat", *names, "-classifier", "rf",
           "-classifier.rf.nbtrees", "100", "-classifier.rf.max", "25",
           "-classifier.rf.min", "5", "-rand", str(args.seed)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, **otb_env(args.threads, args.ram)})
    if proc.returncode != 0:
        raise SystemExit(f"otbcli_TrainVectorClassifier failed:\n{proc.stdout[-3000:]}"
                         f"\n{proc.stderr[-3000:]}")
    return model, time.perf_counter() - start


def otb_classify(stack: Path, model: Path, folder: Path, args) -> dict:
    out, conf = folder / "otb_class.tif", folder / "otb_confidence.tif"
    cmd = ["otbcli_ImageClassifier", "-in", str(stack), "-model", str(model), "-out",
           str(out), "uint8", "-confmap", str(conf), "-ram", str(args.ram)]
    result = measure(cmd, otb_env(args.threads, args.ram))
    result.update(wall=result["wall_process"], peak=result["peak_process"], map=str(out))
    return result


# --- the run ----------------------------------------------------------------------------------


def forest_stats(config: Path) -> str:
    """Nodes and depth of the trained model (tree ensembles), for the report."""
    from geoclass.api import load_model

    estimator = load_model(output_dir(config) / "model" / "model_1_seed_0.joblib").estimator
    trees = getattr(estimator, "estimators_", None)
    if trees is not None and hasattr(trees[0], "tree_"):
        nodes = sum(t.tree_.node_count for t in trees)
        depth = np.mean([t.tree_.max_depth for t in trees])
        return f"{len(trees)} trees, {nodes / 1e3:.0f} k nodes, mean depth {depth:.1f}"
    if hasattr(estimator, "n_iter_"):
        return f"{estimator.n_iter_} iterations x {len(estimator.classes_)} classes"
    return type(estimator).__name__


def geoclass_run(config: Path, truth: Path, args, fast: bool = True) -> dict:
    """Step (a) in a fresh process, re-run once if the models were found stale (someone
    changed geoclass meanwhile: the step would then include retraining)."""
    train(config, 1, args.threads)  # no-op when up to date; guards the timed step
    for _ in range(2):
        stamp = (output_dir(config) / "model" / "manifest.json").stat().st_mtime_ns
        result = geoclass_step(config, 1, args.threads, fast=fast)
        if (output_dir(config) / "model" / "manifest.json").stat().st_mtime_ns == stamp:
            break
        print("  (models were retrained inside the step: measuring again)", flush=True)
    final = output_dir(config) / "final" / "Classif_Seed_0.tif"
    result["oa"] = overall_accuracy(truth, final)
    return result


def show(name: str, r: dict, pixels: int) -> None:
    split = (f" (classify {r['classify_s']:.1f} s + maps {r['maps_s']:.1f} s)"
             if "classify_s" in r else "")
    print(f"  {name}: {r['wall']:.1f} s{split}, {pixels / r['wall'] / 1e3:.0f} kpx/s, peak RSS "
          f"{max(r['peak'], r['peak_process']) / MiB:.0f} MiB, OA {r['oa']:.4f}; "
          f"load {load_average()}", flush=True)


def snapshot(config: Path, folder: Path) -> None:
    """Keep the trained model (and the config that matches its manifest) aside."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(output_dir(config) / "model", folder / "model")
    shutil.copy2(config, folder / "config.yml")


def restore(config: Path, folder: Path) -> None:
    """Put a kept model back: geoclass finds it up to date (same manifest, same `models`)."""
    model = output_dir(config) / "model"
    shutil.rmtree(model)
    shutil.copytree(folder / "model", model)
    shutil.copy2(folder / "config.yml", config)


def measure_alternatives(config: Path, truth: Path, root: Path, names: list[str], runs: dict,
                         args) -> dict[str, dict]:
    """Train each alternative once (geoclass train with its `models` section), then run the
    end-to-end step for each, `--rounds` times round-robin (with the default RF among them);
    each keeps its fastest round."""
    pixels = args.size**2
    kept = root / "models"
    snapshot(config, kept / "rf100")
    info = {"rf100": {"stats": forest_stats(config), "train_s": None}}
    for name in names:
        _, classifier, params = ALTERNATIVES[name]
        set_model(config, classifier, params)
        train_s = train(config, 1, args.threads)
        info[name] = {"stats": forest_stats(config), "train_s": train_s}
        snapshot(config, kept / name)
        print(f"  trained {name} in {train_s:.0f} s: {info[name]['stats']}", flush=True)
    best = {"rf100": min(runs["a"], runs["a2"], key=lambda r: r["wall"])}
    order = names + ["rf100"] if args.rounds > 1 else names
    for round_ in range(args.rounds):
        for name in order:
            restore(config, kept / name)
            result = geoclass_run(config, truth, args)
            show(f"[{name}, round {round_ + 1}] {ALTERNATIVES[name][0]}", result, pixels)
            if name not in best or result["wall"] < best[name]["wall"]:
                best[name] = result
    restore(config, kept / "rf100")
    return {name: {**best[name], **info[name]} for name in ["rf100", *names]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2000, help="image side, px (2000)")
    parser.add_argument("--features", type=int, default=156)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=512, help="dask.chunk_size (512)")
    parser.add_argument("--threads", type=int, default=2, help="threads (1 dask worker)")
    parser.add_argument("--ram", type=int, default=512, help="OTB -ram, MB (512)")
    parser.add_argument("--alternatives", nargs="+", default=DEFAULT_ALTERNATIVES,
                        help=f"of {', '.join(ALTERNATIVES)}, or none")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of each alternative, best kept (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, deleted")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--sklearn-child", nargs=2, type=Path, metavar=("CONFIG", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sklearn_child:
        return sklearn_child(*args.sklearn_child, 1, args.threads)
    alternatives = [] if args.alternatives == ["none"] else args.alternatives
    unknown = set(alternatives) - set(ALTERNATIVES)
    if unknown:
        parser.error(f"unknown alternatives {sorted(unknown)}")

    temporary = args.workdir is None
    root = Path(tempfile.mkdtemp(prefix="bench_classify_")) if temporary else args.workdir
    root.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    pixels = args.size**2
    try:
        config, seconds = generate(root / "scene", args.size, args.features, args.classes,
                                   args.chunk, args.seed)
        truth = config.parent / "truth.tif"
        stack = config.parent / "userfeat" / "T31TCJ" / "stack.tif"
        print(f"stack {args.size} x {args.size} px x {args.features} float32 features, "
              f"{args.classes} classes: generated in {seconds:.0f} s "
              f"({stack.stat().st_size / MiB:.0f} MiB)", flush=True)
        set_model(config, *ALTERNATIVES["rf100"][1:])
        seconds = train(config, 1, args.threads)
        print(f"geoclass cube + samples + RF (not timed): {seconds:.0f} s; {forest_stats(config)}",
              flush=True)
        runs: dict[str, dict] = {}
        have_otb = otb_available()
        if have_otb:
            otb_model, seconds = otb_train(config, root, args)
            print(f"OTB TrainVectorClassifier on the same 20000 samples: {seconds:.0f} s",
                  flush=True)
        else:
            print(f"(c) skipped: {OTB_HINT}", flush=True)

        print(f"measuring (load at start {load_average()}):", flush=True)
        runs["a"] = geoclass_run(config, truth, args)
        show("(a)  geoclass", runs["a"], pixels)
        out_b = root / "sklearn.zarr"
        runs["b"] = measure([sys.executable, __file__, "--sklearn-child", str(config),
                             str(out_b), "--threads", str(args.threads)])
        import zarr

        runs["b"]["oa"] = overall_accuracy(truth, zarr.open_group(str(out_b),
                                                                   mode="r")["classification"])
        show("(b)  sklearn predict_proba over the zarr blocks", runs["b"], pixels)
        if have_otb:
            runs["c"] = otb_classify(stack, otb_model, root, args)
            runs["c"]["oa"] = overall_accuracy(truth, Path(runs["c"]["map"]))
            show("(c)  OTB ImageClassifier -confmap", runs["c"], pixels)
        runs["a'"] = geoclass_run(config, truth, args, fast=False)
        show("(a') geoclass, GEOCLASS_FASTFOREST=0", runs["a'"], pixels)
        runs["a2"] = geoclass_run(config, truth, args)
        show("(a2) geoclass again", runs["a2"], pixels)

        alt = measure_alternatives(config, truth, root, alternatives, runs, args)
        print()
        print(report(runs, alt, args, have_otb))
    finally:
        if temporary and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average at the end: {load_average()}; whole run "
          f"{(time.perf_counter() - began) / 60:.1f} min")
    return 0


def report(runs: dict, alt: dict, args, have_otb: bool) -> str:
    pixels = args.size**2

    def speed(r):
        return pixels / r["wall"]

    names = {"a": "(a) geoclass step, fast forest", "a2": "(a) again, after (b), (c), (a')",
             "a'": "(a') geoclass step, GEOCLASS_FASTFOREST=0",
             "b": "(b) sklearn predict_proba over the zarr blocks (DEA/dask-ml recipe)",
             "c": "(c) OTB ImageClassifier with -confmap"}
    lines = ["| run | wall (s) | kpx/s | peak RSS tree (MiB) | driver / workers (MiB) | OA |",
             "|---|---:|---:|---:|---:|---:|"]
    for key in ("a", "b", "c", "a'", "a2"):
        if key not in runs:
            continue
        r = runs[key]
        split = (f"{r['driver_peak'] / MiB:.0f} / {r['workers_peak'] / MiB:.0f}"
                 if "workers_peak" in r else "(one process)")
        lines.append(f"| {names[key]} | {r['wall']:.1f} | {speed(r) / 1e3:.0f} "
                     f"| {max(r['peak'], r['peak_process']) / MiB:.0f} | {split} "
                     f"| {r['oa']:.4f} |")
    a = (speed(runs["a"]) + speed(runs["a2"])) / 2
    lines += ["", f"(a) = mean of the two (a) runs: {a / 1e3:.0f} kpx/s",
              f"a/b = {a / speed(runs['b']):.2f}",
              f"a'/b = {speed(runs[PRIME]) / speed(runs['b']):.2f}"]
    if have_otb:
        c = speed(runs["c"])
        lines += [f"a/c = {a / c:.2f}", f"a'/c = {speed(runs[PRIME]) / c:.2f}",
                  f"b/c = {speed(runs['b']) / c:.2f}",
                  f"OA a - OA c = {100 * (runs['a']['oa'] - runs['c']['oa']):+.2f} points"]
    lines += ["", "Phases of (a) (driver = this client + scheduler + COG writes):", "",
              phase_table(runs["a"])]
    lines += ["", "Classifiers through the same end-to-end step (a) (same samples; fastest of "
              f"{args.rounds} round(s); rf100: fastest of (a) and (a2)):", "",
              "| classifier | model | train (s) | step wall (s) | kpx/s | x OTB | peak RSS "
              "(MiB) | OA |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in alt.items():
        ratio = f"{speed(r) / speed(runs['c']):.1f}" if have_otb else "-"
        train_s = "(above)" if r["train_s"] is None else f"{r['train_s']:.0f}"
        lines.append(f"| {name}: {ALTERNATIVES[name][0]} | {r['stats']} | {train_s} "
                     f"| {r['wall']:.1f} | {speed(r) / 1e3:.0f} | {ratio} "
                     f"| {max(r['peak'], r['peak_process']) / MiB:.0f} | {r['oa']:.4f} |")
    lines.append(f"\n({args.size} x {args.size} px, {args.features} features, chunk "
                 f"{args.chunk} px, 1 dask worker x {args.threads} threads; OTB -ram {args.ram})")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.update(ENV)
    sys.exit(main())
