"""File writers: styles and sidecars written next to the rasters geoclass produces."""
