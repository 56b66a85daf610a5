"""The default momentum 0.1 kept, starting from the reset statistics (mean 0, variance 1):
an exponential average that, after a few batches, still remembers the reset values."""

import numpy as np

MUST_FAIL = "test_09_recalibrate.py::test_matches_update_bn[equal_batches]"


def recalibrate(batches):
    channels = batches[0].shape[1]
    mean, var = np.zeros(channels), np.ones(channels)
    for x in batches:
        axes = (0,) + tuple(range(2, x.ndim))
        mean = 0.9 * mean + 0.1 * x.mean(axis=axes)
        var = 0.9 * var + 0.1 * x.var(axis=axes, ddof=1)
    return mean, var
