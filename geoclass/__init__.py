"""geoclass: land-cover maps from satellite image time series, on xarray, dask and zarr."""

from geoclass.config import Config, load_config
from geoclass.cube import build_cubes, open_cube, open_cubes

__version__ = "0.1.0"

__all__ = ["Config", "build_cubes", "load_config", "open_cube", "open_cubes"]
