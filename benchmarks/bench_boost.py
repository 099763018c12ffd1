"""Benchmark: the compiled boosting kernel (kernels.fastboost) against XGBoost and LightGBM.

Gradient-boosted models are trained on synthetic samples of 156 float32 features and 10
classes (make_classification as bench_kernel.py: 40 informative and 40 redundant features, 3
clusters per class, 5 % label noise; 2 % NaN): XGBoost 50 and 200 rounds of depth-6 trees
(hist), LightGBM 200 rounds of 31 leaves, learning rate 0.1 (10 classes: 10 trees per round).
Then the pixels (1 M by default, 2 % NaN) are predicted by the library's predict_proba and by
fastboost.predict_proba, on the same threads (1 by default; after a warm-up call that compiles
or loads the numba kernels). Prints kpx/s, the ratio, and the agreement (same class share,
largest probability difference). The machine's load average is printed at the start and the
end: other processes skew absolute numbers, so compare ratios within a run (each figure is the
best of --repeat runs, library and kernel interleaved).

    python benchmarks/bench_boost.py                                    # 1 M pixels
    python benchmarks/bench_boost.py --pixels 200000 --train 5000      # quick run
    python benchmarks/bench_boost.py --models xgb50 --threads 1,2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoclass.kernels import fastboost, fastforest  # noqa: E402

MODELS = {  # name: (library, rounds)
    "xgb50": ("xgboost", 50),
    "xgb200": ("xgboost", 200),
    "lgbm200": ("lightgbm", 200),
}


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def make_data(n_train: int, n_pixels: int, seed: int):
    """Training samples, labels and pixels to predict (2 % NaN), from one make_classification."""
    X, y = make_classification(n_train + n_pixels, 156, n_informative=40, n_redundant=40,
                               n_classes=10, n_clusters_per_class=3, flip_y=0.05,
                               random_state=seed)
    X = X.astype(np.float32)
    X[np.random.default_rng(seed).random(X.shape) < 0.02] = np.nan
    return X[:n_train], y[:n_train], X[n_train:]


def train(name: str, X, y, seed: int, n_jobs: int):
    """One of MODELS, fitted."""
    library, rounds = MODELS[name]
    if library == "xgboost":
        from xgboost import XGBClassifier

        model = XGBClassifier(n_estimators=rounds, max_depth=6, learning_rate=0.1,
                              tree_method="hist", n_jobs=n_jobs, random_state=seed)
    else:
        from lightgbm import LGBMClassifier

        model = LGBMClassifier(n_estimators=rounds, learning_rate=0.1, n_jobs=n_jobs,
                               verbose=-1, random_state=seed)
    return model.fit(X, y)


def timed(function, *args, **kwargs):
    """(wall time, result) of one call."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def bench(name: str, model, pixels, threads: list[int], repeat: int) -> None:
    start = time.perf_counter()
    compiled = fastboost.compile_boosting(model)
    leaves = np.diff(np.append(compiled.leaf_base, len(compiled.values)))
    print(f"{name}: {compiled.n_trees} trees, {len(compiled.nodes)} nodes, {leaves.mean():.1f} "
          f"leaves per tree ({np.mean(leaves <= 32):.0%} with <= 32); compile_boosting "
          f"{time.perf_counter() - start:.2f} s", flush=True)
    start = time.perf_counter()
    fastboost.predict_proba(compiled, pixels[:5000])
    kernel = fastboost._kernel_name(compiled, fastforest._as_pixels(pixels[:1],
                                                                    compiled.n_features))
    print(f"  warm-up (numba compile or cache load): {time.perf_counter() - start:.2f} s, "
          f"kernel {kernel}")
    for n in threads:
        library, fast = [], []
        for _ in range(repeat):  # interleaved
            seconds, reference = timed(model.set_params(n_jobs=n).predict_proba, pixels)
            library.append(seconds)
            seconds, proba = timed(fastboost.predict_proba, compiled, pixels, n_threads=n)
            fast.append(seconds)
        speed_library, speed_fast = (len(pixels) / min(t) / 1e3 for t in (library, fast))
        same = np.mean(np.argmax(proba, axis=1) == np.argmax(reference, axis=1))
        print(f"  {n} thread(s): library {speed_library:7.0f} kpx/s  compiled "
              f"{speed_fast:7.0f} kpx/s  ratio {speed_fast / speed_library:.1f}x  "
              f"(same class {same:.6%}, max |diff| {np.abs(proba - reference).max():.1e})",
              flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=1_000_000)
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of "
                        + ", ".join(MODELS))
    parser.add_argument("--threads", default="1", help="comma-separated thread counts")
    parser.add_argument("--train-jobs", type=int, default=2, help="threads to train with")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"load average at start: {load()}  ({os.cpu_count()} CPUs)")
    X, y, pixels = make_data(args.train, args.pixels, args.seed)
    threads = [int(n) for n in args.threads.split(",")]
    for name in args.models.split(","):
        start = time.perf_counter()
        model = train(name, X, y, args.seed, args.train_jobs)
        print(f"{name}: trained on {len(X)} samples in {time.perf_counter() - start:.1f} s")
        bench(name, model, pixels, threads, args.repeat)
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
