"""Centres x in place (x -= mean): right numbers, but the caller's batch is destroyed."""

import numpy as np

MUST_FAIL = "test_02_forward.py::test_input_is_not_modified"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=0)
    x -= mean
    var = (x**2).mean(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = x * inv_std
    return gamma * x_hat + beta, {"x_hat": x_hat, "mean": mean, "var": var, "inv_std": inv_std}
