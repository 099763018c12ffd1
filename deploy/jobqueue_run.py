"""Run the geoclass chain on a SLURM or PBS cluster with dask-jobqueue.

The dask scheduler runs in this process (on the login node, or in a small job); the workers are
batch jobs of `--cores` cores and `--memory` each, running `--processes` worker processes
(default cores // 2, two threads each). Closing (end of run, error, Ctrl-C) cancels the jobs.

    python deploy/jobqueue_run.py config.yaml --system slurm --jobs 4 --cores 16 \\
        --memory 64GB --walltime 04:00:00 --account myproj --local-directory '${TMPDIR:-/tmp}'
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import deploy_common

CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}


def make_cluster(
    system: str,
    *,
    cores: int,
    memory: str,
    processes: int | None = None,
    prologue: list[str] | None = None,
    job_extra: list[str] | None = None,
    **options,
):
    """A dask-jobqueue cluster, not yet scaled: nothing is submitted before `cluster.scale`.

    `prologue` lines run in each job before the worker (module load, conda activate...);
    `job_extra` are extra batch directives ("--qos=long", "-l place=scatter"...). Other options
    (walltime, queue, account, local_directory, log_directory, interface, python,
    scheduler_options...) go to the cluster class; those left None come from the dask-jobqueue
    configuration (~/.config/dask/jobqueue.yaml)."""
    try:
        import dask_jobqueue
    except ImportError:
        raise SystemExit("jobqueue_run.py needs dask-jobqueue: pip install dask-jobqueue") from None
    if system not in CLUSTERS:
        raise ValueError(f"system must be one of {sorted(CLUSTERS)}, not {system!r}")
    options.update(
        processes=processes or max(1, cores // 2),
        job_script_prologue=prologue or None,
        job_extra_directives=job_extra or None,
    )
    options = {key: value for key, value in options.items() if value is not None}
    return getattr(dask_jobqueue, CLUSTERS[system])(cores=cores, memory=memory, **options)


def tunnel_hint(dashboard_link: str) -> str:
    """The SSH command that brings the dashboard to the user's own machine."""
    url = urlparse(dashboard_link)
    user, host = getpass.getuser(), socket.gethostname()
    return (
        f"ssh -N -L {url.port}:{url.hostname}:{url.port} {user}@{host}  "
        f"then open http://localhost:{url.port}{url.path}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="geoclass configuration (YAML)")
    parser.add_argument("--system", choices=sorted(CLUSTERS), required=True)
    parser.add_argument("--jobs", type=int, required=True, help="batch jobs to submit")
    parser.add_argument("--cores", type=int, required=True, help="cores per job")
    parser.add_argument("--memory", required=True, help="memory per job, e.g. 64GB")
    parser.add_argument("--walltime", required=True, help="per job, e.g. 04:00:00")
    parser.add_argument("--processes", type=int, help="worker processes per job [cores // 2]")
    parser.add_argument("--queue", help="partition (SLURM -p) or queue (PBS -q)")
    parser.add_argument("--account", help="project to charge (-A)")
    parser.add_argument(
        "--resource-spec", help="PBS -l resources [select=1:ncpus=C:mem=M]; Torque: nodes=1:ppn=C"
    )
    parser.add_argument(
        "--local-directory",
        help="node-local disk for spilled data; quote '${TMPDIR:-/tmp}' to expand it on the node",
    )
    parser.add_argument("--log-directory", help="folder for the jobs' stdout/stderr")
    parser.add_argument("--interface", help="network interface of scheduler and workers, e.g. ib0")
    parser.add_argument("--python", help="python on the compute nodes [this one]")
    parser.add_argument(
        "--prologue", action="append", help="shell line run before the worker (repeatable)"
    )
    parser.add_argument(
        "--job-extra", action="append", help="extra directive: --job-extra=--qos=long (repeatable)"
    )
    parser.add_argument("--dashboard-port", type=int, default=8787, help="[8787]")
    parser.add_argument("--wait", type=float, help="seconds to wait for a first worker [no limit]")
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print the job script and exit: nothing is submitted, the config is not read",
    )
    deploy_common.add_step_arguments(parser)
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.cores < 1:
        parser.error("--jobs and --cores must be at least 1")
    if args.resource_spec and args.system != "pbs":
        parser.error("--resource-spec is for PBS")
    return args


def cluster_options(args: argparse.Namespace) -> dict:
    names = ("cores", "memory", "processes", "walltime", "queue", "account", "resource_spec",
             "local_directory", "log_directory", "interface", "python", "prologue", "job_extra")
    return {name: getattr(args, name) for name in names}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = cluster_options(args)
    if args.dry_run:
        with make_cluster(
            args.system, **options, scheduler_options={"dashboard_address": ":0"}
        ) as cluster:
            print(cluster.job_script())
        return 0

    from distributed import Client

    config = deploy_common.load(args)
    scheduler_options = {"dashboard_address": f":{args.dashboard_port}"}
    with make_cluster(args.system, **options, scheduler_options=scheduler_options) as cluster:
        with Client(cluster) as client:
            print(f"dashboard: {client.dashboard_link}\n  {tunnel_hint(client.dashboard_link)}")
            cluster.scale(jobs=args.jobs)
            print(f"{args.jobs} job(s) submitted, waiting for a first worker...", flush=True)
            try:
                client.wait_for_workers(1, timeout=args.wait)
            except TimeoutError:
                raise SystemExit(
                    f"no worker started within {args.wait:g} s: see the queue and the job logs"
                ) from None
            deploy_common.run(client, config, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
