"""A static HTTP server with byte ranges (`Range: bytes=a-b`, 206 Partial Content), as object
stores and CDNs serve files; one line per response, `<path> <bytes sent>`, goes to a log
file. Run in its own process by the tests (GDAL calls that hold the GIL would wait for a
server in a thread of the same process):

    python tests/range_server.py FOLDER PORT LOG
"""

from __future__ import annotations

import functools
import http.server
import sys
from pathlib import Path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    log_path: Path

    def log_message(self, *args):  # quiet
        pass

    def end_headers(self):
        if "Accept-Ranges" not in "".join(h.decode("latin-1") for h in self._headers_buffer):
            self.send_header("Accept-Ranges", "bytes")  # as object stores and CDNs say
        super().end_headers()

    def send_head(self):
        path = Path(self.translate_path(self.path))
        wanted = self.headers.get("Range")
        if not path.is_file() or not wanted or not wanted.startswith("bytes="):
            return super().send_head()
        size = path.stat().st_size
        first, _, last = wanted[6:].split(",")[0].partition("-")
        start = int(first) if first else max(0, size - int(last))
        end = min(int(last), size - 1) if first and last else size - 1
        if start >= size:
            self.send_error(416, "Requested Range Not Satisfiable")
            return None
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return _Body(body, ranged=True)

    def copyfile(self, source, outputfile):
        data = source.read()
        outputfile.write(data)
        kind = "range" if getattr(source, "ranged", False) else "whole"
        with open(self.log_path, "a") as log:
            log.write(f"{self.path} {kind} {len(data)} {self.headers.get('User-Agent', '-')}\n")


class _Body:
    def __init__(self, data: bytes, ranged: bool):
        self.data, self.ranged = data, ranged

    def read(self, *args):
        data, self.data = self.data, b""
        return data

    def close(self):
        pass


def main(folder: str, port: int, log: str) -> None:
    RangeHandler.log_path = Path(log)
    handler = functools.partial(RangeHandler, directory=folder)
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as httpd:
        httpd.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
