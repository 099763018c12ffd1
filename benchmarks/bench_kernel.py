"""Benchmark: the compiled forest kernel (geoclass.kernels.fastforest) against scikit-learn.

A RandomForestClassifier (100 trees, max_depth 25, min_samples_leaf 5) is trained on 20000
synthetic samples of 156 float32 features and 10 classes (make_classification, 40 informative
and 40 redundant features, 3 clusters per class, 5 % label noise), then 1 M pixels of the same
distribution are predicted by scikit-learn's predict_proba (n_jobs=1 and 2) and by
fastforest.predict_proba (1 and 2 threads, after a warm-up call that compiles or loads the
numba kernels). Prints kpx/s, the ratios, and the agreement with scikit-learn (classes,
largest probability difference, share of bit-identical probabilities). The machine's load
average is printed at the start and the end: other processes skew absolute numbers, so compare
ratios within a run (measurements are interleaved; each figure is the best of --repeat runs).

    python benchmarks/bench_kernel.py                      # 1 M pixels
    python benchmarks/bench_kernel.py --pixels 200000      # quick run
    python benchmarks/bench_kernel.py --scalar             # also the portable scalar kernel
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoclass.kernels import fastforest  # noqa: E402
from geoclass.kernels.threads import numba_threads  # noqa: E402


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def make_data(n_train: int, n_pixels: int, seed: int):
    """Training samples, labels and pixels to predict, all from one make_classification."""
    X, y = make_classification(n_train + n_pixels, 156, n_informative=40, n_redundant=40,
                               n_classes=10, n_clusters_per_class=3, flip_y=0.05,
                               random_state=seed)
    X = X.astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:]


def train(X, y, seed: int) -> RandomForestClassifier:
    """The benchmark's forest, trained on 2 threads."""
    model = RandomForestClassifier(100, max_depth=25, min_samples_leaf=5, n_jobs=2,
                                   random_state=seed)
    return model.fit(X, y)


def best_time(function, repeat: int):
    """(best wall time over `repeat` runs, the last result)."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def candidates(model, forest, pixels, scalar: bool) -> dict:
    """Name -> function computing the probabilities of all pixels."""
    def sklearn_jobs(n_jobs):
        return lambda: model.set_params(n_jobs=n_jobs).predict_proba(pixels)

    def fast(n_threads, kernel=None):
        if kernel is None:
            return lambda: fastforest.predict_proba(forest, pixels, n_threads=n_threads)
        as_pixels = fastforest._as_pixels(pixels, forest.n_features)

        def run():
            with numba_threads(n_threads):
                return fastforest._predict(forest, as_pixels, kernel)
        return run

    runs = {"sklearn n_jobs=1": sklearn_jobs(1), "fast 1 thread": fast(1),
            "sklearn n_jobs=2": sklearn_jobs(2), "fast 2 threads": fast(2)}
    if scalar:
        runs["scalar kernel 1 thread"] = fast(1, "scalar")
        runs["scalar kernel 2 threads"] = fast(2, "scalar")
    return runs


def agreement(model, reference, proba) -> str:
    """Classes, largest difference and bit-identical share against scikit-learn."""
    same_class = np.mean(np.argmax(proba, axis=1) == np.argmax(reference, axis=1))
    return (f"same class {same_class:.6%}, max |diff| {np.abs(proba - reference).max():.2e}, "
            f"bit-identical {np.mean(proba == reference):.4%}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=1_000_000)
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--scalar", action="store_true", help="also time the scalar kernel")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"load average at start: {load()}  ({os.cpu_count()} CPUs)")
    X, y, pixels = make_data(args.train, args.pixels, args.seed)
    start = time.perf_counter()
    model = train(X, y, args.seed)
    depth = np.mean([tree.tree_.max_depth for tree in model.estimators_])
    nodes = np.mean([tree.tree_.node_count for tree in model.estimators_])
    print(f"trained in {time.perf_counter() - start:.1f} s: {len(model.estimators_)} trees, "
          f"mean depth {depth:.1f}, mean nodes {nodes:.0f}")
    start = time.perf_counter()
    forest = fastforest.compile_forest(model)
    print(f"compile_forest: {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    fastforest.predict_proba(forest, pixels[:5000])
    print(f"warm-up (numba compile or cache load): {time.perf_counter() - start:.2f} s, "
          f"kernel {fastforest._KERNEL[0]}")

    speed, results = {}, {}
    for name, run in candidates(model, forest, pixels, args.scalar).items():
        seconds, results[name] = best_time(run, args.repeat)
        speed[name] = len(pixels) / seconds / 1e3
        print(f"{name:24s} {speed[name]:8.0f} kpx/s  ({seconds:.2f} s)", flush=True)

    print("ratios:")
    for fast_name in [name for name in speed if not name.startswith("sklearn")]:
        for base in ("sklearn n_jobs=1", "sklearn n_jobs=2"):
            print(f"  {fast_name} / {base}: {speed[fast_name] / speed[base]:.1f}x")
    reference = results["sklearn n_jobs=1"]
    for name, proba in results.items():
        if name != "sklearn n_jobs=1":
            print(f"{name:24s} vs sklearn n_jobs=1: {agreement(model, reference, proba)}")
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
