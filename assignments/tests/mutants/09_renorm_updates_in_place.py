"""The running statistics updated in place (running_mean *= 1 - momentum, ...) and returned:
right numbers, but the caller's arrays are changed."""

import numpy as np

MUST_FAIL = "test_09_renorm.py::test_arguments_are_not_modified"


def batch_renorm_forward(x, gamma, beta, running_mean, running_var, r_max, d_max,
                         momentum=0.1, eps=1e-5):
    m = x.shape[0]
    mean, var = x.mean(axis=0), x.var(axis=0)
    sigma_batch, sigma = np.sqrt(var + eps), np.sqrt(running_var + eps)
    r = np.clip(sigma_batch / sigma, 1 / r_max, r_max)
    d = np.clip((mean - running_mean) / sigma, -d_max, d_max)
    x_hat = (x - mean) / sigma_batch
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * var * m / (m - 1)
    return (gamma * (x_hat * r + d) + beta, running_mean, running_var,
            {"x_hat": x_hat, "inv_std": 1 / sigma_batch, "r": r, "d": d})
