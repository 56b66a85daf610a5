"""The forward pass with the unbiased variance (divides by m - 1): what PyTorch's
running_var uses, not what it normalizes with. On a batch of two it doubles the variance."""

import numpy as np

MUST_FAIL = "test_02_forward.py::test_smallest_batch"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=0)
    var = x.var(axis=0, ddof=1)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, {"x_hat": x_hat, "mean": mean, "var": var, "inv_std": inv_std}
