"""Sensor readers: each returns the same description of a dated series on a tile grid."""

from geoclass.sensors.base import Acquisition, BandRef, MaskRef, SensorSeries, read_series_block
from geoclass.sensors.landsat import read_landsat8, read_landsat8_old
from geoclass.sensors.sen2cor import read_sen2cor
from geoclass.sensors.sentinel1 import read_sentinel1
from geoclass.sensors.series import read_series
from geoclass.sensors.stac import StacSeries, open_stac_series, read_stac
from geoclass.sensors.theia import read_theia_s2
from geoclass.sensors.userfeat import UserFeatures, read_user_block, read_user_features

__all__ = [
    "Acquisition",
    "BandRef",
    "MaskRef",
    "SensorSeries",
    "StacSeries",
    "UserFeatures",
    "open_stac_series",
    "read_landsat8",
    "read_landsat8_old",
    "read_sen2cor",
    "read_sentinel1",
    "read_series",
    "read_series_block",
    "read_stac",
    "read_theia_s2",
    "read_user_block",
    "read_user_features",
]
