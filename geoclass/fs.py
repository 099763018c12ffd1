"""Where inputs and outputs live: local paths (pathlib, exactly as always) or object-store URLs
(`s3://`, `gs://`, `az://`, `abfs://`, and `http(s)://` read-only) through fsspec.

Every location of a configuration goes through `as_path`: a local path stays a
`pathlib.Path`, a URL becomes a `upath.UPath` (pathlib's API over fsspec: `/`, `name`,
`glob`, `iterdir`, `exists`, `read_text`...), so most code works on both unchanged. What a
path API cannot say lives here:

- `gdal_path` / `open_raster` / `read_vector`: GDAL reads objects itself, through its virtual
  file systems (`s3://b/k` -> `/vsis3/b/k`, `https://...` -> `/vsicurl/https://...`), with
  the endpoint of an S3-compatible server taken from the environment (`AWS_ENDPOINT_URL_S3`,
  `AWS_ENDPOINT_URL`, `FSSPEC_S3_ENDPOINT_URL`), never from the configuration;
- `read_parquet`, `to_parquet`, `read_csv`, `zarr_location`: pandas and zarr with fsspec URLs;
- `upload`, `rm`, `signature` (size and version of an input, for the manifests).

Credentials are never in the configuration: fsspec (s3fs, gcsfs, adlfs) and GDAL both take
them from the usual environment variables, profiles (`AWS_PROFILE`, `~/.aws/credentials`) or
instance roles."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePath
from urllib.parse import urlparse

import fsspec
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
import rasterio
from upath import UPath

URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
READ_ONLY = ("http", "https")
# GDAL's virtual file system of each protocol
VSI = {"s3": "/vsis3/", "s3a": "/vsis3/", "gs": "/vsigs/", "gcs": "/vsigs/", "az": "/vsiaz/",
       "abfs": "/vsiaz/", "adl": "/vsiadls/", "http": "/vsicurl/", "https": "/vsicurl/"}

Location = Path | UPath


def is_url(value) -> bool:
    """Whether `value` is a URL of a file system other than the local one."""
    if isinstance(value, UPath):
        return value.protocol not in ("", "file", "local")
    if isinstance(value, PurePath):
        return False
    text = str(value)
    return bool(URL.match(text)) and not text.startswith(("file://", "local://"))


is_remote = is_url


def _options(protocol: str) -> dict:
    # no listings cache: another process (a worker, a rerun) may have written since
    return {} if protocol in ("memory",) else {"use_listings_cache": False}


def as_path(value) -> Location:
    """A location of the configuration or of the run store: a `pathlib.Path` for a local
    path (and `file://` URLs), a `UPath` for an object-store URL."""
    if isinstance(value, UPath):
        return value if is_url(value) else Path(value.path)
    if isinstance(value, Path):
        return value
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if text.startswith(("file://", "local://")):
        return Path(urlparse(text).path)
    if URL.match(text):
        protocol = text.split("://", 1)[0].lower()
        return UPath(text, **_options(protocol))
    return Path(text)


def url(path) -> str:
    """The path as a string: the URL of an object (`s3://bucket/key`), or a local path."""
    return str(as_path(path))


def storage_options(path) -> dict:
    """The fsspec options of a remote path (empty for a local one)."""
    path = as_path(path)
    return dict(path.storage_options) if is_url(path) else {}


def joinable(path) -> bool:
    """Whether a configured location is absolute (URLs are)."""
    return is_url(path) or Path(path).is_absolute()


def _http_exists(path) -> bool:
    """Whether a web server has the file: a HEAD request (fsspec's own `exists` is a GET,
    which makes the server start sending the whole file)."""
    try:
        path.fs.info(str(path))
    except (FileNotFoundError, OSError):
        return False
    return True


def exists(path) -> bool:
    path = as_path(path)
    return _http_exists(path) if is_url(path) and path.protocol in READ_ONLY \
        else path.exists()


def is_file(path) -> bool:
    path = as_path(path)
    return _http_exists(path) if is_url(path) and path.protocol in READ_ONLY \
        else path.is_file()


def is_dir(path) -> bool:
    return as_path(path).is_dir()


def open(path, mode: str = "rb", **kwargs):
    """A file object on a local or remote path."""
    return as_path(path).open(mode, **kwargs)


def signature(path) -> str:
    """What changes when the file changes: size and modification time (nanoseconds) of a
    local file, size and version (ETag, else last modification) of an object."""
    path = as_path(path)
    if not is_url(path):
        stat = os.stat(path)
        return f"{stat.st_size}|{stat.st_mtime_ns}"
    info = path.fs.info(path.path)
    version = next((str(info[k]) for k in ("ETag", "etag", "LastModified", "Last-Modified",
                                            "mtime", "last_modified") if info.get(k)), "")
    return f"{info.get('size')}|{version}"


def mtime_ns(path) -> int:
    """A number that changes when the file changes (a cache key)."""
    path = as_path(path)
    if not is_url(path):
        return os.stat(path).st_mtime_ns
    return hash(signature(path))


def rm(path) -> None:
    """Remove a file or a folder (every key under a prefix), if there."""
    path = as_path(path)
    if is_url(path):
        if path.fs.exists(path.path):
            path.fs.rm(path.path, recursive=True)
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def upload(local: Path, final) -> None:
    """Put a local file or folder at a remote location. A file is one PUT: the object appears
    whole or not at all (S3, GCS and Azure commit an upload only once complete). A folder
    replaces whatever was at `final`, key by key: what marks it complete is the step's
    manifest, written after it."""
    final = as_path(final)
    if Path(local).is_dir():
        rm(final)
        for file in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            final.fs.put_file(str(file), f"{final.path}/{file.relative_to(local).as_posix()}")
    else:
        final.fs.put_file(str(local), final.path)
    forget_gdal_cache(final)


def check_writable(path) -> list[str]:
    """Why an output location cannot be written, for a URL (nothing is written)."""
    path = as_path(path)
    if path.protocol in READ_ONLY:
        return [f"chain.output_path {path}: {path.protocol} is read-only; write to a bucket "
                "(s3://, gs://, az://) or a local folder"]
    bucket = path.path.split("/", 1)[0]
    try:
        found = path.fs.exists(bucket)
    except Exception as err:  # noqa: BLE001 - credentials, network: all reported the same way
        return [f"chain.output_path {path}: cannot reach the object store ({err}); check the "
                "credentials and endpoint in the environment (AWS_PROFILE, AWS_ENDPOINT_URL...)"]
    if not found:
        return [f"chain.output_path {path}: bucket {bucket} does not exist (or is not "
                "visible with these credentials); create it first"]
    if path.fs.isfile(path.path):
        return [f"chain.output_path {path} is an object, not a folder; choose another path"]
    return []


# --- GDAL ------------------------------------------------------------------------------------


def gdal_path(path) -> str:
    """The name GDAL opens: the local path, or the object's name in GDAL's virtual file
    system (`s3://b/k` -> `/vsis3/b/k`, `https://h/f.tif` -> `/vsicurl/https://h/f.tif`)."""
    if isinstance(path, str) and path.startswith("/vsi"):
        return path
    path = as_path(path)
    if not is_url(path):
        return str(path)
    protocol = path.protocol if isinstance(path.protocol, str) else path.protocol[0]
    prefix = VSI.get(protocol)
    if prefix is None:
        raise ValueError(f"{path}: GDAL cannot read {protocol}:// (supported: "
                         f"{', '.join(sorted(VSI))})")
    if prefix == "/vsicurl/":
        return prefix + str(path)
    return prefix + str(path).split("://", 1)[1]


def _endpoint() -> str | None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "FSSPEC_S3_ENDPOINT_URL"):
        if os.environ.get(name):
            return os.environ[name]
    conf = fsspec.config.conf.get("s3", {})
    return conf.get("endpoint_url") or conf.get("client_kwargs", {}).get("endpoint_url")


def gdal_options() -> dict[str, str]:
    """GDAL settings for an S3-compatible endpoint named as boto3 and fsspec name it
    (`AWS_ENDPOINT_URL=http://127.0.0.1:9000`): GDAL's own `AWS_S3_ENDPOINT`, `AWS_HTTPS` and
    path-style addressing. Settings already in the environment win; nothing otherwise."""
    endpoint = _endpoint()
    if not endpoint or os.environ.get("AWS_S3_ENDPOINT"):
        return {}
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    options = {"AWS_S3_ENDPOINT": parsed.netloc + parsed.path.rstrip("/")}
    options.setdefault("AWS_HTTPS", os.environ.get("AWS_HTTPS")
                       or ("YES" if parsed.scheme == "https" else "NO"))
    options.setdefault("AWS_VIRTUAL_HOSTING", os.environ.get("AWS_VIRTUAL_HOSTING") or "FALSE")
    return options


@contextlib.contextmanager
def gdal_env() -> Iterator[None]:
    """rasterio's GDAL environment for objects (the endpoint's settings)."""
    with rasterio.Env(**gdal_options()):
        yield


@contextlib.contextmanager
def open_raster(path, mode: str = "r", **kwargs):
    """`rasterio.open` on a local path or an object (read-only), in the GDAL environment the
    object store needs."""
    with gdal_env(), rasterio.open(gdal_path(path), mode, **kwargs) as src:
        yield src


@functools.cache
def _rasterio_gdal():
    """rasterio's own GDAL library (its wheel bundles one), for what rasterio does not expose."""
    base = Path(rasterio.__file__).resolve().parent
    found = sorted([*(base.parent / "rasterio.libs").glob("libgdal*.so*"),
                    *(base / ".dylibs").glob("libgdal*.dylib")])
    name = str(found[0]) if found else ctypes.util.find_library("gdal")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def forget_gdal_cache(path) -> None:
    """GDAL caches what it read of an object for the life of the process: after the object
    is rewritten, drop that (else a later read could mix the old version's blocks in)."""
    if not is_url(path):
        return
    library = _rasterio_gdal()
    clear = getattr(library, "VSICurlPartialClearCache", None) if library else None
    if clear is not None:
        clear(gdal_path(path).encode())


