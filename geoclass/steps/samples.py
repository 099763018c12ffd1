"""Samples of every run: ground-truth polygons (or points) cut by regions, split, selected
and extracted from the zarr cubes (only the chunks that they touch), joined by the external
samples (`chain.external_samples`), augmented, written to `<output_path>/samples/`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from geoclass import fs, lazy
from geoclass.atomic import atomic_output
from geoclass.classes import ClassTable, build_class_table
from geoclass.config import Config
from geoclass.errors import InputError
from geoclass.grid import TileGrid
from geoclass.io.external import ExternalTable, external_path, matched_values, read_external
from geoclass.io.reference import (
    is_point_file,
    load_ground_truth,
    load_regions,
    read_color_table,
    read_nomenclature,
)
from geoclass.kernels.extract import count_block, extract_block, snapped_points
from geoclass.kernels.rasterize import shapes_by_window
from geoclass.kernels.sampling import (
    augment,
    candidate_fraction,
    run_rng,
    select,
    split_polygons,
    target_counts,
)
from geoclass.kernels.timeseries import features_from_observations
from geoclass.store import SAMPLE_META, RunStore, Samples
from geoclass.views.cube import feature_blocks, feature_names, grid_of_cube, open_cube
from geoclass.views.maps import region_polygons
from geoclass.views.sources import tile_sources

log = logging.getLogger(__name__)

META = SAMPLE_META
ROW_GROUP = 65536  # learning-table rows per parquet row group


# --- reference polygons ---------------------------------------------------------------------


def class_table(config: Config, labels) -> ClassTable:
    chain = config.chain
    nomenclature = read_nomenclature(chain.nomenclature_path) if chain.nomenclature_path else None
    colors = read_color_table(chain.color_table) if chain.color_table else None
    return build_class_table(list(labels), nomenclature, colors)


PIECE_COLUMNS = ["piece", "fid", "code", "region", "geometry"]


def reference_pieces(
    config: Config, external: ExternalTable | None = None,
    grids: dict[str, TileGrid] | None = None,
) -> tuple[gpd.GeoDataFrame, ClassTable]:
    """The ground-truth polygons (or points) cut by the regions: one row per (feature, region)
    piece with `piece` (1..N), `fid`, `code`, `region` (none without ground truth); and the
    class table of the labels of the ground truth and of the external samples (read from the
    config when not given). `grids`: every tile's grid, for regions by tile (read from the
    inputs when not given)."""
    chain = config.chain
    if external is None and chain.external_samples is not None:
        external = read_external(config)
    if chain.ground_truth is None and external is None:
        raise InputError(["nothing to learn from: set chain.ground_truth (polygons or points) "
                          "or chain.external_samples"])
    labels = [] if external is None else list(external.labels.unique())
    if chain.ground_truth is None:
        table = class_table(config, labels)
        return gpd.GeoDataFrame(columns=PIECE_COLUMNS, geometry="geometry"), table
    gt = load_ground_truth(chain.ground_truth, chain.data_field, repair=chain.repair_geometries)
    table = class_table(config, [*gt[chain.data_field].unique(), *labels])
    gt = gpd.GeoDataFrame({"fid": gt.index.to_numpy(), "code": table.encode(gt[chain.data_field])},
                          geometry=gt.geometry.values, crs=gt.crs)
    if config.chain.region_tiles is not None and grids is None:
        grids = {tile: src.grid for tile, src in tile_sources(config).items()}
    pieces = _cut_by_regions(region_polygons(config.chain, grids or {}), gt)
    pieces = pieces.sort_values(["fid", "region"], kind="stable").reset_index(drop=True)
    pieces["piece"] = np.arange(1, len(pieces) + 1)
    return pieces[PIECE_COLUMNS], table


def _cut_by_regions(regions: gpd.GeoDataFrame | None,
                    gt: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Polygons cut by the regions (overlay); points assigned to the region that holds them
    (spatial join; on a boundary, the smallest region). All region 1 without regions."""
    if regions is None:
        return gt.assign(region=1)
    regions = regions.to_crs(gt.crs)
    if not is_point_file(gt):
        pieces = gpd.overlay(gt, regions, how="intersection", keep_geom_type=True)
        return pieces[~pieces.geometry.is_empty & (pieces.geometry.area > 0)]
    points = gt[~gt.geometry.is_empty].explode(index_parts=False).reset_index(drop=True)
    joined = gpd.sjoin(points, regions.reset_index(drop=True), how="inner",
                       predicate="intersects")
    joined = joined.sort_values("region", kind="stable")
    joined = joined[~joined.index.duplicated()].drop(columns="index_right", errors="ignore")
    pieces = joined.dissolve(by=["fid", "region"], aggfunc="first", as_index=False)
    return pieces.set_crs(gt.crs, allow_override=True)


