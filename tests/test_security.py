"""Trust on shared machines: the embedded cluster listens on this machine only, TLS clusters
(certificates for the scheduler, the workers and the client) run the chain, and a client
without the certificate is refused."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys

import pytest
import yaml

from geoclass.cli import main
from geoclass.cluster import dask_client, is_local_only
from geoclass.config import DaskOptions, DaskSecurity, parse_security
from geoclass.errors import ClusterError, ConfigError
from geoclass.io.configfile import load_config
from geoclass.pipeline import run_chain
from geoclass.testing.synth import synth

from .conftest import edit_config

pytest.importorskip("cryptography")  # Security.temporary()


def _tiny_scene(path):
    config = synth(path, tiles=1, size=64, dates=4, classes=3, regions=1)
    return edit_config(config, models={"params": {"n_estimators": 5}})


def _listening_hosts(cluster) -> set[str]:
    """The hosts the scheduler's comm and dashboard sockets are bound to."""
    scheduler = cluster.scheduler
    sockets = [s for listener in scheduler.listeners if hasattr(listener, "tcp_server")
               for s in listener.tcp_server._sockets.values()]
    if scheduler.http_server is not None:
        sockets += list(scheduler.http_server._sockets.values())
    return {s.getsockname()[0] for s in sockets if s.family in (socket.AF_INET,
                                                                 socket.AF_INET6)}


def test_addresses_on_this_machine_only():
    assert is_local_only("127.0.0.1:0") and is_local_only("tls://127.0.0.1:8786")
    assert is_local_only("localhost:8787") and is_local_only("[::1]:8787")
    assert is_local_only(None)  # no dashboard
    assert not is_local_only(":8787") and not is_local_only("0.0.0.0:8787")
    assert not is_local_only("10.0.0.12")


def test_the_local_cluster_and_its_dashboard_listen_on_localhost_only(caplog):
    with dask_client(DaskOptions(), workers=1, threads_per_worker=1) as client:
        cluster = client.cluster
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert all(a.startswith("tcp://127.0.0.1:") for a in client.scheduler_info()["workers"])
        assert "127.0.0.1" in client.dashboard_link
        assert _listening_hosts(cluster) == {"127.0.0.1"}
        # the workers were forked with geoclass's task modules loaded, and end quickly
        loaded = client.run(lambda: "geoclass.views.maps" in sys.modules)
        assert set(loaded.values()) == {True}
        # ... with dask's one BLAS thread, without its malloc trim threshold (cluster.py)
        environ = client.run(lambda: {k: os.environ.get(k) for k in
                                      ("OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")})
        assert list(environ.values()) == [{"OMP_NUM_THREADS": "1",
                                           "MALLOC_TRIM_THRESHOLD_": None}]
        plugins = client.run(lambda dask_worker: list(dask_worker.plugins))
        assert all("geoclass-quick-exit" in names for names in plugins.values())
    # opened deliberately: said on the console
    with caplog.at_level(logging.WARNING, logger="geoclass"), \
            dask_client(DaskOptions(dashboard_address=":0"), workers=1, threads_per_worker=1,
                        processes=False) as client:
        assert not _listening_hosts(client.cluster) <= {"127.0.0.1", "::1"}
    assert any("dashboard listens on :0" in r.getMessage() for r in caplog.records)


def test_security_settings_are_checked_before_any_work(tmp_path):
    assert parse_security("temporary") == "temporary"
    (tmp_path / "tls.yaml").write_text("ca_file: ca.pem\ncert: me.pem\nkey: me.key\n")
    security = parse_security(tmp_path / "tls.yaml")
    assert security == DaskSecurity(ca_file=tmp_path / "ca.pem", cert=tmp_path / "me.pem",
                                    key=tmp_path / "me.key")
    (tmp_path / "bad.yaml").write_text("ca: ca.pem\n")
    with pytest.raises(ConfigError, match="ca_file: required key is missing"):
        parse_security(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="no such file"):
        parse_security(tmp_path / "absent.yaml")
    with pytest.raises(ClusterError, match="dask.security.ca_file: no such file"), \
            dask_client(DaskOptions(security=security)):
        pass


