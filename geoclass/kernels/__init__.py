"""Pure per-block numpy kernels: functions of arrays and plain values, with no file or dask
access, so that they run the same on a whole image or on each block of a dask array."""
