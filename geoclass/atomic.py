"""Atomic outputs (write to a temporary path, then rename) and input fingerprints for resume."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_output(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `final` to write into (file or folder); on success it
    replaces `final` in one rename, on failure it is removed, so a reader never sees a half
    written output under the final name."""
    final = Path(final)
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


def step_is_current(manifest: Path, settings: object, outputs: Iterable[Path] = (),
                    force: bool = False) -> bool:
    """Whether a step can be skipped: not forced, its manifest records `settings` (as JSON)
    and every one of its `outputs` exists."""
    if force or not manifest.exists():
        return False
    return (json.loads(manifest.read_text()) == json.loads(json.dumps(settings))
            and all(Path(p).exists() for p in outputs))


def record_step(manifest: Path, settings: object) -> None:
    """Write a step's manifest atomically (last, once its outputs are complete)."""
    with atomic_output(manifest) as tmp:
        tmp.write_text(json.dumps(settings))


def fingerprint(files: Iterable[str | Path], settings: object = None) -> str:
    """A hash of the files' paths, sizes and modification times, and of `settings` (JSON)."""
    digest = hashlib.sha256()
    for path in sorted(str(f) for f in files):
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]
