"""Deployment recipes (deploy/): dask-jobqueue job scripts, the dask-gateway script, the worker
Dockerfile. Nothing is submitted and no cluster other than a local one is needed."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from geoclass import fs

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
WORKER_COMMAND = re.compile(r"(-m distributed\.cli\.dask_worker|dask[- ]worker) tls://127\.0\.0\.1:")
LOCAL = {"dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"}
# `python SCRIPT ...` as if dask_gateway were not installed (an import of it raises ImportError)
BLOCK_GATEWAY = (
    "import os, runpy, sys; sys.modules['dask_gateway'] = None; sys.argv = sys.argv[1:]; "
    "sys.path.insert(0, os.path.dirname(sys.argv[0])); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def load(name: str):
    """Import a deploy script as a module (deploy/ is not a package)."""
    if str(DEPLOY) not in sys.path:
        sys.path.insert(0, str(DEPLOY))
    spec = importlib.util.spec_from_file_location(name, DEPLOY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
        timeout=60,
    )


def job_script(system: str, **options) -> str:
    pytest.importorskip("dask_jobqueue")
    settings = dict(cores=8, memory="16GB", walltime="02:00:00", scheduler_options=LOCAL)
    jobqueue_run = load("jobqueue_run")
    with tempfile.TemporaryDirectory() as tls:  # the temporary certificate, for the jobs
        with jobqueue_run.make_cluster(system, **settings, tls_directory=tls,
                                       **options) as cluster:
            text = cluster.job_script()
        jobqueue_run.remove_certificate_files(cluster)
    return text


def test_slurm_job_script():
    text = job_script(
        "slurm", queue="normal", account="proj42", local_directory="$TMPDIR",
        prologue=["module load geoclass"], job_extra=["--qos=long"],
    )
    for line in ("#SBATCH --cpus-per-task=8", "#SBATCH --mem=15G", "#SBATCH -t 02:00:00",
                 "#SBATCH -p normal", "#SBATCH -A proj42", "#SBATCH --qos=long"):
        assert line in text.splitlines()
    assert "module load geoclass" in text.splitlines()
    assert WORKER_COMMAND.search(text)
    # cores // 2 processes of two threads; the scratch path is left for the node to expand
    assert "--nworkers 4" in text and "--nthreads 2" in text
    assert "--local-directory $TMPDIR" in text


def test_pbs_job_script():
    text = job_script("pbs", queue="workq", account="proj42", processes=1)
    for line in ("#PBS -l select=1:ncpus=8:mem=15GB", "#PBS -l walltime=02:00:00",
                 "#PBS -q workq", "#PBS -A proj42"):
        assert line in text.splitlines()
    assert WORKER_COMMAND.search(text)
    assert "--nthreads 8" in text and "--nworkers" not in text


def test_job_scripts_speak_tls_with_a_certificate_made_for_the_run(tmp_path):
    """By default the scheduler, the workers and the client use TLS with client certificates;
    the workers read a certificate and key written for this run, readable by the user only."""
    pytest.importorskip("dask_jobqueue")
    pytest.importorskip("cryptography")
    settings = dict(cores=2, memory="4GB", walltime="00:10:00", scheduler_options=LOCAL,
                    tls_directory=str(tmp_path / "tls"))
    jobqueue_run = load("jobqueue_run")
    with jobqueue_run.make_cluster("slurm", **settings) as cluster:
        text = cluster.job_script()
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        options = dict(re.findall(r"--(tls-[a-z-]+) (\S+)", text))
        assert options.keys() == {"tls-ca-file", "tls-cert", "tls-key"}
        for path in map(Path, options.values()):
            assert path.parent == tmp_path / "tls" and path.is_file()
            assert path.stat().st_mode & 0o077 == 0  # the user's only
        assert (tmp_path / "tls").stat().st_mode & 0o077 == 0
    jobqueue_run.remove_certificate_files(cluster)
    assert not list((tmp_path / "tls").iterdir())
    plain = job_script("slurm", security="none")
    assert " tcp://127.0.0.1:" in plain and "--tls-" not in plain


def test_jobqueue_takes_site_certificates_from_a_file(tmp_path):
    pytest.importorskip("dask_jobqueue")
    for name in ("ca.pem", "me.pem", "me.key"):
        (tmp_path / name).write_text("-")
    (tmp_path / "tls.yaml").write_text("ca_file: ca.pem\ncert: me.pem\nkey: me.key\n")
    security = load("jobqueue_run").make_security(str(tmp_path / "tls.yaml"))
    assert security.tls_ca_file == str(tmp_path / "ca.pem")
    assert security.tls_worker_cert == str(tmp_path / "me.pem")
    assert security.tls_client_key == str(tmp_path / "me.key")
    with pytest.raises(SystemExit, match="no such file"):
        load("jobqueue_run").make_security(str(tmp_path / "absent.yaml"))


def test_torque_resource_spec():
    text = job_script("pbs", resource_spec="nodes=1:ppn=8")
    assert "#PBS -l nodes=1:ppn=8" in text.splitlines() and "select=" not in text


def test_make_cluster_rejects_unknown_system():
    pytest.importorskip("dask_jobqueue")
    with pytest.raises(ValueError, match="slurm"):
        load("jobqueue_run").make_cluster("sge", cores=2, memory="4GB")


def fake_submitters(tmp_path: Path, run_jobs: bool = False) -> tuple[dict, Path]:
    """An environment whose PATH starts with fake sbatch/qsub/scancel/qdel, each leaving a trace
    when called. With `run_jobs`, sbatch/qsub run the job script here, in the background and in
    its own process group, whose id is the job id; scancel/qdel end that group."""
    bin_dir, trace = tmp_path / "bin", tmp_path / "called"
    bin_dir.mkdir()
    submit = (
        'set -m\ncp "$1" "$0.$$.sh"\n'
        'bash "$0.$$.sh" > "$0.$$.log" 2>&1 < /dev/null &\n'
        'echo "Submitted batch job $!"\n'
    )
    actions = {"submit": submit if run_jobs else "exit 1\n", "cancel": 'kill -- "-$1"\n'}
    for name, action in (("sbatch", "submit"), ("qsub", "submit"), ("scancel", "cancel"),
                         ("qdel", "cancel")):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/bash\necho {name} >> {trace}\n{actions[action]}")
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, trace


@pytest.mark.parametrize("system, directive", [("slurm", "#SBATCH"), ("pbs", "#PBS")])
def test_dry_run_prints_the_job_script_and_submits_nothing(tmp_path, system, directive):
    pytest.importorskip("dask_jobqueue")
    env, trace = fake_submitters(tmp_path)
    done = script(
        DEPLOY / "jobqueue_run.py", tmp_path / "absent.yaml", "--system", system, "--jobs", "3",
        "--cores", "4", "--memory", "8GB", "--walltime", "00:10:00", "--dry-run",
        "--tls-directory", tmp_path / "tls", env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"{directive} " in done.stdout
    assert re.search(r"(distributed\.cli\.dask_worker|dask[- ]worker) tls://", done.stdout)
    assert "--tls-ca-file" in done.stdout
    assert not trace.exists()


def test_submitted_job_script_starts_workers(tmp_path, monkeypatch):
    """The job script, run by a fake sbatch on this machine, starts a worker that joins the
    scheduler with the prologue and the local directory; closing the cluster cancels the job."""
    pytest.importorskip("dask_jobqueue")
    from distributed import Client

    env, trace = fake_submitters(tmp_path, run_jobs=True)
    monkeypatch.setenv("PATH", env["PATH"])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    options = dict(cores=2, memory="2GB", walltime="00:05:00", local_directory=str(scratch),
                   prologue=["export GEOCLASS_JOB=yes"], scheduler_options=LOCAL,
                   tls_directory=str(tmp_path / "tls"))
    cluster = load("jobqueue_run").make_cluster("slurm", **options)
    with cluster, Client(cluster) as client:
        cluster.scale(jobs=1)
        client.wait_for_workers(1, timeout=30)
        assert set(client.run(os.getenv, "GEOCLASS_JOB").values()) == {"yes"}
        assert set(client.nthreads().values()) == {2}
        # the worker joined over TLS with the run's certificate; a plain client cannot
        assert all(a.startswith("tls://") for a in client.scheduler_info()["workers"])
        with pytest.raises((OSError, TimeoutError)):
            Client(cluster.scheduler_address.replace("tls://", "tcp://"), timeout="3s")
        load("deploy_common").check_workers(client, [str(tmp_path)])
    load("jobqueue_run").remove_certificate_files(cluster)
    assert any(scratch.iterdir())
    assert trace.read_text().split() == ["sbatch", "scancel"]


def test_jobqueue_help():
    done = script(DEPLOY / "jobqueue_run.py", "--help")
    assert done.returncode == 0 and "--dry-run" in done.stdout


def test_tunnel_hint():
    hint = load("jobqueue_run").tunnel_hint("http://10.1.2.3:8787/status")
    assert hint.startswith("ssh -N -L 8787:10.1.2.3:8787 ")
    assert "http://localhost:8787/status" in hint


def test_gateway_help_without_dask_gateway():
    done = script("-c", BLOCK_GATEWAY, DEPLOY / "gateway_run.py", "--help")
    assert done.returncode == 0, done.stderr
    assert "--worker-memory" in done.stdout and "--adapt" in done.stdout


def test_gateway_without_dask_gateway_says_so(tmp_path):
    done = script("-c", BLOCK_GATEWAY, DEPLOY / "gateway_run.py", tmp_path / "config.yaml")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [load("gateway_run").MISSING]
    assert "dask-gateway" in done.stderr


def test_gateway_numbers():
    gateway_run = load("gateway_run")
    assert gateway_run.number("2") == 2 and isinstance(gateway_run.number("2"), int)
    assert gateway_run.number("1.5") == 1.5


def test_gateway_options():
    gateway_run = load("gateway_run")
    offered = {"image": "pangeo/pangeo-notebook", "worker_cores": 1, "worker_memory": 2.0}
    missing = gateway_run.apply_options(
        offered, {"image": "geoclass:0.1.0", "worker_cores": 4, "worker_memory": None, "gpu": 1}
    )
    assert missing == ["gpu"]
    assert offered == {"image": "geoclass:0.1.0", "worker_cores": 4, "worker_memory": 2.0}
    args = gateway_run.parse_args(
        ["c.yaml", "--option", "worker_cores=2.5", "--option", "environment={\"A\": \"1\"}",
         "--option", "profile=large", "--adapt", "1", "10"]
    )
    assert dict(args.option) == {"worker_cores": 2.5, "environment": {"A": "1"},
                                 "profile": "large"}
    assert args.adapt == [1, 10]
    with pytest.raises(SystemExit):
        gateway_run.parse_args(["c.yaml", "--adapt", "0", "4"])


def test_check_workers(client, tmp_path):
    common = load("deploy_common")
    common.check_workers(client, [str(tmp_path)])
    with pytest.raises(SystemExit, match="cannot see /nowhere/at/all"):
        common.check_workers(client, [str(tmp_path), "/nowhere/at/all"])


def test_shared_paths(tmp_path):
    from geoclass.config import Chain

    (tmp_path / "s2").mkdir()
    chain = Chain(output_path=tmp_path / "run", list_tile=["T31TCJ"], s2_path=tmp_path / "s2",
                  ground_truth=tmp_path / "absent.shp")
    paths = load("deploy_common").shared_paths(SimpleNamespace(chain=chain))
    assert paths == [str(tmp_path / "run"), str(tmp_path / "s2")]
    assert (tmp_path / "run").is_dir()
    in_bucket = chain.model_copy(update={"output_path": fs.as_path("s3://bucket/run")})
    assert load("deploy_common").shared_paths(SimpleNamespace(chain=in_bucket)) == \
        [str(tmp_path / "s2")]  # the workers reach the bucket themselves: nothing to mount


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines)
        if word and not word.startswith("#")
    ]


def test_dockerfile():
    instructions = dockerfile_instructions()
    args = {arg.split("=")[0]: arg.partition("=")[2] for name, arg in instructions if name == "ARG"}
    bases = [arg for name, arg in instructions if name == "FROM"]
    assert bases and all(
        re.match(r"python:\d", re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], base))
        for base in bases
    )
    copies = [arg.split() for name, arg in instructions if name in ("COPY", "ADD")]
    sources = {src for parts in copies for src in parts[:-1] if not src.startswith("--")}
    assert sources == {"pyproject.toml", "README.md", "geoclass"}  # never the whole context
    readme = re.search(r'^readme = "(.+)"', (DEPLOY.parent / "pyproject.toml").read_text(), re.M)
    assert readme and readme[1] in sources  # `pip install .` needs it
    runs = " ".join(arg for name, arg in instructions if name == "RUN")
    assert re.search(r"pip install \.( |$)", runs)
    assert not any(name == "ENTRYPOINT" for name, _ in instructions)
    users = [arg for name, arg in instructions if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_gateway_helm_values():
    yaml = pytest.importorskip("yaml")
    values = yaml.safe_load((DEPLOY / "kubernetes" / "dask-gateway-values.yaml").read_text())
    backend = values["gateway"]["backend"]
    mounts = backend["worker"]["extraContainerConfig"]["volumeMounts"]
    volumes = backend["worker"]["extraPodConfig"]["volumes"]
    assert {m["name"] for m in mounts} == {v["name"] for v in volumes}
    code = values["gateway"]["extraConfig"]["geoclass-options"]
    compile(code, "extraConfig", "exec")
    options = pytest.importorskip("dask_gateway_server.options")
    config = SimpleNamespace(Backend=SimpleNamespace())
    exec(code, {"c": config})
    assert [f["field"] for f in config.Backend.cluster_options.get_specification()] == [
        "image", "worker_cores", "worker_memory"
    ]
    assert isinstance(config.Backend.cluster_options, options.Options)


def test_dockerfile_lint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed")
    done = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_builds_check():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode:
        pytest.skip("no docker daemon")
    done = subprocess.run(
        [docker, "build", "--check", "-f", str(DEPLOY / "Dockerfile"), str(DEPLOY.parent)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