def model_regions(config: Config) -> list[int]:
    """Every region that may get a model: those of the region file or of `region_tiles`,
    or 1 without regions."""
    chain = config.chain
    if chain.region_tiles is not None:
        return sorted(chain.region_tiles)
    if not chain.region_path:
        return [1]
    regions = load_regions(chain.region_path, chain.region_field)
    return sorted(int(r) for r in regions["region"].unique())


def external_rows(config: Config, external: ExternalTable, names: list[str],
                  table: ClassTable, first_piece: int) -> pd.DataFrame:
    """The external samples as learning rows: features matched to the cube's `names`, codes
    from the class table, pieces from `first_piece` on, tile 'external', row/col/fid/validity
    -1, x/y NaN; in their own region, or copied to every region without a region column."""
    options = config.chain.external_samples
    values = matched_values(external, names, options.match)
    n = len(values)
    meta = pd.DataFrame({
        "tile": "external", "row": np.full(n, -1, np.int64), "col": np.full(n, -1, np.int64),
        "x": np.full(n, np.nan), "y": np.full(n, np.nan),
        "piece": np.arange(first_piece, first_piece + n, dtype=np.int64),
        "fid": np.full(n, -1, np.int64), "code": table.encode(external.labels),
        "validity": np.full(n, -1, np.int32), "synthetic": np.zeros(n, bool)})
    if external.regions is not None:
        meta["region"] = external.regions.to_numpy(np.int64)
        return pd.concat([meta, values], axis=1)[META + list(names)]
    rows = [pd.concat([meta.assign(region=np.int64(r)), values], axis=1)
            for r in model_regions(config)]
    return pd.concat(rows, ignore_index=True)[META + list(names)]


# --- the step -------------------------------------------------------------------------------


def settings(config: Config) -> dict:
    """What the samples depend on besides the input files and the cubes."""
    chain, external = config.chain, config.chain.external_samples
    return {"split": [chain.data_field, chain.region_field, chain.ratio, chain.runs,
                      chain.random_seed, chain.split_ground_truth, chain.repair_geometries,
                      chain.ground_truth_role],
            "sampling": config.section_hash("sampling"),
            "external": external.model_dump(mode="json", exclude={"path"}) if external else None,
            **({"region_tiles": {str(r): t for r, t in chain.region_tiles.items()}}
               if chain.region_tiles is not None else {})}


def inputs(config: Config) -> list[Path]:
    chain = config.chain
    return [p for p in (chain.ground_truth, chain.region_path, chain.nomenclature_path,
                        chain.color_table, external_path(config)) if p]


def outputs(config: Config, store: RunStore, record) -> list[Path]:
    paths = [store.samples_dir / "classes.json"]
    for run in range(config.chain.runs):
        paths += [store.samples(run, "learn"), store.samples(run, "validation"),
                  store.sample_report(run)]
    return paths


