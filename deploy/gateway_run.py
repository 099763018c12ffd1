"""Run the geoclass chain on a dask-gateway cluster (Pangeo JupyterHub, Kubernetes).

The gateway address comes from --address, else from the dask configuration (on a Pangeo hub,
DASK_GATEWAY__ADDRESS and the JupyterHub authentication are already set). The cluster is shut
down at the end, on error and on Ctrl-C.

    python deploy/gateway_run.py config.yaml --workers 8 --worker-cores 2 --worker-memory 8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import deploy_common

MISSING = "gateway_run.py needs dask-gateway: pip install dask-gateway (the gateway's version)"


def import_gateway():
    """The dask_gateway module, or exit with a one-line message."""
    try:
        import dask_gateway
    except ImportError:
        raise SystemExit(MISSING) from None
    return dask_gateway


def option_value(text: str) -> tuple[str, object]:
    """KEY=VALUE, VALUE read as JSON when it is (4, 2.5, true, {"A": "1"}), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def number(text: str) -> int | float:
    """2 stays an integer (gateways declare worker_cores as int or float), 1.5 is a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def apply_options(options, wanted: dict) -> list[str]:
    """Set the `wanted` cluster options (None values are left out) that this gateway offers;
    return the names it does not offer."""
    missing = []
    for name, value in wanted.items():
        if value is None:
            continue
        if name not in options:
            missing.append(name)
            continue
        try:
            options[name] = value
        except (TypeError, ValueError) as err:
            raise SystemExit(f"error: cluster option {err}") from None
    return missing


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="geoclass configuration (YAML)")
    parser.add_argument("--address", help="gateway address [dask config: DASK_GATEWAY__ADDRESS]")
    parser.add_argument("--image", help="worker/scheduler image; it must contain geoclass")
    parser.add_argument("--worker-cores", type=number, help="cores per worker")
    parser.add_argument("--worker-memory", type=number, help="memory per worker, in GiB")
    parser.add_argument(
        "--option", type=option_value, action="append", default=[], metavar="KEY=VALUE",
        help="any other cluster option the gateway offers (repeatable)",
    )
    scaling = parser.add_mutually_exclusive_group()
    scaling.add_argument("--workers", type=int, default=2, help="fixed number of workers [2]")
    scaling.add_argument(
        "--adapt", type=int, nargs=2, metavar=("MIN", "MAX"), help="adaptive scaling bounds"
    )
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for a worker")
    deploy_common.add_step_arguments(parser)
    args = parser.parse_args(argv)
    if args.adapt and not 1 <= args.adapt[0] <= args.adapt[1]:
        parser.error("--adapt needs 1 <= MIN <= MAX")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dask_gateway = import_gateway()
    config = deploy_common.load(args)
    try:
        gateway = dask_gateway.Gateway(args.address)
    except ValueError as err:
        raise SystemExit(f"error: {err}: pass --address or set DASK_GATEWAY__ADDRESS") from None

    options = gateway.cluster_options()
    wanted = {"image": args.image, "worker_cores": args.worker_cores,
              "worker_memory": args.worker_memory, **dict(args.option)}
    for name in apply_options(options, wanted):
        print(f"warning: this gateway has no option {name!r} (it has: {', '.join(options)})",
              file=sys.stderr)

    cluster = gateway.new_cluster(options)
    try:
        if args.adapt:
            cluster.adapt(minimum=args.adapt[0], maximum=args.adapt[1])
        else:
            cluster.scale(args.workers)
        with cluster.get_client() as client:
            print(f"cluster {cluster.name}; dashboard: {cluster.dashboard_link}", flush=True)
            try:
                client.wait_for_workers(1, timeout=args.wait)
            except TimeoutError:
                raise SystemExit(f"no worker started within {args.wait:g} s") from None
            deploy_common.run(client, config, args)
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
