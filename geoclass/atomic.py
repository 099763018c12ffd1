"""Atomic outputs: write to a temporary sibling, then rename, so that a reader never sees a
half-written output under its final name.

On an object store (no rename there) a file is written locally, then uploaded: one PUT, which
the store commits only once complete. A folder (a zarr store, the samples) is written under
its final keys, after removing the old ones: what marks it complete is the manifest of the
step (or of the item) that wrote it, written last and removed before the folder is written
again (`pipeline.run_step`, `RunStore.forget`, `RunStore.forget_item`)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geoclass import fs


def _remove(path: Path) -> None:
    fs.rm(path)


@contextmanager
def atomic_output(final, shared: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `final` to write into (file or folder); on success it
    replaces `final` in one rename, on failure it is removed.

    `final` on an object store: a local temporary file or folder, uploaded on success; or,
    with `shared` (the folder is written by dask workers, which may not share this machine's
    disk), `final` itself, emptied first and removed on failure."""
    final = fs.as_path(final)
    if fs.is_url(final):
        if shared:
            fs.rm(final)
            try:
                yield final
            except BaseException:
                fs.rm(final)
                raise
            return
        with tempfile.TemporaryDirectory(prefix="geoclass-") as folder:
            tmp = Path(folder) / final.name
            yield tmp
            if tmp.exists():
                fs.upload(tmp, final)
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(final, trash)
            os.replace(tmp, final)
            _remove(trash)
        else:
            os.replace(tmp, final)
    finally:
        _remove(tmp)


def write_text_atomic(path, text: str):
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return fs.as_path(path)
