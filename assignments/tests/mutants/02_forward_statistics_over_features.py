"""Statistics over the features of each example (axis 1, LayerNorm's axis) instead of over
the batch."""

import numpy as np

MUST_FAIL = "test_02_forward.py::test_output_matches_pytorch"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, {"x_hat": x_hat, "mean": mean, "var": var, "inv_std": inv_std}
