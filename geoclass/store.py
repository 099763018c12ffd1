"""The run store: every output path of a run, its manifests, its (tile, run, region) keys, and
the typed results the steps hand one another. Nothing else joins `chain.output_path` or reads
a key out of a file name.

Layout under `output_path` (iota2's names for final products):

    cubes/<TILE>.zarr                       the observation cubes
    samples/learn_seed_<run>/region_<region>.parquet   learning samples, per (run, region)
    samples/validation_seed_<run>.parquet, report_seed_<run>.json, classes.json
    model/model_<region>_seed_<run>.joblib  one model per (region, run)
    classif/<TILE>_seed_<run>.zarr          the tile maps of each run
    autocontext/                            superpixels, intermediate models and maps
    mosaic/seed_<run|validity|fusion>.zarr  the mosaics the COGs are written from
    mosaic/seed_<run>_smoothed.zarr         the smoothed maps (classification.smoothing)
    final/                                  COGs, accuracy reports, report.html, *_table.csv
    manifests/<step>.json                   what each step was made from (see pipeline.py)
    logs/geoclass-<time>.log"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from geoclass import fs
from geoclass.atomic import atomic_output
from geoclass.classes import (
    ClassTable,
    class_table_from_json,
    class_table_to_json,
    write_class_table,
)
from geoclass.errors import InputError

# the columns of a samples table that are not features
SAMPLE_META = ["tile", "row", "col", "x", "y", "piece", "fid", "region", "code", "validity",
               "synthetic"]
FOLDERS = ("cubes", "samples", "model", "classif", "autocontext", "mosaic", "final",
           "manifests", "logs")
MARKER = ".geoclass_run.json"


def fingerprint(files: Iterable[str | Path], settings: object = None) -> str:
    """A hash of the files' paths, sizes and modification times (objects: sizes and
    versions), and of `settings` (JSON)."""
    digest = hashlib.sha256()
    for path in sorted(str(f) for f in files):
        digest.update(f"{path}|{fs.signature(path)}\n".encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plain(value):
    """`value` as JSON would give it back (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, default=str))