def test_a_tls_local_cluster_runs_the_chain_and_refuses_a_client_without_certificate(
        tmp_path):
    """`dask.security: temporary`: scheduler, worker processes and client speak TLS with a
    certificate made for this run; the chain runs on it; a client that does not hold the
    certificate gets nothing."""
    from distributed import Client, Security

    path = _tiny_scene(tmp_path / "s")
    with dask_client(DaskOptions(security="temporary"), workers=1,
                     threads_per_worker=2) as client:
        address = client.cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        run_chain(load_config(path))
        assert (tmp_path / "s" / "run" / "final" / "Classif_Seed_0.tif").exists()
        assert (tmp_path / "s" / "run" / "final" / "report.html").exists()
        security = client.security
        _assert_refused(address, security.tls_ca_file,
                        security.tls_client_cert + security.tls_client_key, tmp_path)
        with pytest.raises((OSError, TimeoutError)):  # another certificate, another CA
            Client(address, security=Security.temporary(), timeout="3s")


def _tls_connection_stays_open(address: str, ca_pem: str, cert_pem: str | None = None,
                               folder=None) -> bool:
    """Open a TLS connection to the scheduler trusting `ca_pem`, showing the certificate
    `cert_pem` (certificate and key) or none; True when the scheduler keeps it open (waits
    for a message), False when it closes it."""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cadata=ca_pem)
    context.check_hostname = False
    if cert_pem is not None:
        (folder / "client.pem").write_text(cert_pem)
        context.load_cert_chain(folder / "client.pem")
    with socket.create_connection((host, int(port)), timeout=3) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                return tls.recv(1) != b""
        except TimeoutError:
            return True
        except (ssl.SSLError, ConnectionError):  # e.g. "peer did not return a certificate"
            return False


def _assert_refused(address: str, ca_pem: str, cert_pem: str, folder) -> None:
    """Clients without the certificate get nothing: a plain one, one with another
    certificate, and a TLS connection that trusts the scheduler but shows no certificate
    (the same connection with the certificate stays open)."""
    from distributed import Client, Security

    with pytest.raises((OSError, TimeoutError)):  # no TLS at all
        Client(address.replace("tls://", "tcp://"), timeout="3s")
    with pytest.raises((OSError, TimeoutError)):  # a certificate of another authority
        Client(address, security=Security.temporary(), timeout="3s")
    assert not _tls_connection_stays_open(address, ca_pem)
    assert _tls_connection_stays_open(address, ca_pem, cert_pem, folder)


@pytest.fixture
def tls_scheduler(tmp_path):
    """An in-process TLS scheduler and worker, and a YAML file naming their certificate."""
    from distributed import LocalCluster, Security

    security = Security.temporary()  # one self-signed certificate: its own CA
    (tmp_path / "cert.pem").write_text(security.tls_ca_file)
    (tmp_path / "key.pem").write_text(security.tls_scheduler_key)
    settings = tmp_path / "tls.yaml"
    settings.write_text(yaml.safe_dump({"ca_file": "cert.pem", "cert": "cert.pem",
                                        "key": "key.pem"}))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, security=security,
                      protocol="tls://", host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address, settings


def test_geoclass_reaches_a_tls_scheduler_with_its_certificates(tls_scheduler, tmp_path,
                                                                capsys):
    address, settings = tls_scheduler
    path = _tiny_scene(tmp_path / "s")
    assert main(["cube", str(path), "--scheduler", address, "--security", str(settings)]) == 0
    assert "T31TCJ.zarr" in capsys.readouterr().out
    assert (tmp_path / "s" / "run" / "cubes" / "T31TCJ.zarr" / ".zmetadata").exists()
    # without them: one clear error, before any work
    assert main(["train", str(path), "--scheduler", address]) == 2
    assert "speaks TLS: give its certificates with --security" in capsys.readouterr().err
    assert main(["train", str(path), "--scheduler", address.replace("tls", "tcp"),
                 "--security", str(settings)]) == 2
    assert "is not tls://" in capsys.readouterr().err
    assert not (tmp_path / "s" / "run" / "model").exists()
    cert = (settings.parent / "cert.pem").read_text()
    _assert_refused(address, cert, cert + (settings.parent / "key.pem").read_text(), tmp_path)
