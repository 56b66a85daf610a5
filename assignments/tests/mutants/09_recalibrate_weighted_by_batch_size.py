"""Each batch's statistics weighted by its size (the pooled mean, and a size-weighted mean
of the batch variances) instead of equally: update_bn's cumulative average counts the
short last batch as much as the others."""

import numpy as np

MUST_FAIL = "test_09_recalibrate.py::test_matches_update_bn[short_last_batch]"


def recalibrate(batches):
    means, variances, sizes = [], [], []
    for x in batches:
        axes = (0,) + tuple(range(2, x.ndim))
        means.append(x.mean(axis=axes))
        variances.append(x.var(axis=axes, ddof=1))
        sizes.append(x.size // x.shape[1])
    return (np.average(means, axis=0, weights=sizes),
            np.average(variances, axis=0, weights=sizes))
