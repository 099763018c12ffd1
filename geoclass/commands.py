"""What each `geoclass` subcommand does: a thin shell over the Python API and the runner.
Loaded by cli.main once the command line is parsed (so that --help, --version and usage
errors answer before the heavy libraries are imported)."""

from __future__ import annotations

import sys

from geoclass.atomic import atomic_output
from geoclass.cluster import dask_client
from geoclass.io.configfile import load_config
from geoclass.io.iota2.convert import convert_iota2, to_yaml
from geoclass.io.iota2.parser import read_iota2
from geoclass.pipeline import run_chain, run_steps
from geoclass.steps.check import check_inputs
from geoclass.steps.mosaic import cogs as final_maps
from geoclass.steps.suggest import suggest as suggest_locations
from geoclass.store import RunStore
from geoclass.testing.demo import demo_config
from geoclass.testing.synth import synth


def _cluster(args) -> dict:
    return {"scheduler": args.scheduler, "workers": args.workers,
            "threads_per_worker": args.threads_per_worker, "memory_limit": args.memory_limit,
            "host": args.host, "dashboard_address": args.dashboard_address,
            "security": args.security}


def _config(args):
    """The command's configuration: read by cli.main already (`args.loaded`), else here."""
    loaded = getattr(args, "loaded", None)
    return loaded if loaded is not None else load_config(args.config)


def _run_up_to(args, step: str, force: tuple[str, ...] = ()):
    """Run the chain up to `step` (the checks first, then the cluster); `--force` redoes
    `force` (default: `step`). Returns the config and its run store."""
    config = _config(args)
    redo = (force or (step,)) if args.force else ()
    run_steps(config, until=step, force=redo, cluster=_cluster(args))
    return config, RunStore(config.chain.output_path)


def synth_scene(args) -> None:
    config = synth(
        args.out_dir, tiles=args.tiles, size=args.size, dates=args.dates, classes=args.classes,
        regions=args.regions, cloud_cover=args.cloud_cover, labels=args.labels, seed=args.seed,
        format=args.format, s1=args.s1, noise=args.noise, resolution=args.resolution,
        series_crs=args.series_crs, series_ndvi=args.series_ndvi, series_jp2=args.series_jp2,
        points=args.points, external_samples=args.external_samples, chunk_size=args.chunk_size,
    )
    print(f"scene written to {args.out_dir}; configuration: {config}")


def cube(args) -> None:
    config, store = _run_up_to(args, "cubes")
    for tile in config.chain.list_tile:
        print(f"{tile}: {store.cube(tile)}")


def check(args) -> int:
    config = _config(args)  # cli.main kept an iota2 file's warnings for below
    for warning in config._import_warnings:
        print(f"warning: {warning}")
    report = check_inputs(config)
    for warning in report.warnings:
        print(f"warning: {warning}")
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.ok:
        print(f"{args.config}: all input checks passed")
        return 0
    print(f"{len(report.problems)} problem(s) found", file=sys.stderr)
    return 1


def import_iota2(args) -> int:
    conversion = convert_iota2(read_iota2(args.file), args.file.resolve().parent)
    text = to_yaml(conversion)
    if args.output is None:
        print(text, end="")
    else:
        with atomic_output(args.output) as tmp:
            tmp.write_text(text)
        print(f"{args.output}: written ({len(conversion.warnings)} warning(s) at its top)")
    for error in conversion.errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if conversion.errors else 0


def samples(args) -> None:
    _, store = _run_up_to(args, "samples")
    print(f"samples written to {store.samples_dir}")


def train(args) -> None:
    _, store = _run_up_to(args, "train")
    for (region, run), path in sorted(store.models().items()):
        print(f"region {region} run {run}: {path}")


def classify(args) -> None:
    config, store = _run_up_to(args, "mosaic", force=("classify", "mosaic"))
    for path in final_maps(config, store):
        print(path)


def suggest(args) -> None:
    config = load_config(args.config)
    with dask_client(config.dask, **_cluster(args)):
        run_steps(config, until="mosaic")  # the maps, unless they are up to date
        path, points = suggest_locations(
            config, RunStore(config.chain.output_path), n=args.n,
            min_distance=args.min_distance, measure=args.measure, run=args.run,
            min_uncertainty=args.min_uncertainty, output=args.output)
    print(f"{len(points)} locations to label ({points['measure'].iloc[0] if len(points) else ''}"
          f" uncertainty, {points['name'].nunique()} predicted classes): {path}")


def _print_outcome(config, metrics: dict) -> None:
    store = RunStore(config.chain.output_path)
    final = store.final
    print(f"final maps and reports: {final}")
    for name in ("Classifications_fusion.tif", "Classif_Seed_0.tif", "RESULTS.txt",
                 "report.html"):
        if (final / name).exists():
            print(f"  {final / name}")
    summary = metrics.get("summary") or {}
    if summary:
        oa, kappa = summary["overall_accuracy"], summary["kappa"]
        spread = f" +- {oa['ci95']:.3f}" if oa.get("ci95") is not None else ""
        runs = summary["n_runs"]
        print(f"overall accuracy {oa['mean']:.3f}{spread} (95 % CI over {runs} runs), "
              f"kappa {kappa['mean']:.3f}" if runs > 1 else
              f"overall accuracy {oa['mean']:.3f}, kappa {kappa['mean']:.3f} (1 run)")
    if metrics.get("fusion"):
        print(f"fusion of runs: OA {metrics['fusion']['scores']['overall_accuracy']:.3f}")
    for warning in store.warnings():
        print(f"warning: {warning}")


def run(args) -> None:
    config = _config(args)
    metrics = run_chain(config, from_step=args.from_step, only_step=args.only_step,
                        overwrite=args.overwrite, cluster=_cluster(args))
    _print_outcome(config, metrics)


def demo(args) -> None:
    config = load_config(demo_config(args.out, args.size, args.seed))
    metrics = run_chain(config, cluster=_cluster(args))
    _print_outcome(config, metrics)
