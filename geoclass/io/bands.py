"""The band names of the optical sensors, for the readers and for the configuration (iota2's
keys name them): a light module, so that reading a configuration loads no raster library."""

S2_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
S2_INDEX_BANDS = {"green": "B3", "red": "B4", "nir": "B8", "swir": "B11"}
L8_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
L8_INDEX_BANDS = {"green": "B3", "red": "B4", "nir": "B5", "swir": "B6"}
