"""geoclass: land-cover maps from satellite image time series, on xarray, dask and zarr."""

from geoclass.check import check_inputs
from geoclass.config import Config, load_config
from geoclass.cube import build_cubes, open_cube, open_cubes
from geoclass.samples import read_samples, sample
from geoclass.train import load_model, train

__version__ = "0.1.0"

__all__ = [
    "Config",
    "build_cubes",
    "check_inputs",
    "load_config",
    "load_model",
    "open_cube",
    "open_cubes",
    "read_samples",
    "sample",
    "train",
]