class RunStore:
    """The outputs of one run, under `root` (a config's `chain.output_path`: a local folder
    or an object-store URL, see `geoclass.fs`)."""

    def __init__(self, root: str | Path):
        self.root = fs.as_path(root)

    @property
    def remote(self) -> bool:
        """Whether the run is on an object store (atomic.py says what that changes)."""
        return fs.is_url(self.root)

    # --- per step --------------------------------------------------------------------------

    def cube(self, tile: str) -> Path:
        return self.root / "cubes" / f"{tile}.zarr"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    def samples(self, run: int, kind: str = "learn") -> Path:
        """The validation table of a run (a parquet file), or the folder of its learning
        tables (one parquet file per region)."""
        if kind == "learn":
            return self.samples_dir / f"learn_seed_{run}"
        return self.samples_dir / f"{kind}_seed_{run}.parquet"

    @staticmethod
    def learn_part_name(region: int) -> str:
        return f"region_{region}.parquet"

    def learn_parts(self, run: int) -> dict[int, Path]:
        """region -> the learning table of (region, run), for the regions that have one."""
        folder = self.samples(run, "learn")
        parts = {int(p.stem.split("_", 1)[1]): p for p in folder.glob("region_*.parquet")}
        return dict(sorted(parts.items()))

    def sample_report(self, run: int) -> Path:
        return self.samples_dir / f"report_seed_{run}.json"

    def model(self, region: int, run: int, iteration: int | None = None) -> Path:
        folder = (self.root / "model" if iteration is None
                  else self.root / "autocontext" / f"iter_{iteration}")
        return folder / f"model_{region}_seed_{run}.joblib"

    def tile_map(self, tile: str, run: int, iteration: int | None = None) -> Path:
        if iteration is None:
            return self.root / "classif" / f"{tile}_seed_{run}.zarr"
        return self.root / "autocontext" / f"iter_{iteration}" / f"{tile}_seed_{run}.zarr"

    def segments(self, tile: str) -> Path:
        return self.root / "autocontext" / "segments" / f"{tile}.zarr"

    def scratch(self, name: str) -> Path:
        """A work file of a step, removed by it (and by `remove_stale_temporaries`)."""
        return self.root / "autocontext" / f".{name}.tmp-work"

    def mosaic(self, name: int | str) -> Path:
        return self.root / "mosaic" / f"seed_{name}.zarr"

    def smoothed_mosaic(self, run: int) -> Path:
        """The smoothed map of a run (classification, and the smoothed probabilities of the
        Bayesian smoothing)."""
        return self.root / "mosaic" / f"seed_{run}_smoothed.zarr"

    @property
    def final(self) -> Path:
        return self.root / "final"

    def uncertainty_cog(self, measure: str, run: int) -> Path:
        return self.final / f"Uncertainty_{measure}_Seed_{run}.tif"

    def smoothed_cog(self, run: int) -> Path:
        return self.final / f"Classif_Smoothed_Seed_{run}.tif"

    def smoothed_probability_cog(self, run: int) -> Path:
        return self.final / f"ProbabilityMap_Smoothed_Seed_{run}.tif"

    def smoothed_results(self, run: int) -> Path:
        return self.final / f"ClassificationResults_Smoothed_seed_{run}.txt"

    def suggestions(self, run: int) -> Path:
        """Where `geoclass suggest` writes the locations to label next."""
        return self.final / f"SuggestedSamples_Seed_{run}.gpkg"

    @staticmethod
    def styles(tif: Path) -> list[Path]:
        """The QGIS style and the GDAL attribute table written next to a class map."""
        tif = fs.as_path(tif)
        return [tif.with_suffix(".qml"), tif.with_name(tif.name + ".aux.xml")]

    def metrics(self) -> dict:
        """The accuracy figures of the run (`final/metrics.json`; empty before validation)."""
        path = self.final / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def warnings_file(self) -> Path:
        """The report's warnings, one per line."""
        return self.final / "warnings.txt"

    def warnings(self) -> list[str]:
        """The warnings of the last report, if any."""
        path = self.warnings_file
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    # --- the class table (written by the samples step, read by every later one) -------------

    def write_class_table(self, table: ClassTable, stem: str | None) -> None:
        """samples/classes.json, and iota2's final/<stem>_table.csv for string labels."""
        if table.labels_are_strings and stem:
            write_class_table(table, self.final / f"{stem}_table.csv")
        with atomic_output(self.samples_dir / "classes.json") as tmp:
            tmp.write_text(json.dumps(class_table_to_json(table), indent=2))

    def class_table(self) -> ClassTable:
        path = self.samples_dir / "classes.json"
        if not path.exists():
            raise InputError([f"{path}: no class table; run the samples step first"])
        return class_table_from_json(json.loads(path.read_text()))

    # --- manifests ----------------------------------------------------------------------------

    def manifest_path(self, step: str) -> Path:
        return self.root / "manifests" / f"{step}.json"

    def manifest(self, step: str) -> dict | None:
        path = self.manifest_path(step)
        try:
            return json.loads(path.read_text()) if path.exists() else None
        except (json.JSONDecodeError, FileNotFoundError):
            return None

    def write_manifest(self, step: str, content: dict) -> None:
        """Written last, once the step's outputs are complete."""
        with atomic_output(self.manifest_path(step)) as tmp:
            tmp.write_text(json.dumps(content, indent=1, sort_keys=True, default=str))

    def forget(self, step: str) -> None:
        """The step is being redone: its outputs are not trusted until its manifest is
        written again."""
        fs.rm(self.manifest_path(step))

    def record(self, step: str) -> dict:
        """What a step recorded of its outputs (keys, hashes), from its manifest."""
        manifest = self.manifest(step)
        if manifest is None:
            raise InputError([f"{self.root}: the {step} step has not run (no manifest); run "
                              f"geoclass run, or the {step} step"])
        return manifest.get("record") or {}

    def models(self) -> Models:
        """The models the train step recorded: (region, run) -> file, with their SHA-256."""
        entries = self.record("train").get("models", [])
        return Models({(m["region"], m["run"]): self.root / m["file"] for m in entries},
                      {(m["region"], m["run"]): m["sha256"] for m in entries})

    def recorded_sha256(self, path: str | Path) -> str | None:
        """The SHA-256 the train step recorded for the model file `path` (None when it is not
        one of the models of this run's manifest)."""
        entries = ((self.manifest("train") or {}).get("record") or {}).get("models", [])
        target = fs.as_path(path).resolve()
        return next((m["sha256"] for m in entries
                     if (self.root / m["file"]).resolve() == target), None)

    def item_stamp(self, step: str, key: str) -> str | None:
        """The stamp of one item (e.g. one tile's cube) of a step, written once it is done."""
        path = self.root / "manifests" / step / f"{key}.json"
        return json.loads(path.read_text()).get("stamp") if path.exists() else None

    def record_item(self, step: str, key: str, stamp: str) -> None:
        with atomic_output(self.root / "manifests" / step / f"{key}.json") as tmp:
            tmp.write_text(json.dumps({"stamp": stamp}))

    def forget_item(self, step: str, key: str) -> None:
        """The item is being rewritten: not trusted until `record_item` again."""
        fs.rm(self.root / "manifests" / step / f"{key}.json")

    # --- ownership and leftovers -------------------------------------------------------------

    def claim(self, owner: str, overwrite: bool = False) -> None:
        """Refuse an output folder holding another config's run unless `overwrite` (then its
        geoclass outputs are removed). Writes nothing else: see `mark`."""
        marker = self.root / MARKER
        if not marker.exists():
            return
        other = json.loads(marker.read_text()).get("config")
        if other == owner:
            return
        if not overwrite:
            raise InputError([f"{self.root} holds the outputs of another configuration "
                              f"({other}); choose another chain.output_path, or pass "
                              "--overwrite to delete them and start again"])
        for name in FOLDERS:
            fs.rm(self.root / name)
        fs.rm(marker)

    def mark(self, owner: str) -> None:
        """Record which config the output folder belongs to (once its inputs passed the
        checks)."""
        marker = self.root / MARKER
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"config": owner,
                                          "created": dt.datetime.now().isoformat()}))

    def remove_stale_temporaries(self) -> None:
        """Remove what a killed run left half-written: temporary siblings of outputs (never
        taken as outputs: only final names are). An object store has none: its files are
        staged locally, its folders written in place under a manifest written last."""
        if self.remote:
            return
        for name in FOLDERS:
            folder = self.root / name
            if not folder.is_dir():
                continue
            for path in list(folder.rglob(".*.tmp-*")) + list(folder.rglob(".*.old-*")):
                fs.rm(path)


# --- typed results ---------------------------------------------------------------------------


class Cubes(dict):
    """tile -> its observation cube (zarr); `open_cubes` gives the lazy datasets."""


@dataclass
class Samples:
    """The learning and validation samples of every run, and the class table."""

    store: RunStore
    runs: int
    classes: ClassTable

    @property
    def folder(self) -> Path:
        return self.store.samples_dir

    def path(self, run: int, kind: str = "learn") -> Path:
        return self.store.samples(run, kind)

    def __fspath__(self) -> str:  # usable where the samples folder's path was
        return str(self.folder)


class Models(dict):
    """(region, run) -> the model file; `sha256` holds each file's digest, checked at load."""

    def __init__(self, paths=(), sha256: dict | None = None):
        super().__init__(paths)
        self.sha256 = dict(sha256 or {})


class TileMaps(dict):
    """run -> {tile -> the tile's map (zarr)}."""


class Maps(list):
    """The final COGs of a run (paths)."""


class Accuracy(dict):
    """The accuracy figures (final/metrics.json): per run, their summary, the fusion's."""
