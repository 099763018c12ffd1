"""Servers the tests start in their own process on a free port of 127.0.0.1 (not in a thread
of the test process: GDAL calls that hold the GIL, e.g. rasterio reading a sidecar .aux.xml,
would wait for a server that needs the GIL to answer)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], url: str, probe: str = "/") -> Iterator[str]:
    """Run `command` (a server listening at `url`) until the block ends; waits until
    `url + probe` answers."""
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}{probe}", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"{command[:3]} did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
