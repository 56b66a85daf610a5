"""Group Normalization with the groups formed across the wrong axis: x reshaped to
(N, C // G, G, H, W), so channel c falls in group c % G instead of c // (C // G)."""

import numpy as np

MUST_FAIL = "test_05_layer_group.py::test_groupnorm_forward_matches_pytorch[G=2]"


def groupnorm_forward(x, gamma, beta, G, eps=1e-5):
    n, c, h, w = x.shape
    groups = x.reshape(n, c // G, G, h, w)
    mean = groups.mean(axis=(1, 3, 4))
    var = groups.var(axis=(1, 3, 4))
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = ((groups - mean[:, None, :, None, None]) * inv_std[:, None, :, None, None])
    x_hat = x_hat.reshape(x.shape)
    y = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
    return y, {"x_hat": x_hat, "mean": mean, "var": var, "inv_std": inv_std}
