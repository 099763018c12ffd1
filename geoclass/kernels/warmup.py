"""Imported by the process the LocalCluster's workers are forked from
(`cluster.start_worker_server`): one call of a small compiled kernel there sets numba up
(about 0.5 s) once, in the background, instead of in the first task of every worker."""

import numpy as np

from geoclass.kernels.select import fill_where

fill_where(np.zeros((1, 1, 1), np.uint16), 0, np.ones((1, 1), bool))
