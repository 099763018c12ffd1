"""The LocalCluster's worker server starts before the configuration is validated, when the
configuration as written leaves the cluster to forked local workers (cli._forked_workers_wanted)."""

import argparse

import pytest

from geoclass import cli


def _args(tmp_path, text: str, **options):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return argparse.Namespace(config=path, **options)


@pytest.mark.parametrize(("text", "wanted"), [
    ("chain:\n  runs: 1\n", True),
    ("dask:\n  workers: 2\n", True),
    ("dask:\n  fork_workers: true\n", True),
    ("dask:\n  fork_workers: false\n", False),
    ("dask:\n  scheduler: tcp://10.0.0.1:8786\n", False),
    ("[chain]\noutputPath: '/x'\n", False),  # not a YAML mapping: decided after loading
    ("chain: [1, 2\n", False),  # not YAML at all: the validation says it
    ("dask: 3\n", True),  # a wrong section: the validation says it, the server may start
])
def test_the_configuration_as_written_decides(tmp_path, text, wanted):
    assert cli._forked_workers_wanted(_args(tmp_path, text, scheduler=None)) is wanted


def test_a_scheduler_on_the_command_line_or_no_cluster_option_starts_none(tmp_path):
    assert not cli._forked_workers_wanted(_args(tmp_path, "{}\n", scheduler="tcp://h:8786"))
    assert not cli._forked_workers_wanted(_args(tmp_path, "{}\n"))  # e.g. `geoclass check`


def test_an_unreadable_configuration_starts_none(tmp_path):
    args = argparse.Namespace(config=tmp_path / "missing.yaml", scheduler=None)
    assert not cli._forked_workers_wanted(args)


def test_the_worker_server_starts_from_light_imports():
    # the CLI starts it before geoclass.cluster (distributed, pydantic, pandas) is imported,
    # with dask's environment for workers as `import distributed` would give it
    import json
    import subprocess
    import sys

    from geoclass.workerserver import worker_environ

    code = ("import json, sys, geoclass.workerserver as w; environ = w.worker_environ(); "
            "print(json.dumps([environ, sorted({'numpy', 'distributed', 'pandas'} "
            "& set(sys.modules))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    environ, heavy = json.loads(out)
    assert heavy == []
    assert environ == worker_environ() and environ.get("OMP_NUM_THREADS") == 1
    assert "MALLOC_TRIM_THRESHOLD_" not in environ
