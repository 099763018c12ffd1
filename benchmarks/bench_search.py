"""Hyper-parameter search on the cluster against the same search in one process (issue 18).

    python benchmarks/bench_search.py                    # 8 candidates x 3 grouped folds
    python benchmarks/bench_search.py --rows 20000       # quicker

The same learning table (written as the samples step writes it) and the same grid (extra
trees: n_estimators x max_depth x min_samples_leaf = 2 x 2 x 2 = 8 candidates, GroupKFold(3)
by polygon) are searched
(a) by `geoclass.models.fitting.search_params`: dask-ml's GridSearchCV on a LocalCluster of
    `--workers` processes x 1 thread (started before the clock), the table read on a worker;
(b) by scikit-learn's GridSearchCV in this process, n_jobs=1 (the table read here too).
Both must pick the same parameters; the ratio is (b) / (a)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench_train import write_table
from distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV, GroupKFold

from geoclass.config import Models
from geoclass.models import fitting

GRID = {"n_estimators": [20, 40], "max_depth": [8, 25], "min_samples_leaf": [1, 5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_search_"))
    try:
        path = folder / "region_1.parquet"
        write_table(path, args.rows, args.features, 10, 0)
        features = [f"f{i}" for i in range(args.features)]
        models = Models(cross_validation={"parameters": GRID, "folds": 3})
        with LocalCluster(n_workers=args.workers, threads_per_worker=1,
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster):
            start = time.perf_counter()
            best, summary = fitting.search_params(path, features, models, 0)
            cluster_s = time.perf_counter() - start
        start = time.perf_counter()
        x, y, groups = fitting.read_table(path, features)
        local = GridSearchCV(fitting.new_estimator(models, 0, features), GRID,
                             cv=GroupKFold(3), n_jobs=1).fit(x, y, groups=groups)
        local_s = time.perf_counter() - start
        print(f"table {args.rows:,} x {args.features}; {summary['candidates']} candidates x "
              f"{summary['folds']} folds")
        print(f"(a) dask-ml on {args.workers} workers: {cluster_s:.1f} s, best {best} "
              f"(score {summary['best_score']:.4f})")
        print(f"(b) scikit-learn, one process: {local_s:.1f} s, best {local.best_params_} "
              f"(score {local.best_score_:.4f})")
        print(f"same choice: {best == local.best_params_}; speed-up (b)/(a) = "
              f"{local_s / cluster_s:.2f}x")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
