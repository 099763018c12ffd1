"""Training on the cluster (issue 18): one region of 2 M samples x 400 features fitted by the
train step's own code (`geoclass.steps.train.fit_on_cluster`) on a LocalCluster of 2 worker
processes, with the driver's peak RSS, each worker's, and which worker built the trees.

    python benchmarks/bench_train.py                          # 2 M x 400, the issue's figure
    python benchmarks/bench_train.py --rows 200000 --features 100 --trees 10     # quick

1. A learning table is written as the samples step writes it (`samples/learn_seed_0/
   region_1.parquet`, row groups of 65536 rows), generated row group by row group (classes
   drawn as Gaussian clusters in feature space, pixels grouped in 40-pixel polygons): this
   process never holds it.
2. The LocalCluster starts (2 workers x 1 thread, `--memory-limit` each); this process is the
   driver: it reads only the table's metadata and class column, submits the fit and waits.
3. A thread samples the RSS of this process (the driver) and of each worker every 0.2 s; the
   task stream says which worker built each batch of trees.
The model is the default classifier (extra_trees, max depth 25, min 5 samples per leaf) with
`--trees` trees (100 is the default classifier's count; fewer keep the model file small)."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, get_task_stream

from geoclass.config import Config
from geoclass.steps import train
from geoclass.store import SAMPLE_META, RunStore

MiB = 2**20


def write_table(path: Path, rows: int, features: int, classes: int, seed: int) -> None:
    """A learning table, row group by row group (65536 rows each)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, features)).astype(np.float32)
    names = [f"f{i}" for i in range(features)]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer, start = None, 0
    while start < rows:
        n = min(65536, rows - start)
        code = rng.integers(0, classes, n)
        piece = (np.arange(start, start + n) // 40).astype(np.int64)
        x = centres[code] + rng.normal(0, 2.5, (n, features)).astype(np.float32)
        columns = {"tile": pa.array(["T00AAA"] * n), "row": pa.array(piece),
                   "col": pa.array(np.zeros(n, np.int64)), "x": pa.array(np.zeros(n)),
                   "y": pa.array(np.zeros(n)), "piece": pa.array(piece),
                   "fid": pa.array(piece), "region": pa.array(np.ones(n, np.int64)),
                   "code": pa.array((code + 1).astype(np.int32)),
                   "validity": pa.array(np.full(n, 10, np.uint16)),
                   "synthetic": pa.array(np.zeros(n, bool))}
        assert list(columns) == SAMPLE_META
        columns |= {name: pa.array(x[:, j]) for j, name in enumerate(names)}
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=65536)
        start += n
    writer.close()


class Peaks:
    """Peak RSS of this process and of each worker process, sampled in a thread."""

    def __init__(self, workers: dict[str, int]):
        self.workers = {name: psutil.Process(pid) for name, pid in workers.items()}
        self.driver = psutil.Process(os.getpid())
        self.peak = {"driver": 0, **dict.fromkeys(workers, 0)}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in [("driver", self.driver), *self.workers.items()]:
                try:
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
                except psutil.Error:
                    pass
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=400)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--trees", type=int, default=20)
    parser.add_argument("--memory-limit", default="10GB", help="per worker [10GB]")
    parser.add_argument("--keep", type=Path, help="folder (default: temporary)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        store = RunStore(folder / "run")
        path = store.samples(0) / store.learn_part_name(1)
        if not path.exists():
            start = time.perf_counter()
            write_table(path, args.rows, args.features, args.classes, 0)
            print(f"table: {args.rows:,} x {args.features} written in "
                  f"{time.perf_counter() - start:.0f} s ({path.stat().st_size / MiB:.0f} MiB)")
        config = Config.model_validate({"chain": {"output_path": str(store.root),
                                                  "list_tile": ["T00AAA"]},
                                        "models": {"params": {"n_estimators": args.trees,
                                                               "min_samples_leaf": 5}}})
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          memory_limit=args.memory_limit, dashboard_address="127.0.0.1:0") \
                as cluster, Client(cluster) as client:
            pids = client.run(os.getpid)
            base = psutil.Process(os.getpid()).memory_info().rss
            with Peaks(pids) as peaks, get_task_stream(client) as stream:
                start = time.perf_counter()
                parts = train.learning_parts(store, 1)
                digests = train.fit_on_cluster(config, store, parts)
                wall = time.perf_counter() - start
            where = Counter(t["worker"] for t in stream.data
                            if "parallel_build_trees" in str(t["key"]))
            fit_on = {t["worker"] for t in stream.data if "_fit_and_save" in str(t["key"])}
        print(f"fit of {args.trees} trees: {wall:.0f} s; model {digests[0][:12]}..., "
              f"{store.model(1, 0).stat().st_size / MiB:.0f} MiB")
        print(f"driver peak RSS {peaks.peak['driver'] / MiB:.0f} MiB "
              f"(before the fit: {base / MiB:.0f} MiB)")
        for name in pids:
            tag = " (read the table, ran the fit task)" if name in fit_on else ""
            print(f"worker {name}: peak RSS {peaks.peak[name] / MiB:.0f} MiB, "
                  f"{where.get(name, 0)} batches of trees{tag}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
