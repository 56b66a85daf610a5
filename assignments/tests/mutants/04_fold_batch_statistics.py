"""Folding with the statistics of the last training batch (bn.cache) instead of the
running statistics."""

import numpy as np

MUST_FAIL = "test_04_test_time.py::test_fold_linear_matches_torch_fuse[with_bias]"


def fold_linear_bn(W, b, bn):
    scale = bn.gamma / np.sqrt(bn.cache.var + bn.eps)
    bias = np.zeros(W.shape[0]) if b is None else b
    return W * scale[:, None], scale * (bias - bn.cache.mean) + bn.beta
