"""geoclass: land-cover maps from satellite image time series, on xarray, dask and zarr."""

from geoclass.check import check_inputs
from geoclass.classify import classify, classify_lazy
from geoclass.config import Config, load_config
from geoclass.cube import build_cubes, open_cube, open_cubes
from geoclass.maps import mosaic
from geoclass.pipeline import make_report, run_chain
from geoclass.samples import read_samples, sample
from geoclass.train import load_model, train
from geoclass.validate import assess

__version__ = "0.1.0"

__all__ = [
    "Config",
    "assess",
    "build_cubes",
    "check_inputs",
    "classify",
    "classify_lazy",
    "load_config",
    "load_model",
    "mosaic",
    "open_cube",
    "open_cubes",
    "read_samples",
    "make_report",
    "run_chain",
    "sample",
    "train",
]
