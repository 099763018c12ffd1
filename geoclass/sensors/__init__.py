"""Sensor readers: each returns the same description of a dated series on a tile grid."""

from geoclass.sensors.base import Acquisition, BandRef, MaskRef, SensorSeries, read_series_block
from geoclass.sensors.landsat import read_landsat8_old
from geoclass.sensors.theia import read_theia_s2
from geoclass.sensors.userfeat import UserFeatures, read_user_block, read_user_features

__all__ = [
    "Acquisition",
    "BandRef",
    "MaskRef",
    "SensorSeries",
    "UserFeatures",
    "read_landsat8_old",
    "read_series_block",
    "read_theia_s2",
    "read_user_block",
    "read_user_features",
]