def run(config: Config, store: RunStore, force: bool = False) -> Samples:
    """Split, select, extract and augment the samples of every run from the stored cubes,
    into `samples/` (atomically), with the class table."""
    external = read_external(config) if config.chain.external_samples else None
    cubes = {tile: open_cube(store.cube(tile)) for tile in config.chain.list_tile}
    grids = {tile: grid_of_cube(cube) for tile, cube in cubes.items()}
    pieces, table = reference_pieces(config, external, grids)
    with atomic_output(store.samples_dir, shared=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        tables, stats = extract(config, pieces, table, cubes, tmp, external)
        for run_number, (validation, report) in tables.items():
            (tmp / store.samples(run_number).name).mkdir(exist_ok=True)
            fs.to_parquet(validation, tmp / store.samples(run_number, "validation").name,
                          index=False)
            report |= stats
            (tmp / store.sample_report(run_number).name).write_text(
                json.dumps(report, indent=2))
    stem = fs.as_path(config.chain.ground_truth or external_path(config)).stem
    store.write_class_table(table, stem)
    return Samples(store, config.chain.runs, table)


def _tile_windows(cube, pieces: gpd.GeoDataFrame, grid: TileGrid):
    """((row, col), window, shapes) of every block that pieces touch."""
    local = pieces.to_crs(grid.crs)
    if is_point_file(local):
        local = local.set_geometry(snapped_points(local.geometry.values, grid))
    if grid.chunks != cube.validity.data.chunks:
        raise ValueError(f"tile {grid.name}: grid chunks {grid.chunks} differ from the cube's "
                         f"{cube.validity.data.chunks}")
    per_window = shapes_by_window(local, "piece", grid)
    windows = dict(grid.block_windows())
    for key, shapes in sorted(per_window.items()):
        yield key, windows[key], shapes


def _extract_task(shapes, window, grid, tile, tile_index, validity, *blocks, recipes, n_obs,
                  threshold, plan, names, seed, info):
    """One block: its learning candidates with their features computed from its observations
    (never stored; not at all when it holds validation pixels only), split by region, and its
    validation pixels (no features), with their polygon columns (`info`: piece -> fid, code,
    region of the block's pieces)."""
    def features():
        return features_from_observations(recipes, list(blocks[:n_obs]),
                                          list(blocks[n_obs:]))

    learning, validation = extract_block(shapes, window, grid, tile, tile_index, features,
                                         validity, threshold, plan, names, seed)
    learning, validation = (_with_polygon_columns(t, info) for t in (learning, validation))
    return {"learn": {int(r): part for r, part in learning.groupby("region", sort=True)},
            "validation": validation}


def _with_polygon_columns(rows: pd.DataFrame, info: pd.DataFrame) -> pd.DataFrame:
    rows = rows.join(info, on="piece")
    rows["synthetic"] = False
    return rows


def _region_rows(block: dict, region: int) -> pd.DataFrame | None:
    return block["learn"].get(region)


def _splits(config: Config, pieces) -> dict[int, tuple[pd.Series, list[str]]]:
    """The learning flag of every piece and the notes of each run."""
    chain = config.chain
    if chain.ground_truth_role == "validation":
        note = ("ground_truth_role is validation: every ground-truth sample is a validation "
                "sample; the learning samples are the external samples only")
        return {run: (pd.Series(False, index=pieces.index, name="learn"), [note])
                for run in range(chain.runs)}
    return {run: split_polygons(pieces, chain.ratio, run, chain.random_seed,
                                chain.split_ground_truth) for run in range(chain.runs)}


def extract(config: Config, pieces, table: ClassTable, cubes: dict, folder: Path,
            external: ExternalTable | None = None):
    """Draw the samples of every run from the cubes (only the blocks that pieces touch, their
    features computed there from the observations) and add the external ones. The learning
    tables are selected, augmented and written by one task per (run, region) into
    `folder/learn_seed_<run>/region_<region>.parquet`: their features never reach this
    process. Returns per run (validation table, report) and the chunk counts."""
    chain, sampling = config.chain, config.sampling
    threshold, seed = sampling.cloud_threshold, chain.random_seed
    splits = _splits(config, pieces)
    grids = {tile: grid_of_cube(ds) for tile, ds in cubes.items()}
    jobs = [(i, tile, *w) for i, tile in enumerate(cubes) if len(pieces)
            for w in _tile_windows(cubes[tile], pieces, grids[tile])]
    total = sum(len(g.chunks[0]) * len(g.chunks[1]) for g in grids.values())
    log.info("sampling %d polygon pieces from %d of %d chunks", len(pieces), len(jobs), total)
    validity = {tile: ds["validity"].data for tile, ds in cubes.items()}
    count = lazy.delayed(count_block)
    counts = lazy.compute_all(
        [count(shapes, window, grids[tile], lazy.block(validity[tile], *key), threshold)
         for _, tile, key, window, shapes in jobs], label="counting eligible pixels per polygon")
    eligible = pd.concat(counts).groupby(level=0).sum() if counts else pd.Series(dtype=int)
    eligible = eligible.reindex(pieces["piece"], fill_value=0)
    plan, wanted = {}, {}
    for run, (learn, _) in splits.items():
        (is_learn, limits), wanted[run] = _run_plan(pieces, learn, eligible,
                                                    sampling.sample_selection, table)
        valid = ~is_learn if chain.split_ground_truth else is_learn | True
        plan[run] = (is_learn, limits, valid)
    names = {tile: feature_names(ds) for tile, ds in cubes.items()}
    first = next(iter(names.values()))
    sources = {tile: feature_blocks(ds) for tile, ds in cubes.items()}
    info = pieces.set_index("piece")[["fid", "code", "region"]]
    task = lazy.delayed(_extract_task)
    blocks = [
        task(shapes, window, grids[tile], tile, i, lazy.block(validity[tile], *key),
             *[lazy.block(a, *key) for a in sources[tile][1] + sources[tile][2]],
             recipes=sources[tile][0], n_obs=len(sources[tile][1]), threshold=threshold,
             plan=plan, names=names[tile], seed=seed,
             info=info.loc[sorted({p for _, p in shapes})])
        for i, tile, key, window, shapes in jobs]
    extra = None
    if external is not None:
        start = int(pieces["piece"].max()) + 1 if len(pieces) else 1
        extra = external_rows(config, external, first, table, start)
    writers, keys = [], []
    block_regions = [set(info.loc[[p for _, p in shapes], "region"].astype(int))
                     for *_, shapes in jobs]
    for run, (learn_flag, _) in splits.items():
        learn_pieces = pieces.loc[learn_flag.to_numpy()]
        regions = set(learn_pieces["region"].astype(int))
        if extra is not None:
            regions |= set(extra["region"].astype(int))
        for region in sorted(regions):
            parts = [lazy.delayed(_region_rows)(b, region)
                     for b, inside in zip(blocks, block_regions) if region in inside]
            mine = set(learn_pieces.loc[learn_pieces["region"] == region, "piece"])
            writers.append(lazy.delayed(write_region_table)(
                str(folder / f"learn_seed_{run}" / RunStore.learn_part_name(region)), parts,
                mine, {c: n for (r, c), n in wanted[run].items() if r == region},
                sampling.sample_selection.rule_for(region).sampler,
                None if extra is None else extra[extra["region"] == region], first,
                sampling.sample_augmentation, _labels(table), seed, run, region))
            keys.append((run, region))
    validations = [lazy.delayed(_validation_rows)(b) for b in blocks]
    results = lazy.compute_all([*writers, *validations], label="extracting samples")
    written, valid_parts = results[:len(writers)], results[len(writers):]
    if len(pieces) and not any(n for n, _ in written) and not any(len(v) for v in valid_parts):
        raise InputError(["no eligible pixel inside the ground-truth polygons: check that they "
                          "overlap the tiles and that sampling.cloud_threshold is not too high"])
    valid_rows = (pd.concat(valid_parts, ignore_index=True) if valid_parts
                  else _no_rows([], splits)[META])
    learned = {run: {} for run in splits}
    for (run, region), (_, per_class) in zip(keys, written):
        learned[run][region] = per_class
    tables = {}
    for run, (learn_flag, notes) in splits.items():
        valid_pieces = (set(pieces["piece"]) if not chain.split_ground_truth
                        else set(pieces.loc[~learn_flag.to_numpy(), "piece"]))
        validation = valid_rows[valid_rows["piece"].isin(valid_pieces)][META]
        notes = notes + [note for per_class in learned[run].values()
                         for note in per_class.pop("notes", [])]
        report = _report(run, learned[run], validation, pieces, table, notes,
                         chain.ground_truth_role)
        tables[run] = (validation.reset_index(drop=True), report)
    return tables, {"chunks_read": len(jobs), "chunks_total": total}


def _validation_rows(block: dict) -> pd.DataFrame:
    return block["validation"][META]


def _labels(table: ClassTable) -> dict[int, str]:
    return {c.code: c.user_label for c in table.classes}


def write_region_table(path: str, parts: list, learn_pieces: set, wanted: dict[int, int],
                       sampler: str, external: pd.DataFrame | None, features: list[str],
                       augmentation, labels: dict[int, str], seed: int, run: int,
                       region: int) -> tuple[int, dict]:
    """One (run, region): select the wanted samples of each class among the blocks'
    candidates, add the external samples, augment, and write the table (row groups of
    `ROW_GROUP` rows, read piecewise by incremental training). Runs on a worker; returns the
    row count and the per-class counts (learn, synthetic, external) with notes."""
    parts = [p for p in parts if p is not None and len(p)]
    rows = pd.concat(parts, ignore_index=True) if parts else None
    chosen = []
    if rows is not None:
        rows = rows.rename(columns={f"key_{run}": "key"})
        candidates = rows[rows["piece"].isin(learn_pieces)]
        for code, part in candidates.groupby("code", sort=True):
            chosen.append(select(part, wanted.get(int(code), 0), sampler))
    if external is not None and len(external):
        chosen.append(external)
    if not chosen:
        return 0, {}
    learn = pd.concat(chosen, ignore_index=True)
    notes = []
    if augmentation.activate and augmentation.applies_to(region):
        rng = run_rng(seed, run, region, 7)
        new = augment(learn, features, augmentation, labels, rng)
        if len(new):
            notes.append(f"region {region}: {len(new)} synthetic samples "
                         f"({augmentation.strategy})")
            learn = pd.concat([learn, new], ignore_index=True)
    learn = learn[META + features].reset_index(drop=True)
    if len(learn):
        fs.as_path(path).parent.mkdir(parents=True, exist_ok=True)
        fs.to_parquet(learn, path, index=False, row_group_size=ROW_GROUP)
    external_flag = learn["tile"].astype(str).eq("external") & ~learn["synthetic"]
    per_class = {int(c): {"learn": int((learn["code"] == c).sum()),
                          "synthetic": int(((learn["code"] == c) & learn["synthetic"]).sum()),
                          "external": int(((learn["code"] == c) & external_flag).sum())}
                 for c in sorted(learn["code"].unique())}
    return len(learn), {**per_class, "notes": notes}


def _no_rows(names: list[str], runs) -> pd.DataFrame:
    """The (empty) extracted rows of a config without ground truth, typed like real ones."""
    types = {"tile": object, "row": np.int64, "col": np.int64, "x": float, "y": float,
             "piece": np.int64, "validity": np.uint16, **{f"key_{r}": float for r in runs},
             **dict.fromkeys(names, np.float32), "fid": np.int64, "code": np.int32,
             "region": np.int64, "synthetic": bool}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in types.items()})


