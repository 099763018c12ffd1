"""What both deploy scripts do once a cluster is up: check that the workers can run the chain,
then run it on the active client."""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from pathlib import Path

from geoclass import fs


def add_step_arguments(parser) -> None:
    """The options of `geoclass run` that choose what to (re)compute."""
    parser.add_argument("--from-step", help="redo this step of `geoclass run` and every later one")
    parser.add_argument("--only-step", help="redo this step only")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="delete the outputs of another configuration found in output_path",
    )


def load(args):
    """Read and validate the configuration and the step names, before any worker is asked for."""
    from geoclass import load_config
    from geoclass.errors import GeoclassError
    from geoclass.pipeline import STEPS

    for name in (args.from_step, args.only_step):
        if name is not None and name not in STEPS:
            raise SystemExit(f"error: unknown step {name!r}; steps: {', '.join(STEPS)}")
    try:
        return load_config(args.config)
    except GeoclassError as err:
        raise SystemExit(f"error: {err}") from None


def shared_paths(config) -> list[str]:
    """The chain's local input paths that exist here and its local output folder (created
    here): every worker must see them at the same place. Locations in buckets are left out:
    each worker reaches them with its own credentials."""
    chain = config.chain
    values = [getattr(chain, name) for name in type(chain).model_fields]
    found = {str(v) for v in values if isinstance(v, Path) and v.exists()}
    if not fs.is_url(chain.output_path):
        output = Path(chain.output_path)
        output.mkdir(parents=True, exist_ok=True)
        found.add(str(output))
    return sorted(found)


def check_workers(client, paths: list[str]) -> None:
    """Exit with a clear message when a worker has no geoclass, another version of it, or
    cannot see one of `paths` (no shared file system)."""
    here = version("geoclass")
    problems = []
    for worker, found in client.run(version, "geoclass", on_error="return").items():
        if found != here:
            found = "missing" if isinstance(found, BaseException) else found
            problems.append(f"{worker}: geoclass {found}, here {here}")
    for path in paths:
        for worker, seen in client.run(os.path.exists, path, on_error="return").items():
            if seen is not True:
                problems.append(f"{worker}: cannot see {path}")
    if problems:
        raise SystemExit("the workers cannot run this chain:\n  " + "\n  ".join(problems))


def run(client, config, args):
    """Check the workers, then run the chain on `client` (the active one) and print the
    summary; `args` holds the options of `add_step_arguments`."""
    from geoclass import run_chain
    from geoclass.errors import GeoclassError

    check_workers(client, shared_paths(config))
    workers = len(client.nthreads())
    print(f"running the chain on {workers} worker(s); dashboard: {client.dashboard_link}")
    try:
        summary = run_chain(
            config, from_step=args.from_step, only_step=args.only_step, overwrite=args.overwrite
        )
    except GeoclassError as err:
        raise SystemExit(f"error: {err}") from None
    print(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    return summary
