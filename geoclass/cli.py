"""The `geoclass` command: one subcommand per step, each a thin shell over the Python API."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from geoclass import logs
from geoclass.errors import GeoclassError

log = logging.getLogger("geoclass")


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dask cluster")
    group.add_argument("--scheduler", help="address of an existing dask scheduler (tls://... or tcp://...)")
    group.add_argument("--workers", type=int, help="workers of the embedded LocalCluster")
    group.add_argument("--threads-per-worker", type=int, help="threads per local worker")
    group.add_argument("--memory-limit", help="memory limit per local worker, e.g. 4GB")
    group.add_argument("--host", help="where the local scheduler and workers listen "
                       "(default 127.0.0.1: this machine only; dask.host)")
    group.add_argument("--dashboard-address", metavar="ADDRESS",
                       help="the local dashboard's address (default 127.0.0.1:0: this machine "
                       "only, a free port; ':8787' opens it on every interface; 'none': no "
                       "dashboard; dask.dashboard_address)")
    group.add_argument("--security", metavar="temporary|FILE",
                       help="TLS with client certificates: 'temporary' (a self-signed "
                       "certificate for the local cluster), or a YAML file with ca_file, cert "
                       "and key for a tls:// --scheduler (dask.security)")


def _version() -> str:
    try:
        return version("geoclass")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geoclass", description="Land-cover maps from satellite image time series."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action="version", version=f"geoclass {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate a synthetic scene and its config.yaml",
                       description="Write a deterministic synthetic scene (tiles in UTM with "
                       "per-class phenology, clouds, ground truth, regions, nomenclature, "
                       "colour table) and a config.yaml that runs the chain on it.")
    p.add_argument("out_dir", type=Path, help="folder to write the scene in")
    p.add_argument("--tiles", type=int, default=2, help="number of tiles, side by side (2)")
    p.add_argument("--size", type=int, default=256, help="tile side in pixels, >= 32 (256)")
    p.add_argument("--dates", type=int, default=12, help="acquisition dates per tile (12)")
    p.add_argument("--classes", type=int, default=8, help="land-cover classes, 2..22 (8)")
    p.add_argument("--regions", type=int, default=2, help="regions (eco-climatic strata) (2)")
    p.add_argument("--cloud-cover", type=float, default=0.2,
                   help="mean share of cloudy pixels per date, in [0, 1) (0.2)")
    p.add_argument("--labels", choices=["string", "int"], default="string",
                   help="ground-truth labels: class names or nomenclature codes (string)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the scene (0)")
    p.add_argument("--format", choices=["theia", "sen2cor", "stac", "series", "landsat8"],
                   default="theia", help="layout of the optical products (same scene in each)")
    p.add_argument("--s1", action="store_true", help="also write Sentinel-1 VV/VH backscatter")
    p.add_argument("--noise", type=float, default=0.08,
                   help="pixel noise, relative to the reflectance (0.08)")
    p.add_argument("--resolution", type=float, default=10.0,
                   help="pixel size in metres, theia and series formats (10)")
    p.add_argument("--series-crs", help="series format: CRS of the files (EPSG code, WKT or "
                   "PROJ string, e.g. MODIS's '+proj=sinu +R=6371007.181 +units=m'; default "
                   "the tiles' UTM zone)")
    p.add_argument("--series-ndvi", action="store_true", help="series format: one NDVI band "
                   "per date, clouds as fill values (MODIS-like), the same dates on every tile")
    p.add_argument("--series-jp2", action="store_true",
                   help="series format: lossy JPEG 2000 files instead of GeoTIFF")
    p.add_argument("--points", type=int, default=0, help="ground truth as this many points "
                   "(vector/ground_truth.gpkg, EPSG:4326) instead of polygons")
    p.add_argument("--external-samples", type=int, default=0, help="with --series-ndvi: "
                   "samples.csv, this many labelled NDVI series to learn from (matched by "
                   "position); the ground truth then only validates")
    p.add_argument("--chunk-size", type=int, help="dask.chunk_size of the config "
                   "(default: half the tile, 64 to 512)")
    p.set_defaults(func="synth_scene")

    config_help = "the configuration file (YAML; relative paths are read from its folder)"
    p = sub.add_parser("cube", help="build (or reuse) the time-series cube of every tile")
    p.add_argument("config", type=Path, help=config_help)
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    _cluster_options(p)
    p.set_defaults(func="cube")

    p = sub.add_parser("check", help="run every input check, without heavy work")
    p.add_argument("config", type=Path, help=config_help)
    p.set_defaults(func="check")

    p = sub.add_parser("import-iota2", help="convert an iota2 configuration file (.cfg) to "
                       "geoclass YAML, each key commented with its iota2 origin")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--output", type=Path, help="write the YAML there (default: stdout)")
    p.set_defaults(func="import_iota2")

    p = sub.add_parser("samples", help="split, select, extract and augment the samples")
    p.add_argument("config", type=Path, help=config_help)
    p.add_argument("--force", action="store_true", help="redo even if up to date")
    _cluster_options(p)
    p.set_defaults(func="samples")

    p = sub.add_parser("train", help="fit one model per (region, run)")
    p.add_argument("config", type=Path, help=config_help)
    p.add_argument("--force", action="store_true", help="refit even if up to date")
    _cluster_options(p)
    p.set_defaults(func="train")

    p = sub.add_parser("classify", help="classify every tile and run, mosaic, write the final "
                       "maps (training first if needed)")
    p.add_argument("config", type=Path, help=config_help)
    p.add_argument("--force", action="store_true",
                   help="redo the tile maps and the mosaic even if up to date")
    _cluster_options(p)
    p.set_defaults(func="classify")

    steps = ["check", "cubes", "samples", "train", "classify", "mosaic", "validate", "report"]
    p = sub.add_parser("run", help="run the whole chain (every step that is not up to date)")
    p.add_argument("config", type=Path, help=config_help)
    p.add_argument("--from-step", choices=steps, help="redo this step and every later one")
    p.add_argument("--only-step", choices=steps, help="redo this step only")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of another configuration in chain.output_path")
    _cluster_options(p)
    p.set_defaults(func="run")

    p = sub.add_parser("suggest", help="the most uncertain locations of a run's map, for a "
                       "user to label next (a GeoPackage of points; active learning)",
                       description="Uncertainty sampling: the N most uncertain pixels of a "
                       "run's map, spread apart and shared out between the predicted classes, "
                       "as points (predicted class, uncertainty) in a GeoPackage. Runs the "
                       "chain up to the maps first if needed; needs classification.uncertainty "
                       "or classification.enable_probability_map.")
    p.add_argument("config", type=Path, help=config_help)
    p.add_argument("--n", type=int, default=200, help="number of locations (200)")
    p.add_argument("--min-distance", type=float, help="smallest distance between two "
                   "locations, in the map's units (metres; default 10 pixels)")
    p.add_argument("--measure", choices=["entropy", "margin", "least"],
                   help="uncertainty measure (default: the first of classification.uncertainty, "
                   "else entropy)")
    p.add_argument("--run", type=int, default=0, help="which run's map (0)")
    p.add_argument("--min-uncertainty", type=float,
                   help="leave out pixels less uncertain than this (0-1)")
    p.add_argument("-o", "--output", type=Path, help="the GeoPackage to write (default "
                   "output_path/final/SuggestedSamples_Seed_<run>.gpkg)")
    _cluster_options(p)
    p.set_defaults(func="suggest")

    p = sub.add_parser("demo", help="generate a scene and run the whole chain on it")
    p.add_argument("--out", type=Path, default=Path("geoclass-demo"),
                   help="folder of the scene and its outputs (default ./geoclass-demo)")
    p.add_argument("--size", type=int, default=256, help="tile side in pixels, >= 32 (256)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the scene (0)")
    _cluster_options(p)
    p.set_defaults(func="demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` (default: this process's own command line, and then the process
    ends with it); returns its exit status."""
    status = _main(argv)
    if argv is None and "geoclass.commands" in sys.modules:
        # the `geoclass` command itself, done: its outputs are written and its cluster is
        # closed; end without Python's teardown of the heavy libraries (1.5-3.5 s measured,
        # RESULTS.md issue 20)
        import_module("geoclass.cluster").quick_exit(status)
    return status


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup_console(args.debug)
    logs.forget_log_file()
    try:
        _prepare(args)
        status = getattr(import_module("geoclass.commands"), args.func)(args)
    except GeoclassError as err:
        if args.debug:
            raise
        print(f"geoclass {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a bug or an unforeseen input: say it shortly
        if args.debug:
            raise
        step = logs.current_step()
        where = f" in step {step}" if step else ""
        report = logs.crash_report(err, args.command)
        print(f"geoclass {args.command}: unexpected error{where}: {type(err).__name__}: "
              f"{_first_line(err)}\n  the full traceback is in {report}\n  (--debug shows "
              "it here; please report it if the inputs look right)", file=sys.stderr)
        return 1
    return status or 0


def _prepare(args) -> None:
    """Read and validate the configuration and --security before the commands (and the heavy
    libraries behind them) are imported: their errors answer at once. The configuration goes
    to `args.loaded`."""
    if getattr(args, "security", None):
        args.security = import_module("geoclass.config").parse_security(args.security)
    if getattr(args, "config", None) is None:
        return
    early = _forked_workers_wanted(args)
    if early:
        # the LocalCluster's workers are forked from a process that loads geoclass's task
        # modules (~5.7 s here) while this one validates the configuration, loads the
        # commands and runs the input checks; started after the validation (1.4 s), the
        # first cluster waited ~2 s for it
        import_module("geoclass.workerserver").start_worker_server()
    quiet = logging.getLogger("geoclass.io.iota2.convert")
    level = quiet.level
    if args.command == "check":  # an iota2 file's warnings are printed by the command instead
        quiet.setLevel(logging.ERROR)
    try:
        args.loaded = import_module("geoclass.io.configfile").load_config(args.config)
    finally:
        quiet.setLevel(level)
    dask = args.loaded.dask
    if not early and _local_forked_cluster(args, dask.scheduler, dask.fork_workers):
        # an iota2 file, known only once converted
        import_module("geoclass.workerserver").start_worker_server()


def _forked_workers_wanted(args) -> bool:
    """Whether the command may start a LocalCluster of forked workers, by the configuration's
    YAML as written (before its validation). False for what is not a YAML mapping (an iota2
    file): decided once it is converted."""
    if not _local_forked_cluster(args, None, True):
        return False  # not a cluster command, or --scheduler: the YAML is not read
    try:
        raw = import_module("yaml").safe_load(Path(args.config).read_text())
    except Exception:  # noqa: BLE001 - unreadable or not YAML: the validation will say it
        return False
    section = raw.get("dask") if isinstance(raw, dict) else None
    section = section if isinstance(section, dict) else {}
    return _local_forked_cluster(args, section.get("scheduler"),
                                 section.get("fork_workers", True))


def _local_forked_cluster(args, scheduler, fork_workers) -> bool:
    """Whether the command's cluster is a LocalCluster of forked workers: a cluster command
    (it has --scheduler) given none, no `dask.scheduler`, `dask.fork_workers` not false."""
    return (getattr(args, "scheduler", True) is None and not scheduler
            and fork_workers is not False)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else "(no message)"


if __name__ == "__main__":
    sys.exit(main())
