"""geoclass: land-cover maps from satellite image time series, on xarray, dask and zarr.

The verbs a notebook chains (open_cubes -> sample -> train -> classify -> mosaic -> assess) are
loaded on first use, so that `import geoclass` and the command line start fast."""

from importlib import import_module

__version__ = "0.1.0"

_VERBS = {
    "Config": "geoclass.config", "load_config": "geoclass.io.configfile",
    "check_inputs": "geoclass.steps.check",
    "open_cube": "geoclass.api", "open_cubes": "geoclass.api", "build_cubes": "geoclass.api",
    "sample": "geoclass.api", "read_samples": "geoclass.api", "train": "geoclass.api",
    "load_model": "geoclass.api", "classify": "geoclass.api", "classify_lazy": "geoclass.api",
    "classify_cube": "geoclass.api", "mosaic": "geoclass.api", "assess": "geoclass.api",
    "make_report": "geoclass.api", "run_chain": "geoclass.api", "cube_path": "geoclass.api",
    "model_path": "geoclass.api", "load_class_table": "geoclass.api",
    "suggest": "geoclass.api",
}

__all__ = sorted(_VERBS)


def __getattr__(name: str):
    if name in _VERBS:
        return getattr(import_module(_VERBS[name]), name)
    raise AttributeError(f"module 'geoclass' has no attribute {name!r}")
