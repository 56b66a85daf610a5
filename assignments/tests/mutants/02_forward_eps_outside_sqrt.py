"""eps added outside the square root: sqrt(var) + eps instead of sqrt(var + eps). Invisible
when the variance dwarfs eps, wrong when it does not."""

import numpy as np

MUST_FAIL = "test_02_forward.py::test_eps_inside_the_square_root"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    inv_std = 1.0 / (np.sqrt(var) + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, {"x_hat": x_hat, "mean": mean, "var": var, "inv_std": inv_std}
