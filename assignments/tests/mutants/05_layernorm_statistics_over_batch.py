"""Layer Normalization with BN's axis: the statistics of each feature over the batch
(axis 0) instead of each example over its features (axis 1)."""

import numpy as np

MUST_FAIL = "test_05_layer_group.py::test_layernorm_forward_matches_pytorch[batch_of_6]"


def layernorm_forward(x, gamma, beta, eps=1e-5):
    mean, var = x.mean(axis=0), x.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, {"x_hat": x_hat, "mean": mean, "var": var, "inv_std": inv_std}