def read_vector(path, **kwargs):
    """A vector file (any format GDAL reads, shapefiles with their side files) as a
    GeoDataFrame, local or remote."""
    options = gdal_options()
    if options and is_url(path):
        pyogrio.set_gdal_config_options(options)
    return pyogrio.read_dataframe(gdal_path(path), **kwargs)


# --- tables and zarr -------------------------------------------------------------------------


def _pandas(path) -> tuple[str, dict]:
    path = as_path(path)
    return (str(path), {"storage_options": storage_options(path)}) if is_url(path) \
        else (str(path), {})


def read_parquet(path, **kwargs) -> pd.DataFrame:
    where, extra = _pandas(path)
    return pd.read_parquet(where, **extra, **kwargs)


def to_parquet(table: pd.DataFrame, path, **kwargs) -> None:
    where, extra = _pandas(path)
    table.to_parquet(where, **extra, **kwargs)


def parquet_file(path) -> pq.ParquetFile:
    """A parquet file's metadata and row groups, read on demand (ranges of an object)."""
    path = as_path(path)
    return pq.ParquetFile(path.open("rb") if is_url(path) else str(path))


def read_csv(path, **kwargs) -> pd.DataFrame:
    where, extra = _pandas(path)
    return pd.read_csv(where, **extra, **kwargs)


def zarr_location(path) -> tuple[str, dict | None]:
    """(URL or path, storage options or None) for zarr, xarray and dask."""
    path = as_path(path)
    return (str(path), storage_options(path)) if is_url(path) else (str(path), None)