def _run_plan(pieces, learn: pd.Series, eligible: pd.Series, selection, table: ClassTable):
    """Per piece: learning or not, and the key threshold of its (region, class)."""
    by_piece = pieces.set_index("piece")
    is_learn = pd.Series(learn.to_numpy(), index=pieces["piece"].to_numpy())
    group = pd.DataFrame({"region": by_piece["region"], "code": by_piece["code"],
                          "n": eligible.to_numpy()})[is_learn.to_numpy()]
    limits = pd.Series(1.0, index=pieces["piece"].to_numpy())
    wanted: dict[tuple[int, int], int] = {}
    labels = {c.code: c.user_label for c in table.classes}
    for region, part in group.groupby("region"):
        counts = part.groupby("code")["n"].sum()
        rule = selection.rule_for(int(region))
        goal = target_counts(counts, rule, labels)
        for code, n in goal.items():
            wanted[(int(region), int(code))] = int(n)
            fraction = 1.0 if rule.sampler == "periodic" else candidate_fraction(n, counts[code])
            members = part.index[part["code"] == code]
            limits[members] = fraction
    return (is_learn, limits), wanted


def _report(run, learned: dict, validation, pieces, table: ClassTable, notes,
            role: str) -> dict:
    """Counts per region and class (`learned`: region -> code -> learn, synthetic and
    external counts, from the tasks that wrote the tables), and the warnings of the run."""
    warnings = list(notes)
    counts = {}
    names = table.names
    why = ("not in the external samples" if role == "validation"
           else "no eligible pixel: clouds or cloud_threshold")
    for region in sorted({int(r) for r in (*pieces["region"], *learned)}):
        mine = learned.get(region, {})
        valid_r = validation[validation["region"] == region]
        codes = {int(c) for c in (*pieces.loc[pieces["region"] == region, "code"], *mine)}
        none = {"learn": 0, "synthetic": 0, "external": 0}
        counts[str(region)] = {
            names.get(c, str(c)): {**mine.get(c, none),
                                   "validation": int((valid_r["code"] == c).sum())}
            for c in sorted(codes)
        }
        for name, n in counts[str(region)].items():
            if n["learn"] == 0:
                warnings.append(f"region {region}: class {name} has no learning sample ({why})")
    return {"run": run, "counts": counts, "warnings": warnings}


def read_samples(store: RunStore, run: int, kind: str = "learn",
                 columns: list[str] | None = None) -> pd.DataFrame:
    """The `learn` (every region's, in region order) or `validation` samples of a run, as
    the samples step wrote them, in one table (a notebook's view: the train step reads each
    region's table on a worker)."""
    if kind != "learn":
        return fs.read_parquet(store.samples(run, kind), columns=columns)
    parts = [fs.read_parquet(p, columns=columns) for p in store.learn_parts(run).values()]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns or META})
    return pd.concat(parts, ignore_index=True)
