"""Sensor readers: each returns the same description of a dated series on a tile grid, and
the window readers turn it into stored observations."""

from geoclass.io.sensors.base import (
    Acquisition,
    BandRef,
    Encoding,
    MaskRef,
    SensorSeries,
    encoding_of,
    read_observations,
    read_series_block,
)
from geoclass.io.sensors.landsat import read_landsat8, read_landsat8_old
from geoclass.io.sensors.sen2cor import read_sen2cor
from geoclass.io.sensors.sentinel1 import read_sentinel1
from geoclass.io.sensors.series import read_series
from geoclass.io.sensors.stac import StacSeries, open_stac_observations, read_stac
from geoclass.io.sensors.theia import read_theia_s2
from geoclass.io.sensors.userfeat import UserFeatures, read_user_block, read_user_features

__all__ = [
    "Acquisition",
    "BandRef",
    "Encoding",
    "MaskRef",
    "SensorSeries",
    "StacSeries",
    "UserFeatures",
    "encoding_of",
    "open_stac_observations",
    "read_landsat8",
    "read_landsat8_old",
    "read_observations",
    "read_sen2cor",
    "read_sentinel1",
    "read_series",
    "read_series_block",
    "read_stac",
    "read_theia_s2",
    "read_user_block",
    "read_user_features",
]
