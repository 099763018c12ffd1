"""Run the geoclass chain on a SLURM or PBS cluster with dask-jobqueue.

The dask scheduler runs in this process (on the login node, or in a small job); the workers are
batch jobs of `--cores` cores and `--memory` each, running `--processes` worker processes
(default cores // 2, two threads each). Closing (end of run, error, Ctrl-C) cancels the jobs.
Scheduler, workers and this client speak TLS and must show a certificate (by default one made
for this run): a dask scheduler runs whatever it is sent, as you.

    python deploy/jobqueue_run.py config.yaml --system slurm --jobs 4 --cores 16 \\
        --memory 64GB --walltime 04:00:00 --account myproj --local-directory '${TMPDIR:-/tmp}'
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import deploy_common

CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}


TLS_DIRECTORY = "~/.geoclass/tls"


def make_security(setting):
    """The distributed.Security of `--security`: "temporary" (a self-signed certificate and key
    made now, for this run), a YAML file naming certificate files (ca_file, cert, key: as
    `geoclass run --security`), a Security, or "none"/None (no TLS)."""
    if setting is None or setting == "none":
        return None
    from distributed import Security

    if isinstance(setting, Security):
        return setting
    from geoclass.cluster import make_security as from_setting
    from geoclass.config import parse_security
    from geoclass.errors import GeoclassError

    try:
        return from_setting(parse_security(setting))
    except GeoclassError as err:
        raise SystemExit(f"error: {err}") from None


def private_directory(path: str) -> str:
    """`path` expanded and created, readable by its owner only (the jobs read the temporary
    certificate and key there)."""
    folder = Path(os.path.expandvars(path)).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    return str(folder)


def remove_certificate_files(cluster) -> None:
    """Delete the temporary certificate and key written for the jobs (done at exit anyway; call
    it once the cluster is closed)."""
    for name, handle in list(vars(cluster).items()):
        if name.startswith("_job_") and hasattr(handle, "close"):
            handle.close()  # a NamedTemporaryFile: closing it deletes the file


def make_cluster(
    system: str,
    *,
    cores: int,
    memory: str,
    processes: int | None = None,
    prologue: list[str] | None = None,
    job_extra: list[str] | None = None,
    security="temporary",
    tls_directory: str | None = None,
    **options,
):
    """A dask-jobqueue cluster, not yet scaled: nothing is submitted before `cluster.scale`.

    `prologue` lines run in each job before the worker (module load, conda activate...);
    `job_extra` are extra batch directives ("--qos=long", "-l place=scatter"...). `security`
    (see `make_security`; default a certificate made now) puts the scheduler, the workers and
    the client on TLS with client certificates; a temporary certificate and its key are
    written for the jobs in `tls_directory` (default ~/.geoclass/tls, made readable by you
    only; it must be on a file system the compute nodes mount) and removed at the end. Other
    options (walltime, queue, account, local_directory, log_directory, interface, python,
    scheduler_options...) go to the cluster class; those left None come from the dask-jobqueue
    configuration (~/.config/dask/jobqueue.yaml)."""
    try:
        import dask_jobqueue
    except ImportError:
        raise SystemExit("jobqueue_run.py needs dask-jobqueue: pip install dask-jobqueue") from None
    if system not in CLUSTERS:
        raise ValueError(f"system must be one of {sorted(CLUSTERS)}, not {system!r}")
    security = make_security(security)
    if security is not None:
        options.update(security=security, protocol="tls://",
                       shared_temp_directory=private_directory(tls_directory or TLS_DIRECTORY))
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
    parser.add_argument(
        "--dashboard-address", default="127.0.0.1:8787",
        help="the scheduler's dashboard [127.0.0.1:8787: this machine only, reach it through "
        "the SSH tunnel printed at start]; ':8787' opens it on every interface",
    )
    parser.add_argument(
        "--security", default="temporary", metavar="temporary|FILE|none",
        help="TLS for scheduler, workers and this client, each showing a certificate: "
        "'temporary' [default] makes one for this run; FILE: a YAML file with ca_file, cert "
        "and key (your site's certificates, readable on the compute nodes); 'none': plain TCP, "
        "anyone who reaches the scheduler can run code as you",
    )
    parser.add_argument(
        "--tls-directory", default=TLS_DIRECTORY,
        help=f"where the temporary certificate and key are written for the jobs (made "
        f"readable by you only; on a file system the compute nodes mount) [{TLS_DIRECTORY}]",
    )
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
             "local_directory", "log_directory", "interface", "python", "prologue", "job_extra",
             "security", "tls_directory")
    return {name: getattr(args, name) for name in names}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = cluster_options(args)
    if args.dry_run:
        with make_cluster(
            args.system, **options, scheduler_options={"dashboard_address": "127.0.0.1:0"}
        ) as cluster:
            print(cluster.job_script())
        remove_certificate_files(cluster)
        return 0

    from distributed import Client

    config = deploy_common.load(args)
    if args.security == "none":
        print("warning: --security none: the scheduler accepts work from anyone who can reach "
              "it, and runs it as you", file=sys.stderr)
    scheduler_options = {"dashboard_address": args.dashboard_address}
    cluster = make_cluster(args.system, **options, scheduler_options=scheduler_options)
    try:
        with cluster, Client(cluster) as client:
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
    finally:
        remove_certificate_files(cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
